"""Model summary: parameters per part, multiply-accumulates per frame and feature-map shapes per stage.

Parameter counts are exact (``numel`` of every parameter). Multiply-accumulates (MACs) are counted with
``torch.utils.flop_counter.FlopCounterMode`` on one frame at the configured resolution, padded as the detector pads
it; FLOPs = 2 x MACs for matrix products and convolutions, which is the counter's convention.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from evdet.model.config import dataset_classes
from evdet.model.nn.detector import RVT, build_detector, pad_to_multiple

__all__ = ["summarize", "format_summary", "count_parameters", "format_markdown_table", "lstm_cell_counts",
           "format_lstm_table"]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _parts(model: RVT) -> dict[str, int]:
    parts: dict[str, int] = {}
    for index, stage in enumerate(model.backbone.stages, start=1):
        name = "stem" if index == 1 else f"stage{index}.downsample"
        parts[name] = count_parameters(stage.downsample)
        parts[f"stage{index}.attention"] = count_parameters(stage.blocks)
        parts[f"stage{index}.lstm"] = count_parameters(stage.lstm)
    parts["fpn"] = count_parameters(model.fpn)
    parts["head"] = count_parameters(model.head)
    aux = getattr(model, "aux_head", None)
    if aux is not None:
        parts["aux_head"] = count_parameters(aux)
    return parts


def lstm_cell_counts(widths: tuple[int, ...] = (64, 128, 256, 512)) -> list[dict[str, int]]:
    """Parameters of each ConvLSTM variant at each stage width (RVT-B widths by default).

    Settles whether the plain cell is smaller: ``PlainLSTM2d`` (1x1 input transform with bias + 1x1 hidden
    transform without) has exactly the count of ``DWSConvLSTM2d`` without the depthwise conv (one 1x1 conv on
    ``[x, h]`` with bias): ``8 d^2 + 4 d``; the depthwise 3x3 conv on ``h`` adds ``10 d`` (9 d weights + d biases).
    """
    from evdet.model.nn.lstm import DWSConvLSTM2d, PlainLSTM2d

    return [
        {
            "width": d,
            "PlainLSTM2d": count_parameters(PlainLSTM2d(d)),
            "DWSConvLSTM2d": count_parameters(DWSConvLSTM2d(d, dws_conv=False)),
            "DWSConvLSTM2d+dws_conv": count_parameters(DWSConvLSTM2d(d, dws_conv=True)),
        }
        for d in widths
    ]


def format_lstm_table(rows: list[dict[str, int]]) -> str:
    """Markdown table of :func:`lstm_cell_counts`."""
    lines = ["| stage width | PlainLSTM2d | DWSConvLSTM2d (dws_conv off) | DWSConvLSTM2d (dws_conv on) |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['width']} | {r['PlainLSTM2d']:,} | {r['DWSConvLSTM2d']:,} | {r['DWSConvLSTM2d+dws_conv']:,} |"
              for r in rows]
    return "\n".join(lines)


@torch.no_grad()
def summarize(config: dict[str, Any]) -> dict[str, Any]:
    """Summarise the detector that ``config`` (a resolved training config) builds.

    Returns:
        ``{"experiment", "params_total", "params_backbone", "params": {part: count}, "macs_per_frame",
        "input": [C, H, W], "padded_input": [H, W], "stages": {s: {"stride", "channels", "shape"}}, "lstm_cell",
        "fpn_stages"}``.
    """
    ds = config["dataset"]
    model = build_detector(config["model"], num_classes=int(ds["num_classes"]), in_channels=int(ds["in_channels"]),
                           class_names=list(dataset_classes(ds).class_names))
    model.eval()
    x = torch.zeros(1, int(ds["in_channels"]), int(ds["height"]), int(ds["width"]))
    padded = pad_to_multiple(x, model.input_multiple)
    counter = FlopCounterMode(display=False)
    with counter:
        features, _ = model.forward_backbone(x, None)
        model.forward_detect(features)
    stages = {
        str(s): {
            "stride": model.backbone.strides[s],
            "channels": model.backbone.out_channels[s],
            "shape": list(features[s].shape[1:]),
        }
        for s in sorted(features)
    }
    parts = _parts(model)
    return {
        "experiment": config.get("experiment_name"),
        "size": config["model"].get("size"),
        "lstm_cell": config["model"]["backbone"]["lstm_cell"],
        "patch_size": int(config["model"]["backbone"]["patch_size"]),
        "fpn_stages": list(model.in_stages),
        "params_total": count_parameters(model),
        "params_backbone": count_parameters(model.backbone),
        "params": parts,
        "macs_per_frame": int(counter.get_total_flops() // 2),
        "input": [int(ds["in_channels"]), int(ds["height"]), int(ds["width"])],
        "padded_input": list(padded.shape[-2:]),
        "stages": stages,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of one :func:`summarize` result."""
    lines = [
        f"experiment: {summary['experiment']}  (size {summary['size']}, {summary['lstm_cell']}, "
        f"patch {summary['patch_size']}, FPN stages {summary['fpn_stages']})",
        f"input: {summary['input']} padded to {summary['padded_input']}",
        f"parameters: {summary['params_total']:,} total, {summary['params_backbone']:,} backbone",
    ]
    lines += [f"  {name:<22} {count:>12,}" for name, count in summary["params"].items()]
    lines.append(f"multiply-accumulates per frame: {summary['macs_per_frame'] / 1e9:.2f} GMAC")
    lines.append("feature maps (stage: stride, C x H x W):")
    lines += [f"  P{s}: stride {v['stride']:>2}, {' x '.join(map(str, v['shape']))}" for s, v in summary["stages"].items()]
    return "\n".join(lines)


def format_markdown_table(summaries: list[dict[str, Any]]) -> str:
    """One markdown table row per summary (experiment comparison)."""
    header = ("| experiment | size | LSTM cell | patch | FPN stages | strides | params | backbone | FPN | head | "
              "aux head | GMAC/frame |")
    rule = "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"
    rows = [
        f"| {s['experiment']} | {s['size']} | {s['lstm_cell']} | {s['patch_size']} | "
        f"{','.join(map(str, s['fpn_stages']))} | {','.join(str(s['stages'][str(k)]['stride']) for k in s['fpn_stages'])} | "
        f"{s['params_total']:,} | {s['params_backbone']:,} | {s['params']['fpn']:,} | {s['params']['head']:,} | "
        f"{s['params'].get('aux_head', 0):,} | {s['macs_per_frame'] / 1e9:.2f} |"
        for s in summaries
    ]
    return "\n".join([header, rule, *rows])
