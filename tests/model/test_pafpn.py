"""PAFPN neck: exact RVT/YOLOX parameter counts, shapes for 2-4 levels, odd sizes, errors."""

import pytest
import torch

from evdet.model.nn.csp import BaseConv, CSPLayer, DWConv, make_activation
from evdet.model.nn.pafpn import PAFPN


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("in_channels", "depth", "expected"),
    [((128, 256, 512), 0.67, 3_860_992), ((96, 192, 384), 0.33, 1_596_096), ((64, 128, 256), 0.33, 710_784)],
)
def test_parameter_counts_match_rvt(in_channels, depth, expected):
    assert _params(PAFPN(in_channels, depth=depth)) == expected


def test_csp_bottleneck_count_follows_depth():
    assert PAFPN((8, 16, 32), depth=0.67).num_bottlenecks == 2
    assert len(PAFPN((8, 16, 32), depth=0.33).top_down_csps[0].m) == 1
    assert len(PAFPN((8, 16, 32), depth=1.0).bottom_up_csps[1].m) == 3


def _features(channels, height, width, batch=2):
    feats = []
    for c in channels:
        feats.append(torch.randn(batch, c, height, width))
        height, width = (height + 1) // 2, (width + 1) // 2
    return feats


@pytest.mark.parametrize(
    ("channels", "size"),
    [((8, 16, 32), (12, 20)), ((8, 16, 32, 64), (23, 41)), ((8, 16), (9, 7))],
)
def test_output_shapes_equal_input_shapes(channels, size):
    neck = PAFPN(channels, depth=0.33)
    feats = _features(channels, *size)
    outs = neck(feats)
    assert isinstance(outs, tuple) and len(outs) == len(channels)
    assert [o.shape for o in outs] == [f.shape for f in feats]


def test_every_output_sees_every_level():
    channels = (4, 8, 16, 32)
    neck = PAFPN(channels, depth=0.33).eval()
    feats = [f.requires_grad_() for f in _features(channels, 16, 16, batch=1)]
    for level, out in enumerate(neck(feats)):
        grads = torch.autograd.grad(out.sum(), feats, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads), f"output {level} ignores an input level"


def test_depthwise_and_activation_variants_run():
    neck = PAFPN((8, 16, 32), depth=0.33, depthwise=True, act="relu")
    assert isinstance(neck.down_convs[0], DWConv)
    outs = neck(_features((8, 16, 32), 8, 8))
    assert outs[2].shape == (2, 32, 2, 2)
    assert _params(neck) < _params(PAFPN((8, 16, 32), depth=0.33))


def test_blocks_shapes():
    x = torch.randn(1, 6, 9, 7)
    assert BaseConv(6, 10, 3, 2)(x).shape == (1, 10, 5, 4)
    assert CSPLayer(6, 12, 0)(x).shape == (1, 12, 9, 7)
    assert DWConv(6, 4, 3, 2)(x).shape == (1, 4, 5, 4)


def test_constructor_errors():
    with pytest.raises(ValueError, match="in_channels: expected at least 2 levels"):
        PAFPN((64,))
    with pytest.raises(ValueError, match="in_channels: expected positive ints"):
        PAFPN((64, 0, 3))
    with pytest.raises(ValueError, match="act: expected one of"):
        make_activation("gelu6")


def test_forward_errors_name_the_level():
    neck = PAFPN((8, 16, 32), depth=0.33)
    feats = _features((8, 16, 32), 8, 8)
    with pytest.raises(ValueError, match="expected 3 levels, got 2"):
        neck(feats[:2])
    with pytest.raises(ValueError, match=r"features\[1\]: expected shape \(B, 16, H, W\)"):
        neck([feats[0], torch.randn(2, 15, 4, 4), feats[2]])
    with pytest.raises(ValueError, match=r"features\[2\]: expected spatial size \(2, 2\)"):
        neck([feats[0], feats[1], torch.randn(2, 32, 3, 2)])
