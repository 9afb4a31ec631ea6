"""YOLOX training loss: SimOTA assignment, IoU loss on boxes, BCE on objectness and classes, optional L1.

Source: YOLOX (Ge et al., arXiv 2107.08430, Sec. 2.1-2.2) as RVT trains it (github.com/uzh-rpg/RVT @ b80f568,
``models/detection/yolox/models/yolo_head.py`` ``get_losses``, ``models/detection/yolox/models/losses.py``
``IOUloss``), with RVT's SimOTA candidate rule (:mod:`evdet.model.loss.simota`):

* ``loss_iou``: ``sum over positives of (1 - IoU^2)`` (``IOUloss(loss_type="iou")``, IoU as :func:`elementwise_iou`),
  / ``num_fg``; reported WITHOUT the weight 5 (RVT reports ``iou_loss`` already multiplied by it);
* ``loss_obj``: BCE-with-logits of the objectness on ALL anchors against the foreground mask, / ``num_fg`` (RVT's
  ``conf_loss``);
* ``loss_cls``: BCE-with-logits of the class logits on positives against IoU-aware targets
  ``one_hot(class) * IoU(pred, matched gt)``, summed over classes, / ``num_fg``;
* ``loss_l1`` (only with ``use_l1``; YOLOX switches it on for the last 15 epochs, RVT never): L1 between raw box
  outputs and ``[cx / s - gx, cy / s - gy, log(w / s + 1e-8), log(h / s + 1e-8)]``, / ``num_fg``;
* ``loss = 5.0 * loss_iou + loss_obj + loss_cls + loss_l1`` with ``num_fg = max(total positives in batch, 1)``
  (RVT ``reg_weight = 5.0``).

The per-positive IoU and class losses are kept unreduced (one value per positive anchor, alongside the matched
gt box) until the final sum, so that per-positive weights can multiply them before reduction.

Size-aware variant (issue 4, ``head.size_aware_loss``): with a ``size_weighting`` callable (e.g.
:class:`evdet.model.loss.size_aware.SizeAwareWeighting`), each positive's IoU loss and class loss are multiplied by
the weight of its assigned gt's area ``w * h`` (input px²) before the sum:
``loss_iou = sum_p weight_p * (1 - IoU_p^2) / num_fg`` and likewise for ``loss_cls``. The normaliser stays
``num_fg`` (not ``sum_p weight_p``), so the weights raise the share of small objects in the total instead of
being renormalised away (a weighted mean over one image with only small objects would equal the unweighted one);
objectness and L1 terms are unweighted. Without ``size_weighting`` nothing is multiplied, so the loss is exactly
the plain YOLOX loss; a weighting that returns all ones gives bit-identical values as well (x * 1.0 == x).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from evdet.model.loss.simota import CENTER_RADIUS, cxcywh_iou, simota_assign_batch

IOU_LOSS_WEIGHT = 5.0
"""Weight of the IoU loss in the total (RVT ``yolo_head.py`` ``get_losses``: ``reg_weight = 5.0``)."""
IOU_UNION_EPS = 1e-16
"""Added to the union of the IoU loss, px² (RVT ``losses.py`` ``IOUloss``: ``area_u + 1e-16``)."""


def elementwise_iou(boxes_a: Tensor, boxes_b: Tensor, eps: float = IOU_UNION_EPS) -> Tensor:
    """IoU of corresponding boxes, computed as YOLOX's ``IOUloss`` (RVT ``models/detection/yolox/models/losses.py``).

    :func:`evdet.model.loss.simota.cxcywh_iou` of corresponding rows: corners ``centre -/+ size / 2``, the
    intersection masked to 0 unless ``top_left < bottom_right`` on both axes (no gradient through non-overlapping
    pairs), areas ``w * h``, ``IoU = inter / (area_a + area_b - inter + eps)``.

    Args:
        boxes_a: float ``(N, 4)`` ``[cx, cy, w, h]`` px.
        boxes_b: float ``(N, 4)`` ``[cx, cy, w, h]`` px.
        eps: added to the union, px² (:data:`IOU_UNION_EPS`, YOLOX's 1e-16).

    Returns:
        float ``(N,)`` IoU in ``[0, 1]``; differentiable.
    """
    return cxcywh_iou(boxes_a, boxes_b, eps)


def xywh_to_cxcywh(boxes: Tensor) -> Tensor:
    """Top-left boxes ``[x, y, w, h]`` -> centre boxes ``[x + w / 2, y + h / 2, w, h]`` (px, same dtype).

    Computed directly (not through ``x2 = x + w``, which would round w), the way RVT's label loader forms its YOLOX
    targets (RVT ``data/genx_utils/labels.py`` ``get_labels_as_tensors(format_="yolox")``).

    Args:
        boxes: float ``(N, 4)`` ``[x, y, w, h]`` px, top-left corner.

    Returns:
        float ``(N, 4)`` ``[cx, cy, w, h]`` px.
    """
    return torch.cat((boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]), dim=1)


def iou_loss(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """YOLOX "iou" loss per box: ``1 - IoU^2``.

    Args:
        pred_boxes: float ``(N, 4)`` ``[cx, cy, w, h]`` px.
        target_boxes: float ``(N, 4)`` ``[cx, cy, w, h]`` px.

    Returns:
        float ``(N,)`` unreduced loss in ``[0, 1]``.
    """
    return 1.0 - elementwise_iou(pred_boxes, target_boxes) ** 2


def validate_targets(targets: Sequence[Tensor], batch_size: int, num_classes: int) -> None:
    """Check the per-image target tensors of a batch.

    The value checks run once over all boxes of the batch (on the targets' device; the training loop keeps targets on
    the host, so they cost no device synchronisation), then name the first offending image.

    Args:
        targets: ``batch_size`` float tensors ``(n_b, 5)``, rows ``[class_id, x, y, w, h]`` (px, top-left x, y).
        batch_size: expected number of images B.
        num_classes: C; class ids must be integers in ``[0, C)``.

    Raises:
        ValueError: wrong count, wrong shape, non-finite values, non-integer or out-of-range class ids, or a box
            with ``w <= 0`` or ``h <= 0``; the message names ``targets[b]``.
    """
    if len(targets) != batch_size:
        raise ValueError(f"targets: expected {batch_size} tensors (one per image), got {len(targets)}")
    for b, t in enumerate(targets):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[1] != 5:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"targets[{b}]: expected a tensor of shape (n, 5) [class_id, x, y, w, h], got {shape}")
    counts = [t.shape[0] for t in targets]
    if sum(counts) == 0:
        return
    rows = torch.cat([t.detach().float() for t in targets])
    cls = rows[:, 0]
    finite = torch.isfinite(rows).all(dim=1)
    good_class = (cls == cls.round()) & (cls >= 0) & (cls < num_classes)
    good_size = (rows[:, 3] > 0) & (rows[:, 4] > 0)
    if bool((finite & good_class & good_size).all()):
        return
    image = torch.repeat_interleave(torch.arange(len(targets)), torch.tensor(counts)).to(rows.device)
    for failed, describe in (
        (~finite, lambda t: "expected finite values, got NaN or inf"),
        (~good_class, lambda t: f"class_id: expected integers in [0, {num_classes}), got {t[:, 0].tolist()}"),
        (~good_size, lambda t: f"w, h: expected > 0 px, got min w {float(t[:, 3].min())}, min h {float(t[:, 4].min())}"),
    ):
        if bool(failed.any()):
            b = int(image[failed][0])
            raise ValueError(f"targets[{b}] {describe(targets[b])}".replace("] expected", "]: expected"))


def pad_targets(targets: Sequence[Tensor], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Stack per-image targets into one padded tensor with centre boxes, moved to ``device`` in one copy.

    Args:
        targets: N float tensors ``(n_i, 5)``, rows ``[class_id, x, y, w, h]`` px with TOP-LEFT x, y.
        device: where the loss runs.

    Returns:
        ``(gt, valid)``: float32 ``(N, G, 5)`` rows ``[class_id, cx, cy, w, h]`` px (centres as
        :func:`xywh_to_cxcywh`, bit-identical to converting each image), ``G = max(1, max n_i)``,
        padding rows ``[0, 0, 0, 1, 1]``; bool ``(N, G)``, False for padding.
    """
    count = len(targets)
    most = max(1, max((t.shape[0] for t in targets), default=0))  # >= 1 row, so per-anchor gathers have a source
    gt = torch.zeros(count, most, 5, dtype=torch.float32)
    gt[:, :, 3:] = 1.0
    valid = torch.zeros(count, most, dtype=torch.bool)
    for i, t in enumerate(targets):
        n = t.shape[0]
        if n:
            t = t.detach().to(device="cpu", dtype=torch.float32)
            gt[i, :n, 0] = t[:, 0]
            gt[i, :n, 1:] = xywh_to_cxcywh(t[:, 1:5])
            valid[i, :n] = True
    if torch.device(device).type == "cuda":  # pinned: the copy does not wait for the kernels queued before it
        gt, valid = gt.pin_memory(), valid.pin_memory()
    return gt.to(device, non_blocking=True), valid.to(device, non_blocking=True)


class YOLOXLoss:
    """YOLOX loss over a batch of flattened head outputs (see the module docstring for the formulas).

    Args:
        num_classes: number of classes C.
        iou_loss_weight: weight of ``loss_iou`` in ``loss`` (5.0).
        use_l1: add the L1 loss on raw box outputs (off by default, as RVT).
        center_radius: SimOTA candidate half-size in strides (:data:`evdet.model.loss.simota.CENTER_RADIUS`, 1.5).
        size_weighting: optional callable mapping float ``(N,)`` gt areas (px²) to float ``(N,)`` per-positive
            weights (size-aware loss, see the module docstring); None for the plain YOLOX loss.
        num_levels: number of anchor levels of the head; lets SimOTA compute costs for each frame's candidates only
            (:func:`evdet.model.loss.simota.simota_assign_batch`); None: over all anchors (same result).

    Raises:
        ValueError: ``num_classes < 1``.
    """

    def __init__(
        self,
        num_classes: int,
        iou_loss_weight: float = IOU_LOSS_WEIGHT,
        use_l1: bool = False,
        center_radius: float = CENTER_RADIUS,
        size_weighting: Callable[[Tensor], Tensor] | None = None,
        num_levels: int | None = None,
    ) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"YOLOXLoss num_classes: expected a positive int, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.iou_loss_weight = float(iou_loss_weight)
        self.use_l1 = bool(use_l1)
        self.center_radius = float(center_radius)
        self.size_weighting = size_weighting
        self.num_levels = None if num_levels is None else int(num_levels)

    def __call__(
        self,
        raw: Tensor,
        pred_boxes: Tensor,
        anchor_grid: Tensor,
        anchor_strides: Tensor,
        targets: Sequence[Tensor],
    ) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            raw: float ``(B, A, 5 + C)`` raw head outputs per anchor: 4 box offsets, objectness logit,
                C class logits.
            pred_boxes: float ``(B, A, 4)`` decoded boxes ``[cx, cy, w, h]`` px
                (``(grid + raw[:2]) * stride``, ``exp(raw[2:4]) * stride``); gradients flow through them.
            anchor_grid: float ``(A, 2)`` cell index ``(gx, gy)`` of each anchor.
            anchor_strides: float ``(A,)`` stride of each anchor, px.
            targets: B float tensors ``(n_b, 5)``, rows ``[class_id, x, y, w, h]`` px with TOP-LEFT x, y
                (docs/architecture.md batch contract); ``n_b`` may be 0.

        Returns:
            dict of 0-dim float32 tensors: ``loss`` (total, differentiable), ``loss_iou``, ``loss_obj``,
            ``loss_cls`` (both size-weighted with ``size_weighting``), ``loss_l1`` (0 unless ``use_l1``) and
            ``num_fg`` (positives in the batch, detached).

        Raises:
            ValueError: ``raw`` not ``(B, A, 5 + C)`` or inconsistent with the other inputs, or bad targets
                (see :func:`validate_targets`).
        """
        if raw.dim() != 3 or raw.shape[2] != 5 + self.num_classes:
            raise ValueError(f"raw: expected shape (B, A, {5 + self.num_classes}), got {tuple(raw.shape)}")
        batch, num_anchors = raw.shape[:2]
        if tuple(pred_boxes.shape) != (batch, num_anchors, 4):
            raise ValueError(f"pred_boxes: expected shape {(batch, num_anchors, 4)}, got {tuple(pred_boxes.shape)}")
        if tuple(anchor_grid.shape) != (num_anchors, 2) or tuple(anchor_strides.shape) != (num_anchors,):
            raise ValueError(
                f"anchor_grid / anchor_strides: expected shapes {(num_anchors, 2)} / {(num_anchors,)}, got "
                f"{tuple(anchor_grid.shape)} / {tuple(anchor_strides.shape)}"
            )
        validate_targets(targets, batch, self.num_classes)
        gt, gt_valid = pad_targets(targets, raw.device)  # (N, G, 5) [class, cx, cy, w, h], (N, G)

        raw = raw.float()
        pred_boxes = pred_boxes.float()
        obj_logits = raw[..., 4]
        cls_logits = raw[..., 5:]
        anchor_centers = (anchor_grid.float() + 0.5) * anchor_strides.float().unsqueeze(1)
        gt_boxes = gt[..., 1:5]
        gt_classes = gt[..., 0].long()
        assignment = simota_assign_batch(
            anchor_centers, anchor_strides, pred_boxes.detach(), cls_logits.detach(), obj_logits.detach(),
            gt_boxes, gt_classes, gt_valid, center_radius=self.center_radius, num_levels=self.num_levels,
        )
        fg = assignment.fg_mask  # (B, A)
        fg_float = fg.float()
        normaliser = assignment.num_fg.clamp(min=1).float()
        loss_obj = F.binary_cross_entropy_with_logits(obj_logits, fg_float, reduction="sum") / normaliser

        # Per-anchor terms, kept only for positives. Boxes of the other anchors are replaced by a unit box before
        # the IoU (torch.where passes no gradient to them), so that no inf/NaN of an unassigned prediction reaches
        # the sums or the gradients.
        unit_box = torch.cat((raw.new_full((2,), 0.5), raw.new_ones(2)))  # [0.5, 0.5, 1, 1], made on the device
        matched_gt = torch.gather(gt_boxes, 1, assignment.matched_gt_index.unsqueeze(2).expand(-1, -1, 4))
        matched_gt = torch.where(fg.unsqueeze(2), matched_gt, unit_box)
        pred_pos = torch.where(fg.unsqueeze(2), pred_boxes, unit_box)
        iou_per_anchor = iou_loss(pred_pos.reshape(-1, 4), matched_gt.reshape(-1, 4)).view(batch, num_anchors)
        cls_target = F.one_hot(assignment.matched_class, self.num_classes).float() * assignment.matched_iou.unsqueeze(2)
        cls_per_anchor = F.binary_cross_entropy_with_logits(cls_logits, cls_target, reduction="none").sum(dim=2)
        if self.size_weighting is not None:
            areas = (matched_gt[..., 2] * matched_gt[..., 3]).reshape(-1)  # px²
            weights = self.size_weighting(areas).to(iou_per_anchor.dtype)
            if tuple(weights.shape) != tuple(areas.shape):
                raise ValueError(
                    f"size_weighting: expected weights of shape {tuple(areas.shape)}, got {tuple(weights.shape)}"
                )
            weights = weights.view(batch, num_anchors)
            iou_per_anchor = iou_per_anchor * weights
            cls_per_anchor = cls_per_anchor * weights
        loss_iou = (iou_per_anchor * fg_float).sum() / normaliser
        loss_cls = (cls_per_anchor * fg_float).sum() / normaliser
        loss_l1 = raw.sum() * 0.0
        if self.use_l1:
            stride = anchor_strides.float().view(1, -1, 1)
            l1_target = torch.cat(
                (matched_gt[..., :2] / stride - anchor_grid.float().unsqueeze(0),
                 torch.log(matched_gt[..., 2:] / stride + 1e-8)), dim=2
            )
            l1_per_anchor = F.l1_loss(raw[..., :4], l1_target, reduction="none").sum(dim=2)
            loss_l1 = (l1_per_anchor * fg_float).sum() / normaliser
        total = self.iou_loss_weight * loss_iou + loss_obj + loss_cls + loss_l1
        return {
            "loss": total,
            "loss_iou": loss_iou,
            "loss_obj": loss_obj,
            "loss_cls": loss_cls,
            "loss_l1": loss_l1,
            "num_fg": assignment.num_fg.float(),
        }
