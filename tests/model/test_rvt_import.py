"""Importing reference-RVT weights (evdet.model.training.rvt_import) and ``evdet-model import-rvt``.

The layout conversions are checked against small re-statements of RVT's computations (attention q/k/v split,
ConvLSTM over cat(x, h)); the agreement of a whole imported detector with RVT's own outputs is in
tests/reference/test_forward.py.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from evdet.model.nn.attention import MultiHeadSelfAttention
from evdet.model.training.checkpoint import load_module
from evdet.model.cli.model import main
from evdet.model.config import compose_config, to_container
from evdet.model.nn.detector import build_detector
from evdet.model.nn.lstm import DWSConvLSTM2d, PlainLSTM2d
from evdet.model.training.rvt_import import (
    convert_rvt_state_dict,
    import_rvt_weights,
    load_rvt_state_dict,
    qkv_rvt_to_evdet,
    rvt_key_rules,
    rvt_model_config_to_overrides,
)

SMALL = ["model.backbone.embed_dim=16", "model.backbone.head_dim=8"]  # rvt_tiny at half width: fast


def _model(*overrides: str, preset: str = "rvt_tiny"):
    cfg = to_container(compose_config([f"model={preset}", *SMALL, *overrides]))
    ds = cfg["dataset"]
    return build_detector(cfg["model"], int(ds["num_classes"]), int(ds["in_channels"]), include_aux=False)


def _rvt_state_dict(model, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under RVT's names and shapes for ``model``'s config (one tensor per RVT key)."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for rule in rvt_key_rules(model):
        if rule.rvt_key in out:
            continue
        if rule.rvt_key.endswith("num_batches_tracked"):
            out[rule.rvt_key] = torch.tensor(7)
        elif rule.rvt_key.endswith("running_var"):
            out[rule.rvt_key] = torch.rand(rule.rvt_shape, generator=g) + 0.5
        else:
            out[rule.rvt_key] = torch.randn(rule.rvt_shape, generator=g) * 0.2
    return out


# ------------------------------------------------------------------------------------------------ layouts
def _rvt_attention(x, qkv_w, qkv_b, proj_w, proj_b, heads):
    """RVT SelfAttentionCl: rows of qkv viewed as (heads, 3 * head_dim), chunked into q, k, v."""
    b, n, c = x.shape
    q, k, v = F.linear(x, qkv_w, qkv_b).view(b, n, heads, 3 * (c // heads)).transpose(1, 2).chunk(3, dim=-1)
    attn = (q @ k.transpose(-2, -1) * (c // heads) ** -0.5).softmax(-1)
    return F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), proj_w, proj_b)


@pytest.mark.parametrize(("dim", "head_dim"), [(64, 32), (48, 24), (32, 8)])
def test_qkv_reordering_reproduces_rvt_attention(dim, head_dim):
    torch.manual_seed(0)
    heads = dim // head_dim
    qkv_w, qkv_b = torch.randn(3 * dim, dim) / dim**0.5, torch.randn(3 * dim)
    proj_w, proj_b = torch.randn(dim, dim) / dim**0.5, torch.randn(dim)
    x = torch.randn(5, 15, dim)
    attn = MultiHeadSelfAttention(dim, head_dim=head_dim)
    with torch.no_grad():
        attn.qkv.weight.copy_(qkv_rvt_to_evdet(qkv_w, heads))
        attn.qkv.bias.copy_(qkv_rvt_to_evdet(qkv_b, heads))
        attn.proj.weight.copy_(proj_w)
        attn.proj.bias.copy_(proj_b)
        expected = _rvt_attention(x, qkv_w, qkv_b, proj_w, proj_b, heads)
        assert torch.allclose(attn(x), expected, atol=1e-5)
        # without the reordering the function differs (the test can fail)
        attn.qkv.weight.copy_(qkv_w)
        attn.qkv.bias.copy_(qkv_b)
        assert not torch.allclose(attn(x), expected, atol=1e-3)


def test_torch_mha_layout_is_copied_unchanged():
    torch.manual_seed(0)
    model = _model()
    sd = _rvt_state_dict(model)
    prefix = "backbone.stages.1.att_blocks.0.att_grid.self_attn."
    for name in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias"):
        del sd[prefix + name]
    layer = model.backbone.stages[1].blocks[0].grid_attention
    c = layer.attn.qkv.weight.shape[1]
    mha = nn.MultiheadAttention(c, layer.attn.num_heads, batch_first=True)
    sd[prefix + "mha.in_proj_weight"] = mha.in_proj_weight.detach().clone()
    sd[prefix + "mha.in_proj_bias"] = torch.randn(3 * c)
    sd[prefix + "mha.out_proj.weight"] = mha.out_proj.weight.detach().clone()
    sd[prefix + "mha.out_proj.bias"] = torch.randn(c)
    with torch.no_grad():
        mha.in_proj_bias.copy_(sd[prefix + "mha.in_proj_bias"])
        mha.out_proj.bias.copy_(sd[prefix + "mha.out_proj.bias"])
    import_rvt_weights(model, sd)
    x = torch.randn(3, 10, c)
    with torch.no_grad():
        assert torch.allclose(layer.attn(x), mha(x, x, x)[0], atol=1e-5)


def _rvt_lstm(x, h, c, weight, bias, dws=None):
    """RVT DWSConvLSTM2d: 1x1 conv over cat(x, dws(h)); gates forget, input, output (sigmoid), cell input (tanh)."""
    if dws is not None:
        h = F.conv2d(h, dws[0], dws[1], padding=dws[0].shape[-1] // 2, groups=h.shape[1])
    mix = F.conv2d(torch.cat((x, h), 1), weight, bias)
    f, i, o = torch.sigmoid(mix[:, : 3 * x.shape[1]]).chunk(3, 1)
    c_new = f * c + i * torch.tanh(mix[:, 3 * x.shape[1]:])
    return o * torch.tanh(c_new), c_new


@pytest.mark.parametrize(("lstm_cell", "dws_conv"), [("DWSConvLSTM2d", False), ("DWSConvLSTM2d", True),
                                                     ("PlainLSTM2d", False)])
def test_lstm_weights_reproduce_rvt_cell(lstm_cell, dws_conv):
    model = _model(f"model.backbone.lstm_cell={lstm_cell}", f"model.backbone.dws_conv={str(dws_conv).lower()}")
    sd = _rvt_state_dict(model, seed=3)
    import_rvt_weights(model, sd)
    cell = model.backbone.stages[2].lstm
    assert isinstance(cell, DWSConvLSTM2d if lstm_cell == "DWSConvLSTM2d" else PlainLSTM2d)
    dim = cell.dim
    p = "backbone.stages.2.lstm."
    dws = (sd[p + "conv3x3_dws.weight"], sd[p + "conv3x3_dws.bias"]) if dws_conv else None
    assert (p + "conv3x3_dws.weight" in sd) == dws_conv
    torch.manual_seed(1)
    x, h, c = (torch.randn(2, dim, 4, 5) for _ in range(3))
    with torch.no_grad():
        got = cell(x, (h, c))
        expected = _rvt_lstm(x, h, c, sd[p + "conv1x1.weight"], sd[p + "conv1x1.bias"], dws)
    assert torch.allclose(got[0], expected[0], atol=1e-5) and torch.allclose(got[1], expected[1], atol=1e-5)


def test_every_key_used_and_filled():
    model = _model()
    sd = _rvt_state_dict(model)
    converted = convert_rvt_state_dict(sd, model)
    assert set(converted) == set(model.state_dict())
    assert len({r.rvt_key for r in rvt_key_rules(model)}) == len(sd)
    names = {r.evdet_key: r.rvt_key for r in rvt_key_rules(model)}
    # PAFPN names (YOLOX YOLOPAFPN) and the head prefix
    assert names["fpn.reduce_convs.1.conv.weight"] == "fpn.lateral_conv0.conv.weight"
    assert names["fpn.reduce_convs.0.conv.weight"] == "fpn.reduce_conv1.conv.weight"
    assert names["fpn.top_down_csps.1.conv1.conv.weight"] == "fpn.C3_p4.conv1.conv.weight"
    assert names["fpn.bottom_up_csps.1.m.0.conv2.bn.running_var"] == "fpn.C3_n4.m.0.conv2.bn.running_var"
    assert names["head.stems.2.bn.weight"] == "yolox_head.stems.2.bn.weight"


# ------------------------------------------------------------------------------------------------ errors
def test_wrong_num_classes_is_one_clear_error():
    sd = _rvt_state_dict(_model())  # 8 classes
    model = _model("dataset.num_classes=3")
    with pytest.raises(ValueError) as info:
        convert_rvt_state_dict(sd, model)
    message = str(info.value)
    assert "\n" not in message
    assert "yolox_head.cls_preds.0.weight has shape (8, " in message
    assert "needs (3, " in message
    assert "dataset.num_classes: the RVT weights have 8 classes" in message


def test_wrong_width_names_embed_dim():
    sd = _rvt_state_dict(_model())
    with pytest.raises(ValueError, match=r"backbone\.stages\.0\.downsample_cf2cl\.conv\.weight has shape \(16, 20, 7, "
                                         r"7\), evdet .* needs \(24, 20, 7, 7\).*model\.backbone\.embed_dim"):
        convert_rvt_state_dict(sd, _model("model.backbone.embed_dim=24"))


def test_truncated_and_unknown_keys():
    model = _model()
    sd = _rvt_state_dict(model)
    missing = dict(sd)
    del missing["fpn.C3_p3.m.0.conv2.bn.running_mean"]
    with pytest.raises(ValueError, match=r"missing RVT key fpn\.C3_p3\.m\.0\.conv2\.bn\.running_mean .*fpn\.depth"):
        convert_rvt_state_dict(missing, model)
    extra = dict(sd, **{"backbone.stages.0.mask_token": torch.zeros(1, 1, 1, 16)})
    with pytest.raises(ValueError, match=r"unused RVT key backbone\.stages\.0\.mask_token \(1, 1, 1, 16\).*masking"):
        convert_rvt_state_dict(extra, model)
    deeper = _rvt_state_dict(_model("model.backbone.num_blocks=[1,2,1,1]"))
    with pytest.raises(ValueError, match=r"unused RVT key backbone\.stages\.1\.att_blocks\.1\..*num_blocks"):
        convert_rvt_state_dict(deeper, model)


def test_fpn_other_than_three_levels_and_abc_are_refused():
    with pytest.raises(ValueError, match="exactly 3 levels.*model.fpn.in_stages"):
        rvt_key_rules(_model("model.fpn.in_stages=[1,2,3,4]"))
    cfg = to_container(compose_config(["model=rvt_tiny", *SMALL, "model.head.name=ABC"]))
    abc = build_detector(cfg["model"], 8, 20, include_aux=True, class_names=cfg["dataset"]["class_names"])
    with pytest.raises(ValueError, match="auxiliary head"):
        rvt_key_rules(abc)


def test_files_that_are_not_state_dicts(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state_dict or Lightning checkpoint"):
        load_rvt_state_dict(tmp_path / "list.pt")
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no RVT detector keys"):
        load_rvt_state_dict(tmp_path / "other.pt")
    torch.save({"backbone.x": "text"}, tmp_path / "strings.pt")
    with pytest.raises(ValueError, match="entry 'backbone.x' is a str, not a tensor"):
        load_rvt_state_dict(tmp_path / "strings.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a torch file"):
        load_rvt_state_dict(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_rvt_state_dict(tmp_path / "absent.pt")


class _Payload:
    """An object whose unpickling would run code (creates a file)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"backbone.x": torch.zeros(1), "extra": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refuses objects in this file \(\w+\.mkdir\)"):
        load_rvt_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()


