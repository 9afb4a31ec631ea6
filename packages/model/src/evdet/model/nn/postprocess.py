"""Post-processing of decoded YOLOX predictions: confidence threshold and class-aware NMS.

Source: YOLOX reference implementation ``postprocess`` (Ge et al., arXiv 2107.08430), as RVT calls it
(``models/detection/yolox/utils/boxes.py``, ``class_agnostic=False``): each anchor keeps its best class
(``class_conf``, ``class_id`` = argmax of the class probabilities), anchors with
``obj_conf * class_conf < conf_threshold`` are dropped, then non-maximum suppression runs per class
(``torchvision.ops.batched_nms``) on the score ``obj_conf * class_conf``. Like the reference, the output keeps
``obj_conf`` and ``class_conf`` as separate columns: RVT's evaluation ranks detections by ``class_conf`` alone
(:data:`DETECTION_COLUMNS`, :func:`detection_score`). Defaults 0.001 / 0.65 are YOLOX's evaluation settings;
RVT's forward check uses 0.1 / 0.45.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert

__all__ = ["DETECTION_COLUMNS", "SCORE_KINDS", "detection_score", "postprocess"]

DETECTION_COLUMNS = ("x1", "y1", "x2", "y2", "obj_conf", "class_conf", "class_id")
"""Columns of one detection row (px of the model input, probabilities, class id as float)."""

SCORE_KINDS = ("class_conf", "obj_x_class")
"""What a detection's score (Prophesee ``class_confidence``) is: the class probability alone (RVT's evaluation,
``to_prophesee``) or objectness x class probability (YOLOX's ranking)."""


def detection_score(detections: Tensor, kind: str = "class_conf") -> Tensor:
    """The score of each detection row.

    Args:
        detections: float ``(n, 7)`` rows in :data:`DETECTION_COLUMNS` order.
        kind: one of :data:`SCORE_KINDS`.

    Returns:
        float ``(n,)``.

    Raises:
        ValueError: ``detections`` is not ``(n, 7)`` or ``kind`` is unknown.
    """
    if detections.dim() != 2 or detections.shape[1] != len(DETECTION_COLUMNS):
        raise ValueError(f"detections: expected shape (n, {len(DETECTION_COLUMNS)}) {DETECTION_COLUMNS}, "
                         f"got {tuple(detections.shape)}")
    if kind == "class_conf":
        return detections[:, 5]
    if kind == "obj_x_class":
        return detections[:, 4] * detections[:, 5]
    raise ValueError(f"score: expected one of {list(SCORE_KINDS)}, got {kind!r}")


def postprocess(
    decoded: Tensor,
    conf_threshold: float = 0.001,
    nms_threshold: float = 0.65,
    max_detections: int | None = None,
) -> list[Tensor]:
    """Turn decoded predictions into per-image detections.

    Args:
        decoded: float ``(B, A, 5 + C)`` from ``YOLOXHead.decode``: ``[cx, cy, w, h]`` in input px, objectness
            probability, C class probabilities.
        conf_threshold: keep anchors with ``obj_conf * class_conf >= conf_threshold``.
        nms_threshold: IoU above which a lower-scored box of the same class is suppressed.
        max_detections: keep at most this many highest-scored detections per image (None: no cap).

    Returns:
        B float32 tensors ``(n, 7)``, rows ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]``
        (:data:`DETECTION_COLUMNS`) in input px, sorted by decreasing ``obj_conf * class_conf`` (the order
        ``batched_nms`` returns); ``(0, 7)`` when nothing passes.

    Raises:
        ValueError: ``decoded`` not ``(B, A, 5 + C)`` with C >= 1, a threshold outside [0, 1], or
            ``max_detections < 0``.
    """
    if decoded.dim() != 3 or decoded.shape[2] < 6:
        raise ValueError(f"decoded: expected shape (B, A, 5 + C) with C >= 1, got {tuple(decoded.shape)}")
    if not 0.0 <= conf_threshold <= 1.0:
        raise ValueError(f"conf_threshold: expected a value in [0, 1], got {conf_threshold!r}")
    if not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"nms_threshold: expected a value in [0, 1], got {nms_threshold!r}")
    if max_detections is not None and max_detections < 0:
        raise ValueError(f"max_detections: expected None or >= 0, got {max_detections!r}")
    detections = []
    for image in decoded.float():
        class_conf, class_id = image[:, 5:].max(dim=1)
        obj_conf = image[:, 4]
        score = obj_conf * class_conf
        keep = score >= conf_threshold
        boxes = box_convert(image[keep, :4], "cxcywh", "xyxy")
        kept = batched_nms(boxes, score[keep], class_id[keep], nms_threshold)  # sorted by decreasing score
        if max_detections is not None:
            kept = kept[:max_detections]
        detections.append(torch.cat((boxes[kept], obj_conf[keep][kept, None], class_conf[keep][kept, None],
                                     class_id[keep][kept, None].float()), dim=1))
    return detections
