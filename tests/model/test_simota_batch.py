"""The batched SimOTA and loss (one call for all frames of a batch) against the per-image implementation.

:func:`evdet.model.loss.simota.simota_assign` (one image, the reference's structure; checked against RVT's own outputs in
``tests/reference/test_loss.py``) is the oracle; the per-image loss below is the loop the training loss used before it
was vectorised (one SimOTA call and one gather per image, positives concatenated). Many random frame sets: empty
frames, one gt, many gts, duplicated gts (equal costs, the conflict rule decides), boxes at the borders, tiny and
huge boxes, several anchor levels and class counts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evdet.model.loss.simota import candidate_budget, geometry_constraint, simota_assign, simota_assign_batch
from evdet.model.loss.size_aware import SizeAwareWeighting
from evdet.model.loss.yolox_loss import YOLOXLoss, iou_loss, pad_targets, xywh_to_cxcywh

STRIDES = (8, 16, 32)


def _anchors(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor grid ``(A, 2)`` (gx, gy) and strides ``(A,)`` of a 3-level head over a ``height x width`` input."""
    grids, strides = [], []
    for s in STRIDES:
        gy, gx = torch.meshgrid(torch.arange(float(height // s)), torch.arange(float(width // s)), indexing="ij")
        grids.append(torch.stack((gx, gy), -1).reshape(-1, 2))
        strides.append(torch.full((gx.numel(),), float(s)))
    return torch.cat(grids), torch.cat(strides)


def _frame_set(seed: int, height: int = 192, width: int = 320) -> dict:
    """Random head outputs and targets for a few frames; targets are [class, x, y, w, h] (top-left px)."""
    gen = torch.Generator().manual_seed(seed)
    num_classes = [1, 3, 8][seed % 3]
    frames = 1 + seed % 6
    grid, strides = _anchors(height, width)
    anchors = grid.shape[0]
    raw = torch.randn(frames, anchors, 5 + num_classes, generator=gen) * 2.0
    pred = torch.cat(((raw[..., :2] + grid) * strides[:, None], raw[..., 2:4].exp() * strides[:, None]), -1)
    targets = []
    for f in range(frames):
        n = int(torch.randint(0, 12, (1,), generator=gen)) if f % 4 else [0, 1, 25][seed % 3]
        wh = torch.rand(n, 2, generator=gen) * torch.tensor([width * 0.6, height * 0.6]) + 1.0
        xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
        if n >= 2 and seed % 2:
            wh[1], xy[1] = wh[0], xy[0]  # a duplicated gt: equal costs, the conflict rule picks one
        if n >= 3:
            xy[2] = torch.tensor([0.0, 0.0])  # at the border
        cls = torch.randint(0, num_classes, (n, 1), generator=gen).float()
        targets.append(torch.cat((cls, xy, wh), 1))
    return {"raw": raw, "pred": pred, "grid": grid, "strides": strides, "targets": targets, "num_classes": num_classes}


def _per_image_loss(raw, pred_boxes, grid, strides, targets, num_classes, weighting=None, use_l1=False):
    """The per-image loss loop (before vectorisation): one :func:`simota_assign` per image, positives concatenated."""
    obj, cls = raw[..., 4], raw[..., 5:]
    centers = (grid + 0.5) * strides[:, None]
    obj_target = torch.zeros_like(obj)
    rows = []
    for b, t in enumerate(targets):
        if t.shape[0] == 0:
            continue
        gt = xywh_to_cxcywh(t[:, 1:5])
        a = simota_assign(centers, strides, pred_boxes[b].detach(), cls[b].detach(), obj[b].detach(), gt,
                          t[:, 0].long())
        if a.num_fg == 0:
            continue
        obj_target[b] = a.fg_mask.float()
        idx = a.fg_mask.nonzero().squeeze(1)
        rows.append((b, idx, gt[a.matched_gt_index],
                     F.one_hot(a.matched_class, num_classes).float() * a.matched_iou[:, None]))
    num_fg = sum(int(r[1].numel()) for r in rows)
    norm = float(max(num_fg, 1))
    loss_obj = F.binary_cross_entropy_with_logits(obj, obj_target, reduction="sum") / norm
    loss_iou = loss_cls = loss_l1 = raw.sum() * 0.0
    if num_fg:
        bi = torch.cat([torch.full_like(r[1], r[0]) for r in rows])
        ai = torch.cat([r[1] for r in rows])
        gt = torch.cat([r[2] for r in rows])
        iou_part = iou_loss(pred_boxes[bi, ai], gt)
        cls_part = F.binary_cross_entropy_with_logits(cls[bi, ai], torch.cat([r[3] for r in rows]),
                                                      reduction="none").sum(1)
        if weighting is not None:
            w = weighting(gt[:, 2] * gt[:, 3])
            iou_part, cls_part = iou_part * w, cls_part * w
        loss_iou, loss_cls = iou_part.sum() / norm, cls_part.sum() / norm
        if use_l1:
            s = strides[ai][:, None]
            target = torch.cat((gt[:, :2] / s - grid[ai], torch.log(gt[:, 2:] / s + 1e-8)), 1)
            loss_l1 = F.l1_loss(raw[bi, ai, :4], target, reduction="sum") / norm
    total = 5.0 * loss_iou + loss_obj + loss_cls + loss_l1
    return {"loss": total, "loss_iou": loss_iou, "loss_obj": loss_obj, "loss_cls": loss_cls, "loss_l1": loss_l1,
            "num_fg": num_fg}


@pytest.mark.parametrize("num_levels", [None, len(STRIDES)])
@pytest.mark.parametrize("seed", range(60))
def test_batched_assignment_equals_per_image(seed: int, num_levels: int | None) -> None:
    """Over all anchors (None) and with each frame's candidates compacted into the budget of 3 levels."""
    s = _frame_set(seed)
    raw, pred, grid, strides = s["raw"], s["pred"], s["grid"], s["strides"]
    centers = (grid + 0.5) * strides[:, None]
    gt, valid = pad_targets(s["targets"], "cpu")
    batch = simota_assign_batch(centers, strides, pred, raw[..., 5:], raw[..., 4], gt[..., 1:], gt[..., 0].long(),
                                valid, num_levels=num_levels)
    if num_levels is not None:  # the compaction is exercised: fewer slots than anchors
        assert candidate_budget(gt.shape[1], num_levels) < grid.shape[0]
    total = 0
    for f, t in enumerate(s["targets"]):
        got = batch.frame(f)
        if t.shape[0] == 0:
            assert got.num_fg == 0
            continue
        want = simota_assign(centers, strides, pred[f], raw[f, :, 5:], raw[f, :, 4], xywh_to_cxcywh(t[:, 1:]),
                             t[:, 0].long())
        assert torch.equal(got.fg_mask, want.fg_mask), f"seed {seed} frame {f}: positives differ"
        assert torch.equal(got.matched_gt_index, want.matched_gt_index), f"seed {seed} frame {f}"
        assert torch.equal(got.matched_class, want.matched_class), f"seed {seed} frame {f}"
        assert torch.equal(got.matched_iou, want.matched_iou), f"seed {seed} frame {f}"
        total += want.num_fg
    assert int(batch.num_fg) == total


@pytest.mark.parametrize("variant", ["plain", "size_aware", "l1"])
@pytest.mark.parametrize("seed", range(0, 60, 7))
def test_batched_loss_equals_per_image(seed: int, variant: str) -> None:
    s = _frame_set(seed)
    weighting = SizeAwareWeighting() if variant == "size_aware" else None
    criterion = YOLOXLoss(s["num_classes"], size_weighting=weighting, use_l1=variant == "l1", num_levels=len(STRIDES))
    raw_a = s["raw"].clone().requires_grad_(True)
    raw_b = s["raw"].clone().requires_grad_(True)
    grid, strides = s["grid"], s["strides"]

    def decode(raw):
        return torch.cat(((raw[..., :2] + grid) * strides[:, None], raw[..., 2:4].exp() * strides[:, None]), -1)

    got = criterion(raw_a, decode(raw_a), grid, strides, s["targets"])
    want = _per_image_loss(raw_b, decode(raw_b), grid, strides, s["targets"], s["num_classes"], weighting,
                           use_l1=variant == "l1")
    assert int(got["num_fg"]) == want["num_fg"]
    for key in ("loss", "loss_iou", "loss_obj", "loss_cls", "loss_l1"):
        assert float(got[key].detach()) == pytest.approx(float(want[key]), rel=1e-6, abs=1e-7), key
    got["loss"].backward()
    want["loss"].backward()
    assert torch.isfinite(raw_a.grad).all()
    torch.testing.assert_close(raw_a.grad, raw_b.grad, rtol=1e-5, atol=1e-7)


def test_unassigned_predictions_with_overflowing_areas_give_finite_gradients() -> None:
    s = _frame_set(3)
    raw = s["raw"].clone()
    raw[:, :50, 2:4] = 60.0  # w, h ~1e27 px: w * h overflows to inf in the IoU of anchors that are no positives
    raw.requires_grad_(True)
    grid, strides = s["grid"], s["strides"]
    pred = torch.cat(((raw[..., :2] + grid) * strides[:, None], raw[..., 2:4].exp() * strides[:, None]), -1)
    targets = [torch.tensor([[0.0, 100.0, 40.0, 30.0, 30.0]]) for _ in range(raw.shape[0])]
    losses = YOLOXLoss(s["num_classes"])(raw, pred, grid, strides, targets)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and torch.isfinite(raw.grad).all()


def test_batched_assignment_names_the_argument_with_a_bad_shape() -> None:
    s = _frame_set(1)
    raw, pred, grid, strides = s["raw"], s["pred"], s["grid"], s["strides"]
    gt, valid = pad_targets(s["targets"], "cpu")
    centers = (grid + 0.5) * strides[:, None]
    with pytest.raises(ValueError, match="simota_assign_batch gt_valid: expected shape"):
        simota_assign_batch(centers, strides, pred, raw[..., 5:], raw[..., 4], gt[..., 1:], gt[..., 0].long(),
                            valid[:, :0])
    with pytest.raises(ValueError, match="simota_assign_batch obj_logits"):
        simota_assign_batch(centers, strides, pred, raw[..., 5:], raw[..., 4:6], gt[..., 1:], gt[..., 0].long(), valid)


@pytest.mark.parametrize("size", [(96, 160), (384, 640)])
def test_candidates_never_exceed_the_budget(size) -> None:
    """Per level at most (ceil(2 * 1.5) + 1)^2 = 16 anchors are near one gt, whatever its position and size, also for
    centres exactly on anchor points and on cell borders (where the strict comparisons decide)."""
    height, width = size
    grid, strides = _anchors(height, width)
    centers = (grid + 0.5) * strides[:, None]
    gen = torch.Generator().manual_seed(1)
    points = torch.cat((torch.rand(500, 2, generator=gen) * torch.tensor([width, height]),
                        torch.tensor([[8.0 * i, 8.0 * j] for i in range(4) for j in range(4)]),
                        torch.tensor([[4.0 + 8.0 * i, 12.0 + 16.0 * j] for i in range(4) for j in range(4)])))
    _, near = geometry_constraint(centers, strides, points)
    assert int(near.sum(1).max()) <= candidate_budget(1, len(STRIDES))
    assert candidate_budget(3, 3) == 3 * 3 * 16
