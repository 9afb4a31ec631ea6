"""Upload Lightning checkpoints to the run's store while training runs.

:class:`CheckpointUploader` watches the checkpoint folder after every training batch, validation and at the end of
fit. Each new or rewritten ``*.ckpt`` (the team's names ``epoch=000-step=71612-val_AP=0.25.ckpt`` for the top-k by
val AP, and ``last.ckpt``, the latest state written every ``checkpoint.every_n_steps`` steps) is copied to a staging
folder in the main thread (so a later rewrite of ``last.ckpt`` cannot tear the upload) and uploaded by one background
thread to ``experiments/<experiment>/<run_id>/checkpoints/<name>``. Watched run files (``config.yaml``, ``run.json``
and ``logs/metrics.csv`` by default) and the files of watched folders (``confusion/``: one confusion matrix per
validation) go up the same way, beside ``checkpoints/``, whenever they change. The staged
copy is deleted only when the store confirms the object (its size matches); the store retries transient failures with
exponential backoff and uses multipart for large files (:class:`evdet.data.storage.S3Store`). An upload that still
fails (the store was down for longer than its retries) is tried again at a later scan, at most every
``retry_interval_s``, until it succeeds or a newer version of the same file replaces it; so a store outage during
training loses nothing once the store is back. A top-k checkpoint that ``ModelCheckpoint`` removed locally is deleted
from the bucket too.

Only the global rank 0 uploads: under data parallelism the callback is inert on every other rank (ranks share the
run's folder on one node, and one copy per object is what the store should get). Staged copies carry the process id,
so two processes never share a staging name.

:meth:`CheckpointUploader.finish` (the end of fit, and ``evdet-train`` itself after a failure or a preemption, with
the time the pod's grace period leaves) uploads what is left plus :data:`RESULT_PATTERNS` found in the run folder,
tries failures again until they succeed or the time is up, and waits; every failure that remains is logged with the
staged file that was kept.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from evdet.data.storage import Store, StoreError, run_prefix

__all__ = ["CheckpointUploader", "UploadFailure", "RESULT_PATTERNS", "WATCHED_FILES", "WATCHED_FOLDERS"]

log = logging.getLogger(__name__)

#: Files of the run folder uploaded beside ``checkpoints/`` by :meth:`CheckpointUploader.finish` (glob patterns,
#: relative to the run folder; the object is named after the file).
RESULT_PATTERNS = ("config.yaml", "run.json", "logs/metrics.csv", "experiment_results.json", "*confusion*.json",
                   "*confusion*.png", "*confusion*.npy", "*confusion*.csv")

#: Run files uploaded whenever they change (relative path in the run folder -> object name beside ``checkpoints/``).
WATCHED_FILES = {"config.yaml": "config.yaml", "run.json": "run.json", "logs/metrics.csv": "metrics.csv"}

#: Folders of the run folder whose files are uploaded whenever they change (relative path -> object folder beside
#: ``checkpoints/``): the per-validation confusion matrices (:mod:`evdet.model.mlops.run_records`).
WATCHED_FOLDERS = {"confusion": "confusion"}


@dataclass(frozen=True)
class UploadFailure:
    """An upload or delete that failed after the store's retries (and was not made good by a later attempt).

    Attributes:
        key: destination key in the store.
        kept: the local (staged) file that was kept, or ``None`` for a delete.
        error: the store's one-line message (endpoint and bucket named, never the secret).
    """

    key: str
    kept: Path | None
    error: str


class CheckpointUploader(Callback):
    """Lightning callback that mirrors a run's checkpoints (and watched run files) into ``store`` as they are written.

    Args:
        store: destination store (local or S3, :func:`evdet.data.storage.open_store`).
        experiment: experiment name (``experiments/<experiment>/...``).
        run_id: run id (``.../<run_id>/checkpoints/``).
        checkpoint_dir: the folder of the run's ``*.ckpt`` files to watch.
        run_dir: the run's output folder, searched for :data:`RESULT_PATTERNS` by :meth:`finish` and for
            ``watch``; default the parent of ``checkpoint_dir``.
        wait_timeout_s: how long :meth:`finish` waits for pending uploads by default (seconds).
        watch: run files uploaded whenever they change (path relative to ``run_dir`` -> object name); default
            :data:`WATCHED_FILES`.
        retry_interval_s: least time between two new attempts of a failed upload during training (seconds).

    Attributes:
        uploaded: keys confirmed in the store, in upload order.
        enabled: False on ranks other than the global rank 0 (set in ``setup``); then nothing is uploaded.
    """

    def __init__(self, store: Store, experiment: str, run_id: str, checkpoint_dir: str | Path,
                 run_dir: str | Path | None = None, wait_timeout_s: float = 600.0,
                 watch: dict[str, str] | None = None, retry_interval_s: float = 5.0) -> None:
        self.store = store
        self.prefix = f"{run_prefix(experiment, run_id)}/checkpoints"
        self.run_prefix = run_prefix(experiment, run_id)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else self.checkpoint_dir.parent
        self.staging = self.run_dir / ".upload-staging"
        self.wait_timeout_s = wait_timeout_s
        self.watch = dict(WATCHED_FILES if watch is None else watch)
        self.retry_interval_s = retry_interval_s
        self.enabled = True
        self.uploaded: list[str] = []
        self._failed: dict[str, UploadFailure] = {}  # key -> the latest failure not made good yet
        self._latest: dict[str, Path] = {}  # key -> staged file of the newest version enqueued
        self._seen: dict[str, tuple[int, int]] = {}  # key -> (mtime_ns, size) of the last enqueued version
        self._checkpoints: set[str] = set()  # checkpoint names present at the last scan
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._serial = 0
        self._next_retry = 0.0

    @property
    def failures(self) -> list[UploadFailure]:
        """Uploads / deletes that failed and were not made good by a later attempt (empty when all went up)."""
        with self._lock:
            return list(self._failed.values())

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
                            if self._failed.get(key) is not None and self._failed[key].kept == path:
                                del self._failed[key]
                        log.info("uploaded %s/%s", self.store.uri, key)
                    else:
                        self.store.delete(key)
                        with self._lock:
                            self._failed.pop(key, None)
                        log.info("deleted %s/%s (removed from the local top-k)", self.store.uri, key)
                except Exception as exc:  # noqa: BLE001 - StoreError / OSError mostly; the worker must survive
                    if not isinstance(exc, (StoreError, OSError)):
                        exc = StoreError(f"{type(exc).__name__}: {exc}")
                    failure = UploadFailure(key=key, kept=path, error=" ".join(str(exc).split()))
                    with self._lock:
                        superseded = action == "put" and self._latest.get(key) != path
                        if not superseded:
                            self._failed[key] = failure
                    if superseded:
                        path.unlink(missing_ok=True)  # a newer version of the file is queued: this one is moot
                    log.error("checkpoint %s to %s/%s failed: %s%s", action, self.store.uri, key, failure.error,
                              "" if superseded else (f" (local copy kept at {path}; tried again later)" if path
                                                     else " (tried again later)"))
            finally:
                self._queue.task_done()

    # --- scanning ------------------------------------------------------------------------------------------------
    def _stage(self, source: Path, key: str) -> None:
        """Copy ``source`` to a staging file unique to this process and enqueue its upload to ``key``."""
        self.staging.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        staged = self.staging / f"{os.getpid()}-{self._serial:06d}-{source.name}"
        shutil.copyfile(source, staged)
        with self._lock:
            previous = self._failed.get(key)
            if previous is not None and previous.kept is not None and previous.kept != staged:
                del self._failed[key]  # superseded by this newer version
                previous.kept.unlink(missing_ok=True)
            self._latest[key] = staged
        self._queue.put(("put", key, staged))

    def _changed(self, path: Path, key: str) -> bool:
        st = path.stat()
        version = (st.st_mtime_ns, st.st_size)
        if self._seen.get(key) == version:
            return False
        self._seen[key] = version
        return True

    def _retry_failed(self, force: bool = False) -> int:
        """Enqueue the failures again (puts of their kept copies, deletes); returns how many."""
        now = time.monotonic()
        if not force and (now < self._next_retry or self._queue.unfinished_tasks):
            return 0
        with self._lock:
            failed = list(self._failed.values())
        for failure in failed:
            if failure.kept is not None:
                if failure.kept.is_file():
                    self._queue.put(("put", failure.key, failure.kept))
            else:
                self._queue.put(("delete", failure.key, None))
        self._next_retry = now + self.retry_interval_s
        if failed:
            log.info("trying %d failed upload(s) to %s again", len(failed), self.store.uri)
        return len(failed)

    def scan(self) -> None:
        """Enqueue uploads of new or rewritten checkpoints and watched files, deletes of top-k checkpoints removed
        locally, and (at most every ``retry_interval_s``) new attempts of failed uploads.

        Runs in the training thread between Lightning hooks, when the checkpoint writers have finished. Does nothing
        when the callback is disabled (ranks other than 0).
        """
        if not self.enabled:
            return
        self._start()
        present: dict[str, Path] = {}
        if self.checkpoint_dir.is_dir():
            present = {p.name: p for p in self.checkpoint_dir.glob("*.ckpt") if p.is_file()}
        for name, path in sorted(present.items()):
            key = f"{self.prefix}/{name}"
            if self._changed(path, key):
                self._stage(path, key)
        for name in sorted(self._checkpoints - set(present)):
            key = f"{self.prefix}/{name}"
            self._seen.pop(key, None)
            if name != "last.ckpt":
                self._queue.put(("delete", key, None))
        self._checkpoints = set(present)
        for rel, name in self.watch.items():
            path = self.run_dir / rel
            key = f"{self.run_prefix}/{name}"
            if path.is_file() and self._changed(path, key):
                self._stage(path, key)
        for rel, name in WATCHED_FOLDERS.items():
            folder = self.run_dir / rel
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                key = f"{self.run_prefix}/{name}/{path.name}"
                if path.is_file() and not path.name.startswith(".") and self._changed(path, key):
                    self._stage(path, key)
        self._retry_failed()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every queued upload/delete finished or ``timeout_s`` (default ``wait_timeout_s``) passed.

        Returns:
            True when the queue drained, False on timeout (logged with the number of pending items).
        """
        timeout = self.wait_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                log.error("checkpoint uploads to %s: %d still pending after %.0f s", self.store.uri,
                          self._queue.unfinished_tasks, timeout)
                return False
            time.sleep(0.05)
        return True

    def _upload_results(self) -> None:
        for pattern in RESULT_PATTERNS:
            for path in sorted(self.run_dir.glob(pattern)):
                key = f"{self.run_prefix}/{path.name}"
                if path.is_file() and self._changed(path, key):
                    self._stage(path, key)

    def finish(self, timeout_s: float | None = None, attempts: int | None = None) -> list[UploadFailure]:
        """Final scan, upload of :data:`RESULT_PATTERNS` (changed files only) and wait. Failed uploads are tried
        again, 1 s, 2 s, 4 s, ... (at most 30 s) apart, while ``timeout_s`` (default ``wait_timeout_s``) lasts and,
        when given, up to ``attempts`` tries in all; so a store that is back within the timeout gets everything.
        Returns the failures that remain (also logged). Idempotent; does nothing on ranks other than 0.
        """
        if not self.enabled:
            return []
        deadline = time.monotonic() + (self.wait_timeout_s if timeout_s is None else timeout_s)
        self.scan()
        self._upload_results()
        self.wait(max(0.0, deadline - time.monotonic()))
        pause, tries = 1.0, 1
        while self.failures and (attempts is None or tries < attempts) and time.monotonic() + pause < deadline:
            time.sleep(pause)
            pause, tries = min(pause * 2, 30.0), tries + 1
            self._retry_failed(force=True)
            self.wait(max(0.0, deadline - time.monotonic()))
        failures = self.failures
        if failures:
            log.error("%d upload(s) to %s failed; local copies kept: %s", len(failures), self.store.uri,
                      ", ".join(str(f.kept) for f in failures if f.kept))
        elif self.staging.is_dir() and not self._queue.unfinished_tasks:
            # Everything is in the store: staged copies left by this process or by an earlier, killed one are moot.
            shutil.rmtree(self.staging, ignore_errors=True)
        return failures

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Enable uploads on the global rank 0 only."""
        self.enabled = bool(trainer.is_global_zero)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Upload the run files present at the start (``config.yaml``, ``run.json`` saying ``running``), so the store
        holds the run at once."""
        self.scan()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """Pick up checkpoints written in this step (interval ``last.ckpt``) or at the previous hook."""
        self.scan()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pick up checkpoints written so far."""
        self.scan()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Pick up the final checkpoints."""
        self.scan()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Upload what is left and wait for the queue (``wait_timeout_s``); failures are tried again by the caller's
        :meth:`finish` (``evdet-train`` calls it after writing ``run.json``)."""
        self.finish(attempts=1)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Training stopped (failure or preemption): enqueue what was written (incl. a ``last.ckpt``); the caller
        (``evdet-train``) then calls :meth:`finish` with the time it has."""
        if self.enabled:
            log.warning("training stopped (%s): uploading what was written to %s", type(exception).__name__,
                        self.store.uri)
        self.scan()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Stop the worker thread once the queue is empty (pending items keep it alive until ``wait`` returns)."""
        if self._worker is not None and self._worker.is_alive() and not self._queue.unfinished_tasks:
            self._queue.put(None)
            self._worker.join(timeout=5)
            self._worker = None
