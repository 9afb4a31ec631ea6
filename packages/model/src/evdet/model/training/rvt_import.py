"""Importing weights of the reference RVT implementation (github.com/uzh-rpg/RVT @ b80f568) into evdet's :class:`RVT`.

RVT and evdet compute the same detector (RVT, Gehrig & Scaramuzza, CVPR 2023, Sec. 3; YOLOX, Ge et al. 2021), but
name and lay out some parameters differently. The mapping, from RVT's ``YoloXDetector`` state_dict (prefixes
``backbone.``, ``fpn.``, ``yolox_head.``) to evdet's (``backbone.``, ``fpn.``, ``head.``):

* backbone stage ``s`` (0-based in both): ``downsample_cf2cl.*`` -> ``downsample.*``; MaxViT block ``b``:
  ``att_blocks.b.att_window.*`` -> ``blocks.b.block_attention.*`` and ``att_grid`` -> ``grid_attention``; inside a
  layer ``mlp.net.0.0`` -> ``mlp.fc1`` and ``mlp.net.2`` -> ``mlp.fc2``, ``self_attn.proj`` -> ``attn.proj``,
  norms and LayerScale ``gamma`` unchanged.
* attention q/k/v projection (``self_attn.qkv`` -> ``attn.qkv``): RVT's ``SelfAttentionCl`` (RVT
  ``models/layers/maxvit/maxvit.py``) views the 3C outputs as ``(heads, 3 * head_dim)`` and chunks the last axis, so
  its rows are ordered ``(head, [q|k|v], head_dim)``; evdet's :class:`MultiHeadSelfAttention` views them as
  ``(3, heads, head_dim)``, rows ``([q|k|v], head, head_dim)``. The rows (weight and bias) are permuted accordingly;
  the permutation depends on ``head_dim`` (``model.backbone.head_dim``), which the weights cannot reveal: a wrong
  value loads without a shape error but computes a different function. RVT's optional ``use_torch_mha`` layers
  (``self_attn.mha.in_proj_*`` / ``out_proj.*`` of ``torch.nn.MultiheadAttention``) already use evdet's row order
  and are copied unchanged.
* ConvLSTM (RVT ``models/layers/rnn.py`` ``DWSConvLSTM2d``): ``lstm.conv1x1`` (1x1 conv over ``cat(x, h)``, 4C gate
  channels in the order forget, input, output, cell input, as evdet) -> ``lstm.gates_conv`` of evdet's
  :class:`DWSConvLSTM2d`; for evdet's :class:`PlainLSTM2d` the weight is split by input channel into
  ``input_transform.weight = weight[:, :C]`` and ``hidden_transform.weight = weight[:, C:]``, the bias goes to the
  input transform. The depthwise conv on h (``lstm.conv3x3_dws``, RVT ``dws_conv``) -> ``lstm.hidden_dws_conv``.
* PAFPN (RVT ``yolo_pafpn.py``, YOLOX's ``YOLOPAFPN``, 3 levels only): ``lateral_conv0`` -> ``reduce_convs.1``,
  ``reduce_conv1`` -> ``reduce_convs.0``, ``C3_p4`` -> ``top_down_csps.1``, ``C3_p3`` -> ``top_down_csps.0``,
  ``bu_conv2`` -> ``down_convs.0``, ``bu_conv1`` -> ``down_convs.1``, ``C3_n3`` -> ``bottom_up_csps.0``, ``C3_n4`` ->
  ``bottom_up_csps.1`` (see :class:`evdet.model.nn.pafpn.PAFPN`); inner names (``conv1``, ``m.0.conv2``, ``bn`` ...)
  are the same.
* YOLOX head: ``yolox_head.*`` -> ``head.*``, names unchanged.

The import is strict: every RVT entry is used exactly once and every evdet entry is filled; otherwise one
``ValueError`` lists the problems (key, both shapes, and the config value that probably differs).

Files are read with ``torch.load(..., weights_only=True)`` only. A Lightning checkpoint written by RVT's training
stores its Hydra config as omegaconf objects in ``hyper_parameters``; :data:`OMEGACONF_SAFE_GLOBALS` lists the only
classes allowed in addition to torch's weights-only defaults for that case.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from evdet.data.output_folder import write_file_atomically
from evdet.model.nn.attention import MultiHeadSelfAttention
from evdet.model.nn.detector import RVT
from evdet.model.nn.lstm import DWSConvLSTM2d, PlainLSTM2d

__all__ = [
    "LIGHTNING_PREFIX",
    "MODEL_PRESETS",
    "OMEGACONF_SAFE_GLOBALS",
    "RVT_PREFIXES",
    "KeyRule",
    "convert_rvt_state_dict",
    "extract_rvt_state_dict",
    "import_rvt_weights",
    "load_rvt_state_dict",
    "qkv_rvt_to_evdet",
    "read_rvt_file",
    "rvt_key_rules",
    "rvt_model_config_to_overrides",
    "write_imported_checkpoint",
]

LIGHTNING_PREFIX = "mdl."
"""Prefix of the detector's entries in RVT's Lightning checkpoints (``modules/detection.py``: ``self.mdl``)."""

RVT_PREFIXES = ("backbone.", "fpn.", "yolox_head.")
"""Top-level names of RVT's ``YoloXDetector`` (``models/detection/yolox_extension/models/detector.py``)."""

