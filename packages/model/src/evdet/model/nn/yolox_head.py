"""YOLOX decoupled, anchor-free detection head (Ge et al., arXiv 2107.08430, Sec. 2.1 "Decoupled head",
"Anchor-free"), as used by RVT (Gehrig & Scaramuzza, CVPR 2023).

Per pyramid level: a 1x1 stem to ``hidden_channels``, a class branch (two 3x3 convs -> 1x1 class predictor) and a
box branch (two 3x3 convs -> 1x1 box predictor (4) and 1x1 objectness predictor (1)); every conv except the
predictors is conv (no bias) + BN + SiLU. Raw output channels per anchor: ``[dx, dy, log_w, log_h, obj, cls_0..]``.
Parameter counts at 8 classes: in (128, 256, 512) -> 1,893,031; (96, 192, 384) -> 1,066,503;
(64, 128, 256) -> 475,495.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from evdet.model.nn.csp import BaseConv
from evdet.model.loss.yolox_loss import IOU_LOSS_WEIGHT, YOLOXLoss

PRIOR_PROB = 0.01
"""Prior foreground probability for the class and objectness predictor biases (YOLOX, after RetinaNet,
Lin et al., ICCV 2017, Sec. 4.1 "Initialization")."""


class YOLOXHead(nn.Module):
    """Decoupled YOLOX head over N pyramid levels with its decoding and loss.

    Args:
        num_classes: number of classes C (>= 1).
        strides: stride of each level in input px, e.g. ``(8, 16, 32)``.
        in_channels: channels of each level's input feature map.
        hidden_channels: width of stems and branches; default ``int(256 * in_channels[-1] / 1024)`` (128 for
            RVT-B with in_channels (128, 256, 512)).
        act: activation name (``"silu"``, ``"relu"``, ``"lrelu"``).
        use_l1: add the L1 loss on raw box outputs in :meth:`loss` (off by default).
        iou_loss_weight: weight of the IoU loss in the total (5.0).
        size_weighting: optional per-positive weight of the gt area (px²) for the size-aware loss, e.g.
            :class:`evdet.model.loss.size_aware.SizeAwareWeighting`; None (default) for the plain YOLOX loss. Adds no
            parameters.

    Raises:
        ValueError: ``num_classes < 1``, empty or mismatched ``strides`` / ``in_channels``, non-positive values.
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int],
        in_channels: Sequence[int],
        hidden_channels: int | None = None,
        act: str = "silu",
        use_l1: bool = False,
        iou_loss_weight: float = IOU_LOSS_WEIGHT,
        size_weighting: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        strides = tuple(strides)
        in_channels = tuple(in_channels)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"YOLOXHead num_classes: expected a positive int, got {num_classes!r}")
        if len(in_channels) == 0 or len(strides) != len(in_channels):
            raise ValueError(
                f"YOLOXHead strides / in_channels: expected the same non-zero number of levels, got "
                f"{strides!r} / {in_channels!r}"
            )
        if any(s <= 0 for s in strides) or any(int(c) != c or c < 1 for c in in_channels):
            raise ValueError(f"YOLOXHead strides / in_channels: expected positive values, got {strides!r} / "
                             f"{in_channels!r}")
        if hidden_channels is None:
            hidden_channels = int(256 * in_channels[-1] / 1024)
        if hidden_channels < 1:
            raise ValueError(f"YOLOXHead hidden_channels: expected >= 1, got {hidden_channels!r}")
        self.num_classes = int(num_classes)
        self.strides = tuple(float(s) for s in strides)
        self.in_channels = tuple(int(c) for c in in_channels)
        self.hidden_channels = int(hidden_channels)
        h = self.hidden_channels
        self.stems = nn.ModuleList(BaseConv(c, h, 1, 1, act=act) for c in self.in_channels)
        self.cls_convs = nn.ModuleList(
            nn.Sequential(BaseConv(h, h, 3, 1, act=act), BaseConv(h, h, 3, 1, act=act)) for _ in self.in_channels
        )
        self.reg_convs = nn.ModuleList(
            nn.Sequential(BaseConv(h, h, 3, 1, act=act), BaseConv(h, h, 3, 1, act=act)) for _ in self.in_channels
        )
        self.cls_preds = nn.ModuleList(nn.Conv2d(h, self.num_classes, 1) for _ in self.in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(h, 4, 1) for _ in self.in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(h, 1, 1) for _ in self.in_channels)
        self.initialize_biases(PRIOR_PROB)
        self.criterion = YOLOXLoss(
            self.num_classes, iou_loss_weight=iou_loss_weight, use_l1=use_l1, size_weighting=size_weighting,
            num_levels=len(self.strides),
        )

    def initialize_biases(self, prior_prob: float) -> None:
        """Set class and objectness predictor biases to ``-log((1 - p) / p)`` so that sigmoid = ``prior_prob``.

        Raises:
            ValueError: ``prior_prob`` not in (0, 1).
        """
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob: expected a probability in (0, 1), got {prior_prob!r}")
        bias = -math.log((1.0 - prior_prob) / prior_prob)
        with torch.no_grad():
            for conv in (*self.cls_preds, *self.obj_preds):
                conv.bias.fill_(bias)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Raw per-level predictions.

        Args:
            features: N float tensors ``(B, in_channels[i], H_i, W_i)``, level i at ``strides[i]``.

        Returns:
            N float tensors ``(B, 5 + C, H_i, W_i)``, channels ``[dx, dy, log_w, log_h, obj_logit, cls_logits]``.

        Raises:
            ValueError: wrong number of levels or channels (names ``features[i]``).
        """
        if len(features) != len(self.in_channels):
            raise ValueError(f"YOLOXHead features: expected {len(self.in_channels)} levels, got {len(features)}")
        outputs = []
        for i, f in enumerate(features):
            if f.dim() != 4 or f.shape[1] != self.in_channels[i]:
                raise ValueError(
                    f"YOLOXHead features[{i}]: expected shape (B, {self.in_channels[i]}, H, W), got {tuple(f.shape)}"
                )
            x = self.stems[i](f)
            cls_feat = self.cls_convs[i](x)
            reg_feat = self.reg_convs[i](x)
            outputs.append(
                torch.cat((self.reg_preds[i](reg_feat), self.obj_preds[i](reg_feat), self.cls_preds[i](cls_feat)), 1)
            )
        return outputs

    def _flatten(self, outputs: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Concatenate levels: raw float32 ``(B, A, 5 + C)``, grid ``(A, 2)`` cell ``(gx, gy)``, strides ``(A,)``.

        Anchors are ordered level by level, row-major within a level (index ``gy * W_i + gx``).
        """
        if len(outputs) != len(self.strides):
            raise ValueError(f"YOLOXHead outputs: expected {len(self.strides)} levels, got {len(outputs)}")
        flat, grids, strides = [], [], []
        for i, out in enumerate(outputs):
            if out.dim() != 4 or out.shape[1] != 5 + self.num_classes:
                raise ValueError(
                    f"YOLOXHead outputs[{i}]: expected shape (B, {5 + self.num_classes}, H, W), got {tuple(out.shape)}"
                )
            if out.shape[0] != outputs[0].shape[0]:
                raise ValueError(f"YOLOXHead outputs[{i}]: batch size {out.shape[0]} != {outputs[0].shape[0]}")
            height, width = out.shape[-2:]
            flat.append(out.float().flatten(2).transpose(1, 2))
            gy, gx = torch.meshgrid(
                torch.arange(height, device=out.device, dtype=torch.float32),
                torch.arange(width, device=out.device, dtype=torch.float32),
                indexing="ij",
            )
            grids.append(torch.stack((gx, gy), dim=-1).reshape(-1, 2))
            strides.append(torch.full((height * width,), self.strides[i], device=out.device))
        return torch.cat(flat, 1), torch.cat(grids, 0), torch.cat(strides, 0)

    @staticmethod
    def _decode_boxes(raw: Tensor, grid: Tensor, strides: Tensor) -> Tensor:
        """``(B, A, >=4)`` raw -> ``(B, A, 4)`` ``[cx, cy, w, h]`` px: ``(grid + d) * s``, ``exp(log_wh) * s``."""
        s = strides.unsqueeze(-1)
        return torch.cat(((raw[..., :2] + grid) * s, raw[..., 2:4].exp() * s), dim=-1)

    def decode(self, outputs: Sequence[Tensor]) -> Tensor:
        """Decode raw outputs into boxes and scores for all anchors.

        Args:
            outputs: the list returned by :meth:`forward`, N tensors ``(B, 5 + C, H_i, W_i)``.

        Returns:
            float32 ``(B, A, 5 + C)``, ``A = sum_i H_i * W_i``, rows ``[cx, cy, w, h, obj, cls_0 .. cls_{C-1}]``:
            box centre ``(grid + offset) * stride`` and size ``exp(log_wh) * stride`` in input px, objectness and
            class probabilities sigmoid'ed (YOLOX ``decode_outputs``). Anchors ordered level by level, row-major.

        Raises:
            ValueError: wrong number of levels, channels or batch sizes.
        """
        raw, grid, strides = self._flatten(outputs)
        return torch.cat((self._decode_boxes(raw, grid, strides), raw[..., 4:].sigmoid()), dim=-1)

    def loss(self, outputs: Sequence[Tensor], targets: Sequence[Tensor]) -> dict[str, Tensor]:
        """YOLOX loss with SimOTA assignment (see :mod:`evdet.model.loss.yolox_loss`).

        Args:
            outputs: the list returned by :meth:`forward`, N tensors ``(B, 5 + C, H_i, W_i)``.
            targets: B float tensors ``(n_b, 5)``, rows ``[class_id, x, y, w, h]`` in input px with TOP-LEFT
                ``x, y`` (docs/architecture.md); ``(0, 5)`` for an image without boxes.

        Returns:
            dict of 0-dim float32 tensors ``loss`` (= 5 * loss_iou + loss_obj + loss_cls + loss_l1),
            ``loss_iou`` (mean of ``1 - IoU^2`` over positives, size-weighted with ``size_weighting``),
            ``loss_obj``, ``loss_cls`` (size-weighted with ``size_weighting``), ``loss_l1``
            (0 unless ``use_l1``), ``num_fg`` (number of positive anchors).

        Raises:
            ValueError: bad outputs or targets; the message names the offending entry.
        """
        raw, grid, strides = self._flatten(outputs)
        pred_boxes = self._decode_boxes(raw, grid, strides)
        return self.criterion(raw, pred_boxes, grid, strides, targets)
