"""Box geometry in numpy: clipping boxes to a frame and their pairwise IoU (the one implementation of each).

Boxes are axis-aligned, top-left corner ``(x, y)`` and size ``(w, h)`` in px, as in the Prophesee box arrays
(:data:`evdet.data.labels.BBOX_DTYPE`) and the ``[class_id, x, y, w, h]`` rows of the loader.

Users: the preprocessing's box filter and the reference loader's clamp (:mod:`evdet.data.label_selection`, bounds
``W - 1`` and ``H - 1`` as RVT's ``clamp_to_frame_``), ``evdet-detect`` (detections clipped to the sensor,
bounds ``W`` and ``H``) and the confusion matrix of ``evdet-eval`` (:mod:`evdet.eval.confusion`). The torch
losses keep their own IoU (:mod:`evdet.model.loss.simota`): it reproduces YOLOX's centre-size formula, which
rounds differently.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clip_boxes", "clip_xywh", "iou_matrix"]


def clip_xywh(x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray, right: float, bottom: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clip boxes to the frame ``[0, right] x [0, bottom]``: corners clamped, then sizes recomputed.

    ``x0 = clip(x, 0, right)``, ``x1 = clip(x + w, 0, right)``, ``w' = x1 - x0`` (same for y), in float32 when the
    inputs are float32 (RVT ``data/genx_utils/labels.py`` ``clamp_to_frame_`` and eTraM's crop filter, which use
    ``right = W - 1``). A box outside the frame gets ``w' = 0`` or ``h' = 0``; nothing is removed here.

    Args:
        x, y, w, h: ``(M,)`` float arrays, px (top-left corner and size).
        right, bottom: the largest x and y a corner may have (px), e.g. ``W - 1`` and ``H - 1``.

    Returns:
        ``(x0, y0, w', h')``: four new ``(M,)`` arrays of the inputs' dtype.
    """
    lo = x.dtype.type(0)
    right, bottom = x.dtype.type(right), y.dtype.type(bottom)
    x0 = np.clip(x, lo, right)
    y0 = np.clip(y, lo, bottom)
    x1 = np.clip(x + w, lo, right)
    y1 = np.clip(y + h, lo, bottom)
    return x0, y0, x1 - x0, y1 - y0


def clip_boxes(boxes: np.ndarray, right: float, bottom: float) -> np.ndarray:
    """A copy of a box array with every box clipped to ``[0, right] x [0, bottom]`` (:func:`clip_xywh`).

    Args:
        boxes: ``(M,)`` structured array with float fields ``x``, ``y``, ``w``, ``h`` (px), e.g.
            :data:`~evdet.data.labels.BBOX_DTYPE`; other fields are copied unchanged.
        right, bottom: the largest corner coordinates (px).

    Returns:
        ``(M,)`` array of the same dtype, row order kept; boxes left without area have ``w`` or ``h`` 0 (the
        caller removes them: ``out[(out["w"] > 0) & (out["h"] > 0)]``).
    """
    out = boxes.copy()
    out["x"], out["y"], out["w"], out["h"] = clip_xywh(boxes["x"], boxes["y"], boxes["w"], boxes["h"], right,
                                                       bottom)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b``.

    ``IoU = inter / union`` with ``inter = max(0, min(x1) - max(x0)) * max(0, min(y1) - max(y0))`` and
    ``union = area_a + area_b - inter`` in float64; 0 where the union is not positive (two empty boxes).

    Args:
        a: ``(A,)`` structured array with fields ``x``, ``y``, ``w``, ``h`` (px, top-left corner), e.g.
            :data:`~evdet.data.labels.BBOX_DTYPE`.
        b: ``(B,)`` the same.

    Returns:
        ``(A, B)`` float64 IoU in ``[0, 1]``.
    """
    ax1, ay1 = a["x"].astype(np.float64)[:, None], a["y"].astype(np.float64)[:, None]
    ax2, ay2 = ax1 + a["w"][:, None], ay1 + a["h"][:, None]
    bx1, by1 = b["x"].astype(np.float64)[None, :], b["y"].astype(np.float64)[None, :]
    bx2, by2 = bx1 + b["w"][None, :], by1 + b["h"][None, :]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