_FPN_NAMES = {
    # RVT / YOLOX YOLOPAFPN name -> evdet PAFPN name (3 levels; level 0 = stride 8).
    "lateral_conv0": "reduce_convs.1",
    "reduce_conv1": "reduce_convs.0",
    "C3_p4": "top_down_csps.1",
    "C3_p3": "top_down_csps.0",
    "bu_conv2": "down_convs.0",
    "bu_conv1": "down_convs.1",
    "C3_n3": "bottom_up_csps.0",
    "C3_n4": "bottom_up_csps.1",
}
_FPN_NAMES_EVDET = {v: k for k, v in _FPN_NAMES.items()}

OMEGACONF_SAFE_GLOBALS: tuple[str, ...] = (
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "typing.Any",
    "builtins.dict",
    "builtins.list",
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "builtins.bool",
    "collections.defaultdict",
)
"""Classes a Lightning checkpoint of RVT may need beyond torch's weights-only defaults (its Hydra config in
``hyper_parameters`` is an omegaconf ``DictConfig``). Only these are allowed, nothing else."""


# --------------------------------------------------------------------------------------------------- tensors
def qkv_rvt_to_evdet(tensor: Tensor, num_heads: int) -> Tensor:
    """Reorder the rows of RVT's attention q/k/v projection into evdet's layout.

    RVT (``SelfAttentionCl.forward``: ``qkv(x).view(B, N, heads, 3 * head_dim).transpose(1, 2).chunk(3, dim=-1)``)
    orders the 3C output rows as ``(head, [q|k|v], head_dim)``; evdet (:class:`MultiHeadSelfAttention`:
    ``view(n, t, 3, heads, head_dim)``) as ``([q|k|v], head, head_dim)``.

    Args:
        tensor: float ``(3C, C)`` weight or ``(3C,)`` bias in RVT's order.
        num_heads: attention heads ``C / head_dim``.

    Returns:
        The same values, rows permuted to evdet's order, same shape and dtype (a new contiguous tensor).

    Raises:
        ValueError: the first dimension is not a multiple of ``3 * num_heads``.
    """
    rows = tensor.shape[0]
    if num_heads < 1 or rows % (3 * num_heads):
        raise ValueError(f"qkv: {rows} rows are not a multiple of 3 x {num_heads} heads")
    head_dim = rows // (3 * num_heads)
    rest = tuple(tensor.shape[1:])
    return tensor.reshape(num_heads, 3, head_dim, *rest).transpose(0, 1).reshape(rows, *rest).contiguous()


@dataclass(frozen=True)
class KeyRule:
    """How one evdet state_dict entry is filled from one RVT entry.

    Attributes:
        evdet_key: the evdet entry, e.g. ``backbone.stages.0.blocks.0.block_attention.attn.qkv.weight``.
        rvt_key: the RVT entry it comes from, e.g. ``backbone.stages.0.att_blocks.0.att_window.self_attn.qkv.weight``.
        rvt_shape: the shape the RVT entry must have (derived from the evdet model).
        transform: maps the RVT tensor (of ``rvt_shape``) to the evdet tensor; a pure function.
        note: what the transform does (``copy``, ``qkv rows``, ``lstm x part`` ...).
    """

    evdet_key: str
    rvt_key: str
    rvt_shape: tuple[int, ...]
    transform: Callable[[Tensor], Tensor]
    note: str = "copy"


def _copy(t: Tensor) -> Tensor:
    return t.clone()


def _attention_rules(
    evdet_prefix: str, rvt_prefix: str, layer: nn.Module, shapes: Mapping[str, tuple[int, ...]], torch_mha: bool
) -> list[KeyRule]:
    """Rules for one evdet ``PartitionAttentionLayer`` (``evdet_prefix`` ends with ``.``)."""
    attn = layer.attn
    assert isinstance(attn, MultiHeadSelfAttention)
    rules = []
    for ev_key, shape in shapes.items():
        sub = ev_key[len(evdet_prefix):]
        if sub in ("attn.qkv.weight", "attn.qkv.bias"):
            if torch_mha:
                name = "in_proj_weight" if sub.endswith("weight") else "in_proj_bias"
                rules.append(KeyRule(ev_key, f"{rvt_prefix}self_attn.mha.{name}", shape, _copy, "copy (torch MHA)"))
            else:
                heads = attn.num_heads
                rules.append(KeyRule(ev_key, f"{rvt_prefix}self_attn.{sub[5:]}", shape,
                                     lambda t, h=heads: qkv_rvt_to_evdet(t, h), f"qkv rows ({heads} heads)"))
            continue
        if sub.startswith("attn.proj."):
            name = f"self_attn.mha.out_proj.{sub[10:]}" if torch_mha else f"self_attn.proj.{sub[10:]}"
            rules.append(KeyRule(ev_key, rvt_prefix + name, shape, _copy))
            continue
        if sub.startswith("mlp.fc1."):
            rules.append(KeyRule(ev_key, f"{rvt_prefix}mlp.net.0.0.{sub[8:]}", shape, _copy))
            continue
        if sub.startswith("mlp.fc2."):
            rules.append(KeyRule(ev_key, f"{rvt_prefix}mlp.net.2.{sub[8:]}", shape, _copy))
            continue
        rules.append(KeyRule(ev_key, rvt_prefix + sub, shape, _copy))  # norm1, norm2, ls1.gamma, ls2.gamma
    return rules


