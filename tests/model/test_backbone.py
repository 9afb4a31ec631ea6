"""Tests for the RVT backbone (evdet.model.nn.backbone, .maxvit, .attention).

Parameter counts are the reference numbers in shared/docs/rvt-architecture-facts.md (8 classes, 384x640).
Forward passes use small inputs / widths to stay fast on CPU.
"""

import pytest
import torch

from evdet.model.nn.attention import (
    MultiHeadSelfAttention,
    block_partition,
    block_unpartition,
    grid_partition,
    grid_unpartition,
)
from evdet.model.nn.backbone import BACKBONE_SIZES, MaxViTRNN
from evdet.model.nn.lstm import DWSConvLSTM2d, PlainLSTM2d
from evdet.model.nn.maxvit import PartitionAttentionLayer


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_backbone(**kwargs) -> MaxViTRNN:
    torch.manual_seed(0)
    return MaxViTRNN(embed_dim=8, head_dim=8, **kwargs)


# ---- parameter counts (hard numbers from the RVT reference implementation) ----


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(BACKBONE_SIZES["base"], patch_size=4), 12_784_768),
        (dict(BACKBONE_SIZES["base"], patch_size=2), 12_733_568),
        (dict(BACKBONE_SIZES["small"]), 7_209_312),
        (dict(BACKBONE_SIZES["tiny"]), 3_220_032),
    ],
    ids=["RVT-B-patch4", "RVT-B-patch2", "RVT-S", "RVT-T"],
)
def test_backbone_parameter_counts(kwargs, expected):
    assert count(MaxViTRNN(**kwargs)) == expected


def test_rvt_b_per_stage_counts():
    expected = [
        (62_848, 100_096, 33_024),
        (73_984, 396_800, 131_584),
        (295_424, 1_580_032, 525_312),
        (1_180_672, 6_305_792, 2_099_200),
    ]
    model = MaxViTRNN()
    got = [(count(s.downsample), sum(count(b) for b in s.blocks), count(s.lstm)) for s in model.stages]
    assert got == expected


def test_plain_lstm_backbone_has_the_same_count():
    model = MaxViTRNN(embed_dim=32, lstm_cell="PlainLSTM2d")
    assert all(isinstance(s.lstm, PlainLSTM2d) for s in model.stages)
    assert count(model) == 3_220_032


def test_dws_conv_adds_ten_params_per_channel_per_stage():
    model = MaxViTRNN(embed_dim=32, dws_conv=True)
    assert all(isinstance(s.lstm, DWSConvLSTM2d) for s in model.stages)
    assert count(model) - 3_220_032 == 10 * (32 + 64 + 128 + 256)


def test_first_attention_norm_of_each_stage_is_skipped():
    model = MaxViTRNN(embed_dim=8, head_dim=8, num_blocks=(2, 1, 1, 1))
    first = model.stages[0].blocks
    assert isinstance(first[0].block_attention.norm1, torch.nn.Identity)
    assert isinstance(first[0].grid_attention.norm1, torch.nn.LayerNorm)
    assert isinstance(first[1].block_attention.norm1, torch.nn.LayerNorm)
    assert first[0].block_attention.norm2.eps == 1e-5 and model.stages[0].downsample.norm.eps == 1e-5
    assert torch.all(first[0].block_attention.ls1.gamma == 1e-5)
    assert model.stages[0].blocks[0].block_attention.attn.num_heads == 1
    assert MaxViTRNN().stages[3].blocks[0].grid_attention.attn.num_heads == 16


def test_sizes_attributes_and_partition_size():
    assert BACKBONE_SIZES == {
        "tiny": dict(embed_dim=32, head_dim=32),
        "small": dict(embed_dim=48, head_dim=24),
        "base": dict(embed_dim=64, head_dim=32),
    }
    model = tiny_backbone()
    assert model.num_stages == 4
    assert model.out_channels == {1: 8, 2: 16, 3: 32, 4: 64}
    assert model.strides == {1: 4, 2: 8, 3: 16, 4: 32}
    assert tiny_backbone(patch_size=2).strides == {1: 2, 2: 4, 3: 8, 4: 16}
    assert model.required_input_multiple == 64
    assert model.partition_size(384, 640) == (6, 10)
    assert tiny_backbone(partition_split=1).required_input_multiple == 32


