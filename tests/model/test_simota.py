"""SimOTA with RVT's rule (RVT ``yolo_head.py`` get_geometry_constraint / get_assignments / simota_matching).

Hand-built cases check the candidate set (strictly within 1.5 strides of a gt centre, no in-box test), dynamic k,
the 1e6 penalty and the conflict rule; a randomised test compares the vectorised implementation with a per-gt loop
written here from the rule.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from evdet.model.loss.simota import (
    CENTER_RADIUS,
    NON_CENTER_PENALTY,
    classification_cost,
    geometry_constraint,
    pairwise_iou,
    simota_assign,
)

STRIDE = 8.0  # candidates: |anchor - gt centre| < 1.5 * 8 = 12 px on both axes


def _grid(size: int, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points ((gx + 0.5) * stride, (gy + 0.5) * stride) of a size x size level, row-major, and strides."""
    gy, gx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    centers = (torch.stack((gx, gy), -1).reshape(-1, 2) + 0.5) * stride
    return centers, torch.full((size * size,), stride)


def _assign(centers, pred_boxes, gt_boxes, gt_classes, num_classes=2, cls_logits=None, obj_logits=None, stride=STRIDE):
    centers = torch.as_tensor(centers, dtype=torch.float32)
    a = centers.shape[0]
    return simota_assign(
        centers,
        torch.full((a,), stride),
        torch.as_tensor(pred_boxes, dtype=torch.float32),
        torch.zeros(a, num_classes) if cls_logits is None else cls_logits,
        torch.zeros(a) if obj_logits is None else obj_logits,
        torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
        torch.as_tensor(gt_classes, dtype=torch.long),
    )


def test_constants_are_rvts():
    assert CENTER_RADIUS == 1.5
    assert NON_CENTER_PENALTY == 1e6


def test_candidates_strictly_within_one_and_a_half_strides_no_box_test():
    centers, strides = _grid(8, STRIDE)  # anchor points 4, 12, ..., 60 px
    gts = torch.tensor([
        [28.0, 28.0],  # x, y in {20, 28, 36}: 9 anchors
        [24.0, 44.0],  # x: 12 and 36 are exactly 12 px away (excluded) -> {20, 28}; y: {36, 44, 52}
        [60.0, 4.0],  # corner: x in {52, 60}, y in {4, 12}
    ])
    candidate, near = geometry_constraint(centers, strides, gts)

    def idx(xs, ys):
        return sorted(int((y - 4) / 8) * 8 + int((x - 4) / 8) for x in xs for y in ys)

    expected = [idx([20, 28, 36], [20, 28, 36]), idx([20, 28], [36, 44, 52]), idx([52, 60], [4, 12])]
    for g in range(3):
        assert near[g].nonzero().flatten().tolist() == expected[g]
    assert candidate.nonzero().flatten().tolist() == sorted({i for row in expected for i in row})


def test_candidates_use_each_anchors_own_stride():
    c8, s8 = _grid(4, 8.0)  # 4, 12, 20, 28
    c16, s16 = _grid(2, 16.0)  # 8, 24
    centers, strides = torch.cat((c8, c16)), torch.cat((s8, s16))
    _, near = geometry_constraint(centers, strides, torch.tensor([[12.0, 12.0]]))
    # stride 8: |d| < 12 -> 4, 12, 20 (24 is 12 away: no, 4 is 8 away: yes); stride 16: |d| < 24 -> 8, 24.
    level8 = [int((y - 4) / 8) * 4 + int((x - 4) / 8) for y in (4, 12, 20) for x in (4, 12, 20)]
    level16 = [16 + i for i in range(4)]
    assert near[0].nonzero().flatten().tolist() == sorted(level8) + level16


def test_size_does_not_matter_for_candidates():
    """No in-box test: a tiny box and a huge box with the same centre have the same candidates."""
    centers, strides = _grid(8, STRIDE)
    pred = torch.tensor([[28.0, 28.0, 16.0, 16.0]]).expand(64, 4)
    tiny = _assign(centers, pred, [[28.0, 28.0, 1.0, 1.0]], [0])
    huge = _assign(centers, pred, [[28.0, 28.0, 60.0, 60.0]], [0])
    cand, _ = geometry_constraint(centers, strides, torch.tensor([[28.0, 28.0]]))
    assert int(cand.sum()) == 9
    assert tiny.fg_mask[~cand].sum() == 0 and huge.fg_mask[~cand].sum() == 0


