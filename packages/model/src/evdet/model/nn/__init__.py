"""The network: RVT's MaxViT-RNN backbone, the PAFPN neck and the YOLOX head, assembled as :class:`RVT`.

Modules:

- :mod:`evdet.model.nn.attention`: block/grid partitioning and multi-head self-attention.
- :mod:`evdet.model.nn.maxvit`: MaxViT block + grid attention layers.
- :mod:`evdet.model.nn.lstm`: ConvLSTM cells (DWS and plain 1x1).
- :mod:`evdet.model.nn.backbone`: the 4-stage MaxViT-RNN backbone.
- :mod:`evdet.model.nn.csp`: YOLOX conv blocks.
- :mod:`evdet.model.nn.pafpn`: the PAFPN neck over P1..P4 / P2..P4.
- :mod:`evdet.model.nn.yolox_head`: the YOLOX decoupled head.
- :mod:`evdet.model.nn.abc_head`: the auxiliary small-object head.
- :mod:`evdet.model.nn.detector`: the assembled detector, its head config and input padding.
- :mod:`evdet.model.nn.postprocess`: confidence threshold and class-aware NMS.
- :mod:`evdet.model.nn.acceleration`: speed options: BN folding, channels-last, torch.compile.
- :mod:`evdet.model.nn.summary`: parameters, MACs and feature shapes.

The public names below are imported on first use (PEP 562), so importing one module of this package does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RVT": "detector",
    "HeadConfig": "detector",
    "LstmStates": "detector",
    "build_detector": "detector",
    "pad_to_multiple": "detector",
    "postprocess": "postprocess",
    "apply_acceleration": "acceleration",
    "summarize": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public name ``name`` from its module (PEP 562).

    Raises:
        AttributeError: ``name`` is not one of ``__all__``.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
