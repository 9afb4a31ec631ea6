"""YOLOX head: parameter counts, shapes, decoding, loss values and a tiny overfit of PAFPN + head."""

import math

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from evdet.model.nn.pafpn import PAFPN
from evdet.model.nn.postprocess import postprocess
from evdet.model.nn.yolox_head import YOLOXHead
from evdet.model.loss.yolox_loss import elementwise_iou, iou_loss, xywh_to_cxcywh


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("in_channels", "expected"),
    [((128, 256, 512), 1_893_031), ((96, 192, 384), 1_066_503), ((64, 128, 256), 475_495)],
)
def test_parameter_counts_match_rvt(in_channels, expected):
    head = YOLOXHead(8, (8, 16, 32), in_channels)
    assert head.hidden_channels == int(256 * in_channels[-1] / 1024)
    assert _params(head) == expected


def test_predictor_biases_use_prior_probability():
    head = YOLOXHead(3, (8, 16), (16, 32))
    for conv in (*head.cls_preds, *head.obj_preds):
        assert torch.allclose(conv.bias.sigmoid(), torch.full_like(conv.bias, 0.01))


@pytest.mark.parametrize(
    ("channels", "strides", "size"),
    [((16, 32, 64), (8, 16, 32), (48, 80)), ((8, 16, 32, 64), (4, 8, 16, 32), (36, 52))],
)
def test_pafpn_and_head_output_shapes(channels, strides, size):
    neck, head = PAFPN(channels, depth=0.33), YOLOXHead(5, strides, channels)
    feats = [torch.randn(2, c, math.ceil(size[0] / s), math.ceil(size[1] / s)) for c, s in zip(channels, strides)]
    outputs = head(neck(feats))
    assert [o.shape for o in outputs] == [(2, 10, f.shape[2], f.shape[3]) for f in feats]
    decoded = head.decode(outputs)
    assert decoded.shape == (2, sum(f.shape[2] * f.shape[3] for f in feats), 10)
    assert decoded.dtype == torch.float32
    assert ((decoded[..., 4:] >= 0) & (decoded[..., 4:] <= 1)).all()


def test_decode_hand_set_output():
    head = YOLOXHead(2, (8, 16), (4, 4))
    level0 = torch.zeros(1, 7, 2, 3)
    level1 = torch.zeros(1, 7, 1, 2)
    # level 0, cell gy = 1, gx = 2 (anchor 1 * 3 + 2 = 5)
    level0[0, :, 1, 2] = torch.tensor([0.5, 0.25, math.log(2.0), 0.0, 0.0, 10.0, -10.0])
    # level 1, cell gy = 0, gx = 1 (anchor 6 + 1 = 7)
    level1[0, :, 0, 1] = torch.tensor([-0.5, 1.0, 0.0, math.log(0.5), 2.0, 0.0, 0.0])
    decoded = head.decode([level0, level1])
    assert decoded.shape == (1, 8, 7)
    assert torch.allclose(decoded[0, 5, :5], torch.tensor([20.0, 10.0, 16.0, 8.0, 0.5]))
    assert decoded[0, 5, 5] > 0.99 and decoded[0, 5, 6] < 0.01
    assert torch.allclose(decoded[0, 7, :4], torch.tensor([8.0, 16.0, 16.0, 8.0]))
    assert torch.allclose(decoded[0, 7, 4], torch.tensor(2.0).sigmoid())
    # an untouched cell: (grid) * stride, size = stride
    assert torch.allclose(decoded[0, 4, :4], torch.tensor([8.0, 8.0, 8.0, 8.0]))


def _perfect_outputs(gt_xywh, stride=8, size=8, num_classes=2):
    """Raw outputs whose every anchor predicts exactly the gt box, with obj and class logits 0."""
    x, y, w, h = gt_xywh
    gy, gx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    raw = torch.zeros(1, 5 + num_classes, size, size)
    raw[0, 0] = (x + w / 2) / stride - gx
    raw[0, 1] = (y + h / 2) / stride - gy
    raw[0, 2] = math.log(w / stride)
    raw[0, 3] = math.log(h / stride)
    return raw


