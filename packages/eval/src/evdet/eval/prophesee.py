"""COCO AP of event-camera detections with the Prophesee protocol, as RVT and eTraM compute it.

The protocol was introduced for the Prophesee Gen1 / 1 Mpx automotive benchmarks (Perot et al., "Learning to Detect
Objects with a 1 Megapixel Event Camera", NeurIPS 2020, Sec. 5) and is implemented (code shared with the Prophesee
toolbox) in RVT (github.com/uzh-rpg/RVT @ b80f568, ``utils/evaluation/prophesee/``) and in eTraM's RVT fork
(github.com/eventbasedvision/eTraM @ 8930488, ``rvt_eTram/utils/evaluation/prophesee/``). This module reproduces the
numbers of both; ``tests/reference/test_evaluation.py`` checks them against the reference's own outputs.

Rules (each with its source):

1. **Box filter** on ground truth AND detections alike (``io/box_filtering.py`` ``filter_boxes``; thresholds in
   ``evaluation.py`` ``evaluate_list``; Perot et al. 2020, Sec. 5): keep a box iff ``t > skip_before_us`` (strict,
   default 500 000 us; ``t`` counts from the recording's origin ``t = 0``) and ``w*w + h*h >= min_box_diag_px**2``
   and ``w >= min_box_side_px`` and ``h >= min_box_side_px``. As in the reference the arithmetic is numpy float32
   (``w``, ``h`` are float32 fields; the Python threshold is cast to float32 in the comparison). Thresholds per
   camera at the full sensor size: gen4 / 1 Mpx (also eTraM's 1280x720 EVK4) 60 px / 20 px, gen1 30 px / 10 px;
   for boxes downsampled by ``k`` (RVT/eTraM evaluate gen4-type data at 640x360, ``k = 2``) both are divided by
   ``k`` with integer division (the reference's ``downsampled_by_2`` asserts that they are even).
2. **Images and time matching** (``metrics/coco_eval.py`` ``evaluate_detection`` / ``_match_times``): per
   recording, ground truth and detections must be sorted by ``t`` (the reference asserts it); after filtering,
   every unique ground-truth timestamp ``ts`` is one COCO image holding the ground truth with ``t == ts`` and the
   detections with ``ts - time_tolerance_us <= t <= ts + time_tolerance_us`` (both ends inclusive, default
   50 000 us). A detection can therefore count in two images; detections near no remaining ground-truth timestamp,
   and the detections of a frame whose ground truth was all filtered out, are not evaluated at all. Images are
   numbered ``1..N`` over all recordings in order.
3. **COCO** (``metrics/coco_eval.py`` ``_coco_eval`` / ``_to_coco_format``; pycocotools ``COCOeval``, ``bbox``,
   default parameters: IoU .50:.05:.95, 101 recall points, maxDets 1/10/100, area ranges all / small [0, 32^2] /
   medium [32^2, 96^2] / large [96^2, 1e10] px^2, both ends inclusive, absolute px^2 of the frame the boxes are in):
   categories ``id = k + 1`` for ``class_names[k]``; ground-truth ``area = float(w * h)`` (float32 product), bbox
   ``[x, y, w, h]``, ``iscrowd`` False, ids running; detections (score = ``class_confidence``) go through
   ``COCO.loadRes``, which sets their area to bbox ``w * h`` of the float32 values;
   ``params.imgIds = 1..N``; image height/width are metadata only.
   With no detection in any image the reference returns 0.0 for every figure without running COCO
   (``COCO.loadRes`` cannot take an empty list); so does this module (``no_detections`` is then True).

   Backend (``backend``, :data:`BACKENDS`): ``"faster-coco-eval"`` (default; ``faster_coco_eval.COCOeval_faster``,
   the same matching, accumulation and summary in C++, ~10x faster at 2000 images / 50 000 detections,
   ``evdet-bench eval``) or ``"pycocotools"`` (``pycocotools.cocoeval.COCOeval``, the reference's). Both run on
   the same pycocotools ``COCO`` objects. Figures agree to float64 rounding: equal on the reference fixtures and in
   almost every random case; where pycocotools' precision ``tp / (tp + fp + np.spacing(1))`` is ``1 - 2**-52`` for
   a first true positive, faster-coco-eval gives 1.0, so a stat can differ by ~3e-17 (far below the protocol's
   1e-6, ``tests/eval/test_coco_backends.py``).
4. **Two passes**, both always computed here:

   * *class-aware* (RVT's ``evaluate_detection``): ``useCats = 1`` over categories ``1..K``; AP is the mean over
     the categories that have ground truth (pycocotools' ``-1`` handling); boxes with ``class_id >= K`` belong to
     no category and are ignored.
   * *class-agnostic* (eTraM's ``_coco_eval``: per-category ``useCats = 1`` passes, which it only prints, then
     ``useCats = 0`` with ``params.catIds = coco_gt.getCatIds()``): all categories pooled. pycocotools pools only
     ``params.catIds`` (``COCOeval.computeIoU`` / ``evaluateImg`` gather ``_gts[img, c]`` for ``c`` in
     ``catIds``), so boxes with ``class_id >= K`` are ignored here too: eTraM's headline AP with the gen4 class
     list covers class ids 0, 1, 2 only. (The fixtures confirm this: pooling all 8 eTraM classes gives other
     numbers.)

   Protocol ``"etram"`` names the class-agnostic figures the headline, ``"rvt"`` the class-aware ones; the
   headline figures are copied to the top level of the result.

Figure conventions: the raw ``stats`` lists hold pycocotools' 12 ``COCOeval.stats`` values unchanged (``-1`` = no
ground truth in that area range / category), for comparison with the reference. The named figures (``AP``,
``AP_50``, ... and per class) are the same values with ``-1`` replaced by ``None`` (JSON ``null``): ``None``
always means "no ground truth to measure", never "0". With no detections at all every figure is ``0.0`` in both
forms (the reference's convention), except per-class figures of classes without ground truth, which are ``None``.

Box arrays are Prophesee structured arrays (``evdet.data.labels.BBOX_DTYPE``: ``t`` int64 us, ``x, y, w, h``
float32 px with ``x, y`` the top-left corner, ``class_id`` uint32, ``track_id`` uint32, ``class_confidence``
float32); this module needs ``t, x, y, w, h, class_id`` and, for detections, ``class_confidence``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

import numpy as np
from faster_coco_eval import COCOeval_faster
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "BACKENDS",
    "CAMERA_MIN_BOX_SIZE_PX",
    "CAMERA_SENSOR_HW",
    "DEFAULT_BACKEND",
    "DEFAULT_SKIP_BEFORE_US",
    "DEFAULT_TIME_TOLERANCE_US",
    "DETECTION_FIELDS",
    "GT_FIELDS",
    "HEADLINE",
    "METRIC_NAMES",
    "PROTOCOLS",
    "REFERENCE_CLASS_NAMES",
    "PropheseeImages",
    "PropheseeProtocol",
    "build_images",
    "check_box_array",
    "evaluate_images",
    "evaluate_prophesee",
    "figures_table_rows",
    "filter_boxes",
    "resolve_protocol",
]

GT_FIELDS: tuple[str, ...] = ("t", "x", "y", "w", "h", "class_id")
"""Structured-array fields a ground-truth box array must have."""

DETECTION_FIELDS: tuple[str, ...] = GT_FIELDS + ("class_confidence",)
"""Fields a detection box array must have (``class_confidence`` is the score, as RVT's ``_to_coco_format``)."""

PROTOCOLS: tuple[str, ...] = ("etram", "rvt")
"""Protocol names: ``"etram"`` (eTraM's RVT fork, class-agnostic headline), ``"rvt"`` (RVT, class-aware)."""

HEADLINE: dict[str, str] = {"etram": "class_agnostic", "rvt": "class_aware"}
"""Which figure set each protocol reports as its headline (eTraM ``_coco_eval`` returns the ``useCats = 0`` pass,
RVT ``_coco_eval`` the ``useCats = 1`` pass)."""

CAMERA_SENSOR_HW: dict[str, tuple[int, int]] = {"gen4": (720, 1280), "gen1": (240, 304)}
"""Sensor ``(height, width)`` px per camera (Prophesee Gen4 1 Mpx / eTraM EVK4 1280x720; Gen1 ATIS 304x240)."""

CAMERA_MIN_BOX_SIZE_PX: dict[str, tuple[int, int]] = {"gen4": (60, 20), "gen1": (30, 10)}
"""``(min_box_diag_px, min_box_side_px)`` at the full sensor size per camera (RVT/eTraM ``evaluate_list``, from
the Prophesee toolbox ``psee_evaluator.py``; Perot et al. 2020, Sec. 5 and supplementary)."""

REFERENCE_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "gen4": ("pedestrian", "two-wheeler", "car"),
    "gen1": ("car", "pedestrian"),
}
"""The class list RVT's and eTraM's ``evaluate_list`` pass to the evaluator per camera (eTraM uses ``gen4``)."""

