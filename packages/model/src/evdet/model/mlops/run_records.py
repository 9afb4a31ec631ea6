"""What a training run records for its report (``docs/run-folder.md``): ``run.json``'s ``model_summary``,
``training_summary`` and ``config_diff``, the ``perf/*`` columns of ``metrics.csv`` and one class confusion matrix
per validation (``confusion/confusion_matrix_e<epoch:03d>_s<step:07d>.csv``).

``evdet-report run`` reads these without torch or Hydra, which is why the model summary and the config diff against
the defaults are computed here, at training time, where the model and the packaged config are at hand.

Throughput and memory are measured with the functions of :mod:`evdet.model.mlops.prometheus_metrics`
(:func:`~evdet.model.mlops.prometheus_metrics.batch_shape`, :func:`~evdet.model.mlops.prometheus_metrics.resident_bytes`) and
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from evdet.eval.confusion import confusion_matrix, format_confusion_csv
from evdet.eval.results import write_text_atomic
from evdet.model.mlops.prometheus_metrics import batch_shape, resident_bytes

__all__ = ["PerfRecorder", "ValidationConfusionWriter", "CONFUSION_DIR", "CONFUSION_FILENAME", "CONFUSION_IOU",
           "CONFUSION_SCORE", "CONFIG_DIFF_IGNORED", "config_diff", "describe_run", "model_summary",
           "peak_rss_bytes", "validation_confusion"]

#: Folder of the run's output dir (and of its store folder) holding the per-validation confusion matrices.
CONFUSION_DIR = "confusion"
#: File name of one validation's confusion matrix (epoch as Lightning counts, 0-based; global step).
CONFUSION_FILENAME = "confusion_matrix_e{epoch:03d}_s{step:07d}.csv"
#: IoU of a confusion-matrix match and minimum detection score: the defaults of ``evdet-eval prophesee``
#: (``--confusion-iou``, ``--confusion-score``), so a validation's matrix reads like the evaluate step's.
CONFUSION_IOU = 0.5
CONFUSION_SCORE = 0.3
#: Keys left out of the config diff: they differ for every run by construction (``output.dir`` holds the run_id).
CONFIG_DIFF_IGNORED = frozenset({"run_id", "output.dir"})


# ------------------------------------------------------------------------------------------------ run.json parts
def model_summary(config: dict[str, Any]) -> dict[str, Any]:
    """``run.json``'s ``model_summary``: parameters and multiply-accumulates of one frame at the training resolution.

    Args:
        config: the resolved training config (``dataset.height`` / ``dataset.width`` are the training resolution).

    Returns:
        ``{"params": int, "gmac_per_frame": float (1e9 MACs of one frame, :func:`evdet.model.nn.summary.summarize`),
        "input_height": int (px), "input_width": int (px)}``.
    """
    from evdet.model.nn.summary import summarize

    summary = summarize(config)
    return {"params": int(summary["params_total"]), "gmac_per_frame": summary["macs_per_frame"] / 1e9,
            "input_height": int(config["dataset"]["height"]), "input_width": int(config["dataset"]["width"])}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested dict (``model.backbone.patch_size``); lists are leaves."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _compose(overrides: list[str]) -> dict[str, Any]:
    """The packaged config composed with ``overrides``, leaving Hydra's global state as it was (this runs inside
    ``evdet-train``'s own Hydra application)."""
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    from evdet.model.config import compose_config, to_container

    backup = get_gh_backup()
    try:
        return to_container(compose_config(overrides))
    finally:
        restore_gh_from_backup(backup)


