"""Post-processing of decoded YOLOX predictions: confidence threshold and class-aware NMS.

Source: YOLOX reference implementation ``postprocess`` (Ge et al., arXiv 2107.08430), as used by RVT: each anchor
keeps its best class, score = objectness x class probability, anchors with score < ``conf_threshold`` are
dropped, then non-maximum suppression runs per class (``torchvision.ops.batched_nms``).
Defaults 0.001 / 0.65 are YOLOX's evaluation settings (and RVT's).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert


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
        conf_threshold: keep anchors with ``obj * max class prob >= conf_threshold``.
        nms_threshold: IoU above which a lower-scored box of the same class is suppressed.
        max_detections: keep at most this many highest-scored detections per image (None: no cap).

    Returns:
        B float32 tensors ``(n, 6)``, rows ``[x1, y1, x2, y2, score, class_id]`` in input px, sorted by
        decreasing score; ``(0, 6)`` when nothing passes.

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
        class_prob, class_id = image[:, 5:].max(dim=1)
        score = image[:, 4] * class_prob
        keep = score >= conf_threshold
        boxes = box_convert(image[keep, :4], "cxcywh", "xyxy")
        score, class_id = score[keep], class_id[keep]
        kept = batched_nms(boxes, score, class_id, nms_threshold)  # sorted by decreasing score
        if max_detections is not None:
            kept = kept[:max_detections]
        detections.append(torch.cat((boxes[kept], score[kept, None], class_id[kept, None].float()), dim=1))
    return detections
