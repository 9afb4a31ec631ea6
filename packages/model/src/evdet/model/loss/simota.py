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

Two implementations of the same rule:

* :func:`simota_assign_batch` (used in training): all N frames of a batch (L x B labelled windows) at once on padded
  gt tensors with a validity mask: costs for every (frame, gt, anchor) triple, non-candidates and padding set to
  ``+inf``, dynamic k from one batched top-k, the k lowest costs from one batched top-k of the largest possible k
  (:data:`CANDIDATE_TOPK`), no Python loop over frames or gts and no host synchronisation (no ``.item()``,
  ``.nonzero()``, ``.tolist()``);
* :func:`simota_assign` (one image, the reference's own structure: candidates gathered with ``nonzero``, one top-k
  per gt): the oracle the batched version is tested against on the reference fixtures and on random frame sets.

Both give the same positives, matched gts, classes and IoUs; the costs agree to the last bit except where torch's
vectorised and scalar ``log`` round differently (1 ulp), which changes an assignment only if two candidates' costs
are within 1 ulp of each other.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BatchAssignment",
    "CANDIDATE_TOPK",
    "CENTER_RADIUS",
    "IOU_COST_EPS",
    "IOU_COST_WEIGHT",
    "NON_CENTER_PENALTY",
    "SimOTAAssignment",
    "classification_cost",
    "cxcywh_iou",
    "empty_assignment",
    "geometry_constraint",
    "pairwise_iou",
    "simota_assign",
    "simota_assign_batch",
    "candidate_budget",
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
        gt_centers: float ``(..., G, 2)`` gt box centres ``(cx, cy)`` px (leading dims, e.g. frames, broadcast).
        center_radius: half-size of the square in strides (:data:`CENTER_RADIUS`).

    Returns:
        ``(candidate, near)``: bool ``(..., A)`` anchors near at least one gt, and bool ``(..., G, A)`` per pair.
    """
    ax = anchor_centers[:, 0]  # (A,), broadcast against (..., G, 1)
    ay = anchor_centers[:, 1]
    dist = anchor_strides * center_radius  # (A,) px
    cx = gt_centers[..., 0:1]  # (..., G, 1)
    cy = gt_centers[..., 1:2]
    near = (
        ((ax - (cx - dist)) > 0.0)
        & (((cx + dist) - ax) > 0.0)
        & ((ay - (cy - dist)) > 0.0)
        & (((cy + dist) - ay) > 0.0)
    )
    return near.any(dim=-2), near


def cxcywh_iou(boxes_a: Tensor, boxes_b: Tensor, eps: float = 0.0) -> Tensor:
    """IoU of centre-size boxes, broadcast over the leading dims: the one torch IoU of the losses.

    YOLOX's formula (RVT ``models/detection/yolox/utils/boxes.py`` ``bboxes_iou(xyxy=False)`` and
    ``models/detection/yolox/models/losses.py`` ``IOUloss``): corners are ``centre -/+ size / 2``; the intersection
    ``prod(bottom_right - top_left)`` is masked to 0 unless ``top_left < bottom_right`` on both axes (so no gradient
    flows through non-overlapping pairs); areas are ``w * h``; ``IoU = inter / (area_a + area_b - inter + eps)``
    (``eps`` added only when non-zero). ``torchvision.ops.box_iou`` is not used: it takes corner boxes, so its areas
    ``(x2 - x1) * (y2 - y1)`` round differently from ``w * h`` (measured on random boxes in a 640x360 frame: 2.8 %
    of the IoUs differ, by up to 2e-6), which moves the SimOTA costs ``-log(IoU + eps)`` and the truncated dynamic k
    that the reference fixtures pin down bit for bit; it also takes only ``(N, 4)`` x ``(M, 4)``, not the batched
    ``(N, G, 4)`` x ``(N, K, 4)``.

    Args:
        boxes_a: float ``(..., 4)`` ``[cx, cy, w, h]`` px.
        boxes_b: float ``(..., 4)`` ``[cx, cy, w, h]`` px, broadcastable against ``boxes_a``.
        eps: added to the union, px² (0: none, boxes must have positive areas).

    Returns:
        float ``(...)`` IoU in ``[0, 1]`` of the broadcast pairs; differentiable (NaN only for two zero-area boxes
        with ``eps`` 0).
    """
    top_left = torch.max(boxes_a[..., :2] - boxes_a[..., 2:] / 2, boxes_b[..., :2] - boxes_b[..., 2:] / 2)
    bottom_right = torch.min(boxes_a[..., :2] + boxes_a[..., 2:] / 2, boxes_b[..., :2] + boxes_b[..., 2:] / 2)
    area_a = torch.prod(boxes_a[..., 2:], -1)
    area_b = torch.prod(boxes_b[..., 2:], -1)
    overlaps = (top_left < bottom_right).to(top_left.dtype).prod(dim=-1)
    inter = torch.prod(bottom_right - top_left, -1) * overlaps
    union = area_a + area_b - inter
    if eps:
        union = union + eps
    return inter / union


def pairwise_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every box of ``boxes_a`` with every box of ``boxes_b``, as YOLOX's ``bboxes_iou(xyxy=False)``.

    :func:`cxcywh_iou` without epsilon over the pairs ``(g, n)``: the intersection is counted only where both axes
    overlap strictly, ``IoU = inter / (area_a + area_b - inter)`` (boxes must have positive areas).

    Args:
        boxes_a: float ``(..., G, 4)`` ``[cx, cy, w, h]`` px.
        boxes_b: float ``(..., N, 4)`` ``[cx, cy, w, h]`` px (same leading dims as ``boxes_a``, or broadcastable).

    Returns:
        float ``(..., G, N)`` IoU in ``[0, 1]`` (NaN only for two zero-area boxes).
    """
    return cxcywh_iou(boxes_a.unsqueeze(-2), boxes_b.unsqueeze(-3))


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