def _lstm_rules(
    evdet_prefix: str, rvt_prefix: str, cell: nn.Module, shapes: Mapping[str, tuple[int, ...]]
) -> list[KeyRule]:
    """Rules for one ConvLSTM cell (``evdet_prefix`` = ``backbone.stages.S.lstm.``)."""
    rules = []
    if isinstance(cell, DWSConvLSTM2d):
        for ev_key, shape in shapes.items():
            sub = ev_key[len(evdet_prefix):]
            if sub.startswith("gates_conv."):
                rules.append(KeyRule(ev_key, f"{rvt_prefix}conv1x1.{sub[11:]}", shape, _copy))
            elif sub.startswith("hidden_dws_conv."):
                rules.append(KeyRule(ev_key, f"{rvt_prefix}conv3x3_dws.{sub[16:]}", shape, _copy))
            else:  # pragma: no cover - evdet cell grew a parameter this importer does not know
                raise ValueError(f"rvt import: no RVT counterpart known for evdet key {ev_key}")
        return rules
    if isinstance(cell, PlainLSTM2d):
        c = cell.dim
        for ev_key, shape in shapes.items():
            sub = ev_key[len(evdet_prefix):]
            if sub == "input_transform.weight":
                rvt_shape = (shape[0], 2 * c, *shape[2:])
                rules.append(KeyRule(ev_key, f"{rvt_prefix}conv1x1.weight", rvt_shape,
                                     lambda t, c=c: t[:, :c].clone(), "lstm conv1x1 x part [:, :C]"))
            elif sub == "hidden_transform.weight":
                rvt_shape = (shape[0], 2 * c, *shape[2:])
                rules.append(KeyRule(ev_key, f"{rvt_prefix}conv1x1.weight", rvt_shape,
                                     lambda t, c=c: t[:, c:].clone(), "lstm conv1x1 h part [:, C:]"))
            elif sub == "input_transform.bias":
                rules.append(KeyRule(ev_key, f"{rvt_prefix}conv1x1.bias", shape, _copy))
            else:  # pragma: no cover
                raise ValueError(f"rvt import: no RVT counterpart known for evdet key {ev_key}")
        return rules
    raise ValueError(f"rvt import: unsupported LSTM cell {type(cell).__name__} (model.backbone.lstm_cell)")


def rvt_key_rules(model: RVT, rvt_keys: Sequence[str] = ()) -> list[KeyRule]:
    """The mapping of every evdet state_dict entry of ``model`` to its RVT entry.

    Args:
        model: an evdet :class:`RVT` (built from the config the RVT weights were trained with) without an auxiliary
            head (``model.head.name: YOLOX``).
        rvt_keys: the keys of the RVT state_dict to import; only used to tell which attention layers were saved
            with RVT's ``use_torch_mha`` (``self_attn.mha.*``) layout.

    Returns:
        One :class:`KeyRule` per evdet entry, in the order of ``model.state_dict()``. Several rules may read the same
        RVT key (the two halves of an LSTM ``conv1x1.weight`` for :class:`PlainLSTM2d`).

    Raises:
        ValueError: the model has an auxiliary head (``model.head.name: ABC``; RVT has none) or a PAFPN with other
            than 3 levels (``model.fpn.in_stages``; RVT's YOLOPAFPN has exactly 3).
    """
    if model.aux_head is not None:
        raise ValueError("rvt import: model.head.name is ABC, but RVT checkpoints have no auxiliary head; "
                         "import with model.head.name=YOLOX")
    if len(model.fpn.in_channels) != 3:
        raise ValueError(
            f"rvt import: RVT's PAFPN (YOLOX YOLOPAFPN) has exactly 3 levels, the evdet config has "
            f"{len(model.fpn.in_channels)} (model.fpn.in_stages={list(model.in_stages)}); import only supports "
            f"3-level configs such as model.fpn.in_stages=[2,3,4]"
        )
    rvt_key_set = set(rvt_keys)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rules: list[KeyRule] = []
    handled: set[str] = set()

    def group(prefix: str) -> dict[str, tuple[int, ...]]:
        return {k: s for k, s in shapes.items() if k.startswith(prefix)}

    for s, stage in enumerate(model.backbone.stages):
        ev_stage, rvt_stage = f"backbone.stages.{s}.", f"backbone.stages.{s}."
        for k, shape in group(f"{ev_stage}downsample.").items():
            rules.append(KeyRule(k, f"{rvt_stage}downsample_cf2cl.{k[len(ev_stage) + 11:]}", shape, _copy))
        for b, block in enumerate(stage.blocks):
            for ev_name, rvt_name in (("block_attention", "att_window"), ("grid_attention", "att_grid")):
                ev_prefix = f"{ev_stage}blocks.{b}.{ev_name}."
                rvt_prefix = f"{rvt_stage}att_blocks.{b}.{rvt_name}."
                torch_mha = f"{rvt_prefix}self_attn.mha.in_proj_weight" in rvt_key_set
                rules += _attention_rules(ev_prefix, rvt_prefix, getattr(block, ev_name), group(ev_prefix), torch_mha)
        rules += _lstm_rules(f"{ev_stage}lstm.", f"{rvt_stage}lstm.", stage.lstm, group(f"{ev_stage}lstm."))
    handled.update(r.evdet_key for r in rules)

    for k, shape in group("fpn.").items():
        match = re.match(r"fpn\.(\w+\.\d+)\.(.*)$", k)
        if match is None or match.group(1) not in _FPN_NAMES_EVDET:  # pragma: no cover
            raise ValueError(f"rvt import: no RVT counterpart known for evdet key {k}")
        rules.append(KeyRule(k, f"fpn.{_FPN_NAMES_EVDET[match.group(1)]}.{match.group(2)}", shape, _copy))
    for k, shape in group("head.").items():
        rules.append(KeyRule(k, f"yolox_head.{k[5:]}", shape, _copy))
    handled.update(r.evdet_key for r in rules)

    left = [k for k in shapes if k not in handled]
    if left:  # pragma: no cover - a new evdet module the importer does not know
        raise ValueError(f"rvt import: no RVT counterpart known for evdet keys {left[:5]}")
    order = {k: i for i, k in enumerate(shapes)}
    return sorted(rules, key=lambda r: order[r.evdet_key])


