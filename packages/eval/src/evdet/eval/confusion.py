"""Class confusion matrix of detections against ground truth, on the same images as the Prophesee-protocol AP.

COCO AP says how well each class is detected, not which classes are mistaken for which. The confusion matrix
answers that on exactly the images COCO AP is computed on (:func:`evdet.eval.prophesee.build_images`: the
Prophesee box filter on ground truth and detections, one image per remaining ground-truth timestamp, detections
within +-50 ms inclusive; RVT/eTraM ``utils/evaluation/prophesee``): in every image, detections with score
``>= score_threshold`` are matched greedily (highest score first, ties in input order) to the unmatched ground-truth
box with the highest IoU ``>= iou_threshold``, whatever the classes; a match counts in ``[true class, predicted
class]``, an unmatched detection in ``[background, predicted]`` (a false positive) and an unmatched ground-truth box
in ``[true class, background]`` (a miss). Like the AP passes, boxes with ``class_id >= num_classes`` are ignored,
and a detection that falls in two images (+-50 ms) is counted in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evdet.data.boxes import iou_matrix
from evdet.eval.prophesee import DEFAULT_TIME_TOLERANCE_US, PropheseeImages, PropheseeProtocol, build_images

__all__ = ["confusion_matrix", "confusion_matrix_from_images", "format_confusion_csv"]


def confusion_matrix_from_images(
    images: PropheseeImages, *, num_classes: int, iou_threshold: float = 0.5, score_threshold: float = 0.3
) -> np.ndarray:
    """Counts ``(C + 1, C + 1)`` int64 over the images of an AP evaluation (module docstring for the rules).

    Args:
        images: from :func:`evdet.eval.prophesee.build_images` (the images AP was computed on).
        num_classes: C >= 1; rows/columns ``0..C-1`` are ``class_id``, index ``C`` is background. Boxes with
            ``class_id >= C`` are ignored.
        iou_threshold: minimum IoU of a match (COCO's AP_50 criterion by default).
        score_threshold: detections with ``class_confidence`` below this are ignored.

    Returns:
        ``(C + 1, C + 1)`` int64, rows true class, columns predicted class.

    Raises:
        ValueError: ``num_classes`` is not a positive integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    c = int(num_classes)
    matrix = np.zeros((c + 1, c + 1), dtype=np.int64)
    gt_keep = images.gt["class_id"] < c
    dt_keep = (images.dt["class_id"] < c) & (images.dt["class_confidence"] >= score_threshold)
    gt_all, gt_image = images.gt[gt_keep], images.gt_image[gt_keep]
    dt_all, dt_image = images.dt[dt_keep], images.dt_image[dt_keep]
    gt_bounds = np.searchsorted(gt_image, np.arange(images.num_images + 1))
    dt_bounds = np.searchsorted(dt_image, np.arange(images.num_images + 1))
    for i in range(images.num_images):
        gt = gt_all[gt_bounds[i]:gt_bounds[i + 1]]
        dt = dt_all[dt_bounds[i]:dt_bounds[i + 1]]
        dt = dt[np.argsort(-dt["class_confidence"], kind="stable")]
        matched = np.zeros(len(gt), dtype=bool)
        iou = iou_matrix(dt, gt) if len(dt) and len(gt) else np.zeros((len(dt), len(gt)))
        for d in range(len(dt)):
            candidates = np.where(~matched & (iou[d] >= iou_threshold), iou[d], -1.0)
            g = int(np.argmax(candidates)) if len(gt) else -1
            if g >= 0 and candidates[g] >= 0:
                matched[g] = True
                matrix[int(gt["class_id"][g]), int(dt["class_id"][d])] += 1
            else:
                matrix[c, int(dt["class_id"][d])] += 1
        for g in np.flatnonzero(~matched):
            matrix[int(gt["class_id"][g]), c] += 1
    return matrix


def confusion_matrix(
    labels: Sequence[np.ndarray],
    detections: Sequence[np.ndarray],
    *,
    num_classes: int,
    min_box_diag_px: float,
    min_box_side_px: float,
    skip_before_us: int,
    time_tolerance_us: int = DEFAULT_TIME_TOLERANCE_US,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
    recording_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Counts ``(C + 1, C + 1)`` int64 from box arrays: builds the AP images, then
    :func:`confusion_matrix_from_images`.

    Args:
        labels: one ``(M_r,)`` Prophesee ground-truth array per recording (``t`` us sorted, px).
        detections: one ``(D_r,)`` detection array per recording, same order (``class_confidence`` = score).
        num_classes: C; boxes with ``class_id >= C`` are ignored.
        min_box_diag_px: minimum diagonal in px of the boxes (already divided by any downsampling).
        min_box_side_px: minimum side in px of the boxes.
        skip_before_us: boxes with ``t <= skip_before_us`` (us) are dropped.
        time_tolerance_us: detections within +-this many us (inclusive) of a ground-truth timestamp count in its
            image (50 000 us, as the AP).
        iou_threshold: minimum IoU of a match.
        score_threshold: detections below this score are ignored.
        recording_names: optional names for error messages.

    Raises:
        ValueError: the sequences differ in length or a box array is malformed or unsorted
            (:func:`evdet.eval.prophesee.check_box_array`; names the recording and field), or ``num_classes`` is
            not a positive integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes <= 0:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    settings = PropheseeProtocol(
        name="rvt", camera="gen4", class_names=tuple(str(k) for k in range(int(num_classes))), height=1, width=1,
        min_box_diag_px=min_box_diag_px, min_box_side_px=min_box_side_px, thresholds_source="explicit",
        downsample_factor=None, skip_before_us=int(skip_before_us), time_tolerance_us=int(time_tolerance_us),
    )
    images = build_images(labels, detections, settings, recording_names=recording_names)
    return confusion_matrix_from_images(
        images, num_classes=num_classes, iou_threshold=iou_threshold, score_threshold=score_threshold
    )


def format_confusion_csv(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """CSV text: header ``true\\predicted,<classes...>,background``, one row per true class, then background.

    Args:
        matrix: ``(C + 1, C + 1)`` counts from :func:`confusion_matrix`.
        class_names: the C class names.

    Raises:
        ValueError: the matrix shape does not fit ``len(class_names) + 1``.
    """
    names = [*class_names, "background"]
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not fit {len(class_names)} classes + background")
    lines = ["true\\predicted," + ",".join(names)]
    lines += [f"{names[i]}," + ",".join(str(int(v)) for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines) + "\n"