class BatchAssignment(NamedTuple):
    """Result of :func:`simota_assign_batch` for N frames with A anchors each (padded to G gts per frame).

    Attributes:
        fg_mask: bool ``(N, A)``, True for positive (foreground) anchors.
        matched_gt_index: int64 ``(N, A)``, index into the frame's gts of each positive anchor (0 elsewhere).
        matched_iou: float32 ``(N, A)``, IoU between each positive anchor's predicted box and its gt (0 elsewhere).
        matched_class: int64 ``(N, A)``, class id of each positive anchor's gt (0 elsewhere).
        num_fg: int64 0-dim tensor on the inputs' device, positives over all frames (not synchronised to the host).
    """

    fg_mask: Tensor
    matched_gt_index: Tensor
    matched_iou: Tensor
    matched_class: Tensor
    num_fg: Tensor

    def frame(self, index: int) -> SimOTAAssignment:
        """The assignment of frame ``index`` in the per-image form of :func:`simota_assign` (synchronises; for tests
        and inspection, not for the training step)."""
        fg = self.fg_mask[index]
        return SimOTAAssignment(
            fg_mask=fg,
            matched_gt_index=self.matched_gt_index[index][fg],
            matched_iou=self.matched_iou[index][fg],
            matched_class=self.matched_class[index][fg],
            num_fg=int(fg.sum()),
        )


