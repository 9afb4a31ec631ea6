"""``evdet-eval``: command-line evaluation of detections against representation shards.

``evdet-eval coco --shards DIR --detections DIR --output FILE [--config FILE.yaml|FILE.json] [--experiment NAME]
[--camera gen4|gen1] [--overwrite]``

* labels: every shard ``DIR/<name>.h5`` (dataset ``labels``, ``BBOX_DTYPE`` boxes in representation px; attrs
  ``width``, ``height``, ``downsample_factor`` and optionally ``class_names``, else
  ``evdet.data.labels.EXPERIMENT_CLASSES``);
* detections: ``DETECTIONS/<name>.npy`` per shard (Prophesee box array, ``class_confidence`` = score);
* evaluation: :func:`evdet.eval.coco.evaluate_detections` (Prophesee protocol, COCO metrics);
* output: a rich table on stdout and ``experiment_results.json`` (:mod:`evdet.eval.results`).

Any input error prints one line ``evdet-eval: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters shards may use)
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from evdet.data.labels import EXPERIMENT_CLASSES, get_class_map
from evdet.eval.confusion import confusion_matrix, format_confusion_csv
from evdet.eval.coco import CAMERA_MIN_BOX_SIZE_PX, METRIC_NAMES, check_box_array, evaluate_detections
from evdet.eval.results import RESULTS_FILE_NAME, write_experiment_results

__all__ = ["Shard", "load_config", "load_detections", "load_shard", "main"]

_SHARD_ATTRS = ("width", "height", "downsample_factor")


class _UsageError(Exception):
    """Raised instead of argparse's multi-line usage exit, so every error is one stderr line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D102 (argparse hook)
        raise _UsageError(f"{self.prog}: {message}")


@dataclass(frozen=True)
class Shard:
    """Labels and geometry of one shard.

    Attributes:
        name: shard file stem (``<name>`` of ``<name>.h5``).
        labels: ``(M,)`` structured box array (``BBOX_DTYPE``; ``t`` µs, ``x, y, w, h`` representation px).
        width: representation width (px).
        height: representation height (px).
        downsample_factor: sensor px per representation px (int >= 1).
        class_names: class name per ``class_id``, or ``None`` when the shard has no ``class_names`` attr.
    """

    name: str
    labels: np.ndarray
    width: int
    height: int
    downsample_factor: int
    class_names: tuple[str, ...] | None


def _positive_int_attr(path: Path, attrs: h5py.AttributeManager, key: str) -> int:
    if key not in attrs:
        raise ValueError(f"{path}: missing attr '{key}' (expected a positive integer)")
    value = np.asarray(attrs[key])
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or int(value) <= 0:
        raise ValueError(f"{path}: attr '{key}' must be a positive integer, got {attrs[key]!r}")
    return int(value)