BACKENDS: tuple[str, ...] = ("faster-coco-eval", "pycocotools")
"""COCO backends (module docstring, rule 3): faster-coco-eval's ``COCOeval_faster`` or pycocotools' ``COCOeval``."""

DEFAULT_BACKEND = "faster-coco-eval"
"""The backend used unless one is named."""

DEFAULT_SKIP_BEFORE_US = 500_000
"""Boxes with ``t <= 500 000 us`` are not evaluated (``filter_boxes`` ``skip_ts``; Perot et al. 2020, Sec. 5)."""

DEFAULT_TIME_TOLERANCE_US = 50_000
"""Half width (us) of the window in which detections are matched to a ground-truth timestamp
(``evaluate_detection`` ``time_tol``)."""

METRIC_NAMES: tuple[str, ...] = (
    "AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L", "AR_1", "AR_10", "AR_100", "AR_S", "AR_M", "AR_L",
)
"""Names of the 12 ``COCOeval.stats`` entries in pycocotools' order (``summarize`` / ``_summarizeDets``): AP at
IoU .50:.95, .50, .75; AP small/medium/large; AR with 1/10/100 detections per image; AR small/medium/large."""

_CANON_DTYPE = np.dtype([("t", np.int64), ("x", np.float32), ("y", np.float32), ("w", np.float32),
                         ("h", np.float32), ("class_id", np.int64), ("class_confidence", np.float32)])