# --------------------------------------------------------------------------------------------------- problems
def _hint(rvt_key: str, kind: str, rvt_sd: Mapping[str, Tensor] | None = None) -> str:
    """The config value that most probably differs when ``rvt_key`` is ``kind`` (missing, unused, shape); a phrase."""
    if rvt_key.startswith("yolox_head.cls_preds."):
        value = rvt_sd.get(rvt_key) if rvt_sd is not None else None
        known = isinstance(value, Tensor) and value.dim() > 0
        classes = f": the RVT weights have {value.shape[0]} classes" if known else ""
        return f"dataset.num_classes{classes}"
    if "mask_token" in rvt_key:
        return "RVT backbone.enable_masking (evdet has no mask token; import models trained without masking)"
    if ".conv3x3_dws." in rvt_key:
        return "model.backbone.dws_conv (RVT stage.lstm.dws_conv; evdet needs dws_conv_only_hidden and kernel 3)"
    if ".self_attn.mha." in rvt_key or (kind != "shape" and ".self_attn." in rvt_key):
        return "the attention layout (RVT stage.attention.use_torch_mha must be the same for every layer)"
    if kind != "shape" and re.search(r"\.att_blocks\.\d+\.", rvt_key):
        return "model.backbone.num_blocks"
    if kind != "shape" and re.match(r"fpn\.\w+\.m\.\d+\.", rvt_key):
        return "model.fpn.depth (bottlenecks per CSP layer = round(3 x depth))"
    if not rvt_key.startswith(RVT_PREFIXES):
        return "not an RVT YoloXDetector key (they start with backbone., fpn., yolox_head.)"
    if rvt_key == "backbone.stages.0.downsample_cf2cl.conv.weight":
        return ("dataset.in_channels (dim 1), model.backbone.embed_dim (dim 0) or model.backbone.patch_size "
                "(kernel 2 x patch_size - 1)")
    if ".mlp." in rvt_key:
        return "model.backbone.mlp_ratio or model.backbone.embed_dim (RVT attention.mlp_ratio; mlp_gated must be false)"
    if rvt_key.startswith("backbone."):
        return "model.backbone.embed_dim / model.backbone.dim_multiplier"
    if rvt_key.startswith("fpn."):
        return "model.fpn.in_stages / model.backbone.embed_dim / model.backbone.dim_multiplier"
    return "model.fpn.in_stages / model.backbone.embed_dim (head width = channels of the last FPN level / 4)"


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def convert_rvt_state_dict(rvt_state_dict: Mapping[str, Tensor], model: RVT) -> dict[str, Tensor]:
    """Map an RVT ``YoloXDetector`` state_dict onto the evdet ``model``'s keys and layouts (see the module docstring).

    Args:
        rvt_state_dict: RVT keys (``backbone.*``, ``fpn.*``, ``yolox_head.*``, without the Lightning ``mdl.``
            prefix, see :func:`extract_rvt_state_dict`) -> tensors (float32 parameters and BatchNorm statistics,
            int64 ``num_batches_tracked``).
        model: the evdet :class:`RVT` the weights are for (only its structure and shapes are read).

    Returns:
        A state_dict with exactly the keys of ``model.state_dict()``, tensors converted to each evdet entry's dtype;
        ``model.load_state_dict(result)`` loads it strictly.

    Raises:
        ValueError: one error for all problems: an RVT key the mapping does not use, an evdet key without its RVT
            key, or a shape mismatch. The message names each key, both shapes and the config value that probably
            differs (e.g. ``dataset.num_classes``, ``model.backbone.embed_dim``); also the errors of
            :func:`rvt_key_rules`.
    """
    if not isinstance(rvt_state_dict, Mapping):
        raise ValueError(f"rvt import: expected a state_dict (mapping of names to tensors), got "
                         f"{type(rvt_state_dict).__name__}")
    rules = rvt_key_rules(model, list(rvt_state_dict))
    ev_state = model.state_dict()
    problems: list[str] = []
    used: set[str] = set()
    out: dict[str, Tensor] = {}
    reported: set[str] = set()  # one problem per RVT key (a PlainLSTM2d reads conv1x1.weight twice)
    for rule in rules:
        used.add(rule.rvt_key)
        if rule.rvt_key in reported:
            continue
        if rule.rvt_key not in rvt_state_dict:
            reported.add(rule.rvt_key)
            problems.append(f"missing RVT key {rule.rvt_key} (needed for evdet {rule.evdet_key}, shape "
                            f"{_fmt(rule.rvt_shape)}; check {_hint(rule.rvt_key, 'missing', rvt_state_dict)})")
            continue
        value = rvt_state_dict[rule.rvt_key]
        if not isinstance(value, Tensor):
            reported.add(rule.rvt_key)
            problems.append(f"RVT key {rule.rvt_key} is a {type(value).__name__}, not a tensor")
            continue
        if tuple(value.shape) != rule.rvt_shape:
            reported.add(rule.rvt_key)
            problems.append(
                f"RVT key {rule.rvt_key} has shape {_fmt(value.shape)}, evdet {rule.evdet_key} needs "
                f"{_fmt(rule.rvt_shape)} (check {_hint(rule.rvt_key, 'shape', rvt_state_dict)})"
            )
            continue
        target = ev_state[rule.evdet_key]
        converted = rule.transform(value.detach()).to(dtype=target.dtype)
        if tuple(converted.shape) != tuple(target.shape):  # pragma: no cover - a rule bug, not a user error
            raise AssertionError(f"rvt import rule for {rule.evdet_key} produced {tuple(converted.shape)}")
        out[rule.evdet_key] = converted
    unused = [k for k in rvt_state_dict if k not in used]
    for key in unused:
        value = rvt_state_dict[key]
        shape = _fmt(value.shape) if isinstance(value, Tensor) else type(value).__name__
        hint = _hint(key, "unused", rvt_state_dict)
        problems.append(f"unused RVT key {key} {shape} (no evdet counterpart; check {hint})")
    if problems:
        more = f" (+{len(problems) - 1} more: " + "; ".join(problems[1:6]) + (" ..." if len(problems) > 6 else "") + ")"
        raise ValueError(
            f"RVT weights do not fit the evdet config: {problems[0]}" + (more if len(problems) > 1 else "")
        )
    return out


