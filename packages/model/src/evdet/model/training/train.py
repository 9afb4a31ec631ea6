"""``evdet-train``: train an experiment with Hydra configuration and Lightning.

Example (the team's baseline; see README.md)::

    evdet-train +experiment=plain_lstm_640x360_baseline dataset.path=/data/etram_shards \\
        batch_size.train=6 training.max_steps=100000

The run's working directory is ``output.dir`` (``outputs/<experiment>/<run_id>``): Lightning checkpoints in
``checkpoints/``, CSV logs in ``logs/``, the resolved ``config.yaml`` and ``run.json`` (status, what was produced,
where). With ``output.store`` set (a local path or ``s3://bucket/prefix``), checkpoints are uploaded to the store
under ``experiments/<experiment>/<run_id>/checkpoints/`` while training runs (:mod:`evdet.model.mlops.checkpoint_upload`),
with ``config.yaml``, ``metrics.csv`` and ``run.json`` beside them. ``ckpt_path`` and ``dataset.path`` accept
``s3://`` URIs (downloaded to the cache, :func:`evdet.data.storage.cache_dir`).

Run lifecycle (README.md "Storage"):

* ``checkpoints/last.ckpt`` is the latest training state, written every ``checkpoint.every_n_steps`` optimiser steps
  and at the end whatever val_AP does (the best ``checkpoint.save_top_k`` by val_AP are separate files). It is
  written to a temporary file and renamed, so a kill never leaves a torn one.
* SIGTERM (a pod's eviction or preemption) or SIGINT (Ctrl-C): the current step finishes (a validation in progress is
  abandoned on a single process), ``last.ckpt`` is written at that step and uploaded within what is left of
  ``checkpoint.grace_period_s``, ``run.json`` gets ``status: preempted`` and the process exits with 143 (SIGTERM) or
  130 (SIGINT). A second signal exits at once. ``run.json`` says ``completed`` (exit 0) or ``failed`` (exit 1, after
  training began) otherwise; a wrong input (config, checkpoint, run_id) is one line on stderr and exit 2 before
  anything is written.
* ``resume=auto`` continues the run from the newer of the store's and the local ``last.ckpt``: weights, optimizer, LR
  schedule, step; ``metrics.csv`` keeps its rows before that step (locally and in the store) and is appended to. The
  run's ``training.max_steps`` must not change. A run_id that exists (in ``output.dir`` or the store) is refused
  without ``resume=auto``.
* run_id: ``run_id=`` > ``$EVDET_RUN_ID`` > (``resume=auto``) the newest run in the store > the start time; the rank-0
  process exports it as ``$EVDET_RUN_ID`` to the ranks Lightning spawns, and a torchrun launch (``WORLD_SIZE`` > 1)
  must give it. Only the global rank 0 writes ``config.yaml`` / ``run.json`` and uploads.
* Checkpoints are read with ``torch.load(weights_only=True)`` only (:mod:`evdet.model.training.checkpoint`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from evdet.data.storage import (LocalStore, Store, StoreError, cache_dir, download_prefix, fetch_file, open_store,
                                 parse_s3_uri, run_prefix)
from evdet.model.training.checkpoint import (check_resume_checkpoint, check_resume_metadata, checkpoint_step,  # noqa: F401
                                             find_resume_checkpoint, local_checkpoint, peek_checkpoint,
                                             read_checkpoint)  # (checkpoint_step: _resume_plan)
from evdet.model.mlops.checkpoint_upload import CheckpointUploader
from evdet.model.config import compose_config, finalize_config, to_container, validate_config
from evdet.model.training.datamodule import ShardDataModule
from evdet.model.mlops.ddp_checks import WeightConsistencyCheck
from evdet.model.mlops.experiment_loggers import build_loggers
from evdet.model.mlops.progress_log import LogLineProgress, use_progress_bar
from evdet.model.training.module import DetectionModule
from evdet.model.mlops.prometheus_metrics import build_metrics_callbacks
from evdet.model.mlops.run_records import CONFUSION_DIR, PerfRecorder, ValidationConfusionWriter, describe_run

__all__ = ["run_training", "check_before_run", "training_started", "resolve_precision", "upload_run",
           "CHECKPOINT_FILENAME", "Preempted", "RunLifecycle", "StopRequest", "RUN_ID_ENV", "EXIT_CODES"]

log = logging.getLogger(__name__)

#: Checkpoint names the team uses: ``epoch=000-step=71612-val_AP=0.25.ckpt``.
CHECKPOINT_FILENAME = "epoch={epoch:03d}-step={step}-val_AP={val_AP:.2f}"

#: Environment variable that fixes the run_id for every process of a run (set by the k8s manifests; exported by the
#: rank-0 process to the ranks Lightning spawns).
RUN_ID_ENV = "EVDET_RUN_ID"

#: Exit status per way a run ends: ``completed`` 0, ``failed`` 1 (after training began), wrong input 2 (nothing
#: written), preempted by SIGINT 130 / SIGTERM 143 (128 + the signal number, as a shell reports a signalled process).
EXIT_CODES = {"completed": 0, "failed": 1, "input_error": 2, signal.SIGINT: 130, signal.SIGTERM: 143}

#: Seconds of the grace period kept back for run.json and the process exit when uploads are cut short.
GRACE_MARGIN_S = 3.0

_RUN_STATE: dict[str, Any] = {"training": False}  # set once a run starts writing (for the exit status of main)


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning precision for the device that will run.

    16-bit float mixed precision needs a GPU; on a CPU-only machine the run falls back to ``32-true`` with a warning
    (bf16 would work but is slower than fp32 on most CPUs).
    """
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if precision.startswith("16") and not on_gpu:
        warnings.warn(f"hardware.precision={precision} needs a GPU; training on the CPU in 32-true", stacklevel=2)
        return "32-true"
    return precision


