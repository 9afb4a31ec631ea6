"""SimOTA dynamic-k assignment on hand-built cases (YOLOX Sec. 2.2)."""

import pytest
import torch
import torch.nn.functional as F

from evdet.model.simota import classification_cost, geometry_prior, simota_assign

STRIDE = 8.0  # centre radius 2.5 strides = 20 px


def _assign(centers, pred_boxes, gt_boxes, gt_classes, num_classes=2, cls_logits=None, obj_logits=None):
    centers = torch.tensor(centers, dtype=torch.float32)
    a = centers.shape[0]
    if cls_logits is None:
        cls_logits = torch.zeros(a, num_classes)
    if obj_logits is None:
        obj_logits = torch.zeros(a)
    return simota_assign(
        centers,
        torch.full((a,), STRIDE),
        torch.tensor(pred_boxes, dtype=torch.float32),
        cls_logits,
        obj_logits,
        torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(gt_classes, dtype=torch.long),
    )


def test_geometry_prior_box_and_centre_region():
    # gt box x, y in (12, 28); centre region |d| < 20 px.
    centers = torch.tensor([[20.0, 20.0], [12.0, 20.0], [35.0, 20.0], [40.0, 20.0], [60.0, 60.0]])
    candidate, in_both = geometry_prior(centers, torch.full((5,), STRIDE), torch.tensor([[20.0, 20.0, 16.0, 16.0]]))
    # (12, 20) is on the box edge: not strictly inside, but in the centre region -> candidate, not in both.
    assert candidate.tolist() == [True, True, True, False, False]
    assert in_both[0].tolist() == [True, False, False, False, False]


def test_one_gt_inside_outside_and_dynamic_k():
    gt = [20.0, 20.0, 16.0, 16.0]
    centers = [[20.0, 20.0], [16.0, 20.0], [35.0, 20.0], [60.0, 60.0]]
    preds = [
        gt,  # IoU 1, in box and centre
        [24.0, 20.0, 16.0, 16.0],  # IoU 0.6, in box and centre
        gt,  # IoU 1 but only in the centre region: penalised
        gt,  # IoU 1 but not a candidate at all
    ]
    result = _assign(centers, preds, [gt], [1])
    # candidates are anchors 0, 1, 2; dynamic k = int(1 + 0.6 + 1) = 2 -> the two unpenalised anchors.
    assert result.fg_mask.tolist() == [True, True, False, False]
    assert result.num_fg == 2
    assert result.matched_gt_index.tolist() == [0, 0]
    assert result.matched_class.tolist() == [1, 1]
    assert torch.allclose(result.matched_iou, torch.tensor([1.0, 12 * 16 / (2 * 256 - 12 * 16)]))


def test_dynamic_k_at_least_one_and_soft_penalty():
    # A tiny gt between anchors: no anchor inside the box, so every candidate is penalised; low IoUs give
    # sum < 1, dynamic k is clamped to 1 and the best-IoU candidate is still chosen.
    gt = [16.0, 16.0, 2.0, 2.0]
    centers = [[12.0, 12.0], [20.0, 20.0], [12.0, 20.0]]
    preds = [[16.0, 16.0, 4.0, 4.0], [16.0, 16.0, 8.0, 8.0], [30.0, 30.0, 4.0, 4.0]]
    result = _assign(centers, preds, [gt], [0])
    assert result.fg_mask.tolist() == [True, False, False]
    assert torch.allclose(result.matched_iou, torch.tensor([0.25]))


def test_two_overlapping_gts_conflict_goes_to_lower_cost():
    gt_a = [20.0, 20.0, 24.0, 24.0]  # x in (8, 32)
    gt_b = [22.0, 20.0, 24.0, 24.0]  # x in (10, 34); IoU(a, b) = 528 / 624
    centers = [[20.0, 20.0], [22.0, 20.0], [21.0, 20.0]]
    preds = [gt_a, gt_b, [21.5, 20.0, 24.0, 24.0]]
    # IoU with a: 1, 0.846, 0.882 -> k_a = 2 -> anchors 0, 2;  with b: 0.846, 1, 0.959 -> k_b = 2 -> anchors 1, 2.
    # Anchor 2 is claimed twice; its cost is lower for b (equal class cost, higher IoU).
    result = _assign(centers, preds, [gt_a, gt_b], [0, 1])
    assert result.fg_mask.tolist() == [True, True, True]
    assert result.matched_gt_index.tolist() == [0, 1, 1]
    assert result.matched_class.tolist() == [0, 1, 1]
    assert torch.allclose(result.matched_iou, torch.tensor([1.0, 1.0, 564 / 588]), atol=1e-6)


def test_class_cost_breaks_iou_ties():
    gt = [20.0, 20.0, 16.0, 16.0]
    centers = [[20.0, 20.0], [18.0, 20.0]]
    preds = [[20.0, 20.0, 16.0, 8.0], [20.0, 20.0, 16.0, 8.0]]  # same IoU 0.5 -> k = 1
    cls_logits = torch.tensor([[3.0, -3.0], [-3.0, 3.0]])  # anchor 1 predicts class 1
    result = _assign(centers, preds, [gt], [1], cls_logits=cls_logits)
    assert result.fg_mask.tolist() == [False, True]


def test_no_gts_and_no_candidates():
    centers = [[4.0, 4.0], [12.0, 4.0]]
    preds = [[4.0, 4.0, 8.0, 8.0]] * 2
    empty = _assign(centers, preds, [], [])
    assert empty.num_fg == 0 and not empty.fg_mask.any() and empty.fg_mask.shape == (2,)
    assert empty.matched_gt_index.shape == (0,)
    far = _assign(centers, preds, [[500.0, 500.0, 10.0, 10.0]], [0])
    assert far.num_fg == 0 and not far.fg_mask.any()


def test_classification_cost_matches_bce():
    torch.manual_seed(0)
    cls_logits, obj_logits = torch.randn(7, 3), torch.randn(7)
    gt_classes = torch.tensor([2, 0])
    prob = (cls_logits.sigmoid() * obj_logits.sigmoid()[:, None]).sqrt()
    one_hots = [F.one_hot(c, 3).float().expand(7, 3) for c in gt_classes]
    expected = torch.stack([F.binary_cross_entropy(prob, t, reduction="none").sum(1) for t in one_hots])
    assert torch.allclose(classification_cost(cls_logits, obj_logits, gt_classes), expected, atol=1e-5)


def test_bad_inputs_raise():
    centers = [[4.0, 4.0]]
    with pytest.raises(ValueError, match="gt_classes: expected class ids in \\[0, 2\\)"):
        _assign(centers, [[4.0, 4.0, 8.0, 8.0]], [[4.0, 4.0, 8.0, 8.0]], [2])
    with pytest.raises(ValueError, match="pred_boxes: expected shape \\(1, 4\\)"):
        _assign(centers, [[4.0, 4.0, 8.0]], [[4.0, 4.0, 8.0, 8.0]], [0])
