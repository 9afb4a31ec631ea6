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

The public names below load their module on first use (``lazy_loader``, SPEC 1), so importing one module of this
package does not import the others.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "detector": ["RVT", "HeadConfig", "LstmStates", "build_detector", "pad_to_multiple"],
        "postprocess": ["postprocess"],
        "acceleration": ["apply_acceleration"],
        "summary": ["summarize"],
    },
)