# ------------------------------------------------------------------------------------------------ signals
class Preempted(BaseException):
    """Training stopped on SIGTERM / SIGINT after the current step (a ``BaseException``, like ``KeyboardInterrupt``,
    so that no ``except Exception`` swallows it).

    Attributes:
        signum: the signal (``signal.SIGTERM`` or ``signal.SIGINT``).
        step: the global step of the checkpoint written (None when training had not started).
        exit_code: 143 for SIGTERM, 130 for SIGINT.
        message: one line for stderr, set by :func:`run_training` (names the run, the checkpoint and the next step).
    """

    def __init__(self, signum: int, step: int | None = None) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)
        self.step = step
        self.exit_code = EXIT_CODES.get(signal.Signals(signum), 128 + int(signum))
        self.message = str(self)


class StopRequest:
    """SIGTERM / SIGINT handlers that only record the request; the training loop acts on it at a step boundary
    (:class:`RunLifecycle`). A second signal exits at once with ``128 + signum``.

    Attributes:
        signum: the first signal received, or None.
        received_at: ``time.monotonic()`` when it arrived.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received_at: float | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Install the handlers (main thread only; elsewhere signals cannot be handled and nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def take_over(self) -> None:
        """Install the handlers again, replacing those Lightning registered at fit start (its SIGTERM handler would
        stop the loop on its own terms and exit 0)."""
        if self._previous:
            for sig in self.SIGNALS:
                signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Restore the handlers found at :meth:`install`."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(f"evdet-train: second {name}: exiting now, without a checkpoint", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum, self.received_at = signum, time.monotonic()
        log.warning("received %s: finishing the current step, then writing checkpoints/last.ckpt (send it again to "
                    "exit at once)", name)

    def time_left(self, grace_s: float) -> float:
        """Seconds left of a grace period of ``grace_s`` since the signal, less :data:`GRACE_MARGIN_S` (never < 0);
        ``grace_s`` when no signal arrived."""
        if self.received_at is None:
            return float(grace_s)
        return max(0.0, float(grace_s) - (time.monotonic() - self.received_at) - GRACE_MARGIN_S)


class RunLifecycle(Callback):
    """Writes ``last.ckpt`` every ``every_n_steps`` optimiser steps and at the end, and stops training cleanly on a
    recorded SIGTERM / SIGINT.

    Checkpoints are written with ``trainer.save_checkpoint`` (every rank takes part, rank 0 writes) to
    ``.last.ckpt.partial`` and renamed to ``last.ckpt`` by rank 0. At the end of a training batch the ranks agree on a
    stop (an all-reduce of the recorded signal under data parallelism); then ``last.ckpt`` is written at that step, the
    step's metrics are logged and :class:`Preempted` is raised, which ends ``trainer.fit``. A signal during validation
    abandons it on a single process (under data parallelism validation finishes first, as ranks must agree).

    Args:
        stop: the signal recorder.
        checkpoint_dir: folder of ``last.ckpt``.
        every_n_steps: interval in optimiser steps (None: only at the end and on a stop).
        save_last: write ``last.ckpt`` at the interval and at the end (a stop writes it regardless).

    Attributes:
        last_path: ``last.ckpt`` once written, else None.
        last_step: the global step of the last ``last.ckpt`` written (None before).
    """

    def __init__(self, stop: StopRequest, checkpoint_dir: Path, every_n_steps: int | None, save_last: bool) -> None:
        self.stop = stop
        self.checkpoint_dir = Path(checkpoint_dir)
        self.every_n_steps = int(every_n_steps) if every_n_steps else None
        self.save_last = bool(save_last)
        self.last_path: Path | None = None
        self.last_step: int | None = None
        self._partial_step: int | None = None  # an interval checkpoint written, not yet renamed to last.ckpt
        self._batch_end_step: int | None = None

    def save(self, trainer: L.Trainer) -> Path:
        """Write the trainer's full state to ``last.ckpt`` (atomically); returns its path. Collective under DDP."""
        self._write_partial(trainer)
        return self._commit(trainer)

    def _write_partial(self, trainer: L.Trainer) -> None:
        """The trainer's full state to ``.last.ckpt.partial`` (collective under DDP; rank 0 writes)."""
        trainer.save_checkpoint(self.checkpoint_dir / ".last.ckpt.partial", weights_only=False)
        self._partial_step = int(trainer.global_step)

    def _commit(self, trainer: L.Trainer) -> Path:
        """Rename the partial checkpoint to ``last.ckpt`` (rank 0)."""
        path = self.checkpoint_dir / "last.ckpt"
        if trainer.is_global_zero:
            os.replace(self.checkpoint_dir / ".last.ckpt.partial", path)
        self.last_path, self.last_step = path, int(self._partial_step)
        self._partial_step = None
        return path

    def _stop_signal(self, trainer: L.Trainer) -> int:
        """The recorded signal, agreed over all ranks (max); 0 when none."""
        flag = int(self.stop.signum or 0)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor([flag], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = int(tensor.item())
        return flag

    def _flush_csv(self, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger) and trainer.is_global_zero:
                logger.save()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Take the signal handlers back from Lightning; stop at once if a signal came during set-up."""
        self.stop.take_over()
        signum = self._stop_signal(trainer)
        if signum:
            raise Preempted(signum, None)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Make the interval checkpoint of the previous step ``last.ckpt``, after flushing the CSV log (which by now
        holds that step's metrics): whenever ``last.ckpt`` of step S exists, metrics.csv on disk holds every row
        before S, so a SIGKILL at any moment loses no row that a resume from ``last.ckpt`` keeps."""
        if self._partial_step is not None:
            self._flush_csv(trainer)
            self._commit(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Interval checkpoint; on an agreed stop request: checkpoint, log this step's metrics, raise Preempted.
        Acts only right after an optimiser step (with ``training.accumulate_grad_batches`` > 1 the batches in between
        hold partial gradients, which a checkpoint would not keep)."""
        step = int(trainer.global_step)
        if step == self._batch_end_step:
            return
        self._batch_end_step = step
        signum = self._stop_signal(trainer)
        if signum:
            self.save(trainer)
            connector = getattr(trainer, "_logger_connector", None)
            if connector is not None and hasattr(connector, "update_train_step_metrics"):
                connector.update_train_step_metrics()  # what Lightning does right after this hook
            raise Preempted(signum, step)
        if self.save_last and self.every_n_steps and step > 0 and step % self.every_n_steps == 0 \
                and step != self.last_step:
            self._write_partial(trainer)  # renamed to last.ckpt at the next batch start, after the CSV flush

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """Abandon validation on a stop request (single process only; the checkpoint is written in on_exception)."""
        if trainer.world_size == 1 and self.stop.signum and not trainer.sanity_checking:
            raise Preempted(self.stop.signum, int(trainer.global_step))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The final ``last.ckpt`` (after the last validation, so a resumed finished run ends at once)."""
        if self.save_last:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A stop raised outside a training batch end (during validation): write ``last.ckpt`` now."""
        if isinstance(exception, Preempted) and exception.step is not None and self.last_step != exception.step:
            self.save(trainer)


# ------------------------------------------------------------------------------------------------ run identity
def _launch_rank_zero() -> bool:
    """Whether this process is the global rank 0 by its launcher's environment (torchrun: ``RANK``; Lightning's own
    spawned ranks: ``LOCAL_RANK`` / ``NODE_RANK``); a plain process is rank 0."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(var, "").strip()
        if value and value != "0":
            return False
    return True


def _run_id_given(cfg: DictConfig) -> tuple[bool, str]:
    """``(given, how)``: whether the run_id was chosen by the user (``run_id=`` or ``$EVDET_RUN_ID``)."""
    env = os.environ.get(RUN_ID_ENV, "").strip()
    value = None if OmegaConf.is_interpolation(cfg, "run_id") else cfg.get("run_id")
    if env and (value in (None, "", "None") or str(value) == env):
        return True, f"from ${RUN_ID_ENV}"
    if value not in (None, "", "None"):
        return True, "given as run_id="
    return False, "from the start time"


def _check_distributed_run_id(given: bool) -> None:
    """Processes started by an external launcher (torchrun, a PyTorchJob: ``WORLD_SIZE`` > 1) must share a run_id.

    Raises:
        ValueError: ``WORLD_SIZE`` > 1 and neither ``run_id=`` nor ``$EVDET_RUN_ID`` is set.
    """
    world = os.environ.get("WORLD_SIZE", "1").strip() or "1"
    if not given and world.isdigit() and int(world) > 1:
        raise ValueError(f"run_id: this process is one of WORLD_SIZE={world} started by a launcher (torchrun / "
                         f"PyTorchJob), and each would pick its own run_id from its clock; pass run_id=<id> or set "
                         f"{RUN_ID_ENV}=<id>, the same on every rank")


@contextmanager
def _exported_run_id(run_id: str) -> Iterator[None]:
    """``$EVDET_RUN_ID`` set to ``run_id`` while training (the ranks Lightning spawns inherit it), then restored."""
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous


def _existing_run(out_dir: Path, store: Store | None, experiment: str, run_id: str) -> str | None:
    """Where run ``run_id`` already left files: ``output.dir`` (config.yaml, run.json, checkpoints, logs) or the
    store's ``experiments/<experiment>/<run_id>/``; None when nowhere."""
    local = [name for name in ("config.yaml", "run.json", "logs/metrics.csv") if (out_dir / name).is_file()]
    local += [f"checkpoints/{p.name}" for p in sorted((out_dir / "checkpoints").glob("*.ckpt"))]
    if local:
        return f"output.dir {out_dir} holds {', '.join(local[:3])}{' ...' if len(local) > 3 else ''}"
    if store is not None:
        keys = [info.key for info in store.objects(f"{run_prefix(experiment, run_id)}/")]
        if keys:
            names = [k.rsplit("/", 1)[-1] for k in keys]
            return (f"the store {store.uri} holds {run_prefix(experiment, run_id)}/ ({len(keys)} objects: "
                    f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''})")
    return None