def test_dynamic_k_and_lowest_cost():
    centers, _ = _grid(8, STRIDE)
    gt = [28.0, 28.0, 16.0, 16.0]
    pred = torch.tensor([[100.0, 100.0, 4.0, 4.0]]).repeat(64, 1)  # IoU 0 for every anchor ...
    best = [3 * 8 + 3, 3 * 8 + 2, 2 * 8 + 3]  # ... except three candidates
    pred[best[0]] = torch.tensor(gt)  # IoU 1
    pred[best[1]] = torch.tensor([28.0, 28.0, 16.0, 8.0])  # IoU 0.5
    pred[best[2]] = torch.tensor([30.0, 28.0, 16.0, 16.0])  # IoU 14 * 16 / (2 * 256 - 14 * 16) = 0.777...
    result = _assign(centers, pred, [gt], [1])
    # dynamic k = int(1 + 0.5 + 0.7777) = 2: the two highest-IoU (lowest-cost) candidates.
    assert result.fg_mask.nonzero().flatten().tolist() == sorted([best[0], best[2]])
    assert result.num_fg == 2
    assert result.matched_gt_index.tolist() == [0, 0]
    assert result.matched_class.tolist() == [1, 1]
    expected_iou = {best[0]: 1.0, best[2]: 224 / 288}
    assert result.matched_iou.tolist() == pytest.approx([expected_iou[a] for a in sorted(expected_iou)], rel=1e-6)


def test_dynamic_k_is_at_least_one():
    centers, _ = _grid(8, STRIDE)
    pred = torch.tensor([[28.0, 28.0, 2.0, 2.0]]).repeat(64, 1)  # IoU 4 / 256 everywhere: sum of top 9 < 1
    cls_logits = torch.zeros(64, 2)
    cls_logits[4 * 8 + 4] = torch.tensor([5.0, -5.0])  # (36, 36), a candidate, has the lowest class cost
    result = _assign(centers, pred, [[28.0, 28.0, 16.0, 16.0]], [0], cls_logits=cls_logits)
    assert result.fg_mask.nonzero().flatten().tolist() == [4 * 8 + 4]


def test_penalised_pairs_are_used_when_too_few_near_anchors():
    """k larger than the number of anchors near the gt: the rest comes from other candidates at +1e6 cost."""
    centers, _ = _grid(8, STRIDE)
    gt_a, gt_b = [28.0, 28.0, 16.0, 16.0], [52.0, 52.0, 16.0, 16.0]
    near_a = [y * 8 + x for y in (2, 3, 4) for x in (2, 3, 4)]  # (20..36, 20..36)
    x_anchor, y_anchor = 7 * 8 + 7, 6 * 8 + 6  # (60, 60) and (52, 52), both near b only
    pred = torch.tensor([gt_a]).repeat(64, 1)  # 17 of the 18 candidates predict box a exactly (IoU_a 1) ...
    pred[y_anchor] = torch.tensor(gt_b)  # ... and one predicts box b
    obj = torch.zeros(64)
    obj[x_anchor] = 6.0  # one class: the class cost -log(sqrt(0.5 sigmoid(obj))) is lowest at x_anchor
    result = _assign(centers, pred, [gt_a, gt_b], [0, 0], num_classes=1, obj_logits=obj)
    # k_a = int(sum of the top 10 IoUs with a) = 10 > 9 near anchors: the 10th is the cheapest anchor near b
    # (x_anchor, class cost + 1e6). k_b = int(1 + 0 ...) = 1: y_anchor (IoU 1, no penalty).
    fg = result.fg_mask.nonzero().flatten().tolist()
    assert fg == sorted(near_a + [y_anchor, x_anchor])
    matched = dict(zip(fg, result.matched_gt_index.tolist()))
    assert all(matched[a] == 0 for a in near_a)
    assert matched[x_anchor] == 0 and matched[y_anchor] == 1
    assert result.matched_iou[fg.index(x_anchor)].item() == 1.0