def _class_names_attr(path: Path, attrs: h5py.AttributeManager) -> tuple[str, ...] | None:
    if "class_names" not in attrs:
        return None
    raw = attrs["class_names"]
    if isinstance(raw, (str, bytes)):  # a JSON list stored as one string
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raw = None
    values = np.asarray(raw, dtype=object) if raw is not None else None
    if values is None or values.ndim != 1 or len(values) == 0 or not all(isinstance(v, (str, bytes)) for v in values):
        raise ValueError(
            f"{path}: attr 'class_names' must be a non-empty list of strings, got {attrs['class_names']!r}"
        )
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def load_shard(path: str | Path) -> Shard:
    """Read the labels and geometry attrs of one shard (layout: ``docs/architecture.md``, "Shard").

    Args:
        path: ``<name>.h5`` shard file.

    Returns:
        :class:`Shard` (labels as a structured ``BBOX_DTYPE`` array, ``(M,)``).

    Raises:
        FileNotFoundError: the file does not exist.
        OSError: the file is not a readable HDF5 file.
        ValueError: dataset ``labels`` is missing or malformed, attr ``width``/``height``/``downsample_factor`` is
            missing or not a positive integer, ``class_names`` is not a list of strings, or attr ``complete`` is
            present and False (preprocessing did not finish). The message names the file and key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shard file not found")
    with h5py.File(path, "r") as f:
        if "complete" in f.attrs and not bool(f.attrs["complete"]):
            raise ValueError(f"{path}: attr 'complete' is False; the shard was not fully written")
        if "labels" not in f:
            raise ValueError(f"{path}: missing dataset 'labels' (expected (M,) BBOX_DTYPE boxes)")
        labels = f["labels"][()]
        check_box_array(labels, f"{path}: dataset 'labels'", require_confidence=False)
        width, height, downsample = (_positive_int_attr(path, f.attrs, k) for k in _SHARD_ATTRS)
        class_names = _class_names_attr(path, f.attrs)
    return Shard(path.stem, labels, width, height, downsample, class_names)


def load_detections(path: str | Path) -> np.ndarray:
    """Load one recording's detections ``<name>.npy`` (written by ``evdet-model predict``).

    Args:
        path: ``.npy`` file holding a ``(D,)`` structured box array (``BBOX_DTYPE``; ``class_confidence`` = score).

    Returns:
        The ``(D,)`` structured array.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: not a readable ``.npy`` box array with the detection fields (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: detections file not found")
    try:
        detections = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy box array ({err})") from None
    return check_box_array(detections, str(path), require_confidence=True)


def load_config(path: str | Path) -> dict:
    """Read a run configuration from ``.yaml``/``.yml`` or ``.json``.

    Returns:
        The mapping (``{}`` for an empty YAML file).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, a parse error, or the top level is not a mapping (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            config = yaml.safe_load(text)
            config = {} if config is None else config
        elif suffix == ".json":
            config = json.loads(text)
        else:
            raise ValueError(f"{path}: unknown config suffix '{path.suffix}'; expected .yaml, .yml or .json")
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot parse config ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: config must be a mapping at the top level, got {type(config).__name__}")
    return config


def _same_across_shards(shards: Sequence[Shard], key: str) -> object:
    values = {getattr(s, key) for s in shards}
    if len(values) != 1:
        detail = ", ".join(f"{s.name}={getattr(s, key)!r}" for s in shards)
        raise ValueError(f"shards: attr '{key}' differs between shards ({detail}); evaluate them separately")
    return values.pop()


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _print_table(console: Console, experiment: str, metrics: dict) -> None:
    table = Table(title=f"{experiment}: Prophesee-protocol COCO metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in METRIC_NAMES:
        table.add_row(name, _format(metrics[name]))
    for name in ("num_recordings", "num_images", "num_labels", "num_detections"):
        table.add_row(name, str(metrics[name]))
    console.print(table)
    per_class = Table(title="per-class AP (IoU .50:.95)")
    per_class.add_column("class")
    per_class.add_column("AP", justify="right")
    per_class.add_column("labels", justify="right")
    for name, ap in metrics["per_class_AP"].items():
        per_class.add_row(name, _format(ap), str(metrics["per_class_num_labels"][name]))
    console.print(per_class)


def _build_parser() -> _Parser:
    parser = _Parser(prog="evdet-eval", description="Evaluate event-camera detections (Prophesee protocol).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    coco = commands.add_parser("coco", help="COCO AP of detections against shard labels, Prophesee protocol.")
    coco.add_argument("--shards", required=True, type=Path, help="folder of <name>.h5 shards (one split)")
    coco.add_argument("--detections", required=True, type=Path, help="folder of <name>.npy detections")
    coco.add_argument("--output", required=True, type=Path, help=f"results file (or folder for {RESULTS_FILE_NAME})")
    coco.add_argument("--config", type=Path, help="run config (.yaml/.yml/.json) stored in the results file")
    coco.add_argument("--experiment", help="experiment name (default: name of the output file's folder)")
    coco.add_argument("--camera", choices=sorted(CAMERA_MIN_BOX_SIZE_PX), default="gen4",
                      help="sensor whose minimum box size applies (default: gen4, also eTraM)")
    coco.add_argument("--min-box-diag-px", type=float, default=None,
                      help="minimum box diagonal in sensor px (default: the config's dataset.min_box_diag_px, "
                           "else the camera's)")
    coco.add_argument("--min-box-side-px", type=float, default=None,
                      help="minimum box side in sensor px (default: dataset.min_box_side_px, else the camera's)")
    coco.add_argument("--skip-before-us", type=int, default=None,
                      help="drop boxes before this time in µs (default: dataset.skip_before_us, else 500000)")
    coco.add_argument("--class-map", default=None,
                      help="class map the detections use (experiment8 | etram8 | grouped3; default: the config's "
                           "dataset.class_map, else the shards' own ids); shard labels are remapped to it")
    coco.add_argument("--confusion-iou", type=float, default=0.5, help="IoU of a confusion-matrix match (0.5)")
    coco.add_argument("--confusion-score", type=float, default=0.3,
                      help="minimum detection score counted in the confusion matrix (0.3)")
    coco.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    return parser


def _run_coco(args: argparse.Namespace, console: Console) -> None:
    output: Path = args.output
    target = output / RESULTS_FILE_NAME if output.is_dir() else output
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target}: results file already exists; pass --overwrite to replace it")
    if not args.shards.is_dir():
        raise FileNotFoundError(f"{args.shards}: --shards folder not found")
    if not args.detections.is_dir():
        raise FileNotFoundError(f"{args.detections}: --detections folder not found")
    config = load_config(args.config) if args.config is not None else {}
    experiment = args.experiment or target.resolve().parent.name

    shard_paths = sorted(args.shards.glob("*.h5"))
    if not shard_paths:
        raise ValueError(f"{args.shards}: no <name>.h5 shards found")
    shards = [load_shard(p) for p in shard_paths]
    detections = []
    for shard in shards:
        det_path = args.detections / f"{shard.name}.npy"
        if not det_path.is_file():
            raise FileNotFoundError(f"{det_path}: detections file for shard '{shard.name}' not found")
        detections.append(load_detections(det_path))

    width = _same_across_shards(shards, "width")
    height = _same_across_shards(shards, "height")
    downsample = _same_across_shards(shards, "downsample_factor")
    dataset_cfg = config.get("dataset", {}) if isinstance(config, dict) else {}
    class_map_name = args.class_map or dataset_cfg.get("class_map")
    if class_map_name and class_map_name != "experiment8":
        # Shards hold experiment8 ids; detections of a model trained with another map use that map's ids.
        class_map = get_class_map(class_map_name)
        shards = [replace(s, labels=class_map.remap(s.labels, source=str(args.shards / f"{s.name}.h5")))
                  for s in shards]
        class_names = list(class_map.class_names)
    elif all(s.class_names is None for s in shards):
        class_names = EXPERIMENT_CLASSES
    else:
        class_names = _same_across_shards(shards, "class_names")

    # Protocol thresholds: command line, else the run config's dataset section, else the camera's defaults.
    protocol = {
        key: getattr(args, key) if getattr(args, key) is not None else dataset_cfg.get(key)
        for key in ("min_box_diag_px", "min_box_side_px", "skip_before_us")
    }
    if protocol["skip_before_us"] is None:
        protocol.pop("skip_before_us")
    started = time.perf_counter()
    metrics = evaluate_detections(
        [s.labels for s in shards], detections, width=width, height=height, class_names=class_names,
        downsample_factor=downsample, camera=args.camera, recording_names=[s.name for s in shards], **protocol,
    )
    extra = {
        "command": "coco",
        "shards_dir": str(args.shards.resolve()),
        "detections_dir": str(args.detections.resolve()),
        "config_file": None if args.config is None else str(args.config.resolve()),
        "recordings": [s.name for s in shards],
        "evaluation_seconds": round(time.perf_counter() - started, 3),
    }
    used = metrics["protocol"]
    matrix = confusion_matrix(
        [s.labels for s in shards], detections, num_classes=len(class_names),
        min_box_diag_px=used["min_box_diag_px"], min_box_side_px=used["min_box_side_px"],
        skip_before_us=used["skip_before_us"], iou_threshold=args.confusion_iou, score_threshold=args.confusion_score,
    )
    extra["confusion_matrix"] = {
        "classes": [*class_names, "background"], "rows": "true class", "columns": "predicted class",
        "iou_threshold": args.confusion_iou, "score_threshold": args.confusion_score, "counts": matrix.tolist(),
    }
    written = write_experiment_results(
        target, metrics, experiment=experiment, config=config, extra=extra, overwrite=args.overwrite
    )
    confusion_path = written.parent / "confusion_matrix.csv"
    confusion_path.write_text(format_confusion_csv(matrix, class_names))
    _print_table(console, experiment, metrics)
    console.print(f"wrote {written} and {confusion_path.name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evdet-eval``.

    Args:
        argv: arguments without the program name; ``None`` = ``sys.argv[1:]``.

    Returns:
        0 on success, 2 on any input error (one line ``evdet-eval: error: ...`` on stderr).
    """
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "coco":
            _run_coco(args, Console())
    except (_UsageError, ValueError, OSError) as err:
        message = " ".join(str(err).split())
        print(f"evdet-eval: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