# ---- forward shapes ----


@pytest.mark.parametrize(("patch_size", "strides"), [(4, (4, 8, 16, 32)), (2, (2, 4, 8, 16))])
def test_rvt_b_feature_shapes(patch_size, strides):
    torch.manual_seed(0)
    model = MaxViTRNN(patch_size=patch_size).eval()
    with torch.no_grad():
        features, states = model(torch.rand(1, 20, 128, 192))
    assert sorted(features) == [1, 2, 3, 4]
    for stage, (stride, channels) in enumerate(zip(strides, (64, 128, 256, 512)), start=1):
        shape = (1, channels, 128 // stride, 192 // stride)
        assert features[stage].shape == shape
        h, c = states[stage - 1]
        assert h is features[stage] and c.shape == shape
        assert torch.isfinite(features[stage]).all()


def test_partition_split_one_accepts_multiples_of_32():
    model = tiny_backbone(partition_split=1).eval()
    with torch.no_grad():
        features, _ = model(torch.rand(2, 20, 96, 32))
    assert features[4].shape == (2, 64, 3, 1)


# ---- recurrence ----


def test_state_changes_outputs_and_reset_reproduces_first_step():
    model = tiny_backbone().eval()
    torch.manual_seed(1)
    frame0, frame1 = torch.rand(2, 20, 64, 128), torch.rand(2, 20, 64, 128)
    with torch.no_grad():
        first, states = model(frame0)
        second_with_state, _ = model(frame1, states)
        second_from_zero, _ = model(frame1)
        reset, _ = model(frame0, [None, None, None, None])
        zero_states = [(torch.zeros_like(h), torch.zeros_like(c)) for h, c in states]
        explicit_zero, _ = model(frame0, zero_states)
    for stage in range(1, 5):
        assert not torch.allclose(second_with_state[stage], second_from_zero[stage])
        torch.testing.assert_close(reset[stage], first[stage])
        torch.testing.assert_close(explicit_zero[stage], first[stage])


def test_per_stage_state_reset_only_affects_later_stages_through_inputs():
    model = tiny_backbone().eval()
    frame = torch.rand(1, 20, 64, 64)
    with torch.no_grad():
        _, states = model(frame)
        full, _ = model(frame, states)
        partial, _ = model(frame, [states[0], None, None, None])
    torch.testing.assert_close(partial[1], full[1])
    assert not torch.allclose(partial[2], full[2])


def test_activation_checkpointing_gives_same_outputs_and_gradients(monkeypatch):
    import evdet.model.nn.backbone as backbone_module

    calls = []
    real_checkpoint = backbone_module.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(backbone_module, "checkpoint", counting_checkpoint)
    plain = tiny_backbone().train()
    ckpt = tiny_backbone(checkpoint_stages=True).train()
    ckpt.load_state_dict(plain.state_dict())
    frame = torch.rand(1, 20, 64, 64)
    results = []
    for model in (plain, ckpt):
        _, states = model(frame)
        features, _ = model(frame, states)
        loss = sum(f.square().sum() for f in features.values())
        loss.backward()
        results.append((features, [p.grad.clone() for p in model.parameters()]))
    assert calls == [False] * 8  # 4 stages x 2 time steps, only for the checkpointed model
    with torch.no_grad():
        ckpt(frame)
    assert len(calls) == 8  # no recomputation bookkeeping when autograd is off
    for stage in range(1, 5):
        torch.testing.assert_close(results[0][0][stage], results[1][0][stage])
    for g0, g1 in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g0, g1)


# ---- errors ----


def test_input_size_not_a_multiple_raises():
    model = tiny_backbone()
    with pytest.raises(ValueError, match=r"input size 100x128 .* multiple of 64"):
        model(torch.rand(1, 20, 100, 128))
    with pytest.raises(ValueError, match=r"input size 64x96 .* multiple of 64"):
        model(torch.rand(1, 20, 64, 96))


def test_bad_input_tensor_raises():
    model = tiny_backbone()
    with pytest.raises(ValueError, match=r"input x must be a float tensor \(B, 20, H, W\), got \(1, 18, 64, 64\)"):
        model(torch.rand(1, 18, 64, 64))
    with pytest.raises(ValueError, match=r"input x must be a float tensor .*uint8"):
        model(torch.zeros(1, 20, 64, 64, dtype=torch.uint8))