def class_cost_table(cls_logits: Tensor, obj_logits: Tensor) -> Tensor:
    """Class cost of every anchor for every possible gt class, as :func:`classification_cost` computes it per pair.

    ``table[n, a, k] = sum_c BCE(p_nac, [c == k])`` with ``p = sqrt(sigmoid(cls) * sigmoid(obj))``: the C terms of
    each sum are the same float32 values as in :func:`classification_cost` (``F.binary_cross_entropy`` of the same
    probabilities against 0 and against 1) and are summed over a contiguous last dimension of size C, as there, so
    ``table[n, a, class_g]`` equals the per-pair cost bit for bit. Memory: ``N * A * C * C`` floats (the pairwise
    form needs ``N * G * A * C``, which is larger as soon as G > C).

    Args:
        cls_logits: float ``(N, A, C)`` class logits.
        obj_logits: float ``(N, A)`` objectness logits.

    Returns:
        float32 ``(N, A, C)``: cost (nats) of assigning anchor a of frame n to a gt of class k.
    """
    num_classes = cls_logits.shape[-1]
    with torch.autocast(device_type=cls_logits.device.type, enabled=False):
        prob = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid().unsqueeze(-1)).sqrt()  # (N, A, C)
        if_negative = F.binary_cross_entropy(prob, torch.zeros_like(prob), reduction="none")
        if_positive = F.binary_cross_entropy(prob, torch.ones_like(prob), reduction="none")
        is_class = torch.eye(num_classes, dtype=torch.bool, device=prob.device)  # (K, C): c == k
        terms = torch.where(is_class, if_positive.unsqueeze(2), if_negative.unsqueeze(2))  # (N, A, K, C)
    return terms.sum(-1)


def candidate_budget(num_gt: int, num_levels: int, center_radius: float = CENTER_RADIUS) -> int:
    """Most candidates one frame with ``num_gt`` gts can have: ``num_gt * num_levels * (ceil(2 r) + 1)**2``.

    An anchor is near a gt when its point lies strictly within ``r`` strides of the centre on both axes, so per
    level and axis at most ``ceil(2 r)`` anchor points (spaced one stride apart) are near; one more per axis covers a
    boundary comparison that float rounding decides the other way. A host-side bound from shapes only, so compacting
    the candidates into it needs no device synchronisation.
    """
    per_axis = math.ceil(2.0 * center_radius) + 1
    return int(num_gt) * int(num_levels) * per_axis * per_axis