def config_diff(config: dict[str, Any]) -> dict[str, Any]:
    """``run.json``'s ``config_diff``: every key of the run's config that differs from the defaults.

    The defaults are ``conf/train.yaml`` composed without an experiment or any override (model ``rvt_base``, dataset
    ``etram``, profile ``full``). Each changed key says who set it: ``experiment`` when the experiment overlay alone
    (``experiment=<experiment_name>``, when that names a file of ``conf/experiment``) gives the run's value, else
    ``override`` (the command line, a profile). :data:`CONFIG_DIFF_IGNORED` keys are left out.

    Args:
        config: the run's resolved config (plain dict).

    Returns:
        ``{"against": str, "experiment": str | None, "changes": [{"key": dotted key, "value": the run's value,
        "default": the default's value (None when the key is not in the defaults), "set_by": "experiment" |
        "override"}]}`` sorted by key; values are plain YAML data.

    Raises:
        hydra.errors.HydraException: the packaged config does not compose (a broken installation).
    """
    from evdet.model.config import list_experiments

    defaults = _flatten(_compose([]))
    experiment = str(config.get("experiment_name"))
    overlay = _flatten(_compose([f"experiment={experiment}"])) if experiment in list_experiments() else None
    run = _flatten(config)
    missing = object()
    changes = []
    for key in sorted(set(run) | set(defaults)):
        if key in CONFIG_DIFF_IGNORED or key == "hydra" or key.startswith("hydra."):
            continue
        value, default = run.get(key, missing), defaults.get(key, missing)
        if value == default:
            continue
        by_experiment = overlay is not None and overlay.get(key, missing) == value
        changes.append({"key": key, "value": None if value is missing else value,
                        "default": None if default is missing else default,
                        "set_by": "experiment" if by_experiment else "override"})
    return {"against": "defaults: conf/train.yaml without an experiment or overrides (model rvt_base, dataset "
                       "etram, profile full)",
            "experiment": experiment if overlay is not None else None, "changes": changes}


