"""Size-aware YOLOX loss: weight tables at and around the thresholds, exact equality with the plain loss at
weight 1, and a larger loss for a small target."""

import pytest
import torch

from evdet.model.config import compose_config, to_container
from evdet.model.nn.detector import HeadConfig, build_detector
from evdet.model.loss.size_aware import SizeAwareWeighting
from evdet.model.nn.yolox_head import YOLOXHead

# (weight_type, size_aware_weight, area px², expected weight), hand-computed with S = 1024, M = 9216.
WEIGHT_TABLE = [
    # exponential: clamp(W exp(-a / S), 1, W)
    ("exponential", 2.0, 0.0, 2.0),
    ("exponential", 2.0, 512.0, 1.2130613194),  # 2 e^-0.5
    ("exponential", 2.0, 709.0, 1.0007646603),  # just below a = S ln 2 = 709.78, where 2 e^(-a/S) = 1
    ("exponential", 2.0, 710.0, 1.0),  # 0.99979 clamped to 1
    ("exponential", 2.0, 1023.0, 1.0),
    ("exponential", 2.0, 1024.0, 1.0),
    ("exponential", 2.0, 1025.0, 1.0),
    ("exponential", 4.0, 1023.0, 1.4729554957),  # 4 e^(-1023/1024)
    ("exponential", 4.0, 1024.0, 1.4715177647),  # 4 / e
    ("exponential", 4.0, 1025.0, 1.4700814371),
    ("exponential", 4.0, 9216.0, 1.0),  # 4 e^-9 clamped
    # step: W below S, (W + 1) / 2 below M, else 1 (thresholds exclusive)
    ("step", 2.0, 0.0, 2.0),
    ("step", 2.0, 1023.0, 2.0),
    ("step", 2.0, 1024.0, 1.5),
    ("step", 2.0, 1025.0, 1.5),
    ("step", 2.0, 9215.0, 1.5),
    ("step", 2.0, 9216.0, 1.0),
    ("step", 2.0, 9217.0, 1.0),
    ("step", 4.0, 1024.0, 2.5),
    # linear: clamp(W (1 - a / M) + 1, 1, W)
    ("linear", 2.0, 0.0, 2.0),  # 3 clamped to 2
    ("linear", 2.0, 1024.0, 2.0),  # 2.78 clamped
    ("linear", 2.0, 4608.0, 2.0),  # exactly 2
    ("linear", 2.0, 6912.0, 1.5),
    ("linear", 2.0, 9215.0, 1.0002170139),  # 2 / 9216 + 1
    ("linear", 2.0, 9216.0, 1.0),
    ("linear", 2.0, 9217.0, 1.0),  # 0.99978 clamped
    ("linear", 4.0, 1023.0, 4.0),
    ("linear", 4.0, 6912.0, 2.0),
    ("linear", 4.0, 8000.0, 1.5277777778),  # 4 * 1216 / 9216 + 1
]


@pytest.mark.parametrize(("weight_type", "weight", "area", "expected"), WEIGHT_TABLE)
def test_weight_table(weight_type, weight, area, expected):
    fn = SizeAwareWeighting(weight_type=weight_type, size_aware_weight=weight)
    out = fn(torch.tensor([area], dtype=torch.float64))
    assert out.shape == (1,)
    assert float(out[0]) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("weight_type", ["exponential", "step", "linear"])
def test_weight_one_gives_ones_for_every_type(weight_type):
    fn = SizeAwareWeighting(weight_type=weight_type, size_aware_weight=1.0)
    areas = torch.tensor([0.0, 1.0, 1023.0, 1024.0, 9216.0, 1e6])
    assert torch.equal(fn(areas), torch.ones(6))


def test_unknown_weight_type_names_key_and_allowed_values():
    with pytest.raises(ValueError, match=r"head\.weight_type.*exponential.*step.*linear.*'cubic'"):
        SizeAwareWeighting(weight_type="cubic")
    with pytest.raises(ValueError, match=r"head\.weight_type"):
        HeadConfig.from_mapping({"weight_type": "cubic"})


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"size_aware_weight": 0.5}, "head.size_aware_weight"),
        ({"small_threshold": 0.0}, "head.small_threshold"),
        ({"small_threshold": 2048.0, "medium_threshold": 1024.0}, "head.medium_threshold"),
    ],
)
def test_bad_weighting_values_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        SizeAwareWeighting(**kwargs)


def test_area_must_be_a_1d_float_tensor():
    with pytest.raises(ValueError, match="area"):
        SizeAwareWeighting()(torch.tensor([[1.0]]))


# ------------------------------------------------------------------------------------------------------ losses
def _head_outputs(seed=0):
    """Raw outputs of a small 2-level head (strides 8, 16) on a 64 x 64 input: (B=2, 5 + 3, 8, 8) and (.., 4, 4)."""
    torch.manual_seed(seed)
    head = YOLOXHead(3, (8, 16), (8, 16), hidden_channels=8)
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    with torch.no_grad():
        return head(feats)