@torch.no_grad()
def simota_assign_batch(
    anchor_centers: Tensor,
    anchor_strides: Tensor,
    pred_boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    gt_valid: Tensor,
    center_radius: float = CENTER_RADIUS,
    iou_weight: float = IOU_COST_WEIGHT,
    candidate_topk: int = CANDIDATE_TOPK,
    num_levels: int | None = None,
) -> BatchAssignment:
    """SimOTA (RVT's rule, module docstring) for N frames at once, without host synchronisation.

    Per frame the result equals :func:`simota_assign` on that frame's valid gts (tested on the reference fixtures
    and on random frame sets). How the per-frame steps map onto batched tensors:

    * candidates: anchors near at least one VALID gt of the frame. With ``num_levels``, each frame's candidates are
      gathered, in ascending anchor order like the reference's ``nonzero``, into the first ``K`` slots of a
      ``(N, K)`` index (a stable sort of the non-candidate flag; ``K`` = :func:`candidate_budget`, at most A), so
      that the costs below are computed for ``N x G x K`` pairs instead of ``N x G x A``; slots past a frame's
      candidates are marked unusable;
    * costs of unusable slots and of padded gts are ``+inf``, their IoUs count as 0 for dynamic k;
    * dynamic k: ``max(1, int(sum of the top-min(candidate_topk, K) IoUs))`` (the extra IoUs of frames with fewer
      candidates are zeros, which do not change the sum); 0 for padded gts;
    * selection: one ``topk(min(candidate_topk, K), largest=False)`` of each gt's costs, of which the first k are
      kept (k <= candidate_topk because every IoU is <= 1, and k <= the number of candidates for the same reason);
    * anchors claimed by several gts go to the gt of lowest cost (``torch.min`` over the gt dimension, as the
      reference); results are scattered back to all A anchors.

    Args:
        anchor_centers: float ``(A, 2)`` anchor points ``(x, y)`` px, ``(grid + 0.5) * stride``.
        anchor_strides: float ``(A,)`` stride per anchor, px.
        pred_boxes: float ``(N, A, 4)`` decoded predicted boxes ``[cx, cy, w, h]`` px.
        cls_logits: float ``(N, A, C)`` class logits.
        obj_logits: float ``(N, A)`` objectness logits.
        gt_boxes: float ``(N, G, 4)`` gt boxes ``[cx, cy, w, h]`` px (w, h > 0 where valid; anything finite where
            padded); G may be 0.
        gt_classes: int ``(N, G)`` class ids in ``[0, C)`` where valid (any id in range where padded).
        gt_valid: bool ``(N, G)``, False for padding.
        center_radius: candidate half-size in strides (:data:`CENTER_RADIUS`, 1.5).
        iou_weight: weight of the ``-log IoU`` cost (:data:`IOU_COST_WEIGHT`, 3.0).
        candidate_topk: number of IoUs summed for dynamic k, and the largest k (:data:`CANDIDATE_TOPK`, 10).
        num_levels: number of anchor levels (strides) in A, for the candidate compaction; None computes over all A
            anchors (same result, more work).

    Returns:
        :class:`BatchAssignment` (float32 IoUs).

    Raises:
        ValueError: inconsistent shapes (names the argument). Class ids are not range-checked here (that would
            synchronise); :class:`evdet.model.loss.yolox_loss.YOLOXLoss` checks them on the host before.
    """
    num_frames, num_anchors = pred_boxes.shape[:2]
    _check_batch_shapes(anchor_centers, anchor_strides, pred_boxes, cls_logits, obj_logits, gt_boxes, gt_classes,
                        gt_valid)
    device = pred_boxes.device
    num_gt = gt_boxes.shape[1]
    num_classes = cls_logits.shape[2]
    if num_gt == 0 or num_anchors == 0:
        zeros = torch.zeros(num_frames, num_anchors, device=device)
        return BatchAssignment(zeros.bool(), zeros.long(), zeros, zeros.long(), torch.zeros((), dtype=torch.long,
                                                                                              device=device))
    gt_boxes = gt_boxes.float()
    gt_classes = gt_classes.long()
    centers = anchor_centers.float()

    candidate, near = geometry_constraint(centers, anchor_strides.float(), gt_boxes[..., :2], center_radius)
    near = near & gt_valid.unsqueeze(2)  # (N, G, A)
    candidate = near.any(dim=1)  # (N, A): near a VALID gt

    # candidates first, in ascending anchor order, into K slots
    budget = num_anchors if num_levels is None else min(num_anchors, candidate_budget(num_gt, num_levels,
                                                                                       center_radius))
    if budget < num_anchors:
        slots = torch.argsort((~candidate).to(torch.uint8), dim=1, stable=True)[:, :budget]  # (N, K) anchor index
        in_slot = torch.gather(candidate, 1, slots)
        near = torch.gather(near, 2, slots.unsqueeze(1).expand(-1, num_gt, -1))
        pred = torch.gather(pred_boxes.float(), 1, slots.unsqueeze(2).expand(-1, -1, 4))
        cls_c = torch.gather(cls_logits, 1, slots.unsqueeze(2).expand(-1, -1, num_classes))
        obj_c = torch.gather(obj_logits, 1, slots)
    else:
        slots = None
        in_slot, pred, cls_c, obj_c = candidate, pred_boxes.float(), cls_logits, obj_logits
    width = in_slot.shape[1]
    usable = in_slot.unsqueeze(1) & gt_valid.unsqueeze(2)  # (N, G, K) pairs the reference computes

    ious = pairwise_iou(gt_boxes, pred)  # (N, G, K)
    ious = torch.where(usable, ious, torch.zeros((), device=device))

    table = class_cost_table(cls_c, obj_c)  # (N, K, C)
    cls_cost = torch.gather(table.transpose(1, 2), 1, gt_classes.unsqueeze(2).expand(-1, -1, width))
    cost = cls_cost + iou_weight * -torch.log(ious + IOU_COST_EPS) + NON_CENTER_PENALTY * (~near)
    cost = torch.where(usable, cost, torch.full((), float("inf"), device=device))

    kmax = min(candidate_topk, width)
    topk_ious, _ = torch.topk(ious, kmax, dim=2)
    dynamic_k = torch.clamp(topk_ious.sum(2).int(), min=1) * gt_valid  # (N, G), 0 for padding
    _, lowest = torch.topk(cost, kmax, dim=2, largest=False)  # (N, G, kmax) ascending cost
    keep = torch.arange(kmax, device=device).view(1, 1, -1) < dynamic_k.unsqueeze(2)
    matching = torch.zeros_like(usable)
    matching.scatter_(2, lowest, keep)
    matching &= usable

    claims = matching.sum(1)  # (N, K)
    _, best_gt = torch.min(cost, dim=1)  # (N, K) gt of lowest cost over all gts of the frame
    matched_gt = torch.where(claims > 1, best_gt, matching.to(torch.uint8).argmax(1))
    fg = claims > 0
    zero_long = torch.zeros((), dtype=torch.long, device=device)
    matched_gt = torch.where(fg, matched_gt, zero_long)
    matched_iou = torch.where(fg, torch.gather(ious, 1, matched_gt.unsqueeze(1)).squeeze(1),
                              torch.zeros((), device=device))
    matched_class = torch.where(fg, torch.gather(gt_classes, 1, matched_gt), zero_long)
    if slots is not None:  # back from K slots to all A anchors (slots of one frame are distinct anchors)
        fg = torch.zeros(num_frames, num_anchors, dtype=torch.bool, device=device).scatter_(1, slots, fg)
        matched_gt = torch.zeros(num_frames, num_anchors, dtype=torch.long, device=device).scatter_(1, slots,
                                                                                                    matched_gt)
        matched_iou = torch.zeros(num_frames, num_anchors, device=device).scatter_(1, slots, matched_iou)
        matched_class = torch.zeros(num_frames, num_anchors, dtype=torch.long, device=device).scatter_(
            1, slots, matched_class)
    return BatchAssignment(fg_mask=fg, matched_gt_index=matched_gt, matched_iou=matched_iou,
                           matched_class=matched_class, num_fg=fg.sum())


