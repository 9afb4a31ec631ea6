"""SimOTA dynamic-k label assignment for one image (YOLOX, Ge et al., arXiv 2107.08430, Sec. 2.2).

SimOTA treats assignment as optimal transport approximated by a per-ground-truth top-k: each ground-truth (gt)
box takes the ``k`` anchors of lowest cost, with ``k`` estimated from the IoUs of its best-overlapping
predictions; anchors claimed by several gts go to the gt of lowest cost.

Geometry prior (YOLOX reference implementation v0.1, also used by RVT):

* an anchor point is the centre of a grid cell, ``((gx + 0.5) * stride, (gy + 0.5) * stride)`` px;
* anchor a is *in the box* of gt g when its centre lies strictly inside the box, and *in the centre region* when
  ``|cx_a - cx_g| < r * stride_a`` and ``|cy_a - cy_g| < r * stride_a`` with ``r = center_radius = 2.5``;
* candidate anchors are those in the box OR in the centre region of at least one gt; only they can be positive;
* a (gt, anchor) pair whose anchor is not in BOTH the box and the centre region of that gt costs an extra
  ``NON_CENTER_PENALTY`` (1e5), so such pairs are only used when a gt has too few pairs that satisfy both.

Cost of assigning anchor a to gt g (Sec. 2.2, Eq. 1 with lambda = 3):
``c_ga = BCE(sqrt(sigmoid(cls_a) * sigmoid(obj_a)), one_hot(class_g)) summed over classes
+ 3.0 * (-log(IoU(gt_g, pred_a) + 1e-8)) + NON_CENTER_PENALTY * [a not in box and centre region of g]``.
Dynamic k of gt g = ``max(1, int(sum of its top-10 IoUs over candidates))``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

CENTER_RADIUS = 2.5
"""Centre-region radius in units of the anchor's stride (YOLOX reference implementation v0.1)."""
IOU_COST_WEIGHT = 3.0
"""Weight lambda of the IoU cost (YOLOX Sec. 2.2)."""
CANDIDATE_TOPK = 10
"""Number of top IoUs summed to estimate dynamic k (YOLOX Sec. 2.2: "top-10")."""
NON_CENTER_PENALTY = 1.0e5
"""Cost added to pairs outside the box-and-centre prior (YOLOX reference implementation)."""
_LOG_CLAMP = -100.0  # same floor as torch.nn.functional.binary_cross_entropy


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


def geometry_prior(
    anchor_centers: Tensor, anchor_strides: Tensor, gt_boxes: Tensor, center_radius: float = CENTER_RADIUS
) -> tuple[Tensor, Tensor]:
    """Centre-sampling prior of SimOTA.

    Args:
        anchor_centers: float ``(A, 2)`` anchor points ``(x, y)`` in px (cell centres).
        anchor_strides: float ``(A,)`` stride of each anchor's level in px.
        gt_boxes: float ``(G, 4)`` gt boxes ``[cx, cy, w, h]`` in px.
        center_radius: half-size of the centre region in strides.

    Returns:
        ``(candidate (A,) bool, in_box_and_center (G, A) bool)``: anchors in the box or centre region of any gt,
        and per pair whether the anchor is both inside the gt box and in its centre region.
    """
    ax = anchor_centers[:, 0].unsqueeze(0)  # (1, A)
    ay = anchor_centers[:, 1].unsqueeze(0)
    cx, cy, w, h = (gt_boxes[:, i].unsqueeze(1) for i in range(4))  # (G, 1)
    in_box = (ax > cx - 0.5 * w) & (ax < cx + 0.5 * w) & (ay > cy - 0.5 * h) & (ay < cy + 0.5 * h)
    radius = center_radius * anchor_strides.unsqueeze(0)  # (1, A)
    in_center = ((ax - cx).abs() < radius) & ((ay - cy).abs() < radius)
    candidate = (in_box | in_center).any(dim=0)
    return candidate, in_box & in_center