def test_conflict_goes_to_the_lowest_cost_gt():
    centers, _ = _grid(8, STRIDE)
    gt_a, gt_b = [28.0, 28.0, 24.0, 24.0], [30.0, 28.0, 24.0, 24.0]
    pred = torch.tensor([[100.0, 100.0, 4.0, 4.0]]).repeat(64, 1)
    a, b, shared = 3 * 8 + 2, 3 * 8 + 4, 3 * 8 + 3  # (20, 28), (36, 28), (28, 28): near both gts
    pred[a] = torch.tensor(gt_a)
    pred[b] = torch.tensor(gt_b)
    pred[shared] = torch.tensor([29.5, 28.0, 24.0, 24.0])  # IoU with b (22.5 / 25.5) > IoU with a (22.5 / 25.5)?
    result = _assign(centers, pred, [gt_a, gt_b], [0, 1])
    ious = pairwise_iou(torch.tensor([gt_a, gt_b]), pred[[a, b, shared]])
    assert ious[1, 2] > ious[0, 2]  # equal class costs -> the shared anchor costs less for gt b
    # k_a = int(1 + 0.846 + 0.882) = 2 -> a and shared; k_b = int(0.846 + 1 + 0.96) = 2 -> b and shared.
    fg = result.fg_mask.nonzero().flatten().tolist()
    assert fg == [a, shared, b]
    assert result.matched_gt_index.tolist() == [0, 1, 1]
    assert result.matched_class.tolist() == [0, 1, 1]
    assert torch.equal(result.matched_iou, torch.stack((ious[0, 0], ious[1, 2], ious[1, 1])))


def test_no_gts_and_no_candidates():
    centers = [[4.0, 4.0], [12.0, 4.0]]
    preds = [[4.0, 4.0, 8.0, 8.0]] * 2
    empty = _assign(centers, preds, [], [])
    assert empty.num_fg == 0 and not empty.fg_mask.any() and empty.fg_mask.shape == (2,)
    assert empty.matched_gt_index.shape == (0,)
    far = _assign(centers, preds, [[500.0, 500.0, 10.0, 10.0]], [0])
    assert far.num_fg == 0 and not far.fg_mask.any()


def test_classification_cost_equals_torch_bce_bit_for_bit():
    torch.manual_seed(0)
    cls_logits, obj_logits = torch.randn(300, 5) * 6, torch.randn(300) * 6
    cls_logits[0, 0] = 200.0  # p = 1: log1p(-p) = -inf -> floored at -100
    obj_logits[1] = -200.0  # p = 0: log(p) = -inf -> floored at -100
    gt_classes = torch.tensor([2, 0, 4, 0])
    prob = (cls_logits.sigmoid() * obj_logits.sigmoid()[:, None]).sqrt()
    expected = F.binary_cross_entropy(
        prob.unsqueeze(0).repeat(4, 1, 1),
        F.one_hot(gt_classes, 5).float().unsqueeze(1).repeat(1, 300, 1),
        reduction="none",
    ).sum(-1)
    assert torch.equal(classification_cost(cls_logits, obj_logits, gt_classes), expected)


def test_pairwise_iou_matches_torchvision_and_touching_boxes_are_zero():
    torch.manual_seed(0)
    a = torch.cat((torch.rand(6, 2) * 50, torch.rand(6, 2) * 20 + 1), 1)
    b = torch.cat((torch.rand(9, 2) * 50, torch.rand(9, 2) * 20 + 1), 1)

    def xyxy(boxes):
        return torch.cat((boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2), 1)

    assert torch.allclose(pairwise_iou(a, b), box_iou(xyxy(a), xyxy(b)), atol=1e-6)
    touching = pairwise_iou(torch.tensor([[10.0, 10.0, 4.0, 4.0]]), torch.tensor([[14.0, 10.0, 4.0, 4.0]]))
    assert touching.item() == 0.0


def test_bad_inputs_raise():
    centers = [[4.0, 4.0]]
    with pytest.raises(ValueError, match="gt_classes: expected class ids in \\[0, 2\\)"):
        _assign(centers, [[4.0, 4.0, 8.0, 8.0]], [[4.0, 4.0, 8.0, 8.0]], [2])
    with pytest.raises(ValueError, match="pred_boxes: expected shape \\(1, 4\\)"):
        _assign(centers, [[4.0, 4.0, 8.0]], [[4.0, 4.0, 8.0, 8.0]], [0])