def _check_batch_shapes(
    anchor_centers: Tensor,
    anchor_strides: Tensor,
    pred_boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    gt_valid: Tensor,
) -> None:
    """Raise ValueError naming the first argument of :func:`simota_assign_batch` with an inconsistent shape."""
    if pred_boxes.dim() != 3 or pred_boxes.shape[2] != 4:
        raise ValueError(f"simota_assign_batch pred_boxes: expected shape (N, A, 4), got {tuple(pred_boxes.shape)}")
    n, a = pred_boxes.shape[:2]
    g = gt_boxes.shape[1] if gt_boxes.dim() == 3 else -1
    expected = {
        "anchor_centers": (anchor_centers, (a, 2)),
        "anchor_strides": (anchor_strides, (a,)),
        "obj_logits": (obj_logits, (n, a)),
        "gt_boxes": (gt_boxes, (n, g, 4)),
        "gt_classes": (gt_classes, (n, g)),
        "gt_valid": (gt_valid, (n, g)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            shown = tuple("G" if (name.startswith("gt") and i == 1 and s == -1) else s for i, s in enumerate(shape))
            raise ValueError(f"simota_assign_batch {name}: expected shape {shown}, got {tuple(tensor.shape)}")
    if cls_logits.dim() != 3 or tuple(cls_logits.shape[:2]) != (n, a):
        raise ValueError(f"simota_assign_batch cls_logits: expected shape ({n}, {a}, C), got {tuple(cls_logits.shape)}")
