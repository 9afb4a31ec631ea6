"""The RVT detector: MaxViT-RNN backbone -> PAFPN -> YOLOX head, one 50 ms window per time step.

Structure from Gehrig & Scaramuzza, "Recurrent Vision Transformers for Object Detection with Event Cameras",
CVPR 2023, Sec. 3 (Fig. 2): the backbone carries a ConvLSTM state per stage from one time step to the next; the
neck and head are the YOLOX ones (Ge et al., 2021) applied to the selected stages' features.

Head variants (config node ``model.head``, issue 4): ``name: YOLOX`` (plain head, optionally with the size-aware
loss, :mod:`evdet.model.loss.size_aware`) or ``name: ABC`` (the same main head plus the auxiliary small-object head of
:mod:`evdet.model.nn.abc_head`, a separate submodule ``aux_head`` used only by :meth:`RVT.loss`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evdet.model.nn.abc_head import DEFAULT_AUX_LOSS_WEIGHT, SmallObjectAuxHead
from evdet.model.nn.backbone import MaxViTRNN
from evdet.model.nn.pafpn import PAFPN
from evdet.model.nn.postprocess import postprocess
from evdet.model.loss.size_aware import (
    DEFAULT_MEDIUM_THRESHOLD,
    DEFAULT_SIZE_AWARE_WEIGHT,
    DEFAULT_SMALL_THRESHOLD,
    SizeAwareWeighting,
)
from evdet.model.nn.yolox_head import YOLOXHead

__all__ = ["RVT", "HeadConfig", "HEAD_NAMES", "LstmStates", "build_detector", "pad_to_multiple", "small_class_ids"]

HEAD_NAMES = ("YOLOX", "ABC")
"""Allowed values of ``model.head.name``."""

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


@dataclass(frozen=True)
class HeadConfig:
    """The ``model.head`` config node.

    Attributes:
        name: ``"YOLOX"`` (plain head) or ``"ABC"`` (main head + auxiliary small-object head).
        size_aware_loss: weight the main head's per-positive IoU and class losses by target size.
        size_aware_weight: maximum weight W (>= 1), see :mod:`evdet.model.loss.size_aware`.
        small_threshold: S in px² (1024).
        medium_threshold: M in px² (9216).
        weight_type: ``exponential``, ``step`` or ``linear``.
        small_classes: class NAMES (of the model's classes) the ABC auxiliary head learns, remapped to ``0 .. K-1``
            in this order; empty for a plain YOLOX head.
        aux_loss_weight: weight of the auxiliary loss in the ABC total (>= 0).
    """

    name: str = "YOLOX"
    size_aware_loss: bool = False
    size_aware_weight: float = DEFAULT_SIZE_AWARE_WEIGHT
    small_threshold: float = DEFAULT_SMALL_THRESHOLD
    medium_threshold: float = DEFAULT_MEDIUM_THRESHOLD
    weight_type: str = "exponential"
    small_classes: tuple[str, ...] = ()
    aux_loss_weight: float = DEFAULT_AUX_LOSS_WEIGHT

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> HeadConfig:
        """Parse ``model.head``; None (old configs and checkpoints without the node) gives the plain YOLOX head.

        Missing keys take the defaults above (``conf/model/rvt_base.yaml`` sets them all).

        Raises:
            ValueError: an unknown key (names ``model.head`` and the allowed keys), an unknown ``name`` (names
                ``head.name``), an unknown ``weight_type`` (names ``head.weight_type``), a non-boolean
                ``size_aware_loss``, ``small_classes`` not a list of class names, or a negative ``aux_loss_weight``.
        """
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise ValueError(f"model.head: expected a mapping, got {type(cfg).__name__}")
        allowed = tuple(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ValueError(f"model.head: unknown keys {unknown}; allowed keys are {list(allowed)}")
        defaults = cls()
        values = {k: getattr(defaults, k) for k in allowed}
        values.update(cfg)
        if values["name"] not in HEAD_NAMES:
            raise ValueError(f"head.name: expected one of {list(HEAD_NAMES)}, got {values['name']!r}")
        if not isinstance(values["size_aware_loss"], bool):
            raise ValueError(f"head.size_aware_loss: expected true or false, got {values['size_aware_loss']!r}")
        classes = values["small_classes"]
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not all(
            isinstance(c, str) and c for c in classes
        ):
            raise ValueError(f"head.small_classes: expected a list of class names, got {classes!r}")
        numbers = {}
        for key in ("size_aware_weight", "small_threshold", "medium_threshold", "aux_loss_weight"):
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"head.{key}: expected a number, got {value!r}")
            numbers[key] = float(value)
        if not numbers["aux_loss_weight"] >= 0.0:
            raise ValueError(f"head.aux_loss_weight: expected a number >= 0, got {values['aux_loss_weight']!r}")
        config = cls(
            name=str(values["name"]),
            size_aware_loss=values["size_aware_loss"],
            weight_type=str(values["weight_type"]),
            small_classes=tuple(classes),
            **numbers,
        )
        config.weighting()  # validates weight_type, weight and thresholds even when the flag is off
        return config

    def weighting(self) -> SizeAwareWeighting:
        """The :class:`SizeAwareWeighting` these values describe (raises its ``ValueError`` for bad values)."""
        return SizeAwareWeighting(
            weight_type=self.weight_type,
            size_aware_weight=self.size_aware_weight,
            small_threshold=self.small_threshold,
            medium_threshold=self.medium_threshold,
        )


class RVT(nn.Module):
    """Recurrent Vision Transformer detector.

    Args:
        backbone: the MaxViT-RNN backbone (4 stages).
        in_stages: which backbone stages (1-based) feed the PAFPN, highest resolution first, e.g. ``(2, 3, 4)``.
        fpn_depth: CSP depth multiplier of the PAFPN (0.67 for RVT-B, 0.33 for RVT-S/T; RVT Sec. 4.1).
        num_classes: number of object classes.
        head: the ``model.head`` settings (default: plain YOLOX, no size-aware loss).
        include_aux: build the ABC auxiliary head when ``head.name == "ABC"``; False builds the inference-only
            model that :meth:`export_state_dict` weights load into.
        class_names: the model's class names in id order (needed by ABC: ``head.small_classes`` are names).

    Attributes:
        head: the main :class:`YOLOXHead` over all pyramid levels (size-aware loss when enabled).
        aux_head: the :class:`SmallObjectAuxHead` (ABC with ``include_aux``) or None; used only by :meth:`loss`.

    Raises:
        ValueError: if ``in_stages`` is empty, unsorted or names a stage the backbone does not have (the PAFPN
            also needs 2 or more); for ABC, if ``class_names`` is missing or a name of ``head.small_classes`` is not
            one of them (the message lists both).
    """

    def __init__(
        self,
        backbone: MaxViTRNN,
        in_stages: Sequence[int],
        fpn_depth: float,
        num_classes: int,
        head: HeadConfig | None = None,
        include_aux: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
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
        self.head_config = head if head is not None else HeadConfig()
        weighting = self.head_config.weighting() if self.head_config.size_aware_loss else None
        self.head = YOLOXHead(
            num_classes=num_classes, strides=self.strides, in_channels=channels, size_weighting=weighting
        )
        self.aux_head: SmallObjectAuxHead | None = None
        if self.head_config.name == "ABC" and include_aux:
            self.aux_head = SmallObjectAuxHead(
                self.strides,
                channels,
                small_classes=small_class_ids(self.head_config.small_classes, class_names),
                num_classes=num_classes,
                hidden_channels=self.head.hidden_channels,
            )
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

    def forward_fpn(self, features: Mapping[int, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """PAFPN over the selected stages: one ``(N, C_i, h_i, w_i)`` map per stage, highest resolution first."""
        return self.fpn([features[s] for s in self.in_stages])

    def forward_detect(self, features: Mapping[int, torch.Tensor]) -> list[torch.Tensor]:
        """PAFPN + main YOLOX head over the selected stages; returns the head's raw per-scale outputs.

        The auxiliary head (ABC) is never run here.
        """
        return self.head(self.forward_fpn(features))

    def loss(self, features: Mapping[int, torch.Tensor], targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training losses for features of labelled frames.

        Args:
            features: per-stage features ``(N, C_s, h, w)`` for N labelled frames.
            targets: N float tensors ``(n_i, 5)`` rows ``[class_id, x, y, w, h]`` (px, top-left corner).

        Returns:
            Plain YOLOX (or without an auxiliary head): the main head's loss dict (``loss``, ``loss_iou``,
            ``loss_obj``, ``loss_cls``, ``loss_l1``, ``num_fg``). ABC: the same keys for the main head plus
            ``loss_main`` (main head total), ``loss_aux`` (auxiliary head total), ``num_fg_aux``, and
            ``loss = loss_main + aux_loss_weight * loss_aux``.
        """
        pyramid = self.forward_fpn(features)
        losses = self.head.loss(self.head(pyramid), targets)
        if self.aux_head is None:
            return losses
        aux = self.aux_head.loss(pyramid, targets)
        losses["loss_main"] = losses["loss"]
        losses["loss_aux"] = aux["loss"]
        losses["num_fg_aux"] = aux["num_fg"]
        losses["loss"] = losses["loss_main"] + self.head_config.aux_loss_weight * aux["loss"]
        return losses

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights needed for inference: the state dict without the auxiliary head's ``aux_head.*`` entries.

        Loads strictly into ``build_detector(model_cfg, num_classes, in_channels, include_aux=False)``.
        """
        return {k: v for k, v in self.state_dict().items() if not k.startswith("aux_head.")}

    @torch.no_grad()
    def detect(
        self, features: Mapping[int, torch.Tensor], confidence_threshold: float, nms_threshold: float
    ) -> list[torch.Tensor]:
        """Detections per frame: float ``(n, 7)`` rows ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]`` in input
        px (:func:`evdet.model.nn.postprocess.postprocess`)."""
        decoded = self.head.decode(self.forward_detect(features))
        return postprocess(decoded, conf_threshold=confidence_threshold, nms_threshold=nms_threshold)


def small_class_ids(small_classes: Sequence[str], class_names: Sequence[str] | None) -> tuple[int, ...]:
    """Class ids of the ABC head's small classes, given by name.

    Raises:
        ValueError: ``class_names`` is None, ``small_classes`` is empty, or a name is not a class (names
            ``head.small_classes`` and the known classes).
    """
    if class_names is None:
        raise ValueError("head.small_classes: the ABC head needs the model's class names (dataset.class_names)")
    names = list(class_names)
    unknown = [c for c in small_classes if c not in names]
    if not small_classes or unknown:
        raise ValueError(f"head.small_classes: {list(small_classes)!r} must be non-empty names of the model's "
                         f"classes {names} (unknown: {unknown}); set model.head.small_classes or dataset.small_classes")
    return tuple(names.index(c) for c in small_classes)


def build_detector(
    model_cfg: Mapping[str, Any], num_classes: int, in_channels: int, include_aux: bool = True,
    class_names: Sequence[str] | None = None,
) -> RVT:
    """Build :class:`RVT` from the ``model`` config group (see ``conf/model/*.yaml``).

    Args:
        model_cfg: mapping with ``backbone`` (MaxViTRNN keyword arguments), ``fpn`` (``in_stages``, ``depth``) and
            optionally ``head`` (:class:`HeadConfig`; missing -> plain YOLOX, so configs of old checkpoints load).
        num_classes: number of classes of the dataset.
        in_channels: representation channels (20 for a 2 x 10 stacked histogram).
        include_aux: build the ABC auxiliary head (False: inference-only model for :meth:`RVT.export_state_dict`).
        class_names: the model's class names (ABC resolves ``head.small_classes`` with them).

    Raises:
        ValueError: for an unknown LSTM cell, invalid FPN stages or a bad ``head`` node (message names the key).
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
        checkpoint_stages=bool(bb.get("checkpoint_stages", False)),
    )
    fpn = model_cfg["fpn"]
    head = HeadConfig.from_mapping(model_cfg.get("head"))
    return RVT(
        backbone,
        in_stages=tuple(fpn["in_stages"]),
        fpn_depth=float(fpn["depth"]),
        num_classes=num_classes,
        head=head,
        include_aux=include_aux,
        class_names=class_names,
    )