def test_bad_states_raise():
    model = tiny_backbone()
    frame = torch.rand(1, 20, 64, 64)
    with pytest.raises(ValueError, match="states must be None or a list of 4 entries .* got 3"):
        model(frame, [None, None, None])
    bad = (torch.zeros(1, 16, 4, 4), torch.zeros(1, 16, 4, 4))
    with pytest.raises(ValueError, match=r"states\[1\] \(stage 2\) .* shape \(1, 16, 8, 8\)"):
        model(frame, [None, bad, None, None])


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="lstm_cell must be one of"):
        MaxViTRNN(embed_dim=8, head_dim=8, lstm_cell="GRU")
    with pytest.raises(ValueError, match="lstm_cell 'PlainLSTM2d' has no depthwise conv: dws_conv must be False"):
        MaxViTRNN(embed_dim=8, head_dim=8, lstm_cell="PlainLSTM2d", dws_conv=True)
    with pytest.raises(ValueError, match="stage 1 width 48 .* multiple of head_dim 32"):
        MaxViTRNN(embed_dim=48, head_dim=32)
    with pytest.raises(ValueError, match="num_blocks must have 4 entries"):
        MaxViTRNN(embed_dim=8, head_dim=8, num_blocks=(1, 1, 1))
    with pytest.raises(ValueError, match="patch_size must be >= 1 and divide 4 \\* partition_split = 8, got 3"):
        MaxViTRNN(embed_dim=8, head_dim=8, patch_size=3)


# ---- partitions and attention ----


def test_partitions_round_trip_and_group_the_right_pixels():
    x = torch.arange(2 * 4 * 6 * 3, dtype=torch.float32).view(2, 4, 6, 3)
    windows = block_partition(x, (2, 3))
    assert windows.shape == (2 * 2 * 2, 6, 3)
    torch.testing.assert_close(windows[1], x[0, 0:2, 3:6].reshape(6, 3))  # second window: rows 0-1, cols 3-5
    torch.testing.assert_close(block_unpartition(windows, (2, 3), (4, 6)), x)
    groups = grid_partition(x, (2, 3))
    assert groups.shape == (2 * 2 * 2, 6, 3)
    # group 1 of image 0: offset (0, 1) inside each 2x2 cell -> pixels rows {0, 2}, cols {1, 3, 5}
    torch.testing.assert_close(groups[1], x[0, 0::2, 1::2].reshape(6, 3))
    torch.testing.assert_close(grid_unpartition(groups, (2, 3), (4, 6)), x)
    with pytest.raises(ValueError, match="feature map 4x6 is not divisible by the size 3x3"):
        grid_partition(x, (3, 3))


def test_attention_matches_manual_softmax_without_position_bias():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, head_dim=4)
    tokens = torch.randn(3, 5, 8)
    q, k, v = attn.qkv(tokens).split(8, dim=-1)
    heads = []
    for hd in range(2):
        sl = slice(4 * hd, 4 * hd + 4)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) * 4**-0.5, dim=-1)
        heads.append(weights @ v[..., sl])
    expected = attn.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(tokens), expected)
    with pytest.raises(ValueError, match="dim 8 must be a positive multiple of head_dim 3"):
        MultiHeadSelfAttention(8, head_dim=3)


@pytest.mark.parametrize(
    ("kind", "affected"),
    [("block", {(0, 0), (0, 1), (1, 0), (1, 1)}), ("grid", {(0, 0), (0, 4), (4, 0), (4, 4)})],
)
def test_attention_layer_mixes_only_within_its_partition(kind, affected):
    torch.manual_seed(0)
    layer = PartitionAttentionLayer(8, kind, head_dim=8, layer_scale_init=None).eval()
    x = torch.randn(1, 8, 8, 8)
    x_changed = x.clone()
    x_changed[0, 0, 0, 0] += 1.0  # one channel: a shift of all channels would vanish in the LayerNorm
    with torch.no_grad():
        diff = (layer(x_changed, (2, 2)) - layer(x, (2, 2))).abs().sum(-1)[0]
    changed = {tuple(ix) for ix in (diff > 1e-4).nonzero().tolist()}
    assert changed == affected