def _refuse_existing_run(out_dir: Path, store: Store | None, experiment: str, run_id: str, how: str) -> None:
    """Raises ValueError naming the run and the two ways forward when run ``run_id`` exists
    (:func:`_existing_run`)."""
    where = _existing_run(out_dir, store, experiment, run_id)
    if where is not None:
        raise ValueError(f"run_id={run_id}: run {run_id} of experiment {experiment} exists ({where}; run_id {how}); "
                         f"continue it with resume=auto run_id={run_id}, or start a new run with another run_id "
                         "(nothing was written)")


# ------------------------------------------------------------------------------------------------ resume
@dataclass
class _ResumePlan:
    """What ``trainer.fit`` starts from: ``path`` (a local file) and how it was chosen (``what``), or nothing."""

    path: Path | None = None
    what: str = ""
    resume: bool = False
    source: str | None = None  # "store" | "local" | "ckpt_path"


def _resume_plan(cfg: DictConfig, run_id_given: bool) -> _ResumePlan:
    """The checkpoint ``trainer.fit`` starts from: ``ckpt_path`` (local or ``s3://``, downloaded), or with
    ``resume=auto`` the newer (by global step) of the run's ``last.ckpt`` in ``output.store`` and in ``output.dir``
    (the store's only when ``hardware.num_nodes`` > 1: every rank must start from the same one); sets ``cfg.run_id`` to
    the resumed run.

    Raises:
        ValueError: ``resume`` is not ``auto``/null, is combined with ``ckpt_path``, or ``output.store`` is unset.
        evdet.model.training.checkpoint.CheckpointError: a candidate ``last.ckpt`` is unreadable or unsafe (names the file).
        evdet.data.storage.StoreError: the store cannot be read.
    """
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume in (None, False, "null", "none"):
        if not ckpt_path:
            return _ResumePlan()
        return _ResumePlan(path=local_checkpoint(ckpt_path), what=f"ckpt_path={ckpt_path}", source="ckpt_path")
    if resume != "auto":
        raise ValueError(f"resume={resume!r}: expected auto or null")
    if ckpt_path:
        raise ValueError(f"resume=auto and ckpt_path={ckpt_path} both set: expected one of them (resume=auto continues "
                         "the run_id from its last.ckpt; ckpt_path starts a new run from a checkpoint)")
    store_uri = cfg.output.get("store")
    if not store_uri:
        raise ValueError("resume=auto: output.store is not set; expected the store that holds the run's checkpoints "
                         "(a local folder or s3://bucket/prefix), e.g. output.store=outputs/store")
    store = open_store(store_uri)
    run_id, key = find_resume_checkpoint(store, str(cfg.experiment_name), str(cfg.run_id) if run_id_given else None)
    if run_id is None and key is None:
        log.info("resume=auto: no run of experiment %s in %s; starting fresh", cfg.experiment_name, store.uri)
        return _ResumePlan(resume=True)
    cfg.run_id = run_id
    out_dir = Path(to_container(cfg)["output"]["dir"]).resolve()
    candidates: list[tuple[int, int, str, Path]] = []
    local = out_dir / "checkpoints" / "last.ckpt"
    # Ranks on other nodes see other disks: with several nodes only the store's copy is one all ranks agree on.
    if local.is_file() and int(cfg.hardware.get("num_nodes", 1) or 1) == 1:
        candidates.append((checkpoint_step(local), 1, "local", local))
    if key is not None:
        fetched = Path(store.uri) / key if isinstance(store, LocalStore) else fetch_file(f"{store.uri}/{key}")
        candidates.append((checkpoint_step(fetched), 0, "store", fetched))
    if not candidates:
        log.info("resume=auto: run %s of experiment %s has no checkpoints/last.ckpt in %s or %s; starting fresh",
                 run_id, cfg.experiment_name, store.uri, out_dir)
        return _ResumePlan(resume=True)
    step, _, source, path = max(candidates)
    log.info("resume=auto: continuing run %s from step %d (%s %s)", run_id, step, source,
             f"{store.uri}/{key}" if source == "store" else path)
    return _ResumePlan(path=path, what=f"resume=auto (run {run_id})", resume=True, source=source)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _metrics_history(out_dir: Path, store: Store | None, prefix: str, before_step: int) -> list[dict[str, str]]:
    """The rows of the run's ``metrics.csv`` logged before ``before_step`` (the resumed checkpoint's global step;
    rows of later steps belong to steps that are trained again): from ``output.dir/logs/metrics.csv`` or the store's
    ``metrics.csv``, whichever holds more of them."""
    sources: list[list[dict[str, str]]] = []
    local = out_dir / "logs" / "metrics.csv"
    if local.is_file():
        sources.append(_read_rows(local))
    if store is not None and store.exists(f"{prefix}/metrics.csv"):
        tmp = cache_dir() / "resume" / f"{os.getpid()}-metrics.csv"
        try:
            sources.append(_read_rows(store.get_file(f"{prefix}/metrics.csv", tmp)))
        finally:
            tmp.unlink(missing_ok=True)

    def kept(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        out = []
        for row in rows:
            try:
                if int(float(row.get("step") or 0)) < before_step:
                    out.append(row)
            except ValueError:
                continue
        return out

    return max((kept(rows) for rows in sources), key=len, default=[])


def _restore_metrics_history(trainer: L.Trainer, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as the start of the CSV logger's ``metrics.csv`` (Lightning's CSV logger deletes an existing
    file when it starts; the new rows are appended after these)."""
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            writer = logger.experiment  # creates the writer (and removes the old file)
            writer.metrics = [dict(row) for row in rows]
            writer.save()


# ------------------------------------------------------------------------------------------------ the run
def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Train one run described by ``cfg`` (composed ``train.yaml``); returns the contents of ``run.json``.

    Everything that can be wrong with the inputs is checked before anything is written: the config, the run_id (an
    existing run without ``resume=auto``; a torchrun launch without one), the store, the shards, and the checkpoint
    to start from (weights-only readable, fits the model, same ``training.max_steps``).

    Raises:
        evdet.model.config.ConfigError: the config is wrong (:func:`evdet.model.config.validate_config`; checked
            before anything is built or written).
        FileNotFoundError: the dataset path has no train shards, or ``ckpt_path`` does not exist.
        ValueError: the shards' size differs from the configured resolution; ``resume`` is not ``auto``/null (or is
            combined with ``ckpt_path``, or lacks ``output.store``); the run_id exists and ``resume`` is not ``auto``;
            ``WORLD_SIZE`` > 1 without a run_id.
        evdet.model.training.checkpoint.CheckpointError: the checkpoint to start from is unsafe, unreadable or does not fit.
        Preempted: SIGTERM / SIGINT stopped training (``last.ckpt`` and ``run.json`` with ``status: preempted``
            written and uploaded first; ``exc.message`` is the one-line report).
        evdet.data.storage.StoreError: the store cannot be used (endpoint and bucket named), or checkpoint uploads
            failed (raised after ``run.json`` is written; the local copies are kept).
        Exception: whatever stopped training (``run.json`` then says ``status: failed``).
    """
    validate_config(cfg)  # config errors before any work (one line; evdet-train exits with status 2)
    _RUN_STATE["training"] = False
    stop = StopRequest()
    stop.install()
    try:
        return _run(cfg, stop)
    finally:
        stop.uninstall()


def _run(cfg: DictConfig, stop: StopRequest) -> dict[str, Any]:
    run_id_given, how = _run_id_given(cfg)
    _check_distributed_run_id(run_id_given)
    cfg = finalize_config(cfg)
    plan = _resume_plan(cfg, run_id_given)
    config = to_container(cfg)
    experiment, run_id = str(config["experiment_name"]), str(config["run_id"])
    out_dir = Path(config["output"]["dir"]).resolve()
    rank_zero = _launch_rank_zero()

    store_uri = config["output"].get("store")
    store = open_store(store_uri) if store_uri else None
    if store is not None and hasattr(store, "check"):
        store.check()  # wrong credentials / endpoint / bucket: fail now, not after the first checkpoint
    if rank_zero and not plan.resume:
        _refuse_existing_run(out_dir, store, experiment, run_id, how)
    L.seed_everything(int(config["seed"]), workers=True)
    data = ShardDataModule(_with_local_dataset(config))
    data.facts("train")  # fail early, naming the directory, when shards are missing or of another size
    has_val = any(data.split_dir("val").glob("*.h5"))
    eval_info = {k: v for k, v in data.facts("val").items() if k != "shards"} if has_val else None
    module = DetectionModule(config, eval_info=eval_info)
    resume_step = 0
    if plan.path is not None:
        checkpoint = read_checkpoint(plan.path)
        check_resume_checkpoint(checkpoint, plan.path, module, config, plan.what)
        resume_step = int(checkpoint.get("global_step", 0))
        del checkpoint
        if resume_step >= int(config["training"]["max_steps"]):
            log.info("%s: the checkpoint is at step %d = training.max_steps: the run is complete; writing its "
                     "outputs again", plan.what, resume_step)
    history = (_metrics_history(out_dir, store, run_prefix(experiment, run_id), resume_step)
               if plan.resume and plan.path is not None and rank_zero else [])
    if stop.signum:
        early = Preempted(stop.signum, None)
        early.message = (f"run {run_id} of experiment {experiment} stopped by {signal.Signals(stop.signum).name} "
                         "before training started; nothing was written")
        raise early

    # ---- from here on the run writes (output.dir, the store)
    out_dir.mkdir(parents=True, exist_ok=True)
    hw, tr, val, ck = config["hardware"], config["training"], config["validation"], config["checkpoint"]
    top_k = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename=CHECKPOINT_FILENAME,
        auto_insert_metric_name=False,
        monitor=ck["monitor"] if has_val else None,
        mode=ck["mode"],
        save_top_k=int(ck["save_top_k"]) if has_val else 0,
        save_last=False,  # last.ckpt is RunLifecycle's: the latest state at every interval, not only on improvement
    )
    lifecycle = RunLifecycle(stop, out_dir / "checkpoints", ck.get("every_n_steps"), bool(ck["save_last"]))
    uploader = (CheckpointUploader(store, experiment, run_id, out_dir / "checkpoints", out_dir)
                if store is not None else None)
    interval = val["val_check_interval"]
    weights_check = WeightConsistencyCheck()
    perf = PerfRecorder(int(tr["log_every_n_steps"]))  # perf/* columns and run.json's training_summary
    bar = use_progress_bar(sys.stderr)  # a terminal gets a progress bar; pod logs get one line every logging.every_n_steps
    trainer = L.Trainer(
        default_root_dir=out_dir,
        max_steps=int(tr["max_steps"]),
        max_epochs=-1,
        accelerator=hw["accelerator"],
        devices=hw["devices"],
        precision=resolve_precision(str(hw["precision"]), str(hw["accelerator"])),
        gradient_clip_val=float(tr["gradient_clip_val"]),
        accumulate_grad_batches=int(tr["accumulate_grad_batches"]),
        val_check_interval=int(interval) if interval is not None and has_val else None,
        check_val_every_n_epoch=None if interval is not None else 1,
        limit_val_batches=val["limit_val_batches"] if has_val else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=int(tr["log_every_n_steps"]),
        num_nodes=int(hw["num_nodes"]),
        strategy=str(hw["strategy"]),
        logger=build_loggers(config, out_dir),
        # The lifecycle callback comes after the others (they all see the step it stops at), the uploader after it
        # (so it picks up the checkpoint written in the same hook); Lightning runs ModelCheckpoint last.
        callbacks=[top_k, LearningRateMonitor(logging_interval="step"), *build_metrics_callbacks(config), perf,
                   ValidationConfusionWriter(out_dir / CONFUSION_DIR), weights_check,
                   *([] if bar else [LogLineProgress(int(config["logging"]["every_n_steps"]), stream=sys.stderr)]), lifecycle,
                   *([uploader] if uploader is not None else [])],
        enable_progress_bar=bar,
        enable_model_summary=True,
    )
    _RUN_STATE["training"] = True
    described: dict[str, Any] = {}  # description, model_summary, config_diff (run_records.describe_run)
    if trainer.is_global_zero:
        described = describe_run(config)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if history:
            _restore_metrics_history(trainer, history)
        # Until the run ends: "running" (a run killed with SIGKILL keeps it; resume=auto continues it).
        (out_dir / "run.json").write_text(json.dumps({
            "experiment": experiment, "run_id": run_id, "status": "running", "output_dir": str(out_dir),
            "resumed_from": str(plan.path) if plan.path else None,
            "resumed_from_step": resume_step if plan.path else None, **described}, indent=2))
    status, error = "completed", None
    try:
        with _exported_run_id(run_id):
            trainer.fit(module, datamodule=data, ckpt_path=str(plan.path) if plan.path else None, weights_only=True)
    except Preempted as exc:
        status, error = "preempted", exc
    except BaseException as exc:  # noqa: BLE001 - recorded in run.json, then raised again
        status, error = "failed", exc
    if not trainer.is_global_zero:
        # Only rank 0 owns run.json and uploads; other ranks report their step and weight check.
        if error is not None:
            if isinstance(error, Preempted):
                error.message = (f"run {run_id} (rank {trainer.global_rank}) stopped by "
                                 f"{signal.Signals(error.signum).name} at step {trainer.global_step}")
            raise error
        return {"rank": trainer.global_rank, "global_step": int(trainer.global_step)}

    grace_s = float(30.0 if ck.get("grace_period_s") is None else ck["grace_period_s"])
    last_path, last_step = lifecycle.last_path, lifecycle.last_step
    if last_path is None and plan.path is not None and int(trainer.global_step) == resume_step:
        last_path, last_step = plan.path, resume_step  # resumed at its end (or stopped at once): that checkpoint
    # The best top-k checkpoint if it is on this machine (a resumed run in a new pod may only know its old path).
    best = Path(top_k.best_model_path) if top_k.best_model_path and Path(top_k.best_model_path).is_file() \
        else last_path
    summary: dict[str, Any] = {
        "experiment": experiment,
        "run_id": run_id,
        "status": status,
        "exit_code": (error.exit_code if isinstance(error, Preempted) else EXIT_CODES.get(status, 1)),
        "stopped_by": signal.Signals(error.signum).name if isinstance(error, Preempted) else None,
        "error": None if error is None or isinstance(error, Preempted) else
        f"{type(error).__name__}: {' '.join(str(error).split())}"[:500],
        "output_dir": str(out_dir),
        "best_checkpoint": str(best) if best else None,
        "last_checkpoint": str(last_path) if last_path else None,
        "last_checkpoint_step": last_step,
        "best_val_AP": float(top_k.best_model_score) if top_k.best_model_score is not None else None,
        "global_step": int(trainer.global_step),
        "store_uri": None,
        "resumed_from": str(plan.path) if plan.path else None,
        "resumed_from_step": resume_step if plan.path else None,
        "uploaded": None,
        "upload_failures": None,
        "world_size": int(trainer.world_size),
        "weights_identical_across_ranks": weights_check.identical,
        "weight_digests": weights_check.digests,
        **described,
        "training_summary": perf.training_summary(),
    }
    run_json = out_dir / "run.json"
    run_json.write_text(json.dumps(summary, indent=2))
    failures = []
    if uploader is not None:
        summary["store_uri"] = f"{store.uri.rstrip('/')}/{run_prefix(experiment, run_id)}"
        timeout = stop.time_left(grace_s) if status == "preempted" else uploader.wait_timeout_s
        failures = uploader.finish(timeout)
        summary["uploaded"] = list(uploader.uploaded)
        summary["upload_failures"] = [f"{f.key}: {f.error}" for f in failures]
        run_json.write_text(json.dumps(summary, indent=2))
        left = stop.time_left(grace_s) if status == "preempted" else uploader.wait_timeout_s
        if left > 0:
            failures = uploader.finish(left, attempts=1)  # run.json itself
    if isinstance(error, Preempted):
        where = f"; uploaded to {summary['store_uri']}" if uploader is not None and not failures else (
            f"; {len(failures)} upload(s) to {store_uri} failed, local copies kept" if uploader is not None else "")
        error.message = (f"run {run_id} of experiment {experiment} stopped by {summary['stopped_by']} at step "
                         f"{summary['global_step']}: {last_path or 'no checkpoint (not trained yet)'} and "
                         f"{run_json} written (status preempted){where}; continue with resume=auto run_id={run_id}")
    if error is not None:
        raise error
    if failures:
        raise StoreError(f"{len(failures)} checkpoint upload(s) to {store_uri} failed (local copies kept): "
                         + "; ".join(f"{f.key}: {f.error}" for f in failures))
    return summary


