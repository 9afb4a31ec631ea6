"""Class confusion matrix of detections against labels, at label timestamps (Prophesee protocol filtering).

COCO AP says how well each class is detected, not which classes are mistaken for which. The confusion matrix
answers that: at every label timestamp of every recording, detections above a score threshold are matched
greedily (highest score first) to the unmatched label with the highest IoU >= ``iou_threshold``, whatever the
classes; a match counts in ``[true class, predicted class]``, an unmatched detection in ``[background, predicted]``
(a false positive) and an unmatched label in ``[true class, background]`` (a miss). Boxes are filtered exactly as
for AP (:func:`evdet.eval.coco.filter_boxes`), so both views describe the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evdet.eval.coco import filter_boxes

__all__ = ["confusion_matrix", "format_confusion_csv"]


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``(len(a), len(b))`` of boxes with fields x, y, w, h (px, top-left)."""
    ax1, ay1 = a["x"].astype(np.float64)[:, None], a["y"].astype(np.float64)[:, None]
    ax2, ay2 = ax1 + a["w"][:, None], ay1 + a["h"][:, None]
    bx1, by1 = b["x"].astype(np.float64)[None, :], b["y"].astype(np.float64)[None, :]
    bx2, by2 = bx1 + b["w"][None, :], by1 + b["h"][None, :]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def confusion_matrix(
    labels: Sequence[np.ndarray],
    detections: Sequence[np.ndarray],
    *,
    num_classes: int,
    min_box_diag_px: float,
    min_box_side_px: float,
    skip_before_us: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """Counts ``(C + 1, C + 1)`` int64: rows true class, columns predicted class; index ``C`` is background.

    Args:
        labels, detections: one Prophesee box array per recording (same order); detections need
            ``class_confidence``.
        num_classes: C.
        min_box_diag_px, min_box_side_px, skip_before_us: the protocol filter in the boxes' pixel space
            (already divided by the downsample factor; the ``protocol`` entry of the AP metrics).
        iou_threshold: minimum IoU of a match (COCO's AP50 criterion by default).
        score_threshold: detections below this score are ignored.

    Raises:
        ValueError: the two sequences differ in length, or a class id is >= ``num_classes`` (names the recording
            index and the id).
    """
    if len(labels) != len(detections):
        raise ValueError(f"confusion_matrix: {len(labels)} label arrays but {len(detections)} detection arrays")
    c = int(num_classes)
    matrix = np.zeros((c + 1, c + 1), dtype=np.int64)
    protocol = dict(min_box_diag_px=min_box_diag_px, min_box_side_px=min_box_side_px, skip_before_us=skip_before_us)
    for index, (gt_all, dt_all) in enumerate(zip(labels, detections)):
        gt_all = filter_boxes(gt_all, **protocol)
        dt_all = filter_boxes(dt_all[dt_all["class_confidence"] >= score_threshold], **protocol)
        for name, arr in (("label", gt_all), ("detection", dt_all)):
            if len(arr) and int(arr["class_id"].max()) >= c:
                raise ValueError(f"recording {index}: {name} class id {int(arr['class_id'].max())} >= {c} classes")
        for t in np.unique(gt_all["t"]):
            gt = gt_all[gt_all["t"] == t]
            dt = dt_all[dt_all["t"] == t]
            dt = dt[np.argsort(-dt["class_confidence"], kind="stable")]
            matched = np.zeros(len(gt), dtype=bool)
            iou = _iou_matrix(dt, gt) if len(dt) and len(gt) else np.zeros((len(dt), len(gt)))
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


def format_confusion_csv(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    """CSV text: header ``true\\predicted,<classes...>,background``, one row per true class, then background."""
    names = [*class_names, "background"]
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not fit {len(class_names)} classes + background")
    lines = ["true\\predicted," + ",".join(names)]
    lines += [f"{names[i]}," + ",".join(str(int(v)) for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines) + "\n"