# --------------------------------------------------------------------------------------------------- files
def read_rvt_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``, allowing only :data:`OMEGACONF_SAFE_GLOBALS` in addition when the file
    is a Lightning checkpoint whose hyper-parameters hold omegaconf objects. Never unpickles arbitrary objects.

    Args:
        path: a ``.pt`` / ``.pth`` state_dict or a Lightning ``.ckpt``.

    Returns:
        The loaded object (tensors on the CPU).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a torch file, or it holds objects weights-only loading refuses (the message
            names the refused global and says how to re-save the weights as a plain state_dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip format errors come in many types
        first = exc
    unreadable = ValueError(f"{path}: not a torch file readable with torch.load(weights_only=True) "
                            f"({type(first).__name__}: {_one_line(first)[:200]})")
    if not zipfile.is_zipfile(path):
        raise unreadable from first
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        unsafe = list(lister(path)) if lister is not None else []
    except Exception:
        unsafe = []
    refused = [name for name in unsafe if name not in OMEGACONF_SAFE_GLOBALS]
    if refused or (lister is not None and not unsafe):
        if not refused:
            raise unreadable from first
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refuses objects in this file ({', '.join(refused[:5])}"
            f"{' ...' if len(refused) > 5 else ''}); only tensors, plain containers and omegaconf configs are "
            f"allowed. Re-save the weights as a plain state_dict in an environment you trust: "
            f"torch.save(torch.load(ckpt)['state_dict'], 'weights.pt')"
        ) from first
    try:
        with torch.serialization.safe_globals(_omegaconf_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refuses an object in this file ({_one_line(exc)[:200]}); only "
            f"tensors, plain containers and omegaconf configs are allowed. Re-save the weights as a plain "
            f"state_dict in an environment you trust: torch.save(torch.load(ckpt)['state_dict'], 'weights.pt')"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _omegaconf_globals() -> list[Any]:
    """The objects named in :data:`OMEGACONF_SAFE_GLOBALS` (those that import)."""
    import builtins
    import collections
    import importlib
    import typing

    found = []
    for name in OMEGACONF_SAFE_GLOBALS:
        module_name, _, attr = name.rpartition(".")
        module = {"builtins": builtins, "collections": collections, "typing": typing}.get(module_name)
        try:
            module = module or importlib.import_module(module_name)
            found.append(getattr(module, attr))
        except (ImportError, AttributeError):
            continue
    return found


def extract_rvt_state_dict(obj: Any, source: str = "input") -> dict[str, Tensor]:
    """The RVT detector state_dict in a loaded file: a bare state_dict, or a Lightning checkpoint's ``state_dict``
    with the ``mdl.`` prefix (:data:`LIGHTNING_PREFIX`) removed.

    Args:
        obj: what :func:`read_rvt_file` returned.
        source: name of the file, for messages.

    Returns:
        ``{rvt_key: tensor}`` with keys ``backbone.*``, ``fpn.*``, ``yolox_head.*``.

    Raises:
        ValueError: ``obj`` is not a mapping of names to tensors, a Lightning ``state_dict`` has keys without the
            ``mdl.`` prefix, or no key starts with an RVT prefix (:data:`RVT_PREFIXES`).
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: not a state_dict or Lightning checkpoint (got a {type(obj).__name__})")
    lightning = "state_dict" in obj and isinstance(obj["state_dict"], Mapping)
    state = obj["state_dict"] if lightning else obj
    if lightning:
        foreign = [k for k in state if not str(k).startswith(LIGHTNING_PREFIX)]
        if foreign:
            raise ValueError(
                f"{source}: Lightning checkpoint state_dict key {foreign[0]!r} lacks the RVT module prefix "
                f"{LIGHTNING_PREFIX!r} ({len(foreign)} such keys); expected an RVT detection checkpoint"
            )
        state = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        value = state[bad[0]]
        raise ValueError(f"{source}: not a state_dict: entry {bad[0]!r} is a {type(value).__name__}, not a tensor")
    if not any(k.startswith(RVT_PREFIXES) for k in state):
        sample = list(state)[:3]
        raise ValueError(f"{source}: no RVT detector keys (expected names starting with {', '.join(RVT_PREFIXES)}; "
                         f"got {sample})")
    return dict(state)


def load_rvt_state_dict(path: str | Path) -> dict[str, Tensor]:
    """:func:`read_rvt_file` then :func:`extract_rvt_state_dict`.

    Raises:
        FileNotFoundError, ValueError: see those functions.
    """
    return extract_rvt_state_dict(read_rvt_file(path), str(path))


def import_rvt_weights(model: RVT, source: str | Path | Mapping[str, Tensor]) -> dict[str, Any]:
    """Load RVT weights into ``model`` in place (strict, see :func:`convert_rvt_state_dict`).

    Args:
        model: evdet :class:`RVT` built from the matching config (:func:`rvt_model_config_to_overrides`).
        source: a file (:func:`load_rvt_state_dict`) or an RVT state_dict (bare or Lightning checkpoint dict).

    Returns:
        ``{"rvt_keys": int, "evdet_keys": int, "parameters": int}``: entries read, entries written, parameter count.

    Raises:
        FileNotFoundError, ValueError: unreadable file or weights that do not fit (one message).
    """
    if isinstance(source, (str, Path)):
        rvt_sd = load_rvt_state_dict(source)
    else:
        rvt_sd = extract_rvt_state_dict(source)
    converted = convert_rvt_state_dict(rvt_sd, model)
    model.load_state_dict(converted, strict=True)
    return {
        "rvt_keys": len(rvt_sd),
        "evdet_keys": len(converted),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# --------------------------------------------------------------------------------------------------- config
def _override_value(value: Any) -> str:
    """A Hydra override literal: ``true``/``false``, ints, floats with a dot, lists without spaces."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        text = repr(value)
        return text if any(c in text for c in ".eE") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


def _get(cfg: Mapping[str, Any], path: str, default: Any = ...) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is ...:
                raise ValueError(f"RVT model config: missing key {path}")
            return default
        node = node[part]
    return node


def rvt_model_config_to_overrides(model_config: Mapping[str, Any], include_postprocess: bool = True) -> list[str]:
    """evdet Hydra overrides that build the detector an RVT model config describes.

    Args:
        model_config: RVT's ``model`` config node as a plain mapping (RVT ``config/model/maxvit_yolox/default.yaml``
            composed with an experiment, e.g. ``config/experiment/gen4/tiny.yaml``; the fixtures' manifest holds one):
            ``backbone`` (``input_channels``, ``embed_dim``, ``dim_multiplier``, ``num_blocks``, ``stem.patch_size``,
            ``partition_split_32``, ``stage.attention.dim_head`` / ``mlp_ratio`` / ``drop_path``,
            ``stage.lstm.dws_conv`` ...), ``fpn`` (``depth``, ``in_stages``), ``head`` (``num_classes``) and
            optionally ``postprocess``.
        include_postprocess: also map ``postprocess.confidence_threshold`` / ``nms_threshold`` to evdet's
            ``validation.*`` thresholds (RVT uses them in validation).

    Returns:
        Override strings for :func:`evdet.model.config.compose_config`, e.g. ``model.backbone.embed_dim=32``,
        ``model.fpn.in_stages=[2,3,4]``, ``dataset.num_classes=8``, ``dataset.in_channels=20``; they set every
        model value, so the result does not depend on the ``model=`` preset. Values that only affect RVT's
        initialisation or training and have no evdet counterpart are not mapped: ``T_max_chrono_init`` (unused by
        RVT's code), ``ls_init_value`` (LayerScale init; imported weights replace it), ``drop_mlp`` and
        ``drop_cell_update`` (dropout, evdet has none), ``compile``, ``in_res_hw`` / ``partition_size`` (evdet
        derives the partition size from the padded input, which equals RVT's rule ``in_res_hw / (32 *
        partition_split_32)``; checked for consistency when both are given).

    Raises:
        ValueError: a missing key, or a value evdet cannot represent (names the RVT key): another backbone, FPN or
            head type, ``enable_masking``, non-overlapping or non-affine downsampling, ``mlp_gated``, an MLP
            activation other than GELU, attention or MLP without bias, ``ls_init_value <= 0``, a LayerNorm eps other
            than 1e-5, a depthwise conv over ``cat(x, h)`` (``dws_conv_only_hidden: false``) or of a kernel other
            than 3, depthwise FPN/head convs, an activation other than SiLU, or an inconsistent partition size.
    """
    bb = _get(model_config, "backbone")
    fpn = _get(model_config, "fpn")
    head = _get(model_config, "head")
    att = _get(bb, "stage.attention")
    lstm = _get(bb, "stage.lstm")
    down = _get(bb, "stage.downsample", {})

    def unsupported(key: str, value: Any, why: str) -> ValueError:
        return ValueError(f"RVT model config {key}={value!r}: {why}; evdet cannot represent it")

    checks = [
        ("backbone.name", _get(bb, "name", "MaxViTRNN"), "MaxViTRNN", "only RVT's MaxViTRNN backbone is supported"),
        ("fpn.name", _get(fpn, "name", "PAFPN"), "PAFPN", "only the PAFPN neck is supported"),
        ("head.name", _get(head, "name", "YoloX"), "YoloX", "only the YOLOX head is supported"),
        ("backbone.enable_masking", bool(_get(bb, "enable_masking", False)), False, "evdet has no mask token"),
        ("backbone.stage.downsample.type", _get(down, "type", "patch"), "patch", "evdet downsamples with patch convs"),
        ("backbone.stage.downsample.overlap", bool(_get(down, "overlap", True)), True,
         "evdet's downsampling convs overlap (kernel 2 x factor - 1)"),
        ("backbone.stage.downsample.norm_affine", bool(_get(down, "norm_affine", True)), True,
         "evdet's downsampling LayerNorm is affine"),
        ("backbone.stage.attention.attention_bias", bool(_get(att, "attention_bias", True)), True,
         "evdet's attention projections have biases"),
        ("backbone.stage.attention.mlp_gated", bool(_get(att, "mlp_gated", False)), False, "evdet's MLP is not gated"),
        ("backbone.stage.attention.mlp_bias", bool(_get(att, "mlp_bias", True)), True, "evdet's MLP has biases"),
        ("backbone.stage.attention.mlp_activation", str(_get(att, "mlp_activation", "gelu")), "gelu",
         "evdet's MLP uses GELU"),
        ("fpn.depthwise", bool(_get(fpn, "depthwise", False)), False, "evdet's FPN config has no depthwise option"),
        ("head.depthwise", bool(_get(head, "depthwise", False)), False, "evdet's head has no depthwise option"),
        ("fpn.act", str(_get(fpn, "act", "silu")), "silu", "evdet's FPN uses SiLU"),
        ("head.act", str(_get(head, "act", "silu")), "silu", "evdet's head uses SiLU"),
    ]
    for key, value, expected, why in checks:
        if value != expected:
            raise unsupported(key, value, why)
    if float(_get(att, "ls_init_value", 1e-5)) <= 0:
        raise unsupported("backbone.stage.attention.ls_init_value", _get(att, "ls_init_value"),
                          "evdet's layers always have LayerScale")
    if float(_get(att, "norm_eps", 1e-5)) != 1e-5:
        raise unsupported("backbone.stage.attention.norm_eps", _get(att, "norm_eps"), "evdet's LayerNorm eps is 1e-5")
    dws_conv = bool(_get(lstm, "dws_conv", False))
    if dws_conv and not bool(_get(lstm, "dws_conv_only_hidden", True)):
        raise unsupported("backbone.stage.lstm.dws_conv_only_hidden", False,
                          "evdet's depthwise LSTM conv acts on h only")
    if dws_conv and int(_get(lstm, "dws_conv_kernel_size", 3)) != 3:
        raise unsupported("backbone.stage.lstm.dws_conv_kernel_size", _get(lstm, "dws_conv_kernel_size"),
                          "evdet's depthwise LSTM conv is 3x3")

    split = int(_get(bb, "partition_split_32", 1))
    in_res = _get(bb, "in_res_hw", None)
    partition = _get(att, "partition_size", None)
    if in_res is not None and partition is not None:
        derived = [int(x) // (32 * split) for x in in_res]
        if [int(x) for x in partition] != derived or any(int(x) % (32 * split) for x in in_res):
            raise unsupported("backbone.stage.attention.partition_size", list(partition),
                              f"evdet uses padded size / (32 x partition_split_32) = {derived} for in_res_hw "
                              f"{list(in_res)}")

    mlp_ratio = _get(att, "mlp_ratio", 4)
    values: list[tuple[str, Any]] = [
        ("model.backbone.embed_dim", int(_get(bb, "embed_dim"))),
        ("model.backbone.dim_multiplier", [int(x) for x in _get(bb, "dim_multiplier")]),
        ("model.backbone.num_blocks", [int(x) for x in _get(bb, "num_blocks")]),
        ("model.backbone.patch_size", int(_get(bb, "stem.patch_size"))),
        ("model.backbone.head_dim", int(_get(att, "dim_head", 32))),
        ("model.backbone.mlp_ratio", float(mlp_ratio)),
        ("model.backbone.lstm_cell", "DWSConvLSTM2d"),
        ("model.backbone.dws_conv", dws_conv),
        ("model.backbone.drop_path", float(_get(att, "drop_path", 0.0))),
        ("model.backbone.partition_split", split),
        ("model.fpn.in_stages", [int(x) for x in _get(fpn, "in_stages")]),
        ("model.fpn.depth", float(_get(fpn, "depth"))),
        ("model.head.name", "YOLOX"),
        ("dataset.num_classes", int(_get(head, "num_classes"))),
        ("dataset.in_channels", int(_get(bb, "input_channels", 20))),
    ]
    post = model_config.get("postprocess") if include_postprocess else None
    if isinstance(post, Mapping):
        if "confidence_threshold" in post:
            values.append(("validation.confidence_threshold", float(post["confidence_threshold"])))
        if "nms_threshold" in post:
            values.append(("validation.nms_threshold", float(post["nms_threshold"])))
    return [f"{key}={_override_value(value)}" for key, value in values]


# --------------------------------------------------------------------------------------------------- checkpoint
MODEL_PRESETS = ("rvt_tiny", "rvt_small", "rvt_base")
"""evdet model presets (``conf/model/*.yaml``) that ``import-rvt`` accepts."""


def write_imported_checkpoint(
    source: str | Path,
    output: str | Path,
    preset: str,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Import RVT weights and write them as an evdet checkpoint that :func:`evdet.model.training.checkpoint.load_module` reads.

    The evdet config is ``compose_config(["model=<preset>", *overrides])`` (the dataset config decides
    ``dataset.num_classes`` and the class names; :func:`rvt_model_config_to_overrides` turns RVT's own model config
    into overrides). The file has the layout of a Lightning checkpoint of :class:`evdet.model.training.module.DetectionModule`:
    ``state_dict`` (the module's entries, ``model.`` prefix), ``hyper_parameters`` ``{"config": config,
    "eval_info": None}``, ``pytorch-lightning_version``, ``epoch`` 0 and ``global_step`` 0; it holds only tensors and
    plain containers, so ``torch.load(weights_only=True)`` reads it. It is written to a temporary file in the output
    folder and renamed into place, so a failed import never leaves a partial file.

    Args:
        source: RVT state_dict or Lightning ``.ckpt`` (see :func:`load_rvt_state_dict`).
        output: checkpoint to write (its folder is created).
        preset: one of :data:`MODEL_PRESETS`.
        overrides: further Hydra overrides, e.g. ``["dataset.num_classes=3", "model.backbone.dws_conv=true"]``.
        overwrite: replace an existing ``output``.

    Returns:
        JSON-ready report: ``output``, ``source``, ``source_format`` (``state_dict`` or ``lightning``), ``model``,
        ``overrides``, ``num_classes``, ``class_names``, ``rvt_keys``, ``evdet_keys``, ``parameters``, ``bytes``.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False (the existing file is left untouched).
        FileNotFoundError: no ``source`` file.
        ValueError: unknown preset, unreadable file, an ABC head, a class count other than the weights' (names
            ``dataset.num_classes``), a dataset class config the module refuses, or weights that do not fit the
            config (one message naming the key, both shapes and the config value that probably differs).
        hydra.errors.HydraException, omegaconf.errors.OmegaConfBaseException: a bad override.
    """
    import lightning

    from evdet.model.config import compose_config, to_container
    from evdet.model.training.module import DetectionModule

    if preset not in MODEL_PRESETS:
        raise ValueError(f"--model: expected one of {list(MODEL_PRESETS)}, got {preset!r}")
    source, output = Path(source), Path(output)
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; give the checkpoint file to write")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    loaded = read_rvt_file(source)
    lightning_ckpt = isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping)
    rvt_sd = extract_rvt_state_dict(loaded, str(source))
    config = to_container(compose_config([f"model={preset}", *overrides]))
    head_name = (config["model"].get("head") or {}).get("name", "YOLOX")
    if head_name != "YOLOX":
        raise ValueError(
            f"model.head.name={head_name}: RVT checkpoints have no auxiliary head; use model.head.name=YOLOX"
        )
    cls_weight = rvt_sd.get("yolox_head.cls_preds.0.weight")
    num_classes = int(config["dataset"]["num_classes"])
    if isinstance(cls_weight, Tensor) and cls_weight.dim() >= 1 and cls_weight.shape[0] != num_classes:
        raise ValueError(
            f"the RVT weights have {cls_weight.shape[0]} classes (yolox_head.cls_preds.0.weight "
            f"{_fmt(cls_weight.shape)}), the evdet config dataset.num_classes={num_classes}: pass "
            f"dataset.num_classes={cls_weight.shape[0]} with dataset.class_names (or dataset.class_map) giving "
            f"{cls_weight.shape[0]} classes"
        )
    module = DetectionModule(config, eval_info=None)
    stats = import_rvt_weights(module.model, rvt_sd)
    checkpoint = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "hyper_parameters": {"config": config, "eval_info": None},
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    try:
        _write_atomically(checkpoint, output, overwrite)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError as exc:
        raise ValueError(f"cannot write {output}: {exc}") from exc
    return {
        "output": str(output),
        "source": str(source),
        "source_format": "lightning" if lightning_ckpt else "state_dict",
        "model": preset,
        "overrides": list(overrides),
        "num_classes": int(config["dataset"]["num_classes"]),
        "class_names": list(getattr(module, "class_names", None) or config["dataset"].get("class_names") or []),
        **stats,
        "bytes": output.stat().st_size,
    }


def _write_atomically(checkpoint: Mapping[str, Any], output: Path, overwrite: bool) -> None:
    """``torch.save`` whole or not at all (:func:`evdet.data.output_folder.write_file_atomically`).

    Raises:
        FileExistsError: ``output`` exists (or appeared meanwhile) and ``overwrite`` is False; it is left untouched.
        OSError: the folder cannot be created or written.
    """
    write_file_atomically(lambda tmp: torch.save(checkpoint, tmp), output, overwrite=overwrite)