"""Prophesee-protocol COCO evaluation of event-camera detections.

The protocol is the one of the Prophesee Gen1 / 1 Mpx automotive benchmarks (Perot et al., "Learning to Detect
Objects with a 1 Megapixel Event Camera", NeurIPS 2020, Sec. 5) that the RVT paper (Gehrig & Scaramuzza, CVPR 2023,
Sec. 4) reports its numbers with:

1. **Box filter**, applied to labels AND detections alike (Prophesee toolbox ``src/io/box_filtering.py``):
   a box is kept only if ``t > skip_before_us`` (default 500 000 µs = 0.5 s, measured from the recording's time
   origin ``t = 0``, not from its first event or label: the toolbox assumes every recording starts at 0), its
   diagonal ``sqrt(w² + h²) >= min_box_diag_px`` and both ``w >= min_box_side_px`` and ``h >= min_box_side_px``.
   The size thresholds are given in full-sensor pixels (Gen4 / 1 Mpx: 60 px and 20 px; Gen1: 30 px and 10 px) and
   divided by the ``downsample_factor`` of the representation (RVT evaluates Gen4 at 640x360 with 30 px / 10 px).
2. **Time matching**: every label timestamp of a recording (after filtering) is one COCO image; only detections
   whose ``t`` equals one of those timestamps exactly are evaluated, all others are ignored.
3. **COCO metrics**: ``pycocotools`` ``COCOeval`` with ``iouType="bbox"`` and its default parameters (IoU
   thresholds 0.50:0.05:0.95, max 1/10/100 detections per image, area ranges small < 32² px², medium 32²..96² px²,
   large > 96² px², where area = ``w * h`` in the evaluated pixel space). Category id = ``class_id + 1``.

Box arrays are Prophesee structured arrays (``evdet.data.labels.BBOX_DTYPE``); this module only needs the fields
``t`` (µs), ``x, y, w, h`` (px, top-left corner) and ``class_id``, plus ``class_confidence`` (score) for detections.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "CAMERA_MIN_BOX_SIZE_PX",
    "DEFAULT_SKIP_BEFORE_US",
    "DETECTION_FIELDS",
    "LABEL_FIELDS",
    "METRIC_NAMES",
    "check_box_array",
    "evaluate_detections",
    "filter_boxes",
]

LABEL_FIELDS: tuple[str, ...] = ("t", "x", "y", "w", "h", "class_id")
"""Structured-array fields a label box array must have."""

DETECTION_FIELDS: tuple[str, ...] = LABEL_FIELDS + ("class_confidence",)
"""Structured-array fields a detection box array must have (``class_confidence`` is the detection score)."""

CAMERA_MIN_BOX_SIZE_PX: dict[str, tuple[float, float]] = {"gen1": (30.0, 10.0), "gen4": (60.0, 20.0)}
"""``(min_box_diag_px, min_box_side_px)`` at full sensor resolution per camera (Perot et al. 2020, Sec. 5;
Prophesee toolbox ``filter_boxes``; RVT ``evaluate_list``). eTraM (Prophesee EVK4 HD, 1280x720) uses ``gen4``."""

DEFAULT_SKIP_BEFORE_US = 500_000
"""Boxes with ``t <= 0.5 s`` (µs) are not evaluated: too little event history (Perot et al. 2020, Sec. 5)."""

METRIC_NAMES: tuple[str, ...] = (
    "AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L", "AR_1", "AR_10", "AR_100", "AR_S", "AR_M", "AR_L",
)
"""Names of the 12 ``COCOeval.stats`` entries, in the order ``COCOeval.summarize`` computes them."""


def check_box_array(boxes: object, what: str, *, require_confidence: bool) -> np.ndarray:
    """Validate one Prophesee box array and return it.

    Args:
        boxes: ``(N,)`` structured array with at least :data:`LABEL_FIELDS` (and ``class_confidence`` when
            ``require_confidence``); ``t`` integer µs, ``x, y, w, h`` px, ``class_id`` non-negative integer.
        what: how to name the array in error messages (e.g. ``"labels[2]"`` or a file path).
        require_confidence: also require the ``class_confidence`` field (detections).

    Returns:
        ``boxes`` unchanged.

    Raises:
        ValueError: not a 1-D structured numpy array, a required field is missing, ``t`` or ``class_id`` is not an
            integer field, ``class_id`` is negative, or ``x, y, w, h`` / ``class_confidence`` hold NaN or inf.
    """
    fields = DETECTION_FIELDS if require_confidence else LABEL_FIELDS
    if not isinstance(boxes, np.ndarray) or boxes.dtype.names is None or boxes.ndim != 1:
        got = type(boxes).__name__
        if isinstance(boxes, np.ndarray):
            got += f" with dtype {boxes.dtype} and shape {boxes.shape}"
        raise ValueError(f"{what}: expected a 1-D structured numpy box array with fields {fields}, got {got}")
    missing = [f for f in fields if f not in boxes.dtype.names]
    if missing:
        raise ValueError(f"{what}: missing field(s) {missing}; expected fields {fields}, got {boxes.dtype.names}")
    for name in ("t", "class_id"):
        if not np.issubdtype(boxes.dtype[name], np.integer):
            raise ValueError(f"{what}: field '{name}' must be an integer dtype, got {boxes.dtype[name]}")
    if len(boxes) and np.any(boxes["class_id"] < 0):
        raise ValueError(f"{what}: field 'class_id' must be >= 0, got min {boxes['class_id'].min()}")
    for name in ("x", "y", "w", "h") + (("class_confidence",) if require_confidence else ()):
        if len(boxes) and not np.all(np.isfinite(boxes[name])):
            raise ValueError(f"{what}: field '{name}' holds NaN or inf values")
    return boxes


def filter_boxes(
    boxes: np.ndarray, *, min_box_diag_px: float, min_box_side_px: float, skip_before_us: int
) -> np.ndarray:
    """Keep the boxes the Prophesee protocol evaluates (Perot et al. 2020, Sec. 5; toolbox ``filter_boxes``).

    A box is kept iff ``t > skip_before_us`` and ``w² + h² >= min_box_diag_px²`` and ``w >= min_box_side_px`` and
    ``h >= min_box_side_px``. Thresholds are in the pixel space of ``boxes`` (already divided by any downsampling).

    Args:
        boxes: ``(N,)`` structured box array with fields ``t`` (int µs), ``w``, ``h`` (px).
        min_box_diag_px: minimum diagonal (px).
        min_box_side_px: minimum width and minimum height (px).
        skip_before_us: boxes with ``t <= skip_before_us`` (µs from the recording's time origin) are dropped.

    Returns:
        ``(M,)`` the kept boxes, same dtype, original order.
    """
    w = boxes["w"].astype(np.float64)
    h = boxes["h"].astype(np.float64)
    keep = (
        (boxes["t"] > skip_before_us)
        & (w * w + h * h >= float(min_box_diag_px) ** 2)
        & (w >= min_box_side_px)
        & (h >= min_box_side_px)
    )
    return boxes[keep]


def _metric_or_none(value: float) -> float | None:
    """COCOeval's ``-1`` sentinel ("no ground truth in this setting") becomes ``None``; other values a float."""
    return None if value < 0 else float(value)


def evaluate_detections(
    labels: Sequence[np.ndarray],
    detections: Sequence[np.ndarray],
    *,
    width: int,
    height: int,
    class_names: Sequence[str],
    downsample_factor: int = 1,
    min_box_diag_px: float | None = None,
    min_box_side_px: float | None = None,
    skip_before_us: int = DEFAULT_SKIP_BEFORE_US,
    camera: str = "gen4",
    recording_names: Sequence[str] | None = None,
) -> dict:
    """Evaluate detections against labels with the Prophesee protocol and COCO metrics (see module docstring).

    Args:
        labels: one ``(M_i,)`` structured box array per recording (fields :data:`LABEL_FIELDS`; ``t`` µs, boxes in
            px of the evaluated image, e.g. the 640x360 representation).
        detections: one ``(D_i,)`` structured box array per recording, same order as ``labels`` (fields
            :data:`DETECTION_FIELDS`; ``class_confidence`` is the score). Detections whose ``t`` is not a label
            timestamp of the same recording are ignored.
        width: image width (px) of the evaluated pixel space, > 0.
        height: image height (px), > 0.
        class_names: name of each ``class_id`` (index = ``class_id``); every label and detection ``class_id`` must
            be ``< len(class_names)``.
        downsample_factor: factor by which the evaluated pixel space is smaller than the sensor (1 = full
            resolution, 2 = RVT's 640x360 for Gen4); divides both size thresholds.
        min_box_diag_px: minimum box diagonal at full sensor resolution (px); ``None`` = the camera's default
            (:data:`CAMERA_MIN_BOX_SIZE_PX`, 60 px for ``gen4``).
        min_box_side_px: minimum box width and height at full sensor resolution (px); ``None`` = the camera's
            default (20 px for ``gen4``).
        skip_before_us: labels and detections with ``t <= skip_before_us`` (µs from the recording's time origin
            ``t = 0``) are dropped.
        camera: ``"gen4"`` (1 Mpx, also eTraM) or ``"gen1"``; chooses the default size thresholds.
        recording_names: optional name per recording, used in error messages instead of the list index.

    Returns:
        dict with the 12 COCO summary metrics of :data:`METRIC_NAMES` (``"AP"`` = AP@[.50:.95], ``"AP_50"``,
        ``"AP_75"``, ``"AP_S"``, ``"AP_M"``, ``"AP_L"``, ``"AR_1"``, ``"AR_10"``, ``"AR_100"``, ``"AR_S"``,
        ``"AR_M"``, ``"AR_L"``; floats in [0, 1]), ``"per_class_AP"`` ({class name: AP@[.50:.95]}),
        ``"per_class_num_labels"`` ({class name: evaluated label count}), ``"num_labels"``, ``"num_detections"``
        (evaluated, i.e. after filtering and time matching), ``"num_images"`` (evaluated (recording, label
        timestamp) pairs), ``"num_recordings"`` and ``"protocol"`` (the effective thresholds). A metric that is
        undefined because no evaluated label falls in its setting (e.g. ``AP_S`` without small labels, or the
        per-class AP of a class without labels) is ``None`` (JSON ``null``), never ``-1`` or NaN. No detections
        at all gives 0.0 for every defined metric.

    Raises:
        ValueError: ``labels`` and ``detections`` differ in length or are empty; a box array is malformed (see
            :func:`check_box_array`); a ``class_id`` is ``>= len(class_names)``; ``width``, ``height`` or
            ``downsample_factor`` is not a positive integer; ``camera`` is unknown; no labels are given at all, or
            none is left after filtering.
    """
    if len(labels) != len(detections):
        raise ValueError(
            f"labels/detections: expected one detection array per label array, got {len(labels)} label arrays "
            f"and {len(detections)} detection arrays"
        )
    if recording_names is not None and len(recording_names) != len(labels):
        raise ValueError(
            f"recording_names: expected {len(labels)} names (one per recording), got {len(recording_names)}"
        )
    for name, value in (("width", width), ("height", height), ("downsample_factor", downsample_factor)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if camera not in CAMERA_MIN_BOX_SIZE_PX:
        raise ValueError(f"camera: expected one of {sorted(CAMERA_MIN_BOX_SIZE_PX)}, got {camera!r}")
    class_names = [str(c) for c in class_names]
    if not class_names:
        raise ValueError("class_names: expected at least one class name, got none")

    default_diag, default_side = CAMERA_MIN_BOX_SIZE_PX[camera]
    diag_px = (default_diag if min_box_diag_px is None else float(min_box_diag_px)) / downsample_factor
    side_px = (default_side if min_box_side_px is None else float(min_box_side_px)) / downsample_factor

    def recording(i: int) -> str:
        return f"recording '{recording_names[i]}'" if recording_names is not None else f"recording {i}"

    total_labels_in = 0
    images: list[dict] = []
    gt_annotations: list[dict] = []
    dt_annotations: list[dict] = []
    for i, (lab, det) in enumerate(zip(labels, detections)):
        check_box_array(lab, f"labels of {recording(i)}", require_confidence=False)
        check_box_array(det, f"detections of {recording(i)}", require_confidence=True)
        for what, arr in (("labels", lab), ("detections", det)):
            if len(arr) and int(arr["class_id"].max()) >= len(class_names):
                raise ValueError(
                    f"{what} of {recording(i)}: field 'class_id' must be < {len(class_names)} (number of "
                    f"class_names), got {int(arr['class_id'].max())}"
                )
        total_labels_in += len(lab)
        lab = filter_boxes(lab, min_box_diag_px=diag_px, min_box_side_px=side_px, skip_before_us=skip_before_us)
        det = filter_boxes(det, min_box_diag_px=diag_px, min_box_side_px=side_px, skip_before_us=skip_before_us)

        timestamps = np.unique(lab["t"])
        first_image_id = len(images) + 1  # COCO image ids start at 1
        for ts in timestamps:
            images.append({"id": len(images) + 1, "width": int(width), "height": int(height),
                           "file_name": f"{recording(i)} t={int(ts)}us"})
        lab_image = first_image_id + np.searchsorted(timestamps, lab["t"])
        det_index = np.searchsorted(timestamps, det["t"])
        matched = det_index < len(timestamps)
        matched[matched] = timestamps[det_index[matched]] == det["t"][matched]
        det = det[matched]
        det_image = first_image_id + det_index[matched]

        gt_annotations += _annotations(lab, lab_image, first_id=len(gt_annotations) + 1, with_score=False)
        dt_annotations += _annotations(det, det_image, first_id=len(dt_annotations) + 1, with_score=True)

    if total_labels_in == 0:
        raise ValueError(
            f"labels: no label boxes in any of the {len(labels)} recordings; COCO AP is undefined without labels"
        )
    if not gt_annotations:
        raise ValueError(
            f"labels: all {total_labels_in} label boxes were dropped by the Prophesee filter (t <= "
            f"{skip_before_us} us, diagonal < {diag_px:g} px or side < {side_px:g} px); nothing left to evaluate"
        )

    categories = [{"id": k + 1, "name": name, "supercategory": "none"} for k, name in enumerate(class_names)]
    coco_eval = _run_cocoeval(images, categories, gt_annotations, dt_annotations)

    precision = coco_eval.eval["precision"]  # (T iou, R recall, K class, A area, M maxDets)
    per_class_ap: dict[str, float | None] = {}
    per_class_num_labels: dict[str, int] = {}
    gt_class = np.array([a["category_id"] for a in gt_annotations])
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]  # area "all", maxDets 100
        per_class_ap[name] = float(np.mean(p[p > -1])) if np.any(p > -1) else None
        per_class_num_labels[name] = int(np.sum(gt_class == k + 1))

    result: dict = {name: _metric_or_none(v) for name, v in zip(METRIC_NAMES, coco_eval.stats)}
    result.update(
        per_class_AP=per_class_ap,
        per_class_num_labels=per_class_num_labels,
        num_labels=len(gt_annotations),
        num_detections=len(dt_annotations),
        num_images=len(images),
        num_recordings=len(labels),
        protocol={
            "camera": camera,
            "downsample_factor": int(downsample_factor),
            "min_box_diag_px": diag_px,
            "min_box_side_px": side_px,
            "skip_before_us": int(skip_before_us),
            "time_matching": "exact label timestamp",
            "width": int(width),
            "height": int(height),
        },
    )
    return result


def _annotations(boxes: np.ndarray, image_ids: np.ndarray, *, first_id: int, with_score: bool) -> list[dict]:
    """COCO annotation dicts for ``(N,)`` boxes: bbox ``[x, y, w, h]`` (px), area ``w * h`` (px²), category
    ``class_id + 1``, ids ``first_id, first_id + 1, ...``; ``score`` = ``class_confidence`` when ``with_score``."""
    columns = [boxes[f].astype(np.float64).tolist() for f in ("x", "y", "w", "h")]
    class_ids = boxes["class_id"].astype(np.int64).tolist()
    scores = boxes["class_confidence"].astype(np.float64).tolist() if with_score else [None] * len(boxes)
    annotations = []
    for n, (x, y, w, h, class_id, image_id, score) in enumerate(
        zip(*columns, class_ids, image_ids.tolist(), scores)
    ):
        ann = {"id": first_id + n, "image_id": int(image_id), "category_id": class_id + 1,
               "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
        if with_score:
            ann["score"] = score
        annotations.append(ann)
    return annotations


def _run_cocoeval(images: list[dict], categories: list[dict], gt: list[dict], dt: list[dict]) -> COCOeval:
    """Run ``COCOeval(iouType="bbox")`` evaluate/accumulate/summarize with pycocotools' prints swallowed.

    The detection ``COCO`` object is built directly (not with ``COCO.loadRes``, which fails on an empty result
    list), so zero detections yield AP 0.0.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "categories": categories, "annotations": gt}
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": images, "categories": categories, "annotations": dt}
        coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.params.imgIds = [img["id"] for img in images]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval
