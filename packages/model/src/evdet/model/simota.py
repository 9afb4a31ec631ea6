"""SimOTA dynamic-k label assignment for one image, as RVT trains its YOLOX head.

SimOTA (YOLOX, Ge et al., arXiv 2107.08430, Sec. 2.2 "SimOTA") treats assignment as optimal transport approximated
by a per-ground-truth top-k: each ground-truth (gt) box takes the ``k`` anchors of lowest cost, with ``k`` estimated
from the IoUs of its best-overlapping predictions; anchors claimed by several gts go to the gt of lowest cost.

The rule here is the one of RVT's YOLOX head (github.com/uzh-rpg/RVT @ b80f568,
``models/detection/yolox/models/yolo_head.py``: ``get_geometry_constraint``, ``get_assignments``,
``simota_matching``; YOLOX v0.1 instead took anchors inside the gt box or within 2.5 strides of its centre):

* an anchor point is the centre of its grid cell, ``((gx + 0.5) * stride, (gy + 0.5) * stride)`` px;
* geometry constraint: anchor a is *near* gt g when its point lies STRICTLY within ``CENTER_RADIUS`` = 1.5 of its
  own strides of the gt centre on both axes (``|x_a - cx_g| < 1.5 s_a`` and ``|y_a - cy_g| < 1.5 s_a``; no test
  whether the point lies inside the gt box);
* candidates are the anchors near at least one gt; only they can become positive, and every cost below is computed
  for (gt, candidate) pairs only;
* cost of assigning candidate a to gt g::

      c_ga = sum_c BCE(sqrt(sigmoid(cls_ac) * sigmoid(obj_a)), onehot(class_g)_c)
             + IOU_COST_WEIGHT * (-log(IoU(gt_g, pred_a) + IOU_COST_EPS))
             + NON_CENTER_PENALTY * [a not near g]

  with BCE computed by ``torch.nn.functional.binary_cross_entropy`` (logs floored at -100) and the IoU as YOLOX's
  ``bboxes_iou(xyxy=False)`` (RVT ``models/detection/yolox/utils/boxes.py``);
* dynamic k of gt g = ``max(1, int(sum of its top-min(CANDIDATE_TOPK, candidates) IoUs))``;
* gt g takes its ``k_g`` lowest-cost candidates (one ``torch.topk(largest=False)`` per gt, as the reference; this
  also decides which of several equal-cost candidates is taken); an anchor taken by several gts is given to the
  gt of lowest cost over ALL gts (``argmin`` over the cost column, even if that gt did not select it).

All arithmetic follows the reference's float32 operations in the same order, so that on the same inputs and device
the costs, and through them the assignments, agree bit for bit, including pairs exactly on the 1.5-stride boundary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CANDIDATE_TOPK",
    "CENTER_RADIUS",
    "IOU_COST_EPS",
    "IOU_COST_WEIGHT",
    "NON_CENTER_PENALTY",
    "SimOTAAssignment",
    "classification_cost",
    "empty_assignment",
    "geometry_constraint",
    "pairwise_iou",
    "simota_assign",
]

CENTER_RADIUS = 1.5
"""Half-size of the square around a gt centre, in strides of the anchor's level, within which anchors are candidates
(RVT ``yolo_head.py`` ``get_geometry_constraint``: ``center_radius = 1.5``)."""
IOU_COST_WEIGHT = 3.0
"""Weight lambda of the ``-log IoU`` cost (YOLOX Sec. 2.2, Eq. 1; RVT ``get_assignments``: ``3.0 *``)."""
IOU_COST_EPS = 1e-8
"""Added to the IoU inside the log of the IoU cost (RVT ``get_assignments``: ``-torch.log(ious + 1e-8)``)."""
CANDIDATE_TOPK = 10
"""Number of largest IoUs summed to estimate dynamic k (YOLOX Sec. 2.2 "top-10"; RVT ``simota_matching``)."""
NON_CENTER_PENALTY = 1.0e6
"""Cost added to a (gt, candidate) pair whose anchor is not within ``CENTER_RADIUS`` strides of that gt's centre
(RVT ``get_assignments``: ``float(1e6) * (~geometry_relation)``)."""


class SimOTAAssignment(NamedTuple):
    """Result of :func:`simota_assign` for one image with A anchors and G gts.

    Attributes:
        fg_mask: bool ``(A,)``, True for positive (foreground) anchors.
        matched_gt_index: int64 ``(num_fg,)``, index into the gts of each positive anchor, in anchor order.
        matched_iou: float32 ``(num_fg,)``, IoU between each positive anchor's predicted box and its gt.
        matched_class: int64 ``(num_fg,)``, class id of each positive anchor's gt.
        num_fg: number of positive anchors (python int).
    """

    fg_mask: Tensor
    matched_gt_index: Tensor
    matched_iou: Tensor
    matched_class: Tensor
    num_fg: int


def empty_assignment(num_anchors: int, device: torch.device | str = "cpu") -> SimOTAAssignment:
    """An assignment with no positives: ``fg_mask`` all False ``(A,)``, empty ``(0,)`` tensors, ``num_fg = 0``."""
    return SimOTAAssignment(
        fg_mask=torch.zeros(num_anchors, dtype=torch.bool, device=device),
        matched_gt_index=torch.zeros(0, dtype=torch.long, device=device),
        matched_iou=torch.zeros(0, dtype=torch.float32, device=device),
        matched_class=torch.zeros(0, dtype=torch.long, device=device),
        num_fg=0,
    )


def geometry_constraint(
    anchor_centers: Tensor, anchor_strides: Tensor, gt_centers: Tensor, center_radius: float = CENTER_RADIUS
) -> tuple[Tensor, Tensor]:
    """Which anchors lie strictly within ``center_radius`` strides of each gt centre (both axes).

    Computed as the reference does (RVT ``get_geometry_constraint``), in the dtype of the inputs:
    ``x_a - (cx_g - r s_a) > 0``, ``(cx_g + r s_a) - x_a > 0`` and the same for y.

    Args:
        anchor_centers: float ``(A, 2)`` anchor points ``(x, y)`` px, ``(grid + 0.5) * stride``.
        anchor_strides: float ``(A,)`` stride of each anchor's level, px.
        gt_centers: float ``(G, 2)`` gt box centres ``(cx, cy)`` px.
        center_radius: half-size of the square in strides (:data:`CENTER_RADIUS`).

    Returns:
        ``(candidate, near)``: bool ``(A,)`` anchors near at least one gt, and bool ``(G, A)`` per pair.
    """
    ax = anchor_centers[:, 0].unsqueeze(0)  # (1, A)
    ay = anchor_centers[:, 1].unsqueeze(0)
    dist = anchor_strides.unsqueeze(0) * center_radius  # (1, A) px
    cx = gt_centers[:, 0:1]  # (G, 1)
    cy = gt_centers[:, 1:2]
    near = (
        ((ax - (cx - dist)) > 0.0)
        & (((cx + dist) - ax) > 0.0)
        & ((ay - (cy - dist)) > 0.0)
        & (((cy + dist) - ay) > 0.0)
    )
    return near.any(dim=0), near


def pairwise_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every box of ``boxes_a`` with every box of ``boxes_b``, as YOLOX's ``bboxes_iou(xyxy=False)``.

    Corners are ``centre -/+ size / 2``, the intersection is counted only where both axes overlap strictly
    (``top_left < bottom_right``), areas are ``w * h``, and ``IoU = inter / (area_a + area_b - inter)`` (no epsilon:
    boxes must have positive areas).

    Args:
        boxes_a: float ``(G, 4)`` ``[cx, cy, w, h]`` px.
        boxes_b: float ``(N, 4)`` ``[cx, cy, w, h]`` px.

    Returns:
        float ``(G, N)`` IoU in ``[0, 1]`` (NaN only for two zero-area boxes).
    """
    top_left = torch.max(boxes_a[:, None, :2] - boxes_a[:, None, 2:] / 2, boxes_b[:, :2] - boxes_b[:, 2:] / 2)
    bottom_right = torch.min(boxes_a[:, None, :2] + boxes_a[:, None, 2:] / 2, boxes_b[:, :2] + boxes_b[:, 2:] / 2)
    area_a = torch.prod(boxes_a[:, 2:], 1)
    area_b = torch.prod(boxes_b[:, 2:], 1)
    overlaps = (top_left < bottom_right).to(top_left.dtype).prod(dim=2)
    inter = torch.prod(bottom_right - top_left, 2) * overlaps
    return inter / (area_a[:, None] + area_b - inter)


def classification_cost(cls_logits: Tensor, obj_logits: Tensor, gt_classes: Tensor) -> Tensor:
    """Pairwise class cost: BCE of ``p = sqrt(sigmoid(cls) * sigmoid(obj))`` against each gt's one-hot, summed.

    Computed as the reference does (RVT ``get_assignments``): ``torch.nn.functional.binary_cross_entropy`` (logs
    floored at -100) on the ``(G, A, C)`` pairs, summed over C, in float32 with autocast disabled (the function is
    not autocast-safe). torch's BCE kernel evaluates its logs differently from ``torch.log`` (results differ in the
    last bit), so calling it is what makes the costs, and through them the choice among near-equal candidates, equal
    the reference's bit for bit.

    Args:
        cls_logits: float ``(A, C)`` class logits.
        obj_logits: float ``(A,)`` objectness logits.
        gt_classes: int64 ``(G,)`` class ids in ``[0, C)``.

    Returns:
        float32 ``(G, A)`` cost (nats).
    """
    num_anchors, num_classes = cls_logits.shape
    num_gt = gt_classes.shape[0]
    with torch.autocast(device_type=cls_logits.device.type, enabled=False):
        prob = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid().unsqueeze(1)).sqrt()  # (A, C)
        onehot = F.one_hot(gt_classes.long(), num_classes).float()  # (G, C)
        terms = F.binary_cross_entropy(
            prob.unsqueeze(0).expand(num_gt, num_anchors, num_classes),
            onehot.unsqueeze(1).expand(num_gt, num_anchors, num_classes),
            reduction="none",
        )
    return terms.sum(-1)


@torch.no_grad()
def simota_assign(
    anchor_centers: Tensor,
    anchor_strides: Tensor,
    pred_boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    center_radius: float = CENTER_RADIUS,
    iou_weight: float = IOU_COST_WEIGHT,
    candidate_topk: int = CANDIDATE_TOPK,
) -> SimOTAAssignment:
    """Assign anchors of one image to its gt boxes with SimOTA (RVT's rule, see the module docstring).

    Args:
        anchor_centers: float ``(A, 2)`` anchor points ``(x, y)`` px, ``(grid + 0.5) * stride``.
        anchor_strides: float ``(A,)`` stride per anchor, px.
        pred_boxes: float ``(A, 4)`` decoded predicted boxes ``[cx, cy, w, h]`` px.
        cls_logits: float ``(A, C)`` class logits (before sigmoid).
        obj_logits: float ``(A,)`` objectness logits (before sigmoid).
        gt_boxes: float ``(G, 4)`` gt boxes ``[cx, cy, w, h]`` px (w, h > 0); G may be 0.
        gt_classes: int ``(G,)`` gt class ids in ``[0, C)``.
        center_radius: candidate half-size in strides (:data:`CENTER_RADIUS`, 1.5).
        iou_weight: weight of the ``-log IoU`` cost (:data:`IOU_COST_WEIGHT`, 3.0).
        candidate_topk: number of IoUs summed for dynamic k (:data:`CANDIDATE_TOPK`, 10).

    Returns:
        :class:`SimOTAAssignment`; no positives when G = 0 or no anchor is a candidate. Computed in float32.

    Raises:
        ValueError: inconsistent shapes (names the argument), or a class id outside ``[0, C)``.
    """
    num_anchors = anchor_centers.shape[0]
    _check_shapes(anchor_centers, anchor_strides, pred_boxes, cls_logits, obj_logits, gt_boxes, gt_classes)
    device = anchor_centers.device
    if gt_boxes.shape[0] == 0:
        return empty_assignment(num_anchors, device)
    gt_boxes = gt_boxes.float()
    gt_classes = gt_classes.long()

    candidate, near = geometry_constraint(
        anchor_centers.float(), anchor_strides.float(), gt_boxes[:, :2], center_radius
    )
    cand_idx = candidate.nonzero().squeeze(1)  # (Ac,) ascending anchor index
    num_cand = cand_idx.numel()
    if num_cand == 0:
        return empty_assignment(num_anchors, device)
    near = near[:, cand_idx]  # (G, Ac)

    ious = pairwise_iou(gt_boxes, pred_boxes[cand_idx].float())  # (G, Ac)
    cost = (
        classification_cost(cls_logits[cand_idx], obj_logits[cand_idx], gt_classes)
        + iou_weight * -torch.log(ious + IOU_COST_EPS)
        + NON_CENTER_PENALTY * (~near)
    )

    # Dynamic k per gt, then each gt's k lowest-cost candidates (one topk per gt, as the reference: the choice
    # among equal costs is topk's and can depend on k).
    topk_ious, _ = torch.topk(ious, min(candidate_topk, num_cand), dim=1)
    dynamic_k = torch.clamp(topk_ious.sum(1).int(), min=1).tolist()
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g, k in enumerate(dynamic_k):
        _, chosen = torch.topk(cost[g], k=k, largest=False)
        matching[g, chosen] = True

    # Anchors claimed by several gts go to the gt of lowest cost over all gts.
    claims = matching.sum(0)
    multiple = claims > 1
    if bool(multiple.any()):
        _, best_gt = torch.min(cost[:, multiple], dim=0)
        matching[:, multiple] = False
        matching[best_gt, multiple.nonzero().squeeze(1)] = True

    fg_cand = claims > 0  # (Ac,)
    fg_cols = fg_cand.nonzero().squeeze(1)
    matched_gt = matching[:, fg_cand].to(torch.uint8).argmax(0)
    fg_mask = torch.zeros(num_anchors, dtype=torch.bool, device=device)
    fg_mask[cand_idx[fg_cols]] = True
    return SimOTAAssignment(
        fg_mask=fg_mask,
        matched_gt_index=matched_gt.long(),
        matched_iou=ious[matched_gt, fg_cols].float(),
        matched_class=gt_classes[matched_gt],
        num_fg=int(fg_cols.numel()),
    )