def describe_run(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``run.json`` known before training: ``description`` (the config's), ``model_summary``
    (:func:`model_summary`) and ``config_diff`` (:func:`config_diff`)."""
    return {"description": config.get("description"), "model_summary": model_summary(config),
            "config_diff": config_diff(config)}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``getrusage``: KiB on Linux, bytes on macOS)."""
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


# ------------------------------------------------------------------------------------------------ perf columns
class PerfRecorder(Callback):
    """Logs ``perf/it_s``, ``perf/samples_s``, ``perf/peak_gpu_memory_bytes`` (CUDA only) and ``perf/rss_bytes`` at
    every training step (Lightning writes them to ``metrics.csv`` every ``training.log_every_n_steps`` steps) and
    sums the run up for ``run.json`` (:meth:`training_summary`).

    ``perf/it_s`` is optimiser steps per second over the last ``window`` steps (validation time excluded: the
    window restarts after a validation); ``perf/samples_s`` the sequence samples (B per batch, all ranks) per second
    over the same window; ``perf/peak_gpu_memory_bytes`` ``torch.cuda.max_memory_allocated`` of this rank's device
    (bytes); ``perf/rss_bytes`` this process's resident memory (bytes,
    :func:`evdet.model.mlops.prometheus_metrics.resident_bytes`).

    Args:
        window: steps of the sliding throughput window (``training.log_every_n_steps``: each logged value covers the
            steps since the previous one); >= 1.

    Raises:
        ValueError: ``window`` < 1.
    """

    def __init__(self, window: int) -> None:
        if int(window) < 1:
            raise ValueError(f"training.log_every_n_steps: expected an integer >= 1, got {window!r}")
        self.window = int(window)
        self._recent: deque[tuple[float, int, int]] = deque(maxlen=self.window + 1)  # (time s, step, samples)
        self._samples = 0
        self._batch_start: float | None = None
        self._start_time: float | None = None
        self._end_time: float | None = None
        self._start_step = 0
        self._end_step = 0
        self._samples_per_step = 0.0
        self._device: torch.device | None = None
        self._world_size = 1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_time, self._end_time = time.perf_counter(), None
        self._start_step = self._end_step = int(trainer.global_step)
        self._device, self._world_size = pl_module.device, int(trainer.world_size)
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        size, _ = batch_shape(batch)
        self._samples += size * self._world_size
        step = int(trainer.global_step)
        self._end_step = step
        if self._recent and self._recent[-1][1] == step:  # gradient accumulation: the optimiser has not stepped
            return
        self._recent.append((now, step, self._samples))
        if len(self._recent) > 1:
            t0, s0, n0 = self._recent[0]
            span, steps, samples = now - t0, step - s0, self._samples - n0
        else:  # the first step after the start or a validation: its own duration
            span = now - self._batch_start if self._batch_start is not None else 0.0
            steps, samples = 1, size * self._world_size
        values = {"perf/rss_bytes": float(resident_bytes())}
        if span > 0:
            values["perf/it_s"], values["perf/samples_s"] = steps / span, samples / span
        if pl_module.device.type == "cuda":
            values["perf/peak_gpu_memory_bytes"] = float(torch.cuda.max_memory_allocated(pl_module.device))
        for key, value in values.items():
            pl_module.log(key, value, on_step=True, on_epoch=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._recent.clear()  # validation time is not training throughput

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_time, self._end_step = time.perf_counter(), int(trainer.global_step)

    def training_summary(self) -> dict[str, Any]:
        """``run.json``'s ``training_summary`` of the training this process did (a resumed run: since the resume).

        Returns:
            ``{"steps": global step at the end, "steps_trained": optimiser steps of this process, "wall_time_s":
            seconds from the start of training to its end (validations included), "it_s": steps_trained /
            wall_time_s, "samples_s": sequence samples (all ranks) / wall_time_s, "peak_gpu_memory_bytes": CUDA
            allocator peak of this rank (None without CUDA), "peak_rss_bytes": host resident memory peak,
            "device": "cpu" | "cuda" | ..., "world_size": int, "gpu_hours": wall_time_s x world_size / 3600 (None
            without CUDA)}``; the timing keys are None when training never started.
        """
        device = self._device.type if self._device is not None else None
        cuda = device == "cuda"
        peak_gpu = int(torch.cuda.max_memory_allocated(self._device)) if cuda else None
        if self._start_time is None:
            wall = it_s = samples_s = None
        else:
            wall = (self._end_time if self._end_time is not None else time.perf_counter()) - self._start_time
            it_s = (self._end_step - self._start_step) / wall if wall > 0 else None
            samples_s = self._samples / wall if wall > 0 else None
        return {"steps": self._end_step, "steps_trained": self._end_step - self._start_step,
                "wall_time_s": wall, "it_s": it_s, "samples_s": samples_s, "peak_gpu_memory_bytes": peak_gpu,
                "peak_rss_bytes": peak_rss_bytes(), "device": device, "world_size": self._world_size,
                "gpu_hours": wall * self._world_size / 3600.0 if cuda and wall is not None else None}


# ------------------------------------------------------------------------------------------------ confusion
def validation_confusion(collector: Any, metrics: dict[str, Any], num_classes: int):
    """The class confusion matrix of one validation, on the images its AP was computed on.

    Args:
        collector: the validation's :class:`evdet.model.training.detections.DetectionCollector` (labels and detections per
            recording, px of the representation).
        metrics: what :func:`evdet.model.training.module.evaluate_collected` returned for it; its ``protocol`` gives the
            filter (minimum box diagonal / side in px, skip time in us) and the time tolerance (us).
        num_classes: C.

    Returns:
        ``(C + 1, C + 1)`` int64 counts, rows true class, columns predicted class, index C background
        (:func:`evdet.eval.confusion.confusion_matrix`; IoU >= :data:`CONFUSION_IOU`, score >=
        :data:`CONFUSION_SCORE`).

    Raises:
        ValueError: malformed boxes (names the recording and field).
    """
    protocol = metrics["protocol"]
    names = collector.sequences
    return confusion_matrix(
        [collector.labels(n) for n in names], [collector.detections(n) for n in names], num_classes=int(num_classes),
        min_box_diag_px=float(protocol["min_box_diag_px"]), min_box_side_px=float(protocol["min_box_side_px"]),
        skip_before_us=int(protocol["skip_before_us"]), time_tolerance_us=int(protocol["time_tolerance_us"]),
        iou_threshold=CONFUSION_IOU, score_threshold=CONFUSION_SCORE, recording_names=names)


class ValidationConfusionWriter(Callback):
    """After each validation (not the sanity check), the global rank 0 writes its confusion matrix
    (:func:`validation_confusion`) to ``<folder>/confusion_matrix_e<epoch:03d>_s<step:07d>.csv``
    (:func:`evdet.eval.confusion.format_confusion_csv`; written atomically, a validation of the same step trained
    again replaces it). Reads :attr:`evdet.model.training.module.DetectionModule.validation_result`; a validation that was not
    evaluated (no validation shards, no labelled window, an evaluation error) writes nothing.

    Args:
        folder: the run's ``confusion/`` folder (created when first needed).

    Attributes:
        written: the files written, in order.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.written: list[Path] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result = getattr(pl_module, "validation_result", None)
        if result is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        collector, metrics = result
        names = list(pl_module.class_names)
        matrix = validation_confusion(collector, metrics, len(names))
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / CONFUSION_FILENAME.format(epoch=int(trainer.current_epoch), step=int(trainer.global_step))
        write_text_atomic(path, format_confusion_csv(matrix, names), overwrite=True)
        self.written.append(path)

