"""``evdet-eval``: command-line evaluation of event-camera detections.

``evdet-eval prophesee GT DETECTIONS [--protocol etram|rvt] --output FILE [--height H --width W]
[--classes NAME,NAME,...] [--camera gen4|gen1] [--min-box-diag-px D --min-box-side-px S] [--config RUN.yaml]
[--experiment NAME] [--overwrite] [--table]`` (the RVT / eTraM protocol, :mod:`evdet.eval.prophesee`; the old
spelling ``--gt DIR --detections DIR`` is still accepted):

* ground truth: ``GT/<name>_bbox.npy`` per recording; detections: ``DETECTIONS/<name>.npy`` (Prophesee box
  arrays; score = ``class_confidence``), matched by name (both may live in one folder);
* protocol, class names, frame size, downsample factor and camera: the flags, else ``DETECTIONS/detections.json``
  (written by ``evdet-model predict``), else an error saying what is missing (camera: gen4); the size thresholds
  (px of the boxes) follow from the camera's sensor size and ``--height/--width`` (full size: 60/20 px for gen4,
  half: 30/10 px), or from the downsample factor of ``detections.json``, unless given explicitly;
* output: ``experiment_results.json`` (:mod:`evdet.eval.results`; metrics of
  :func:`evdet.eval.prophesee.evaluate_prophesee`), the confusion matrix of the same images as CSV beside it;
* stdout: ONE JSON object (the files written, the experiment, the headline and its AP figures; docs/cli.md), or with
  ``--table`` the human-readable tables instead.

Any input error prints one line ``evdet-eval: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from numpy.lib.recfunctions import rename_fields
from rich.console import Console
from rich.table import Table

from evdet.data.cli_convention import Parser, add_hidden_alias, fail, print_result, require_input
from evdet.eval import prophesee
from evdet.eval.confusion import confusion_matrix_from_images, format_confusion_csv
from evdet.eval.results import RESULTS_FILE_NAME, write_experiment_results, write_text_atomic

__all__ = [
    "DETECTIONS_INFO_FILE",
    "build_parser",
    "GT_SUFFIX",
    "load_box_file",
    "load_config",
    "load_detections_info",
    "main",
    "pair_recordings",
]

GT_SUFFIX = "_bbox.npy"
"""Ground-truth files are ``<name>_bbox.npy`` (the Prophesee / eTraM label file naming)."""

DETECTIONS_INFO_FILE = "detections.json"
"""Optional description of a detections folder written by ``evdet-model predict``."""

class _UsageError(Exception):
    """Raised instead of argparse's multi-line usage exit, so every error is one stderr line."""


class _Parser(Parser):
    def error(self, message: str) -> None:  # noqa: D102 (argparse hook)
        if message.startswith("unrecognized arguments"):
            message += "; expected only the flags listed by evdet-eval prophesee --help"
        raise _UsageError(f"{self.prog}: {message}")


# Flag value parsers: a bad value becomes "argument --flag: expected ..., got '...'" (one line, exit 2).


