"""Upload Lightning checkpoints to the run's store while training runs.

:class:`CheckpointUploader` watches the ``ModelCheckpoint`` folder after every training batch, validation and at the
end of fit. Each new or rewritten ``*.ckpt`` (the team's names ``epoch=000-step=71612-val_AP=0.25.ckpt`` for the
top-k by val AP, and ``last.ckpt``) is copied to a staging folder in the main thread (so a later rewrite of
``last.ckpt`` cannot tear the upload) and uploaded by one background thread to
``experiments/<experiment>/<run_id>/checkpoints/<name>``. The staged copy is deleted only when the store confirms the
object (its size matches); the store retries transient failures with exponential backoff and uses multipart for
large files (:class:`evdet.data.storage.S3Store`). A top-k checkpoint that ``ModelCheckpoint`` removed locally is
deleted from the bucket too. At fit end and on an exception the callback waits (up to ``wait_timeout_s``) for
pending uploads, then uploads ``config.yaml``, ``experiment_results.json`` and confusion matrices found in the run folder beside the
``checkpoints/`` prefix, and logs every failure with the staged file that was kept.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from evdet.data.storage import Store, StoreError, run_prefix

__all__ = ["CheckpointUploader", "UploadFailure", "RESULT_PATTERNS"]

log = logging.getLogger(__name__)

#: Files of the run folder uploaded beside ``checkpoints/`` at fit end (glob patterns, relative to the run folder).
RESULT_PATTERNS = ("config.yaml", "experiment_results.json", "*confusion*.json", "*confusion*.png", "*confusion*.npy",
                   "*confusion*.csv")


@dataclass(frozen=True)
class UploadFailure:
    """An upload or delete that failed after the store's retries.

    Attributes:
        key: destination key in the store.
        kept: the local (staged) file that was kept, or ``None`` for a delete.
        error: the store's one-line message (endpoint and bucket named, never the secret).
    """

    key: str
    kept: Path | None
    error: str


class CheckpointUploader(Callback):
    """Lightning callback that mirrors a run's checkpoints into ``store`` as they are written.

    Args:
        store: destination store (local or S3, :func:`evdet.data.storage.open_store`).
        experiment: experiment name (``experiments/<experiment>/...``).
        run_id: run id (``.../<run_id>/checkpoints/``).
        checkpoint_dir: the ``ModelCheckpoint`` dirpath to watch.
        run_dir: the run's output folder, searched for :data:`RESULT_PATTERNS` at fit end; default the parent of
            ``checkpoint_dir``.
        wait_timeout_s: how long fit end / an exception waits for pending uploads (seconds).

    Attributes:
        uploaded: keys confirmed in the store, in upload order.
        failures: :class:`UploadFailure` list (empty when all went up).
    """

    def __init__(self, store: Store, experiment: str, run_id: str, checkpoint_dir: str | Path,
                 run_dir: str | Path | None = None, wait_timeout_s: float = 600.0) -> None:
        self.store = store
        self.prefix = f"{run_prefix(experiment, run_id)}/checkpoints"
        self.run_prefix = run_prefix(experiment, run_id)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else self.checkpoint_dir.parent
        self.staging = self.run_dir / ".upload-staging"
        self.wait_timeout_s = wait_timeout_s
        self.uploaded: list[str] = []
        self.failures: list[UploadFailure] = []
        self._seen: dict[str, tuple[int, int]] = {}  # name -> (mtime_ns, size) of the last enqueued version
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._serial = 0

    # --- background worker -------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="evdet-checkpoint-upload", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                action, key, path = item
                try:
                    if action == "put":
                        self.store.put_file(path, key)
                        path.unlink(missing_ok=True)  # confirmed (size checked by the store): drop the staged copy
                        with self._lock:
                            self.uploaded.append(key)
                        log.info("uploaded %s/%s", self.store.uri, key)
                    else:
                        self.store.delete(key)
                        log.info("deleted %s/%s (removed from the local top-k)", self.store.uri, key)
                except (StoreError, OSError) as exc:
                    failure = UploadFailure(key=key, kept=path, error=" ".join(str(exc).split()))
                    with self._lock:
                        self.failures.append(failure)
                    log.error("checkpoint %s to %s/%s failed: %s%s", action, self.store.uri, key, failure.error,
                              f" (local copy kept at {path})" if path else "")
            finally:
                self._queue.task_done()

    # --- scanning ------------------------------------------------------------------------------------------------
    def scan(self) -> None:
        """Enqueue uploads of new or rewritten checkpoints and deletes of top-k checkpoints removed locally.

        Runs in the training thread between Lightning hooks, when ``ModelCheckpoint`` has finished writing.
        """
        self._start()
        present: dict[str, Path] = {}
        if self.checkpoint_dir.is_dir():
            present = {p.name: p for p in self.checkpoint_dir.glob("*.ckpt") if p.is_file()}
        for name, path in sorted(present.items()):
            st = path.stat()
            version = (st.st_mtime_ns, st.st_size)
            if self._seen.get(name) == version:
                continue
            self._seen[name] = version
            self.staging.mkdir(parents=True, exist_ok=True)
            self._serial += 1
            staged = self.staging / f"{self._serial:06d}-{name}"
            shutil.copyfile(path, staged)
            self._queue.put(("put", f"{self.prefix}/{name}", staged))
        for name in sorted(set(self._seen) - set(present)):
            del self._seen[name]
            if name != "last.ckpt":
                self._queue.put(("delete", f"{self.prefix}/{name}", None))

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every queued upload/delete finished or ``timeout_s`` (default ``wait_timeout_s``) passed.

        Returns:
            True when the queue drained, False on timeout (logged with the number of pending items).
        """
        deadline = time.monotonic() + (self.wait_timeout_s if timeout_s is None else timeout_s)
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                log.error("checkpoint uploads to %s: %d still pending after %.0f s", self.store.uri,
                          self._queue.unfinished_tasks, self.wait_timeout_s if timeout_s is None else timeout_s)
                return False
            time.sleep(0.05)
        return True

    def _upload_results(self) -> None:
        for pattern in RESULT_PATTERNS:
            for path in sorted(self.run_dir.glob(pattern)):
                if path.is_file():
                    self.staging.mkdir(parents=True, exist_ok=True)
                    self._serial += 1
                    staged = self.staging / f"{self._serial:06d}-{path.name}"
                    shutil.copyfile(path, staged)
                    self._queue.put(("put", f"{self.run_prefix}/{path.name}", staged))

    def finish(self, timeout_s: float | None = None) -> list[UploadFailure]:
        """Final scan, results upload and wait; returns the failures (also logged). Idempotent."""
        self.scan()
        self._upload_results()
        self.wait(timeout_s)
        if self.failures:
            log.error("%d upload(s) to %s failed; local copies kept: %s", len(self.failures), self.store.uri,
                      ", ".join(str(f.kept) for f in self.failures if f.kept))
        elif self.staging.is_dir() and not any(self.staging.iterdir()):
            self.staging.rmdir()
        return list(self.failures)

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """Pick up checkpoints written at the previous hook (ModelCheckpoint runs after the other callbacks)."""
        self.scan()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pick up checkpoints written so far."""
        self.scan()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pick up the final checkpoints."""
        self.scan()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Upload what is left and wait for the queue (``wait_timeout_s``)."""
        self.finish()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Training failed: upload what was written (incl. a last.ckpt) and wait, so the run can resume."""
        log.warning("training raised %s: flushing checkpoint uploads to %s", type(exception).__name__, self.store.uri)
        self.finish()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Stop the worker thread once the queue is empty (pending items keep it alive until ``wait`` returns)."""
        if self._worker is not None and self._worker.is_alive() and not self._queue.unfinished_tasks:
            self._queue.put(None)
            self._worker.join(timeout=5)
            self._worker = None