def classification_cost(cls_logits: Tensor, obj_logits: Tensor, gt_classes: Tensor) -> Tensor:
    """Pairwise class cost: BCE of ``sqrt(sigmoid(cls) * sigmoid(obj))`` against each gt's one-hot, summed.

    Computed without materialising ``(G, A, C)``:
    ``-log p_k + log(1 - p_k) - sum_c log(1 - p_c)`` with ``k`` the gt class and logs floored at -100.

    Args:
        cls_logits: float ``(A, C)`` class logits.
        obj_logits: float ``(A,)`` objectness logits.
        gt_classes: int64 ``(G,)`` class ids in ``[0, C)``.

    Returns:
        float32 ``(G, A)`` cost.
    """
    prob = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid().unsqueeze(1)).sqrt()  # (A, C)
    log_p = prob.log().clamp(min=_LOG_CLAMP)
    log_not_p = (1.0 - prob).log().clamp(min=_LOG_CLAMP)
    negative_all = -log_not_p.sum(dim=1)  # (A,)
    pos = log_p[:, gt_classes].T  # (G, A)
    neg = log_not_p[:, gt_classes].T
    return negative_all.unsqueeze(0) - pos + neg


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
    """Assign anchors of one image to its gt boxes with SimOTA (see the module docstring for the rule).

    Args:
        anchor_centers: float ``(A, 2)`` anchor points ``(x, y)`` px, ``(grid + 0.5) * stride``.
        anchor_strides: float ``(A,)`` stride per anchor, px.
        pred_boxes: float ``(A, 4)`` decoded predicted boxes ``[cx, cy, w, h]`` px.
        cls_logits: float ``(A, C)`` class logits (before sigmoid).
        obj_logits: float ``(A,)`` objectness logits (before sigmoid).
        gt_boxes: float ``(G, 4)`` gt boxes ``[cx, cy, w, h]`` px; G may be 0.
        gt_classes: int ``(G,)`` gt class ids in ``[0, C)``.
        center_radius: centre-region radius in strides (2.5).
        iou_weight: weight of the ``-log IoU`` cost (3.0).
        candidate_topk: number of IoUs summed for dynamic k (10).

    Returns:
        :class:`SimOTAAssignment`; no positives when G = 0 or no anchor is a candidate.

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

    candidate, in_both = geometry_prior(anchor_centers.float(), anchor_strides.float(), gt_boxes, center_radius)
    cand_idx = candidate.nonzero().squeeze(1)
    num_cand = cand_idx.numel()
    if num_cand == 0:
        return empty_assignment(num_anchors, device)

    ious = box_iou(
        box_convert(gt_boxes, "cxcywh", "xyxy"), box_convert(pred_boxes[cand_idx].float(), "cxcywh", "xyxy")
    ).nan_to_num(0.0)  # (G, Ac)
    cost = (
        classification_cost(cls_logits[cand_idx], obj_logits[cand_idx], gt_classes)
        + iou_weight * -torch.log(ious + 1e-8)
        + NON_CENTER_PENALTY * (~in_both[:, cand_idx]).float()
    )

    # dynamic k per gt, then the k lowest-cost candidates of each gt.
    topk_ious = ious.topk(min(candidate_topk, num_cand), dim=1).values
    dynamic_k = topk_ious.sum(dim=1).int().clamp(min=1)  # (G,), <= min(topk, Ac)
    order = cost.argsort(dim=1)  # (G, Ac)
    ranks = torch.arange(num_cand, device=device).unsqueeze(0)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    matching.scatter_(1, order, ranks < dynamic_k.unsqueeze(1))

    # anchors claimed by several gts keep only the gt of minimal cost (over all gts, as YOLOX).
    multiple = matching.sum(dim=0) > 1
    if multiple.any():
        best_gt = cost[:, multiple].argmin(dim=0)
        matching[:, multiple] = False
        matching[best_gt, multiple.nonzero().squeeze(1)] = True

    fg_cand = matching.any(dim=0)  # (Ac,)
    matched_gt = matching[:, fg_cand].int().argmax(dim=0)
    matched_iou = ious[matched_gt, fg_cand.nonzero().squeeze(1)]
    fg_mask = torch.zeros(num_anchors, dtype=torch.bool, device=device)
    fg_mask[cand_idx[fg_cand]] = True
    return SimOTAAssignment(
        fg_mask=fg_mask,
        matched_gt_index=matched_gt.long(),
        matched_iou=matched_iou.float(),
        matched_class=gt_classes[matched_gt],
        num_fg=int(fg_cand.sum()),
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