def _number(kind: type, what: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        ok = value is not None and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _nonempty(what: str):
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return text

    return parse


_POSITIVE_PX = _number(int, "a positive integer (px of the boxes)", low=0, low_open=True)
_SIZE_PX = _number(float, "a finite number >= 0 (px of the boxes)", low=0)
_MICROSECONDS = _number(int, "an integer >= 0 (microseconds)", low=0)


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


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def build_parser() -> _Parser:
    """The ``evdet-eval`` parser (one-line usage errors)."""
    parser = _Parser(prog="evdet-eval", description="Evaluate event-camera detections (Prophesee protocol).")
    commands = parser.add_subparsers(dest="command", metavar="prophesee", required=True, parser_class=_Parser)
    _add_prophesee_parser(commands)
    return parser


# ----------------------------------------------------------------------------------------------------------------
# evdet-eval prophesee


def _add_prophesee_parser(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "prophesee", help="COCO AP with the RVT / eTraM Prophesee protocol (+-50 ms matching, both figure sets).",
        usage="evdet-eval prophesee GT DETECTIONS --output FILE [--protocol {etram,rvt}] [--height H --width W] "
              "[--classes NAMES] [--camera {gen1,gen4}] [--min-box-diag-px D --min-box-side-px S] [--skip-before-us US] "
              "[--time-tolerance-us US] [--config RUN] [--experiment NAME] [--confusion-iou IOU] [--confusion-score S] "
              "[--overwrite] [--table]")
    # Positional inputs without type (argparse would convert the SUPPRESS default); the old flags fill them too.
    cmd.add_argument("gt", nargs="?", default=argparse.SUPPRESS, metavar="GT",
                     help=f"folder of <name>{GT_SUFFIX} ground-truth files")
    cmd.add_argument("detections", nargs="?", default=argparse.SUPPRESS, metavar="DETECTIONS",
                     help=f"folder of <name>.npy detections (and optionally {DETECTIONS_INFO_FILE}); may be GT")
    add_hidden_alias(cmd, "--gt", "gt")
    add_hidden_alias(cmd, "--detections", "detections")
    cmd.add_argument("--protocol", choices=prophesee.PROTOCOLS, default=None,
                     help="etram: class-agnostic headline (eTraM); rvt: class-aware headline (RVT) (default: "
                          f"{DETECTIONS_INFO_FILE} 'protocol'; one of the two is required)")
    cmd.add_argument("--output", required=True, type=Path, help=f"results file (or folder for {RESULTS_FILE_NAME})")
    cmd.add_argument("--height", type=_POSITIVE_PX, default=None,
                     help=f"frame height in px of the boxes (default: {DETECTIONS_INFO_FILE})")
    cmd.add_argument("--width", type=_POSITIVE_PX, default=None,
                     help=f"frame width in px of the boxes (default: {DETECTIONS_INFO_FILE})")
    cmd.add_argument("--classes", default=None,
                     help=f"comma-separated class names, index = class_id (default: {DETECTIONS_INFO_FILE})")
    cmd.add_argument("--camera", choices=sorted(prophesee.CAMERA_SENSOR_HW), default=None,
                     help=f"sensor: gen4 (1280x720, also eTraM) or gen1 (304x240) (default: {DETECTIONS_INFO_FILE}, "
                          "else gen4)")
    cmd.add_argument("--min-box-diag-px", type=_SIZE_PX, default=None,
                     help="minimum box diagonal in px of the boxes (default: from camera and --height/--width)")
    cmd.add_argument("--min-box-side-px", type=_SIZE_PX, default=None,
                     help="minimum box side in px of the boxes (default: from camera and --height/--width)")
    cmd.add_argument("--skip-before-us", type=_MICROSECONDS, default=prophesee.DEFAULT_SKIP_BEFORE_US,
                     help="drop boxes with t <= this (us; default 500000)")
    cmd.add_argument("--time-tolerance-us", type=_MICROSECONDS, default=prophesee.DEFAULT_TIME_TOLERANCE_US,
                     help="detections within +- this many us of a ground-truth timestamp count (default 50000)")
    cmd.add_argument("--config", type=Path, help="run config (.yaml/.yml/.json) stored in the results file")
    cmd.add_argument("--experiment", type=_nonempty("a non-empty experiment name"),
                     help="experiment name (default: name of the output file's folder)")
    cmd.add_argument("--confusion-iou", type=_number(float, "an IoU in (0, 1]", low=0, low_open=True, high=1),
                     default=0.5, help="IoU of a confusion-matrix match (0.5)")
    cmd.add_argument("--confusion-score", type=_number(float, "a score in [0, 1]", low=0, high=1), default=0.3,
                     help="minimum detection score counted in the confusion matrix (0.3)")
    cmd.add_argument("--overwrite", action="store_true", help="replace existing results / confusion files")
    cmd.add_argument("--table", action="store_true",
                     help="print human-readable tables on stdout instead of the JSON object")


def _check_paths(args: argparse.Namespace) -> None:
    """Flag checks that need the file system: ``--config`` must be a file, ``--output`` must not sit below a file.

    Raises:
        ValueError: naming the flag, the value and what is expected.
    """
    if args.config is not None and not args.config.is_file():
        raise ValueError(f"--config {args.config}: no such file; expected a run config (.yaml, .yml or .json)")
    parent = args.output if args.output.is_dir() else args.output.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"--output {args.output}: {folder} is a file; expected a results file path or a "
                                 "folder")
            break