def test_loss_values_on_hand_built_case():
    head = YOLOXHead(2, (8,), (4,))
    raw = _perfect_outputs((16.0, 16.0, 24.0, 24.0))
    losses = head.loss([raw], [torch.tensor([[1.0, 16.0, 16.0, 24.0, 24.0]])])
    # gt centre (28, 28): anchor points 20, 28, 36 lie strictly within 1.5 strides (12 px) on each axis -> 9
    # candidates (RVT's SimOTA rule), all IoU 1 -> dynamic k = int(sum of top-min(10, 9) IoUs) = 9 positives;
    # 64 anchors with obj logit 0; class target onehot x IoU 1 with class logits 0.
    assert losses["num_fg"].item() == 9
    assert losses["loss_iou"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["loss_obj"].item() == pytest.approx(64 * math.log(2) / 9, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(2 * math.log(2), rel=1e-5)
    assert losses["loss_l1"].item() == 0.0
    assert losses["loss"].item() == pytest.approx(64 * math.log(2) / 9 + 2 * math.log(2), rel=1e-5)


def test_elementwise_iou_follows_yolox_iouloss():
    pred = torch.tensor([
        [10.0, 10.0, 4.0, 4.0],  # identical -> 1
        [10.0, 10.0, 4.0, 4.0],  # touching on x -> 0 (no strict overlap)
        [10.0, 10.0, 4.0, 4.0],  # disjoint -> 0
        [11.0, 10.0, 4.0, 2.0],  # inter 3 x 2 = 6, union 16 + 8 - 6 = 18
    ], requires_grad=True)
    target = torch.tensor([[10.0, 10.0, 4.0, 4.0], [14.0, 10.0, 4.0, 4.0], [30.0, 30.0, 2.0, 2.0],
                           [10.0, 10.0, 4.0, 4.0]])
    iou = elementwise_iou(pred, target)
    assert iou.tolist() == pytest.approx([16 / (16 + 1e-16), 0.0, 0.0, 6 / 18], abs=1e-7)
    assert torch.equal(iou_loss(pred, target), 1.0 - iou**2)
    iou.sum().backward()
    # the intersection is masked, so no gradient flows through touching or disjoint pairs except via the union
    assert pred.grad[1, :2].abs().sum() == 0 and pred.grad[2, :2].abs().sum() == 0


def test_targets_are_converted_to_centres_like_rvt():
    boxes = torch.tensor([[8.18376, 73.905685, 15.389855, 22.292124], [1.0, 2.0, 3.0, 5.0]])
    converted = xywh_to_cxcywh(boxes)
    assert torch.equal(converted[:, 2:], boxes[:, 2:])  # sizes are not recomputed from corners
    assert torch.equal(converted[:, :2], boxes[:, :2] + 0.5 * boxes[:, 2:])


def test_loss_with_and_without_targets():
    torch.manual_seed(0)
    neck, head = PAFPN((8, 16, 32), depth=0.33), YOLOXHead(3, (8, 16, 32), (8, 16, 32))
    feats = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip((8, 16, 32), (8, 16, 32))]
    outputs = head(neck(feats))
    targets = [torch.tensor([[0.0, 4.0, 6.0, 20.0, 12.0], [2.0, 30.0, 20.0, 30.0, 40.0]]), torch.zeros(0, 5)]
    losses = head.loss(outputs, targets)
    assert set(losses) == {"loss", "loss_iou", "loss_obj", "loss_cls", "loss_l1", "num_fg"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["num_fg"] >= 2 and losses["loss_iou"] > 0 and losses["loss_cls"] > 0
    expected = 5.0 * losses["loss_iou"] + losses["loss_obj"] + losses["loss_cls"] + losses["loss_l1"]
    assert torch.allclose(losses["loss"], expected)

    empty = head.loss(outputs, [torch.zeros(0, 5), torch.zeros(0, 5)])
    assert empty["num_fg"] == 0 and empty["loss_iou"] == 0 and empty["loss_cls"] == 0
    assert torch.isfinite(empty["loss"]) and torch.allclose(empty["loss"], empty["loss_obj"])
    empty["loss"].backward()
    assert head.obj_preds[0].bias.grad.abs().sum() > 0


def test_l1_loss_only_when_enabled():
    torch.manual_seed(0)
    outputs = [torch.randn(1, 7, 8, 8)]
    targets = [torch.tensor([[1.0, 16.0, 16.0, 24.0, 24.0]])]
    off = YOLOXHead(2, (8,), (4,)).loss(outputs, targets)
    on = YOLOXHead(2, (8,), (4,), use_l1=True).loss(outputs, targets)
    assert off["loss_l1"] == 0 and on["loss_l1"] > 0
    assert torch.allclose(on["loss"] - on["loss_l1"], off["loss"])
    perfect = YOLOXHead(2, (8,), (4,), use_l1=True).loss([_perfect_outputs((16.0, 16.0, 24.0, 24.0))], targets)
    assert perfect["loss_l1"].item() == pytest.approx(0.0, abs=1e-5)


def test_bad_targets_raise():
    head = YOLOXHead(3, (8,), (4,))
    outputs = [torch.zeros(2, 8, 4, 4)]
    ok = torch.tensor([[0.0, 1.0, 1.0, 4.0, 4.0]])
    with pytest.raises(ValueError, match="targets: expected 2 tensors"):
        head.loss(outputs, [ok])
    with pytest.raises(ValueError, match=r"targets\[1\]: expected a tensor of shape \(n, 5\)"):
        head.loss(outputs, [ok, torch.zeros(1, 4)])
    with pytest.raises(ValueError, match=r"targets\[0\] class_id: expected integers in \[0, 3\)"):
        head.loss(outputs, [torch.tensor([[3.0, 1.0, 1.0, 4.0, 4.0]]), ok])
    with pytest.raises(ValueError, match=r"targets\[1\] w, h: expected > 0 px"):
        head.loss(outputs, [ok, torch.tensor([[0.0, 1.0, 1.0, 0.0, 4.0]])])
    with pytest.raises(ValueError, match=r"outputs\[0\]: expected shape \(B, 8, H, W\)"):
        head.loss([torch.zeros(2, 7, 4, 4)], [ok, ok])
    with pytest.raises(ValueError, match=r"features\[0\]: expected shape \(B, 4, H, W\)"):
        head([torch.zeros(1, 5, 4, 4)])
    with pytest.raises(ValueError, match="num_classes: expected a positive int"):
        YOLOXHead(0, (8,), (4,))


def test_tiny_overfit_recovers_targets():
    torch.manual_seed(0)
    channels, strides = (16, 32, 64), (8, 16, 32)
    neck, head = PAFPN(channels, depth=0.33), YOLOXHead(3, strides, channels)
    feats = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(channels, strides)]
    targets = [
        torch.tensor([[0.0, 6.0, 8.0, 20.0, 16.0], [1.0, 34.0, 30.0, 22.0, 26.0], [2.0, 8.0, 40.0, 40.0, 18.0]]),
        torch.zeros(0, 5),
    ]
    optimizer = torch.optim.Adam([*neck.parameters(), *head.parameters()], lr=5e-3)
    history = []
    for _ in range(100):
        losses = head.loss(head(neck(feats)), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["loss"].item())
    assert history[-1] < history[0] / 3, f"loss fell only from {history[0]:.3f} to {history[-1]:.3f}"

    neck.eval()
    head.eval()
    with torch.no_grad():
        detections = postprocess(head.decode(head(neck(feats))), conf_threshold=0.5, nms_threshold=0.5)
    gt_xyxy = box_convert(targets[0][:, 1:], "xywh", "xyxy")
    for gt_box, gt_class in zip(gt_xyxy, targets[0][:, 0]):
        same_class = detections[0][detections[0][:, 6] == gt_class]  # column 6: class_id
        assert len(same_class) > 0, f"no detection of class {int(gt_class)}"
        assert box_iou(gt_box[None], same_class[:, :4]).max() > 0.5
    assert len(detections[1]) == 0, "the image without targets should have no confident detection"
