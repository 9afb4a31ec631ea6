"""The RVT detector: MaxViT-RNN backbone -> PAFPN -> YOLOX head, one 50 ms window per time step.

Structure from Gehrig & Scaramuzza, "Recurrent Vision Transformers for Object Detection with Event Cameras",
CVPR 2023, Sec. 3 (Fig. 2): the backbone carries a ConvLSTM state per stage from one time step to the next; the
neck and head are the YOLOX ones (Ge et al., 2021) applied to the selected stages' features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evdet.model.backbone import MaxViTRNN
from evdet.model.pafpn import PAFPN
from evdet.model.postprocess import postprocess
from evdet.model.yolox_head import YOLOXHead

__all__ = ["RVT", "LstmStates", "build_detector", "pad_to_multiple"]

#: Recurrent state: one ``(h, c)`` pair per backbone stage, each ``(B, C_s, H_s, W_s)`` float.
LstmStates = list[tuple[torch.Tensor, torch.Tensor]]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``x`` (..., H, W) at the bottom and right so H and W are multiples of ``multiple``.

    RVT pads its input this way (e.g. 360x640 -> 384x640 for a multiple of 64) so every stage's feature map is
    divisible by the attention partition size. Boxes in input pixels are unaffected because padding is only added
    after the last row and column.
    """
    h, w = x.shape[-2:]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


class RVT(nn.Module):
    """Recurrent Vision Transformer detector.

    Args:
        backbone: the MaxViT-RNN backbone (4 stages).
        in_stages: which backbone stages (1-based) feed the PAFPN, highest resolution first, e.g. ``(2, 3, 4)``.
        fpn_depth: CSP depth multiplier of the PAFPN (0.67 for RVT-B, 0.33 for RVT-S/T; RVT Sec. 4.1).
        num_classes: number of object classes.

    Raises:
        ValueError: if ``in_stages`` is empty, unsorted or names a stage the backbone does not have.
    """

    def __init__(self, backbone: MaxViTRNN, in_stages: Sequence[int], fpn_depth: float, num_classes: int) -> None:
        super().__init__()
        stages = tuple(int(s) for s in in_stages)
        valid = set(backbone.out_channels)
        if not stages or list(stages) != sorted(set(stages)) or not set(stages) <= valid:
            raise ValueError(
                f"model.fpn.in_stages: expected increasing stage numbers from {sorted(valid)}, got {list(in_stages)}"
            )
        self.backbone = backbone
        self.in_stages = stages
        channels = [backbone.out_channels[s] for s in stages]
        self.strides = tuple(backbone.strides[s] for s in stages)
        self.fpn = PAFPN(channels, depth=fpn_depth)
        self.head = YOLOXHead(num_classes=num_classes, strides=self.strides, in_channels=channels)
        self.num_classes = num_classes

    @property
    def input_multiple(self) -> int:
        """Input height and width are padded to a multiple of this (px)."""
        return self.backbone.required_input_multiple

    def forward_backbone(
        self, frames: torch.Tensor, states: LstmStates | None = None
    ) -> tuple[dict[int, torch.Tensor], LstmStates]:
        """Run one time step of the backbone.

        Args:
            frames: ``(B, C, H, W)`` float stacked histograms; padded here to :attr:`input_multiple`.
            states: the previous ``(h, c)`` per stage, or None for zero states.

        Returns:
            Features per stage ``{s: (B, C_s, H_pad/stride_s, W_pad/stride_s)}`` and the new states.
        """
        return self.backbone(pad_to_multiple(frames, self.input_multiple), states)

    def forward_detect(self, features: Mapping[int, torch.Tensor]) -> list[torch.Tensor]:
        """PAFPN + YOLOX head over the selected stages; returns the head's raw per-scale outputs."""
        return self.head(self.fpn([features[s] for s in self.in_stages]))

    def loss(self, features: Mapping[int, torch.Tensor], targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """YOLOX losses for features of labelled frames.

        Args:
            features: per-stage features ``(N, C_s, h, w)`` for N labelled frames.
            targets: N float tensors ``(n_i, 5)`` rows ``[class_id, x, y, w, h]`` (px, top-left corner).

        Returns:
            The head's loss dict (``loss``, ``loss_iou``, ``loss_obj``, ``loss_cls``, ``loss_l1``, ``num_fg``).
        """
        return self.head.loss(self.forward_detect(features), targets)

    @torch.no_grad()
    def detect(
        self, features: Mapping[int, torch.Tensor], confidence_threshold: float, nms_threshold: float
    ) -> list[torch.Tensor]:
        """Detections per frame: float ``(n, 6)`` rows ``[x1, y1, x2, y2, score, class_id]`` in input px."""
        decoded = self.head.decode(self.forward_detect(features))
        return postprocess(decoded, conf_threshold=confidence_threshold, nms_threshold=nms_threshold)


def build_detector(model_cfg: Mapping[str, Any], num_classes: int, in_channels: int) -> RVT:
    """Build :class:`RVT` from the ``model`` config group (see ``conf/model/*.yaml``).

    Args:
        model_cfg: mapping with ``backbone`` (MaxViTRNN keyword arguments) and ``fpn`` (``in_stages``, ``depth``).
        num_classes: number of classes of the dataset.
        in_channels: representation channels (20 for a 2 x 10 stacked histogram).

    Raises:
        ValueError: for an unknown LSTM cell or invalid FPN stages (message names the config key).
    """
    bb = dict(model_cfg["backbone"])
    backbone = MaxViTRNN(
        in_channels=in_channels,
        embed_dim=int(bb["embed_dim"]),
        dim_multiplier=tuple(bb["dim_multiplier"]),
        num_blocks=tuple(bb["num_blocks"]),
        patch_size=int(bb["patch_size"]),
        head_dim=int(bb["head_dim"]),
        mlp_ratio=float(bb["mlp_ratio"]),
        lstm_cell=str(bb["lstm_cell"]),
        dws_conv=bool(bb["dws_conv"]),
        drop_path=float(bb["drop_path"]),
        partition_split=int(bb["partition_split"]),
    )
    fpn = model_cfg["fpn"]
    return RVT(backbone, in_stages=tuple(fpn["in_stages"]), fpn_depth=float(fpn["depth"]), num_classes=num_classes)