def test_lightning_checkpoint_with_mdl_prefix_and_omegaconf_hparams(tmp_path):
    model = _model()
    sd = _rvt_state_dict(model)
    ckpt = {
        "state_dict": {f"mdl.{k}": v for k, v in sd.items()},
        "hyper_parameters": {"full_config": OmegaConf.create({"model": {"backbone": {"embed_dim": 16}}, "x": [1, 2]})},
        "pytorch-lightning_version": "1.8.6",
        "epoch": 3,
        "global_step": 1000,
    }
    torch.save(ckpt, tmp_path / "rvt.ckpt")
    loaded = load_rvt_state_dict(tmp_path / "rvt.ckpt")
    assert set(loaded) == set(sd)
    import_rvt_weights(model, tmp_path / "rvt.ckpt")
    assert torch.equal(model.state_dict()["head.cls_preds.1.bias"], sd["yolox_head.cls_preds.1.bias"])
    ckpt["state_dict"]["other.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "mixed.ckpt")
    with pytest.raises(ValueError, match="'other.weight' lacks the RVT module prefix 'mdl.'"):
        load_rvt_state_dict(tmp_path / "mixed.ckpt")


# ------------------------------------------------------------------------------------------------ config
RVT_TINY_CONFIG = {
    "backbone": {
        "name": "MaxViTRNN", "input_channels": 20, "enable_masking": False, "partition_split_32": 2,
        "embed_dim": 32, "dim_multiplier": [1, 2, 4, 8], "num_blocks": [1, 1, 1, 1],
        "T_max_chrono_init": [4, 8, 16, 32],
        "stem": {"patch_size": 4},
        "stage": {
            "downsample": {"type": "patch", "overlap": True, "norm_affine": True},
            "attention": {"use_torch_mha": False, "partition_size": [6, 10], "dim_head": 32, "attention_bias": True,
                          "mlp_activation": "gelu", "mlp_gated": False, "mlp_bias": True, "mlp_ratio": 4,
                          "drop_mlp": 0, "drop_path": 0, "ls_init_value": 1e-5},
            "lstm": {"dws_conv": False, "dws_conv_only_hidden": True, "dws_conv_kernel_size": 3, "drop_cell_update": 0},
        },
        "in_res_hw": [384, 640],
    },
    "fpn": {"name": "PAFPN", "depth": 0.33, "in_stages": [2, 3, 4], "depthwise": False, "act": "silu"},
    "head": {"name": "YoloX", "depthwise": False, "act": "silu", "num_classes": 3},
    "postprocess": {"confidence_threshold": 0.1, "nms_threshold": 0.45},
}


def test_rvt_config_to_overrides():
    overrides = rvt_model_config_to_overrides(RVT_TINY_CONFIG)
    assert "model.backbone.embed_dim=32" in overrides and "model.fpn.in_stages=[2,3,4]" in overrides
    assert "dataset.num_classes=3" in overrides and "validation.confidence_threshold=0.1" in overrides
    cfg = to_container(compose_config(overrides))  # default preset rvt_base: the overrides set every model value
    model = build_detector(cfg["model"], cfg["dataset"]["num_classes"], cfg["dataset"]["in_channels"],
                           include_aux=False)
    tiny = to_container(compose_config(["model=rvt_tiny", "dataset.num_classes=3"]))
    reference = build_detector(tiny["model"], 3, 20, include_aux=False)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize(("path", "value", "match"), [
    ("backbone.stage.attention.mlp_gated", True, "mlp_gated"),
    ("backbone.stage.attention.mlp_activation", "relu", "mlp_activation"),
    ("backbone.enable_masking", True, "enable_masking"),
    ("backbone.stage.lstm.dws_conv", True, None),  # supported
    ("fpn.depthwise", True, "fpn.depthwise"),
    ("backbone.stage.attention.partition_size", [3, 5], "partition_size"),
])
def test_rvt_config_values_evdet_cannot_represent(path, value, match):
    cfg = json.loads(json.dumps(RVT_TINY_CONFIG))
    node = cfg
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    if match is None:
        assert "model.backbone.dws_conv=true" in rvt_model_config_to_overrides(cfg)
        return
    with pytest.raises(ValueError, match=match):
        rvt_model_config_to_overrides(cfg)


# ------------------------------------------------------------------------------------------------ CLI
def _cli(capsys, *args):
    code = main(["import-rvt", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip_equals_direct_import(tmp_path, capsys):
    model = _model()
    sd = _rvt_state_dict(model, seed=5)
    torch.save(sd, tmp_path / "rvt.pt")
    code, out, err = _cli(capsys, tmp_path / "rvt.pt", "--model", "rvt_tiny", *SMALL, "--output", tmp_path / "e.ckpt")
    assert code == 0, err
    report = json.loads(out)
    assert report["output"] == str(tmp_path / "e.ckpt") and report["rvt_keys"] == len(sd)
    assert report["evdet_keys"] == len(model.state_dict()) and report["source_format"] == "state_dict"
    assert len(out.strip().splitlines()) == 1

    raw = torch.load(tmp_path / "e.ckpt", weights_only=True)  # plain containers only
    assert raw["epoch"] == 0 and raw["global_step"] == 0 and raw["hyper_parameters"]["eval_info"] is None
    assert all(k.startswith("model.") for k in raw["state_dict"])

    module, config = load_module(tmp_path / "e.ckpt")
    import_rvt_weights(model, sd)
    model.eval()
    torch.manual_seed(0)
    frames = torch.rand(2, 20, 64, 96) * 3
    with torch.no_grad():
        feats_a, _ = model.forward_backbone(frames)
        feats_b, _ = module.model.forward_backbone(frames)
        dets_a = model.detect(feats_a, 0.01, 0.5)
        dets_b = module.model.detect(feats_b, 0.01, 0.5)
    assert config["model"]["backbone"]["embed_dim"] == 16
    assert [len(d) for d in dets_a] == [len(d) for d in dets_b] and sum(len(d) for d in dets_a) > 0
    assert all(torch.equal(a, b) for a, b in zip(dets_a, dets_b))


def test_cli_refuses_existing_output_and_reports_errors(tmp_path, capsys):
    model = _model()
    torch.save(_rvt_state_dict(model), tmp_path / "rvt.pt")
    existing = tmp_path / "e.ckpt"
    existing.write_bytes(b"keep me")
    code, out, err = _cli(capsys, tmp_path / "rvt.pt", "--model", "rvt_tiny", *SMALL, "--output", existing)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "exists; pass --overwrite" in err
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.ckpt", "rvt.pt"]  # no temporary file left

    code, out, err = _cli(capsys, tmp_path / "rvt.pt", "--model", "rvt_tiny", *SMALL, "dataset.num_classes=3",
                          "--output", tmp_path / "f.ckpt")
    assert code == 2 and err.count("\n") == 1 and "dataset.num_classes" in err and "8 classes" in err
    assert not (tmp_path / "f.ckpt").exists()

    code, out, err = _cli(capsys, tmp_path / "rvt.pt", "--model", "rvt_tiny", "--output", tmp_path / "g.ckpt")
    assert code == 2 and err.count("\n") == 1 and "model.backbone.embed_dim" in err  # full-width preset

    code, out, err = _cli(capsys, tmp_path / "rvt.pt", "--model", "rvt_tiny", *SMALL, "--output", existing,
                          "--overwrite")
    assert code == 0, err
    assert existing.read_bytes() != b"keep me"
    module, _ = load_module(existing)
    assert module.model.head.num_classes == 8
