"""PAFPN neck of YOLOX, generalised from 3 to N >= 2 feature levels.

Source: YOLOX (Ge et al., arXiv 2107.08430, Sec. 2.1, "YOLOv3 baseline ... PAN"), PANet (Liu et al., CVPR 2018):
a top-down FPN path followed by a bottom-up path aggregation path, both fusing by concatenation and a CSP layer.
RVT (Gehrig & Scaramuzza, CVPR 2023) uses it over backbone stages 2, 3, 4 with depth 0.67 (RVT-B) or 0.33
(RVT-S/T).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evdet.model.nn.csp import BaseConv, CSPLayer, conv3x3


class PAFPN(nn.Module):
    """Path-aggregation feature pyramid over N levels, ordered from highest resolution (smallest stride) down.

    With ``c = in_channels`` and ``n = round(3 * depth)`` bottlenecks per CSP layer (no shortcut):

    * top-down, for i = N-2 .. 0: ``r_i = BaseConv1x1(c[i+1] -> c[i])(td_{i+1})`` (with ``td_{N-1}`` the input
      ``x_{N-1}``), nearest upsampling of ``r_i`` to the size of ``x_i``, concatenation ``[up(r_i), x_i]`` and
      ``td_i = CSP(2 c[i] -> c[i])``;
    * bottom-up, for i = 0 .. N-2 (``out_0 = td_0``): ``d_i = conv3x3 stride 2 (c[i] -> c[i])(out_i)``,
      concatenation ``[d_i, r_i]`` and ``out_{i+1} = CSP(2 c[i] -> c[i+1])``.

    For N = 3 this is exactly YOLOX's ``YOLOPAFPN`` (lateral_conv0 = reduce 2->1, C3_p4, reduce_conv1 = reduce
    1->0, C3_p3, bu_conv2, C3_n3, bu_conv1, C3_n4). Parameter counts (N = 3): (128, 256, 512) depth 0.67 ->
    3,860,992; (96, 192, 384) depth 0.33 -> 1,596,096; (64, 128, 256) depth 0.33 -> 710,784.

    Args:
        in_channels: channels per level, highest resolution first; at least 2 positive ints.
        depth: depth multiplier; each CSP layer has ``round(3 * depth)`` bottlenecks.
        depthwise: use depthwise-separable 3x3 convs (YOLOX-Nano style); off in RVT.
        act: activation name (``"silu"``, ``"relu"``, ``"lrelu"``).

    Shapes:
        forward: N float tensors ``(B, in_channels[i], H_i, W_i)`` with ``H_{i+1} = ceil(H_i / 2)`` and
        ``W_{i+1} = ceil(W_i / 2)`` (the sizes a 3x3 stride-2 conv with padding 1 produces, e.g. RVT's backbone)
        -> tuple of N float tensors with the same shapes.

    Raises:
        ValueError: fewer than 2 levels, non-positive channels or negative depth (constructor); wrong number of
            features, wrong channels, batch mismatch or level sizes not halving as above (forward).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        depth: float = 0.67,
        depthwise: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        channels = tuple(in_channels)
        if len(channels) < 2:
            raise ValueError(f"PAFPN in_channels: expected at least 2 levels, got {channels!r}")
        if any(int(c) != c or c < 1 for c in channels):
            raise ValueError(f"PAFPN in_channels: expected positive ints, got {channels!r}")
        if depth < 0:
            raise ValueError(f"PAFPN depth: expected >= 0, got {depth!r}")
        self.in_channels = tuple(int(c) for c in channels)
        self.num_bottlenecks = round(3 * depth)
        n = self.num_bottlenecks
        c = self.in_channels
        levels = range(len(c) - 1)
        # index i of each list belongs to the fusion of levels i and i + 1.
        self.reduce_convs = nn.ModuleList(BaseConv(c[i + 1], c[i], 1, 1, act=act) for i in levels)
        self.top_down_csps = nn.ModuleList(
            CSPLayer(2 * c[i], c[i], n, shortcut=False, depthwise=depthwise, act=act) for i in levels
        )
        self.down_convs = nn.ModuleList(conv3x3(c[i], c[i], 2, depthwise, act) for i in levels)
        self.bottom_up_csps = nn.ModuleList(
            CSPLayer(2 * c[i], c[i + 1], n, shortcut=False, depthwise=depthwise, act=act) for i in levels
        )

    def _check(self, features: Sequence[Tensor]) -> None:
        if len(features) != len(self.in_channels):
            raise ValueError(
                f"PAFPN features: expected {len(self.in_channels)} levels, got {len(features)}"
            )
        batch = None
        for i, (f, ch) in enumerate(zip(features, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != ch:
                raise ValueError(
                    f"PAFPN features[{i}]: expected shape (B, {ch}, H, W), got {tuple(f.shape)}"
                )
            if batch is not None and f.shape[0] != batch:
                raise ValueError(f"PAFPN features[{i}]: batch size {f.shape[0]} != {batch} of features[0]")
            batch = f.shape[0]
            if i > 0:
                prev = features[i - 1].shape[-2:]
                expected = ((prev[0] + 1) // 2, (prev[1] + 1) // 2)
                if tuple(f.shape[-2:]) != expected:
                    raise ValueError(
                        f"PAFPN features[{i}]: expected spatial size {expected} (ceil of half of features[{i - 1}] "
                        f"{tuple(prev)}), got {tuple(f.shape[-2:])}"
                    )

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Fuse the pyramid; see the class docstring for shapes and errors."""
        self._check(features)
        last = len(features) - 1
        reduced: list[Tensor] = [features[0]] * last  # filled for i = last-1 .. 0
        x = features[last]
        for i in range(last - 1, -1, -1):
            reduced[i] = self.reduce_convs[i](x)
            up = F.interpolate(reduced[i], size=features[i].shape[-2:], mode="nearest")
            x = self.top_down_csps[i](torch.cat((up, features[i]), dim=1))
        outputs = [x]
        for i in range(last):
            down = self.down_convs[i](outputs[i])
            outputs.append(self.bottom_up_csps[i](torch.cat((down, reduced[i]), dim=1)))
        return tuple(outputs)