# ------------------------------------------------------------------------------------- randomised loop reference
def _loop_reference(centers, strides, pred, cls_logits, obj_logits, gts, classes):
    """The rule written out gt by gt (float32 torch ops per row, so float costs equal the vectorised ones)."""
    num_gt, num_anchors = gts.shape[0], centers.shape[0]
    near_rows = []
    for g in range(num_gt):
        cx, cy = float(gts[g, 0]), float(gts[g, 1])
        near_rows.append([
            abs(float(centers[a, 0]) - cx) < 1.5 * float(strides[a])
            and abs(float(centers[a, 1]) - cy) < 1.5 * float(strides[a])
            for a in range(num_anchors)
        ])
    cand = [a for a in range(num_anchors) if any(row[a] for row in near_rows)]
    if not cand:
        return {}
    p = pred[cand]
    prob = (cls_logits[cand].sigmoid() * obj_logits[cand].sigmoid()[:, None]).sqrt()
    costs, ious = [], []
    for g in range(num_gt):
        gx, gy, gw, gh = gts[g]
        left = torch.maximum(gx - gw / 2, p[:, 0] - p[:, 2] / 2)
        right = torch.minimum(gx + gw / 2, p[:, 0] + p[:, 2] / 2)
        top = torch.maximum(gy - gh / 2, p[:, 1] - p[:, 3] / 2)
        bottom = torch.minimum(gy + gh / 2, p[:, 1] + p[:, 3] / 2)
        inter = (right - left) * (bottom - top) * ((left < right) & (top < bottom)).float()
        iou = inter / (gw * gh + p[:, 2] * p[:, 3] - inter)
        onehot = F.one_hot(classes[g], cls_logits.shape[1]).float().expand_as(prob)
        cls_cost = F.binary_cross_entropy(prob, onehot, reduction="none").sum(-1)
        penalty = torch.tensor([0.0 if near_rows[g][a] else 1e6 for a in cand])
        costs.append(cls_cost + 3.0 * -torch.log(iou + 1e-8) + penalty)
        ious.append(iou)
    claims: dict[int, list[int]] = {}
    for g in range(num_gt):
        k = max(1, int(torch.topk(ious[g], min(10, len(cand))).values.sum()))
        for j in torch.topk(costs[g], k, largest=False).indices.tolist():
            claims.setdefault(j, []).append(g)
    result = {}
    for j, gs in claims.items():
        g = gs[0] if len(gs) == 1 else int(torch.min(torch.stack([c[j] for c in costs]), dim=0).indices)
        result[cand[j]] = (g, float(ious[g][j]))
    return result


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_equals_per_gt_loop(seed):
    g = torch.Generator().manual_seed(seed)
    levels = [_grid(12, 8.0), _grid(6, 16.0), _grid(3, 32.0)]
    centers = torch.cat([c for c, _ in levels])
    strides = torch.cat([s for _, s in levels])
    a = centers.shape[0]
    num_classes = 4
    num_gt = int(torch.randint(1, 7, (1,), generator=g))
    # gt centres on a 1/4 px grid (every distance exact), half of them on multiples of 4 px so that many lie
    # exactly 1.5 strides from an anchor (the strict boundary).
    gt_centers = torch.randint(0, 96 * 4, (num_gt, 2), generator=g).float() / 4
    on_boundary_grid = torch.rand(num_gt, 2, generator=g) < 0.5
    gt_centers = torch.where(on_boundary_grid, (gt_centers / 4).round() * 4, gt_centers)
    gt_sizes = torch.rand(num_gt, 2, generator=g) * 40 + 2
    gts = torch.cat((gt_centers, gt_sizes), 1)
    classes = torch.randint(0, num_classes, (num_gt,), generator=g)
    # predictions around the gts so that IoUs are often > 0
    owner = torch.randint(0, num_gt, (a,), generator=g)
    pred = gts[owner] + torch.randn(a, 4, generator=g) * torch.tensor([6.0, 6.0, 4.0, 4.0])
    pred[:, 2:] = pred[:, 2:].abs() + 0.5
    cls_logits = torch.randn(a, num_classes, generator=g) * 3
    obj_logits = torch.randn(a, generator=g) * 3

    result = simota_assign(centers, strides, pred, cls_logits, obj_logits, gts, classes)
    expected = _loop_reference(centers, strides, pred, cls_logits, obj_logits, gts, classes)
    fg = result.fg_mask.nonzero().flatten().tolist()
    assert fg == sorted(expected)
    assert result.num_fg == len(expected)
    assert result.matched_gt_index.tolist() == [expected[i][0] for i in fg]
    assert result.matched_class.tolist() == [int(classes[expected[i][0]]) for i in fg]
    assert result.matched_iou.tolist() == [expected[i][1] for i in fg]
    assert math.isfinite(sum(result.matched_iou.tolist()))