# (ap, iou threshold, area label, max detections) of each entry of COCOeval.stats, as in COCOeval._summarizeDets.
_STAT_SPECS: tuple[tuple[bool, float | None, str, int], ...] = (
    (True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
    (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
    (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
    (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100),
)


# ----------------------------------------------------------------------------------------------------------------
# protocol settings


@dataclass(frozen=True)
class PropheseeProtocol:
    """Every setting of one Prophesee-protocol evaluation (build with :func:`resolve_protocol`).

    Attributes:
        name: ``"etram"`` or ``"rvt"`` (selects the headline, see :data:`HEADLINE`).
        camera: ``"gen4"`` or ``"gen1"``.
        class_names: category names; ``class_names[k]`` is ``class_id`` k, COCO category ``k + 1``.
        height: image height (px) written into the COCO images (metadata only, no effect on any figure).
        width: image width (px), metadata only.
        min_box_diag_px: minimum box diagonal in px of the evaluated boxes.
        min_box_side_px: minimum box width and height in px of the evaluated boxes.
        thresholds_source: ``"camera"`` (camera default divided by ``downsample_factor``) or ``"explicit"``.
        downsample_factor: sensor px per box px (1 = full resolution, 2 = 640x360 for gen4), or ``None`` when
            the thresholds were given explicitly without a factor.
        skip_before_us: boxes with ``t <= skip_before_us`` (us) are dropped.
        time_tolerance_us: detections within +-this many us (inclusive) of a ground-truth timestamp are matched.
    """

    name: str
    camera: str
    class_names: tuple[str, ...]
    height: int
    width: int
    min_box_diag_px: float
    min_box_side_px: float
    thresholds_source: str
    downsample_factor: int | None
    skip_before_us: int
    time_tolerance_us: int

    @property
    def headline(self) -> str:
        """``"class_agnostic"`` (etram) or ``"class_aware"`` (rvt)."""
        return HEADLINE[self.name]

    def as_dict(self) -> dict:
        """All settings as plain JSON types, including the fixed COCO parameters and the pycocotools version, so
        that a results file is self-describing."""
        try:
            coco_version = metadata.version("pycocotools")
        except metadata.PackageNotFoundError:  # pragma: no cover - pycocotools is a dependency
            coco_version = None
        return {
            "name": self.name,
            "reference": {"etram": "eTraM rvt_eTram @ 8930488 utils/evaluation/prophesee",
                          "rvt": "RVT @ b80f568 utils/evaluation/prophesee"}[self.name],
            "headline": self.headline,
            "headline_use_cats": 0 if self.headline == "class_agnostic" else 1,
            "camera": self.camera,
            "class_names": list(self.class_names),
            "category_ids": list(range(1, len(self.class_names) + 1)),
            "height": self.height,
            "width": self.width,
            "min_box_diag_px": self.min_box_diag_px,
            "min_box_side_px": self.min_box_side_px,
            "thresholds_source": self.thresholds_source,
            "downsample_factor": self.downsample_factor,
            "skip_before_us": self.skip_before_us,
            "time_tolerance_us": self.time_tolerance_us,
            "filter": "t > skip_before_us and w*w + h*h >= min_box_diag_px**2 and w >= min_box_side_px and "
                      "h >= min_box_side_px (float32), on ground truth and detections",
            "images": "unique ground-truth timestamps per recording after filtering; detections with "
                      "|t - t_image| <= time_tolerance_us (inclusive) count in that image",
            "score_field": "class_confidence",
            "ignored_class_ids": f">= {len(self.class_names)} (no category)",
            "iou_thresholds": "0.50:0.05:0.95",
            "max_dets": [1, 10, 100],
            "area_ranges_px2": {"all": [0, 1e10], "small": [0, 32 ** 2], "medium": [32 ** 2, 96 ** 2],
                                "large": [96 ** 2, 1e10]},
            "pycocotools": coco_version,
        }


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _number(name: str, value: object, *, minimum: float = 0.0) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not np.isfinite(float(value)) or float(value) < minimum:
        raise ValueError(f"{name}: expected a finite number >= {minimum:g}, got {value!r}")
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def resolve_protocol(
    protocol: str,
    *,
    class_names: Sequence[str],
    height: int,
    width: int,
    camera: str = "gen4",
    downsample_factor: int | None = None,
    min_box_diag_px: float | None = None,
    min_box_side_px: float | None = None,
    skip_before_us: int = DEFAULT_SKIP_BEFORE_US,
    time_tolerance_us: int = DEFAULT_TIME_TOLERANCE_US,
) -> PropheseeProtocol:
    """Check and complete the settings of an evaluation (see the module docstring for the rules).

    Size thresholds, in px of the evaluated boxes:

    * both ``min_box_diag_px`` and ``min_box_side_px`` given: used as they are (``"explicit"``);
    * else ``downsample_factor`` k given: the camera's full-size thresholds (:data:`CAMERA_MIN_BOX_SIZE_PX`)
      integer-divided by k, which must divide both (RVT/eTraM ``evaluate_list`` ``downsampled_by_2``);
    * else k is derived from ``height`` x ``width``: the sensor size (:data:`CAMERA_SENSOR_HW`) gives 1, exactly
      half of it gives 2; any other size is an error asking for the explicit thresholds.

    Args:
        protocol: ``"etram"`` or ``"rvt"``.
        class_names: K >= 1 distinct category names (index = ``class_id``).
        height: image height (px) of the boxes' frame, > 0 (COCO metadata; also used to derive k).
        width: image width (px), > 0.
        camera: ``"gen4"`` (1 Mpx, eTraM) or ``"gen1"``.
        downsample_factor: sensor px per box px, a positive integer, or ``None``.
        min_box_diag_px: explicit minimum diagonal (px of the boxes), >= 0.
        min_box_side_px: explicit minimum side (px of the boxes), >= 0.
        skip_before_us: boxes with ``t <= skip_before_us`` (us) are dropped (500 000 in the reference).
        time_tolerance_us: matching half window (us, >= 0; 50 000 in the reference).

    Returns:
        The :class:`PropheseeProtocol`.

    Raises:
        ValueError: unknown protocol or camera; empty or duplicate class names; non-positive height/width/
            downsample_factor; only one of the two explicit thresholds; a factor that does not divide the camera
            thresholds; a size that is neither the sensor size nor half of it without explicit thresholds; a
            ``downsample_factor`` contradicting ``height`` x ``width``; negative skip time or tolerance.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    if camera not in CAMERA_SENSOR_HW:
        raise ValueError(f"camera: expected one of {sorted(CAMERA_SENSOR_HW)}, got {camera!r}")
    if isinstance(class_names, str):
        raise ValueError(f"class_names: expected a sequence of names, got the string {class_names!r}")
    names = tuple(str(c) for c in class_names)
    if not names or any(not n.strip() for n in names):
        raise ValueError(f"class_names: expected at least one non-empty class name, got {list(names)!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names: names must be distinct, got {list(names)!r}")
    height = _positive_int("height", height)
    width = _positive_int("width", width)
    skip = _number("skip_before_us", skip_before_us, minimum=-np.inf)
    tolerance = _number("time_tolerance_us", time_tolerance_us)
    if not isinstance(skip, int) or not isinstance(tolerance, int):
        raise ValueError(
            f"skip_before_us / time_tolerance_us: expected integers (us), got {skip_before_us!r} / "
            f"{time_tolerance_us!r}"
        )
    if downsample_factor is not None:
        downsample_factor = _positive_int("downsample_factor", downsample_factor)

    sensor_h, sensor_w = CAMERA_SENSOR_HW[camera]
    size_factor = {(sensor_h, sensor_w): 1, (sensor_h // 2, sensor_w // 2): 2}.get((height, width))
    hint = "pass min_box_diag_px and min_box_side_px (CLI: --min-box-diag-px / --min-box-side-px) in px of the boxes"
    if (min_box_diag_px is None) != (min_box_side_px is None):
        raise ValueError(f"min_box_diag_px / min_box_side_px: give both explicit thresholds or neither; {hint}")
    if min_box_diag_px is not None:
        diag = _number("min_box_diag_px", min_box_diag_px)
        side = _number("min_box_side_px", min_box_side_px)
        source = "explicit"
    else:
        if downsample_factor is None:
            if size_factor is None:
                raise ValueError(
                    f"height x width: {height}x{width} px is neither the {camera} sensor size ({sensor_h}x"
                    f"{sensor_w}) nor half of it ({sensor_h // 2}x{sensor_w // 2}), so the minimum box size "
                    f"cannot be derived; {hint}, or give downsample_factor"
                )
            downsample_factor = size_factor
        elif size_factor is not None and size_factor != downsample_factor:
            raise ValueError(
                f"downsample_factor: {downsample_factor} contradicts height x width {height}x{width} px, which is "
                f"the {camera} sensor size divided by {size_factor}"
            )
        full_diag, full_side = CAMERA_MIN_BOX_SIZE_PX[camera]
        if full_diag % downsample_factor or full_side % downsample_factor:
            raise ValueError(
                f"downsample_factor: {downsample_factor} does not divide the {camera} thresholds {full_diag} px / "
                f"{full_side} px (the reference divides exactly); {hint}"
            )
        diag, side = full_diag // downsample_factor, full_side // downsample_factor
        source = "camera"
    return PropheseeProtocol(
        name=protocol, camera=camera, class_names=names, height=height, width=width, min_box_diag_px=diag,
        min_box_side_px=side, thresholds_source=source, downsample_factor=downsample_factor, skip_before_us=skip,
        time_tolerance_us=tolerance,
    )


# ----------------------------------------------------------------------------------------------------------------
# box arrays


def check_box_array(boxes: object, what: str, *, detections: bool) -> np.ndarray:
    """Validate one recording's Prophesee box array and return it in evdet's canonical evaluation dtype.

    Args:
        boxes: ``(N,)`` structured numpy array with at least :data:`GT_FIELDS` (and ``class_confidence`` when
            ``detections``): ``t`` integer us, ``x, y, w, h`` px (top-left corner), ``class_id`` integer >= 0,
            ``class_confidence`` score; sorted by ``t`` (non-decreasing).
        what: how error messages name the array, e.g. ``"recording 'a' (index 0): detections"``.
        detections: require ``class_confidence``.

    Returns:
        ``(N,)`` new array with fields ``t`` int64, ``x, y, w, h`` float32, ``class_id`` int64,
        ``class_confidence`` float32 (0 for ground truth without it), rows in input order. Coordinates are
        evaluated as float32 like the Prophesee ``BBOX_DTYPE`` (float64 inputs are rounded to float32).

    Raises:
        ValueError: not a 1-D structured numpy array; a required field missing; ``t`` or ``class_id`` not an
            integer dtype; a negative ``class_id``; NaN or inf in ``x, y, w, h`` or ``class_confidence``;
            ``t`` not sorted ("sort by t", as the reference asserts). The message starts with ``what`` and names
            the field.
    """
    fields = DETECTION_FIELDS if detections else GT_FIELDS
    if not isinstance(boxes, np.ndarray) or boxes.dtype.names is None or boxes.ndim != 1:
        got = type(boxes).__name__
        if isinstance(boxes, np.ndarray):
            got += f" with dtype {boxes.dtype} and shape {boxes.shape}"
        raise ValueError(f"{what}: expected a 1-D structured Prophesee box array with fields {list(fields)}, "
                         f"got {got}")
    missing = [f for f in fields if f not in boxes.dtype.names]
    if missing:
        raise ValueError(f"{what}: missing field(s) {missing}; expected fields {list(fields)}, got "
                         f"{list(boxes.dtype.names)}")
    for name in ("t", "class_id"):
        if not np.issubdtype(boxes.dtype[name], np.integer):
            raise ValueError(f"{what}: field '{name}' must have an integer dtype, got {boxes.dtype[name]}")
    for name in ("x", "y", "w", "h") + (("class_confidence",) if detections else ()):
        if not (np.issubdtype(boxes.dtype[name], np.floating) or np.issubdtype(boxes.dtype[name], np.integer)):
            raise ValueError(f"{what}: field '{name}' must be numeric, got {boxes.dtype[name]}")
        if len(boxes) and not np.all(np.isfinite(boxes[name])):
            raise ValueError(f"{what}: field '{name}' holds NaN or inf values")
    if len(boxes) and np.any(boxes["class_id"] < 0):
        raise ValueError(f"{what}: field 'class_id' must be >= 0, got {int(boxes['class_id'].min())}")
    t = boxes["t"].astype(np.int64)
    if len(t) > 1 and np.any(t[1:] < t[:-1]):
        first = int(np.flatnonzero(t[1:] < t[:-1])[0])
        raise ValueError(f"{what}: field 't' is not sorted (row {first + 1}, t = {int(t[first + 1])} us, follows "
                         f"row {first}, t = {int(t[first])} us); sort by t (e.g. "
                         f"boxes[np.argsort(boxes['t'], kind='stable')])")
    out = np.zeros(len(boxes), dtype=_CANON_DTYPE)
    out["t"] = t
    for name in ("x", "y", "w", "h"):
        out[name] = boxes[name]
    out["class_id"] = boxes["class_id"]
    if "class_confidence" in boxes.dtype.names:
        out["class_confidence"] = boxes["class_confidence"]
    return out


def filter_boxes(
    boxes: np.ndarray, *, min_box_diag_px: float, min_box_side_px: float, skip_before_us: int
) -> np.ndarray:
    """Boolean keep-mask of the Prophesee box filter (RVT/eTraM ``io/box_filtering.py`` ``filter_boxes``; Perot et
    al. 2020, Sec. 5).

    A box is kept iff ``t > skip_before_us`` and ``w*w + h*h >= min_box_diag_px**2`` and ``w >= min_box_side_px``
    and ``h >= min_box_side_px``; ``w*w + h*h`` is computed in float32 and each threshold (``min_box_diag_px**2``
    computed in Python) is rounded to float32 for the comparison, exactly as numpy does for the reference's
    float32 fields and Python-number thresholds.

    Args:
        boxes: ``(N,)`` structured array with ``t`` (integer us), ``w``, ``h`` (px, float32 or cast to it).
        min_box_diag_px: minimum diagonal (px of the boxes).
        min_box_side_px: minimum width and height (px of the boxes).
        skip_before_us: boxes with ``t <= skip_before_us`` (us) are dropped.

    Returns:
        ``(N,)`` bool mask (True = kept).
    """
    w = np.asarray(boxes["w"], dtype=np.float32)
    h = np.asarray(boxes["h"], dtype=np.float32)
    diag2 = np.float32(float(min_box_diag_px) ** 2)
    side = np.float32(min_box_side_px)
    return (np.asarray(boxes["t"]) > skip_before_us) & (w * w + h * h >= diag2) & (w >= side) & (h >= side)


# ----------------------------------------------------------------------------------------------------------------
# images


@dataclass(frozen=True)
class PropheseeImages:
    """The COCO images of an evaluation: one per (recording, unique ground-truth timestamp) after filtering.

    Image ``i`` (0-based here) is COCO image id ``i + 1``. Attributes (I images, G ground-truth and D detection
    entries; a detection matched to two images has two entries):

    Attributes:
        recording_names: name of each recording (its index as a string when none was given).
        image_recording: ``(I,)`` int64 recording index of each image.
        image_t: ``(I,)`` int64 timestamp (us) of each image.
        gt: ``(G,)`` ground-truth boxes (canonical dtype of :func:`check_box_array`), image by image, input order
            within an image.
        gt_image: ``(G,)`` int64 image index of each ground-truth entry.
        gt_row: ``(G,)`` int64 row of the entry in its recording's input array (before filtering).
        dt: ``(D,)`` detection boxes, image by image, input order within an image.
        dt_image: ``(D,)`` int64 image index of each detection entry.
        dt_row: ``(D,)`` int64 row of the entry in its recording's input detection array.
        num_gt_input: ``(R,)`` int64 ground-truth boxes given per recording.
        num_dt_input: ``(R,)`` int64 detections given per recording.
        num_gt_kept: ``(R,)`` int64 ground-truth boxes left by the filter per recording (= in images).
        num_dt_kept: ``(R,)`` int64 detections left by the filter per recording.
        num_dt_matched: ``(R,)`` int64 distinct detections in at least one image per recording.
    """

    recording_names: tuple[str, ...]
    image_recording: np.ndarray
    image_t: np.ndarray
    gt: np.ndarray
    gt_image: np.ndarray
    gt_row: np.ndarray
    dt: np.ndarray
    dt_image: np.ndarray
    dt_row: np.ndarray
    num_gt_input: np.ndarray
    num_dt_input: np.ndarray
    num_gt_kept: np.ndarray
    num_dt_kept: np.ndarray
    num_dt_matched: np.ndarray

    @property
    def num_images(self) -> int:
        """I, the number of images."""
        return int(len(self.image_t))

    def counts(self) -> np.ndarray:
        """``(I, 4)`` int64 rows ``(recording index, timestamp us, #ground truth, #detections)`` per image."""
        n_gt = np.bincount(self.gt_image, minlength=self.num_images)
        n_dt = np.bincount(self.dt_image, minlength=self.num_images)
        return np.stack([self.image_recording, self.image_t, n_gt, n_dt], axis=1).astype(np.int64)

    def per_recording(self) -> list[dict]:
        """One dict per recording: ``name``, ``num_gt_input``, ``num_detections_input``, ``num_gt_kept`` (after the
        filter, all in images), ``num_detections_kept`` (after the filter), ``num_detections_matched`` (distinct
        detections in at least one image), ``num_images``."""
        images = np.bincount(self.image_recording, minlength=len(self.recording_names))
        return [
            {"name": name, "num_gt_input": int(self.num_gt_input[r]), "num_detections_input": int(self.num_dt_input[r]),
             "num_gt_kept": int(self.num_gt_kept[r]), "num_detections_kept": int(self.num_dt_kept[r]),
             "num_detections_matched": int(self.num_dt_matched[r]), "num_images": int(images[r])}
            for r, name in enumerate(self.recording_names)
        ]


def build_images(
    gt_per_recording: Sequence[np.ndarray],
    detections_per_recording: Sequence[np.ndarray],
    protocol: PropheseeProtocol,
    *,
    recording_names: Sequence[str] | None = None,
) -> PropheseeImages:
    """Validate, filter and time-match ground truth and detections into COCO images (module docstring, rules 1-2).

    Source: RVT/eTraM ``evaluation.py`` ``evaluate_list`` (filter on both) and ``metrics/coco_eval.py``
    ``evaluate_detection`` / ``_match_times`` (images and the inclusive +-``time_tolerance_us`` window).

    Args:
        gt_per_recording: one ``(M_r,)`` Prophesee ground-truth array per recording (:data:`GT_FIELDS`; ``t`` us
            sorted, boxes in px of the evaluated frame).
        detections_per_recording: one ``(D_r,)`` detection array per recording, same order
            (:data:`DETECTION_FIELDS`; ``t`` us sorted; ``class_confidence`` = score).
        protocol: the settings (:func:`resolve_protocol`).
        recording_names: optional name per recording for error messages and the output.

    Returns:
        :class:`PropheseeImages`.

    Raises:
        ValueError: the two sequences (or ``recording_names``) differ in length; a box array fails
            :func:`check_box_array` (the message names the recording by name and index, and the field).
    """
    if isinstance(gt_per_recording, np.ndarray) or isinstance(detections_per_recording, np.ndarray):
        raise ValueError("gt_per_recording / detections_per_recording: expected one box array per recording "
                         "(a list), got a single array")
    gt_list, dt_list = list(gt_per_recording), list(detections_per_recording)
    if len(gt_list) != len(dt_list):
        raise ValueError(
            f"gt_per_recording / detections_per_recording: expected one detection array per ground-truth array, "
            f"got {len(gt_list)} ground-truth and {len(dt_list)} detection arrays"
        )
    if recording_names is None:
        names = tuple(str(i) for i in range(len(gt_list)))
        label = [f"recording {i}" for i in range(len(gt_list))]
    else:
        names = tuple(str(n) for n in recording_names)
        if len(names) != len(gt_list):
            raise ValueError(f"recording_names: expected {len(gt_list)} names (one per recording), got {len(names)}")
        label = [f"recording '{n}' (index {i})" for i, n in enumerate(names)]

    keep = dict(min_box_diag_px=protocol.min_box_diag_px, min_box_side_px=protocol.min_box_side_px,
                skip_before_us=protocol.skip_before_us)
    tol = protocol.time_tolerance_us
    image_rec, image_t = [], []
    gt_parts, gt_img, gt_rows, dt_parts, dt_img, dt_rows = [], [], [], [], [], []
    n_gt_in, n_dt_in, n_gt_kept, n_dt_kept, n_dt_matched = [], [], [], [], []
    for r, (gt_in, dt_in) in enumerate(zip(gt_list, dt_list)):
        gt = check_box_array(gt_in, f"{label[r]}: ground truth", detections=False)
        dt = check_box_array(dt_in, f"{label[r]}: detections", detections=True)
        g_rows = np.flatnonzero(filter_boxes(gt, **keep))
        d_rows = np.flatnonzero(filter_boxes(dt, **keep))
        g_t, d_t = gt["t"][g_rows], dt["t"][d_rows]
        stamps = np.unique(g_t)
        first = int(sum(len(x) for x in image_t))  # index of this recording's first image
        image_rec.append(np.full(len(stamps), r, dtype=np.int64))
        image_t.append(stamps.astype(np.int64))
        # Ground truth: every kept box is in the image of its own timestamp (t sorted, so image order = row order).
        gt_parts.append(gt[g_rows])
        gt_img.append(first + np.searchsorted(stamps, g_t).astype(np.int64))
        gt_rows.append(g_rows.astype(np.int64))
        # Detections: the contiguous run of kept detections with stamp - tol <= t <= stamp + tol (both inclusive).
        lo = np.searchsorted(d_t, stamps - tol, side="left")
        hi = np.searchsorted(d_t, stamps + tol, side="right")
        sizes = (hi - lo).astype(np.int64)
        # positions lo[i], lo[i] + 1, ..., hi[i] - 1 of every image i, concatenated
        run_start = np.cumsum(sizes) - sizes
        picked = np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(lo - run_start, sizes)
        dt_parts.append(dt[d_rows[picked]])
        dt_img.append(first + np.repeat(np.arange(len(stamps), dtype=np.int64), sizes))
        dt_rows.append(d_rows[picked].astype(np.int64))
        n_gt_in.append(len(gt))
        n_dt_in.append(len(dt))
        n_gt_kept.append(len(g_rows))
        n_dt_kept.append(len(d_rows))
        n_dt_matched.append(len(np.unique(picked)))

    def cat(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return PropheseeImages(
        recording_names=names,
        image_recording=cat(image_rec, np.int64), image_t=cat(image_t, np.int64),
        gt=cat(gt_parts, _CANON_DTYPE), gt_image=cat(gt_img, np.int64), gt_row=cat(gt_rows, np.int64),
        dt=cat(dt_parts, _CANON_DTYPE), dt_image=cat(dt_img, np.int64), dt_row=cat(dt_rows, np.int64),
        num_gt_input=np.asarray(n_gt_in, np.int64), num_dt_input=np.asarray(n_dt_in, np.int64),
        num_gt_kept=np.asarray(n_gt_kept, np.int64), num_dt_kept=np.asarray(n_dt_kept, np.int64),
        num_dt_matched=np.asarray(n_dt_matched, np.int64),
    )


# ----------------------------------------------------------------------------------------------------------------
# COCO


def _coco_objects(images: PropheseeImages, protocol: PropheseeProtocol) -> tuple[COCO, COCO]:
    """Ground-truth ``COCO`` and detection ``COCO`` (via ``loadRes``) as RVT/eTraM ``_to_coco_format`` /
    ``_coco_eval`` build them; requires at least one detection."""
    coco_images = [{"id": i + 1, "height": protocol.height, "width": protocol.width, "file_name": "n.a"}
                   for i in range(images.num_images)]
    categories = [{"id": k + 1, "name": name, "supercategory": "none"}
                  for k, name in enumerate(protocol.class_names)]
    gt = images.gt
    # float32 scalars, as the reference passes the structured-array fields; the area is the float32 product.
    gx, gy, gw, gh = (list(gt[f]) for f in ("x", "y", "w", "h"))
    areas = (gt["w"] * gt["h"]).tolist()
    annotations = [
        {"area": area, "iscrowd": False, "image_id": image + 1, "bbox": [x, y, w, h], "category_id": cid + 1,
         "id": n + 1}
        for n, (x, y, w, h, area, image, cid) in enumerate(
            zip(gx, gy, gw, gh, areas, images.gt_image.tolist(), gt["class_id"].tolist()))
    ]
    dt = images.dt
    dx, dy, dw, dh = (list(dt[f]) for f in ("x", "y", "w", "h"))
    results = [
        {"image_id": image + 1, "category_id": cid + 1, "score": score, "bbox": [x, y, w, h]}
        for x, y, w, h, image, cid, score in zip(
            dx, dy, dw, dh, images.dt_image.tolist(), dt["class_id"].tolist(),
            dt["class_confidence"].astype(np.float64).tolist())
    ]
    coco_gt = COCO()
    coco_gt.dataset = {"info": {}, "licenses": [], "type": "instances", "images": coco_images,
                       "annotations": annotations, "categories": categories}
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(results)  # sets area = bbox w * h (float32), id, iscrowd 0
    return coco_gt, coco_dt


def _run_pass(coco_gt: COCO, coco_dt: COCO, num_images: int, num_classes: int, use_cats: int,
              backend: str = DEFAULT_BACKEND) -> COCOeval:
    """``evaluate``, ``accumulate``, ``summarize`` of one pass with the backend's COCOeval class (same interface)."""
    coco_eval = (COCOeval_faster if backend == "faster-coco-eval" else COCOeval)(coco_gt, coco_dt, "bbox")
    coco_eval.params.imgIds = list(range(1, num_images + 1))
    coco_eval.params.catIds = list(range(1, num_classes + 1))  # = sorted(coco_gt.getCatIds())
    coco_eval.params.useCats = use_cats
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def _summarize(coco_eval: COCOeval, category_index: int) -> list[float]:
    """The 12 ``COCOeval.stats`` of one category of a ``useCats = 1`` pass, computed from ``eval['precision']``
    / ``eval['recall']`` exactly as ``COCOeval.summarize`` does for a pass with ``catIds = [that category]``
    (pycocotools evaluates every category independently, so both give the same numbers)."""
    p = coco_eval.params
    stats = []
    for ap, iou, area, max_det in _STAT_SPECS:
        a = [i for i, lbl in enumerate(p.areaRngLbl) if lbl == area]
        m = [i for i, d in enumerate(p.maxDets) if d == max_det]
        s = coco_eval.eval["precision"] if ap else coco_eval.eval["recall"]
        if iou is not None:
            s = s[np.where(iou == p.iouThrs)[0]]
        s = s[:, :, [category_index]][..., a, m] if ap else s[:, [category_index]][..., a, m]
        valid = s[s > -1]
        stats.append(float(np.mean(valid)) if len(valid) else -1.0)
    return stats


def _named(stats: Sequence[float]) -> dict[str, float | None]:
    return {name: (None if value == -1 else float(value)) for name, value in zip(METRIC_NAMES, stats)}


def evaluate_images(images: PropheseeImages, protocol: PropheseeProtocol, backend: str = DEFAULT_BACKEND) -> dict:
    """COCO figures of built images: the class-agnostic and the class-aware pass (module docstring, rules 3-4).

    Source: RVT ``metrics/coco_eval.py`` ``_coco_eval`` (``useCats = 1``) and eTraM ``rvt_eTram/utils/evaluation/
    prophesee/metrics/coco_eval.py`` ``_coco_eval`` (per-category ``useCats = 1`` passes, then ``useCats = 0``).

    Args:
        images: from :func:`build_images` with the same ``protocol``.
        protocol: the settings (:func:`resolve_protocol`).
        backend: ``"faster-coco-eval"`` or ``"pycocotools"`` (:data:`BACKENDS`; figures equal to float64 rounding).

    Returns:
        The metrics dict described in :func:`evaluate_prophesee`.

    Raises:
        ValueError: an unknown ``backend`` (message names it and the choices).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    names = protocol.class_names
    k = len(names)
    gt_class = images.gt["class_id"]
    dt_class = images.dt["class_id"]
    per_class_gt = {name: int(np.sum(gt_class == c)) for c, name in enumerate(names)}
    no_detections = len(images.dt) == 0
    notes: list[str] = []
    if images.num_images == 0:
        notes.append("no ground-truth box is left after the filter: there is no image to evaluate")
    if no_detections:
        notes.append("no detection falls in any image: every figure is 0.0, as in the reference (COCO.loadRes "
                     "cannot take an empty result list, so RVT/eTraM return zeros without running COCO)")
    if int(np.sum(gt_class >= k)) or int(np.sum(dt_class >= k)):
        notes.append(f"{int(np.sum(gt_class >= k))} ground-truth and {int(np.sum(dt_class >= k))} detection "
                     f"entries have class_id >= {k} (no category) and are ignored by both passes, as in the reference")

    if no_detections:
        agnostic_stats = [0.0] * len(METRIC_NAMES)
        aware_stats = [0.0] * len(METRIC_NAMES)
        class_stats = [[0.0] * len(METRIC_NAMES) if per_class_gt[name] else [-1.0] * len(METRIC_NAMES)
                       for name in names]
    else:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and summaries
            coco_gt, coco_dt = _coco_objects(images, protocol)
            agnostic = _run_pass(coco_gt, coco_dt, images.num_images, k, use_cats=0, backend=backend)
            aware = _run_pass(coco_gt, coco_dt, images.num_images, k, use_cats=1, backend=backend)
        agnostic_stats = [float(v) for v in agnostic.stats]
        aware_stats = [float(v) for v in aware.stats]
        class_stats = [_summarize(aware, c) for c in range(k)]

    per_class = {}
    for c, name in enumerate(names):
        per_class[name] = {"class_id": c, "category_id": c + 1, "num_gt": per_class_gt[name],
                           "stats": class_stats[c], **_named(class_stats[c])}
    passes = {
        "class_agnostic": {"use_cats": 0, "category_ids": list(range(1, k + 1)), "stats": agnostic_stats,
                           **_named(agnostic_stats)},
        "class_aware": {"use_cats": 1, "category_ids": list(range(1, k + 1)), "stats": aware_stats,
                        **_named(aware_stats), "per_class": per_class},
    }
    headline = protocol.headline
    in_classes_gt = gt_class < k
    in_classes_dt = dt_class < k
    return {
        **{name: passes[headline][name] for name in METRIC_NAMES},
        "headline": headline,
        "headline_stats": list(passes[headline]["stats"]),
        **passes,
        "per_class_AP": {name: per_class[name]["AP"] for name in names},
        "per_class_AP_50": {name: per_class[name]["AP_50"] for name in names},
        "per_class_num_gt": per_class_gt,
        "num_recordings": len(images.recording_names),
        "num_images": images.num_images,
        "num_gt": int(np.sum(in_classes_gt)),
        "num_detections": int(np.sum(in_classes_dt)),
        "num_gt_all_classes": int(len(gt_class)),
        "num_detections_all_classes": int(len(dt_class)),
        "num_gt_input": int(images.num_gt_input.sum()),
        "num_detections_input": int(images.num_dt_input.sum()),
        "num_gt_filtered_out": int((images.num_gt_input - images.num_gt_kept).sum()),
        "num_detections_filtered_out": int((images.num_dt_input - images.num_dt_kept).sum()),
        "num_detections_outside_images": int((images.num_dt_kept - images.num_dt_matched).sum()),
        "no_detections": no_detections,
        "notes": notes,
        "backend": backend,
        "protocol": protocol.as_dict(),
    }


def evaluate_prophesee(
    gt_per_recording: Sequence[np.ndarray],
    detections_per_recording: Sequence[np.ndarray],
    *,
    protocol: str,
    class_names: Sequence[str],
    height: int,
    width: int,
    camera: str = "gen4",
    downsample_factor: int | None = None,
    min_box_diag_px: float | None = None,
    min_box_side_px: float | None = None,
    time_tolerance_us: int = DEFAULT_TIME_TOLERANCE_US,
    skip_before_us: int = DEFAULT_SKIP_BEFORE_US,
    recording_names: Sequence[str] | None = None,
    backend: str = DEFAULT_BACKEND,
) -> dict:
    """Prophesee-protocol COCO evaluation as eTraM (``protocol="etram"``) or RVT (``protocol="rvt"``) computes it.

    Runs :func:`resolve_protocol`, :func:`build_images` and :func:`evaluate_images`; use those directly to get the
    images (:class:`PropheseeImages`) as well. Rules and sources: module docstring (Perot et al., NeurIPS 2020,
    Sec. 5; RVT / eTraM ``utils/evaluation/prophesee``).

    Args:
        gt_per_recording: one ``(M_r,)`` Prophesee ground-truth box array per recording (fields ``t`` int us,
            sorted; ``x, y, w, h`` px of the evaluated frame, float32; ``class_id`` int >= 0).
        detections_per_recording: one ``(D_r,)`` detection array per recording, same order (also
            ``class_confidence``, the score; ``t`` sorted). RVT stamps detections with the label time; any ``t``
            within +-``time_tolerance_us`` of a ground-truth timestamp is matched.
        protocol: ``"etram"`` (headline: class-agnostic pass) or ``"rvt"`` (headline: class-aware pass).
        class_names: K category names; ``class_id`` k is category ``k + 1``; boxes with ``class_id >= K`` are
            ignored by both passes (they still define images).
        height: frame height (px), COCO metadata; also derives the thresholds when no factor is given.
        width: frame width (px).
        camera: ``"gen4"`` (also eTraM) or ``"gen1"``.
        downsample_factor: sensor px per box px (``2`` = RVT's 640x360 gen4 frame); ``None`` = derived from
            height x width (see :func:`resolve_protocol`).
        min_box_diag_px: explicit minimum diagonal in px of the boxes (with ``min_box_side_px``; overrides the
            camera default).
        min_box_side_px: explicit minimum side in px of the boxes.
        time_tolerance_us: matching half window, us (50 000).
        skip_before_us: boxes with ``t <= skip_before_us`` are dropped, us (500 000).
        recording_names: optional name per recording (error messages, output).
        backend: COCO backend, ``"faster-coco-eval"`` (default) or ``"pycocotools"`` (:data:`BACKENDS`).

    Returns:
        A dict (all plain Python types; JSON-ready):

        * ``"AP"``, ``"AP_50"``, ``"AP_75"``, ``"AP_S"``, ``"AP_M"``, ``"AP_L"``, ``"AR_1"``, ``"AR_10"``,
          ``"AR_100"``, ``"AR_S"``, ``"AR_M"``, ``"AR_L"``: the headline figures (fractions in [0, 1]; ``None`` =
          no ground truth in that range);
        * ``"headline"``: ``"class_agnostic"`` or ``"class_aware"``; ``"headline_stats"``: its 12 raw stats;
        * ``"class_agnostic"``: ``{"use_cats": 0, "category_ids": [1..K], "stats": [12 raw, -1 kept], <12 named>}``;
        * ``"class_aware"``: the same with ``"use_cats": 1`` and ``"per_class"``: ``{name: {"class_id",
          "category_id", "num_gt", "stats": [12 raw], <12 named>}}`` (the figures of a ``catIds = [k + 1]`` pass);
        * ``"per_class_AP"``, ``"per_class_AP_50"`` ({name: float | None}, class-aware pass) and
          ``"per_class_num_gt"`` ({name: int}, ground truth in images);
        * counts: ``"num_recordings"``, ``"num_images"``, ``"num_gt"`` / ``"num_detections"`` (entries in images
          with ``class_id < K``; a detection in two images counts twice), ``"num_gt_all_classes"``,
          ``"num_detections_all_classes"``, ``"num_gt_input"``, ``"num_detections_input"``,
          ``"num_gt_filtered_out"``, ``"num_detections_filtered_out"``, ``"num_detections_outside_images"``;
        * ``"no_detections"`` (bool: the reference's all-zero case), ``"notes"`` (list of str), ``"backend"``;
        * ``"protocol"``: :meth:`PropheseeProtocol.as_dict` (every setting, pycocotools version).

    Raises:
        ValueError: bad settings (:func:`resolve_protocol`) or box arrays (:func:`build_images`,
            :func:`check_box_array`); the message names the recording and the field; an unknown ``backend``.
    """
    settings = resolve_protocol(
        protocol, class_names=class_names, height=height, width=width, camera=camera,
        downsample_factor=downsample_factor, min_box_diag_px=min_box_diag_px, min_box_side_px=min_box_side_px,
        skip_before_us=skip_before_us, time_tolerance_us=time_tolerance_us,
    )
    images = build_images(gt_per_recording, detections_per_recording, settings, recording_names=recording_names)
    return evaluate_images(images, settings, backend=backend)


def figures_table_rows(metrics: Mapping) -> list[tuple[str, float | None, float | None]]:
    """``(name, class-agnostic, class-aware)`` per COCO figure of a result of :func:`evaluate_prophesee` (for
    printing)."""
    return [(name, metrics["class_agnostic"][name], metrics["class_aware"][name]) for name in METRIC_NAMES]