def load_box_file(path: str | Path, *, detections: bool) -> np.ndarray:
    """Load one recording's Prophesee box array from ``.npy`` (no pickles).

    Ground-truth files of the Prophesee v1 layout name the time field ``ts``; it is read as ``t``.

    Args:
        path: ``<name>_bbox.npy`` (ground truth) or ``<name>.npy`` (detections, ``class_confidence`` = score).
        detections: require the ``class_confidence`` field.

    Returns:
        The ``(N,)`` structured array as stored (validated by :func:`evdet.eval.prophesee.check_box_array`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a readable ``.npy`` file, or not a valid sorted Prophesee box array (names the file and
            the field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        boxes = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy box array ({' '.join(str(err).split())})") from None
    names = getattr(boxes.dtype, "names", None)
    if not detections and names is not None and "t" not in names and "ts" in names:
        boxes = rename_fields(boxes, {"ts": "t"})  # a view with a new dtype; the loaded dtype is not mutated
    prophesee.check_box_array(boxes, str(path), detections=detections)
    return boxes


def pair_recordings(gt_dir: Path, detections_dir: Path) -> list[tuple[str, Path, Path]]:
    """Match ``GT/<name>_bbox.npy`` with ``DETECTIONS/<name>.npy`` by name (the folders may be the same).

    Returns:
        ``[(name, gt_path, detections_path)]`` sorted by name.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: no ground-truth file; a ground-truth file without detections file or a detections file without
            ground-truth file (names the file).
    """
    for flag, folder, holds in (("--gt", gt_dir, f"<name>{GT_SUFFIX} ground-truth files"),
                                ("--detections", detections_dir, "<name>.npy detections")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {flag} folder not found; expected a folder of {holds}")
    gt = {p.name[: -len(GT_SUFFIX)]: p for p in gt_dir.glob(f"*{GT_SUFFIX}") if p.is_file()}
    dt = {p.stem: p for p in detections_dir.glob("*.npy") if p.is_file() and not p.name.endswith(GT_SUFFIX)}
    if not gt:
        raise ValueError(f"{gt_dir}: no ground-truth files <name>{GT_SUFFIX} found")
    for name in sorted(gt):
        if name not in dt:
            raise ValueError(f"{gt[name]}: no detections file {detections_dir / (name + '.npy')} for this recording")
    for name in sorted(dt):
        if name not in gt:
            raise ValueError(f"{dt[name]}: no ground-truth file {gt_dir / (name + GT_SUFFIX)} for these detections")
    return [(name, gt[name], dt[name]) for name in sorted(gt)]


def load_detections_info(detections_dir: Path) -> tuple[dict, Path | None]:
    """Read ``DETECTIONS/detections.json`` when present.

    Known keys (all optional): ``class_names`` (non-empty list of str), ``width``, ``height``,
    ``downsample_factor`` (positive int), ``protocol`` (etram|rvt), ``camera`` (gen4|gen1); everything else (e.g.
    ``score``, ``checkpoint``) is only recorded in the results' ``extra``.

    Returns:
        ``(info, path)``; ``({}, None)`` without the file.

    Raises:
        ValueError: not valid JSON, not an object, or a known key of the wrong type (names the file and key).
    """
    path = detections_dir / DETECTIONS_INFO_FILE
    if not path.is_file():
        return {}, None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({' '.join(str(err).split())})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(info).__name__}")
    names = info.get("class_names")
    if names is not None and (not isinstance(names, list) or not names or
                              not all(isinstance(n, str) and n.strip() for n in names)):
        raise ValueError(f"{path}: key 'class_names' must be a non-empty list of names, got {names!r}")
    for key in ("width", "height", "downsample_factor"):
        value = info.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{path}: key '{key}' must be a positive integer, got {value!r}")
    if info.get("protocol") is not None and info["protocol"] not in prophesee.PROTOCOLS:
        raise ValueError(f"{path}: key 'protocol' must be one of {list(prophesee.PROTOCOLS)}, got {info['protocol']!r}")
    if info.get("camera") is not None and info["camera"] not in prophesee.CAMERA_SENSOR_HW:
        raise ValueError(f"{path}: key 'camera' must be one of {sorted(prophesee.CAMERA_SENSOR_HW)}, "
                         f"got {info['camera']!r}")
    return info, path


def _parse_classes(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(f"--classes: expected comma-separated non-empty names, got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"--classes: names must be distinct, got {text!r}")
    return names


def _print_prophesee(console: Console, experiment: str, metrics: dict) -> None:
    settings = metrics["protocol"]
    headline = metrics["headline"]
    table = Table(title=f"{experiment}: {settings['name']} protocol (headline: {headline.replace('_', '-')})")
    table.add_column("metric")
    for key in ("class_agnostic", "class_aware"):
        title = key.replace("_", "-") + (" *" if key == headline else "")
        table.add_column(title, justify="right")
    for name, agnostic, aware in prophesee.figures_table_rows(metrics):
        table.add_row(name, _format(agnostic), _format(aware))
    console.print(table)
    per_class = Table(title="per class (class-aware pass)")
    per_class.add_column("class_id", justify="right")
    per_class.add_column("class")
    per_class.add_column("AP", justify="right")
    per_class.add_column("AP_50", justify="right")
    per_class.add_column("GT", justify="right")
    for name, row in metrics["class_aware"]["per_class"].items():
        per_class.add_row(str(row["class_id"]), name, _format(row["AP"]), _format(row["AP_50"]), str(row["num_gt"]))
    console.print(per_class)
    console.print(
        f"{metrics['num_recordings']} recordings, {metrics['num_images']} images, {metrics['num_gt']} GT, "
        f"{metrics['num_detections']} detections evaluated; camera {settings['camera']}, "
        f"{settings['height']}x{settings['width']} px, min diag {settings['min_box_diag_px']:g} px, min side "
        f"{settings['min_box_side_px']:g} px, t > {settings['skip_before_us']} us, +-{settings['time_tolerance_us']} us"
    )
    for note in metrics["notes"]:
        console.print(f"note: {note}")


def _results_paths(output: Path) -> tuple[Path, Path]:
    target = output / RESULTS_FILE_NAME if output.is_dir() else output
    name = "confusion_matrix.csv" if target.name == RESULTS_FILE_NAME else f"{target.stem}.confusion_matrix.csv"
    return target, target.parent / name


def _run_prophesee(args: argparse.Namespace, argv: Sequence[str] | None) -> dict:
    started = time.perf_counter()
    require_input(args, "gt", "GT", "--gt")
    require_input(args, "detections", "DETECTIONS", "--detections")
    args.gt, args.detections = Path(args.gt), Path(args.detections)
    _check_paths(args)
    target, confusion_path = _results_paths(args.output)
    if not args.overwrite:
        for path in (target, confusion_path):
            if path.exists():
                raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")
    config = load_config(args.config) if args.config is not None else {}
    experiment = args.experiment or target.resolve().parent.name
    pairs = pair_recordings(args.gt, args.detections)
    info, info_path = load_detections_info(args.detections)
    info_hint = f"{args.detections / DETECTIONS_INFO_FILE}"

    if args.classes is not None:
        class_names = _parse_classes(args.classes)
    elif info.get("class_names"):
        class_names = list(info["class_names"])
    else:
        raise ValueError(f"class names: pass --classes NAME,NAME,... (index = class_id) or write 'class_names' "
                         f"into {info_hint}")
    if (args.height is None) != (args.width is None):
        raise ValueError("--height/--width: give both or neither")
    if args.height is not None:
        height, width, downsample = args.height, args.width, None  # flags win: the factor follows from them
    elif info.get("height") and info.get("width"):
        height, width, downsample = info["height"], info["width"], info.get("downsample_factor")
    else:
        raise ValueError(f"frame size: pass --height and --width (px of the boxes) or write 'height' and 'width' "
                         f"into {info_hint}")
    protocol = args.protocol or info.get("protocol")
    if protocol is None:
        raise ValueError(f"protocol: pass --protocol etram|rvt or write 'protocol' into {info_hint}")
    camera = args.camera or info.get("camera") or "gen4"
    explicit = {"min_box_diag_px": args.min_box_diag_px, "min_box_side_px": args.min_box_side_px}
    if (args.min_box_diag_px is None) != (args.min_box_side_px is None):
        raise ValueError("--min-box-diag-px/--min-box-side-px: give both or neither")
    settings = prophesee.resolve_protocol(
        protocol, class_names=class_names, height=height, width=width, camera=camera,
        downsample_factor=downsample, skip_before_us=args.skip_before_us, time_tolerance_us=args.time_tolerance_us,
        **explicit,
    )

    gt, dt = [], []
    for _, gt_path, dt_path in pairs:
        gt.append(load_box_file(gt_path, detections=False))
        dt.append(load_box_file(dt_path, detections=True))
    loaded = time.perf_counter()
    names = [name for name, _, _ in pairs]
    images = prophesee.build_images(gt, dt, settings, recording_names=names)
    if images.num_images == 0:
        raise ValueError(
            f"{args.gt}: no ground-truth box is left after the filter (t > {settings.skip_before_us} us, diagonal >= "
            f"{settings.min_box_diag_px:g} px, sides >= {settings.min_box_side_px:g} px) in {len(pairs)} recordings; "
            f"check --height/--width/--camera"
        )
    metrics = prophesee.evaluate_images(images, settings)
    evaluated = time.perf_counter()
    matrix = confusion_matrix_from_images(images, num_classes=len(class_names), iou_threshold=args.confusion_iou,
                                          score_threshold=args.confusion_score)
    confused = time.perf_counter()

    recordings = images.per_recording()
    for row, (_, gt_path, dt_path) in zip(recordings, pairs):
        row.update(gt_file=str(gt_path.resolve()), detections_file=str(dt_path.resolve()))
    extra = {
        "command": "prophesee",
        "argv": list(sys.argv[1:] if argv is None else argv),
        "inputs": {
            "gt_dir": str(args.gt.resolve()),
            "detections_dir": str(args.detections.resolve()),
            "detections_json": None if info_path is None else str(info_path.resolve()),
            "detections_info": info,
            "config_file": None if args.config is None else str(args.config.resolve()),
        },
        "recordings": recordings,
        "confusion_matrix": {
            "classes": [*class_names, "background"], "rows": "true class", "columns": "predicted class",
            "images": "the AP images (filter and +-time_tolerance_us matching; a detection in two images counts "
                      "twice); class_id >= K ignored",
            "iou_threshold": args.confusion_iou, "score_threshold": args.confusion_score, "counts": matrix.tolist(),
            "csv": confusion_path.name,
        },
        "timings_s": {
            "load": round(loaded - started, 3),
            "evaluate": round(evaluated - loaded, 3),
            "confusion": round(confused - evaluated, 3),
        },
    }
    written = write_experiment_results(
        target, metrics, experiment=experiment, config=config, extra=extra, overwrite=args.overwrite
    )
    write_text_atomic(confusion_path, format_confusion_csv(matrix, class_names), overwrite=args.overwrite)
    if args.table:
        console = Console()
        _print_prophesee(console, experiment, metrics)
        console.print(f"wrote {written} and {confusion_path.name}")
    return {"results": str(written), "confusion_matrix": str(confusion_path), "experiment": experiment,
            "headline": metrics["headline"], **{k: metrics.get(k) for k in ("AP", "AP_50", "AP_75")},
            "num_recordings": metrics["num_recordings"], "notes": metrics["notes"]}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evdet-eval``.

    Args:
        argv: arguments without the program name; ``None`` = ``sys.argv[1:]``.

    Returns:
        0 on success, 2 on any input error (one line ``evdet-eval: error: ...`` on stderr).
    """
    try:
        args = build_parser().parse_args(argv)
        result = _run_prophesee(args, argv)
    except (_UsageError, ValueError, OSError) as err:
        return fail("evdet-eval", err)
    if not args.table:
        print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