def _with_local_dataset(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with an ``s3://bucket/prefix`` ``dataset.path`` replaced by its local mirror
    ``<cache>/s3/<bucket>/<prefix>`` (downloaded, reusing cached shards of the same size/etag); unchanged otherwise.

    Raises:
        evdet.data.storage.StoreError: the store cannot be read or holds nothing under the prefix.
    """
    path = str(config["dataset"]["path"])
    if not path.startswith("s3:/"):
        return config
    bucket, prefix = parse_s3_uri(path)
    local = cache_dir() / "s3" / bucket / prefix
    download_prefix(open_store(f"s3://{bucket}"), prefix, local)
    return {**config, "dataset": {**config["dataset"], "path": str(local)}}


def upload_run(out_dir: Path, store_uri: str, experiment: str, run_id: str, *, checkpoints: bool = True) -> str:
    """Copy checkpoints (unless ``checkpoints=False``), ``config.yaml``, ``run.json``, ``metrics.csv`` and the
    per-validation ``confusion/*.csv`` of a run folder into the store (e.g. a run trained without ``output.store``); returns the run's URI prefix.

    Raises:
        evdet.data.storage.StoreError: the store refuses or is unreachable.
    """
    store = open_store(store_uri)
    prefix = run_prefix(experiment, run_id)
    for path in sorted((out_dir / "checkpoints").glob("*.ckpt")) if checkpoints else ():
        store.put_file(path, f"{prefix}/checkpoints/{path.name}")
    store.put_file(out_dir / "config.yaml", f"{prefix}/config.yaml")
    for path, name in ((out_dir / "run.json", "run.json"), (out_dir / "logs" / "metrics.csv", "metrics.csv")):
        if path.is_file():
            store.put_file(path, f"{prefix}/{name}")
    for path in sorted((out_dir / CONFUSION_DIR).glob("*.csv")):
        store.put_file(path, f"{prefix}/{CONFUSION_DIR}/{path.name}")
    return f"{store.uri.rstrip('/')}/{prefix}"


def check_before_run(overrides: list[str]) -> None:
    """The checks of :func:`run_training` on the run's identity and its checkpoint that need no model or data, done
    before Hydra writes its own files (``hydra/*.yaml``, ``train.log``) into ``output.dir``, so a refused command
    changes nothing there: a torchrun launch without a run_id, an existing run_id without ``resume=auto``, and the
    checkpoint the run would start from (``ckpt_path``, or ``resume=auto``'s ``last.ckpt``: weights-only readable, a
    training checkpoint, the same ``training.max_steps``). Whether its weights fit the model is checked by
    :func:`run_training`. A config that does not compose is left to Hydra and :func:`run_training`.

    Called by ``evdet-train`` (:mod:`evdet.model.cli.train`) before ``@hydra.main`` runs.

    Args:
        overrides: the Hydra overrides of the command line (after :func:`evdet.model.config.normalize_overrides`).

    Raises:
        ValueError: one line (:class:`evdet.model.training.checkpoint.CheckpointError`, ``StoreError`` included).
        OSError: a checkpoint or store file cannot be read.
    """
    if any(item.startswith("-") for item in overrides):
        return
    try:
        cfg = compose_config(overrides)
    except Exception:  # noqa: BLE001 - composition errors are Hydra's / validate_config's to report
        return
    # compose_config fixes run_id at once, so whether it was given is read from the command line itself.
    given_values = [item.split("=", 1)[1] for item in overrides if item.split("=", 1)[0].lstrip("+~") == "run_id"]
    if given_values and given_values[-1] not in ("", "null", "None"):
        given, how = True, "given as run_id="
    elif os.environ.get(RUN_ID_ENV, "").strip():
        given, how = True, f"from ${RUN_ID_ENV}"
    else:
        given, how = False, "from the start time"
    _check_distributed_run_id(given)
    if not _launch_rank_zero():
        return
    if cfg.get("resume") in (None, False, "null", "none") and given:
        config = to_container(cfg)
        store = open_store(config["output"]["store"]) if config["output"].get("store") else None
        _refuse_existing_run(Path(config["output"]["dir"]).resolve(), store, str(config["experiment_name"]),
                                      str(config["run_id"]), how)
    plan = _resume_plan(cfg, given)
    if plan.path is not None:
        check_resume_metadata(peek_checkpoint(plan.path), plan.path, to_container(cfg), plan.what)


def training_started() -> bool:
    """Whether the current :func:`run_training` call got as far as writing the run (then a failure is exit status
    1 and ``run.json`` says ``failed``; before that it is a wrong input, exit status 2)."""
    return _RUN_STATE["training"]