def _check_shapes(
    anchor_centers: Tensor,
    anchor_strides: Tensor,
    pred_boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
) -> None:
    """Raise ValueError naming the first argument of :func:`simota_assign` with an inconsistent shape or class id."""
    a = anchor_centers.shape[0]
    expected = {
        "anchor_centers": (anchor_centers, (a, 2)),
        "anchor_strides": (anchor_strides, (a,)),
        "pred_boxes": (pred_boxes, (a, 4)),
        "obj_logits": (obj_logits, (a,)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"simota_assign {name}: expected shape {shape}, got {tuple(tensor.shape)}")
    if cls_logits.dim() != 2 or cls_logits.shape[0] != a:
        raise ValueError(f"simota_assign cls_logits: expected shape ({a}, C), got {tuple(cls_logits.shape)}")
    g = gt_boxes.shape[0] if gt_boxes.dim() == 2 else -1
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"simota_assign gt_boxes: expected shape (G, 4), got {tuple(gt_boxes.shape)}")
    if tuple(gt_classes.shape) != (g,):
        raise ValueError(f"simota_assign gt_classes: expected shape ({g},), got {tuple(gt_classes.shape)}")
    num_classes = cls_logits.shape[1]
    if g > 0 and (gt_classes.min() < 0 or gt_classes.max() >= num_classes):
        raise ValueError(
            f"simota_assign gt_classes: expected class ids in [0, {num_classes}), got "
            f"min {int(gt_classes.min())}, max {int(gt_classes.max())}"
        )