def _loss(outputs, targets, weighting=None):
    return YOLOXHead(3, (8, 16), (8, 16), hidden_channels=8, size_weighting=weighting).loss(outputs, targets)


LARGE_TARGETS = [
    torch.tensor([[0.0, 4.0, 6.0, 40.0, 30.0], [2.0, 20.0, 18.0, 36.0, 40.0]]),  # areas 1200, 1440 px²
    torch.zeros(0, 5),
]
KEYS = ("loss", "loss_iou", "loss_obj", "loss_cls", "loss_l1", "num_fg")


@pytest.mark.parametrize("weight_type", ["exponential", "step", "linear"])
def test_weight_one_equals_plain_loss_exactly(weight_type):
    outputs = _head_outputs()
    plain = _loss(outputs, LARGE_TARGETS)
    ones = _loss(outputs, LARGE_TARGETS, SizeAwareWeighting(weight_type=weight_type, size_aware_weight=1.0))
    assert float(plain["num_fg"]) > 0
    for key in KEYS:
        assert torch.equal(plain[key], ones[key]), key


def test_large_targets_under_exponential_weighting_equal_plain_loss_exactly():
    """exponential W = 2 gives weight 1 above 710 px², so these targets leave the loss bit-identical."""
    outputs = _head_outputs()
    plain = _loss(outputs, LARGE_TARGETS)
    weighted = _loss(outputs, LARGE_TARGETS, SizeAwareWeighting("exponential", 2.0))
    for key in KEYS:
        assert torch.equal(plain[key], weighted[key]), key


def test_small_target_weighs_more_by_exactly_its_weight():
    """One 10 x 10 px target: all positives share weight 2 exp(-100 / 1024) = 1.81392."""
    outputs = _head_outputs(seed=1)
    targets = [torch.tensor([[1.0, 20.0, 20.0, 10.0, 10.0]]), torch.zeros(0, 5)]
    plain = _loss(outputs, targets)
    weighted = _loss(outputs, targets, SizeAwareWeighting("exponential", 2.0))
    w = 1.8139212358
    assert float(plain["num_fg"]) > 0 and torch.equal(plain["num_fg"], weighted["num_fg"])
    assert float(weighted["loss_iou"]) == pytest.approx(w * float(plain["loss_iou"]), rel=1e-5)
    assert float(weighted["loss_cls"]) == pytest.approx(w * float(plain["loss_cls"]), rel=1e-5)
    assert torch.equal(plain["loss_obj"], weighted["loss_obj"])  # objectness is not weighted
    assert float(weighted["loss"]) > float(plain["loss"])


def test_weighted_loss_backpropagates():
    outputs = [o.detach().requires_grad_(True) for o in _head_outputs(seed=2)]
    targets = [torch.tensor([[0.0, 8.0, 8.0, 12.0, 16.0]]), torch.tensor([[1.0, 30.0, 2.0, 20.0, 50.0]])]
    loss = _loss(outputs, targets, SizeAwareWeighting("step", 2.0))["loss"]
    loss.backward()
    assert all(o.grad is not None and torch.isfinite(o.grad).all() for o in outputs)


# ---------------------------------------------------------------------------------------- detector configuration
def _model_cfg(*overrides):
    return to_container(compose_config(["profile=local", *overrides]))["model"]


def test_config_flag_switches_the_main_head_weighting():
    plain = build_detector(_model_cfg(), num_classes=8, in_channels=20)
    assert plain.head.criterion.size_weighting is None and plain.aux_head is None
    cfg = _model_cfg("model.head.size_aware_loss=true", "model.head.weight_type=linear",
                     "model.head.size_aware_weight=3.0")
    model = build_detector(cfg, num_classes=8, in_channels=20)
    assert model.head.criterion.size_weighting == SizeAwareWeighting("linear", 3.0, 1024.0, 9216.0)
    # no extra parameters: a plain checkpoint loads into a size-aware model
    model.load_state_dict(plain.state_dict(), strict=True)


def test_missing_head_node_builds_plain_yolox():
    cfg = _model_cfg()
    del cfg["head"]
    model = build_detector(cfg, num_classes=8, in_channels=20)
    assert model.head_config == HeadConfig() and model.aux_head is None
    assert model.head.criterion.size_weighting is None


@pytest.mark.parametrize(
    ("head", "key"),
    [
        ({"name": "RetinaNet"}, r"head\.name"),
        ({"size_aware_loss": "yes"}, r"head\.size_aware_loss"),
        ({"small_classes": "2,3"}, r"head\.small_classes"),
        ({"aux_loss_weight": -1.0}, r"head\.aux_loss_weight"),
        ({"size_aware_weight": "two"}, r"head\.size_aware_weight"),
        ({"size_aware_wieght": 2.0}, r"model\.head: unknown keys \['size_aware_wieght'\]"),
    ],
)
def test_bad_head_config_names_the_key(head, key):
    with pytest.raises(ValueError, match=key):
        HeadConfig.from_mapping(head)
