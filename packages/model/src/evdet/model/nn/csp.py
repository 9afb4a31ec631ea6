"""Convolution building blocks of the YOLOX neck and head: BaseConv, DWConv, Bottleneck, CSPLayer.

Structure follows YOLOX (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv 2107.08430, Sec. 2.1), whose
backbone/neck blocks come from YOLOv5 / CSPNet (Wang et al., "CSPNet", CVPRW 2020): every convolution is
conv (no bias) + BatchNorm + activation, with "same" padding ``(kernel_size - 1) // 2``.
All modules take and return float tensors in NCHW layout ``(B, C, H, W)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = ("silu", "relu", "lrelu")


def make_activation(name: str) -> nn.Module:
    """Build the activation module named ``name``.

    Args:
        name: ``"silu"`` (YOLOX default), ``"relu"`` or ``"lrelu"`` (LeakyReLU, slope 0.1 as in YOLOX).

    Returns:
        The activation module (in-place where torch allows it).

    Raises:
        ValueError: ``name`` is not one of :data:`ACTIVATIONS`.
    """
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ValueError(f"act: expected one of {ACTIVATIONS}, got {name!r}")


class BaseConv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation (YOLOX ``BaseConv``).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: square kernel size k; padding is ``(k - 1) // 2`` so stride 1 keeps H, W and stride 2 gives
            ``ceil(H / 2)``, ``ceil(W / 2)``.
        stride: convolution stride.
        groups: convolution groups (``in_channels`` for a depthwise conv).
        act: activation name, see :func:`make_activation`.

    Shapes:
        forward: ``(B, C_in, H, W)`` float -> ``(B, C_out, H', W')`` float.

    Raises:
        ValueError: non-positive channels / kernel / stride, or an unknown activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        act: str = "silu",
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("groups", groups),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"BaseConv {name}: expected a positive int, got {value!r}")
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        """Apply conv, BN, activation: ``(B, C_in, H, W) -> (B, C_out, H', W')``."""
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise-separable conv: depthwise k x k BaseConv then pointwise 1x1 BaseConv (YOLOX ``DWConv``).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: depthwise kernel size.
        stride: stride of the depthwise conv.
        act: activation name, see :func:`make_activation`.

    Shapes:
        forward: ``(B, C_in, H, W)`` float -> ``(B, C_out, H', W')`` float.

    Raises:
        ValueError: as :class:`BaseConv`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, act: str = "silu"):
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, kernel_size, stride, groups=in_channels, act=act)
        self.pconv = BaseConv(in_channels, out_channels, 1, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        """Depthwise then pointwise conv: ``(B, C_in, H, W) -> (B, C_out, H', W')``."""
        return self.pconv(self.dconv(x))


def conv3x3(in_channels: int, out_channels: int, stride: int, depthwise: bool, act: str) -> nn.Module:
    """A 3x3 YOLOX conv: :class:`DWConv` when ``depthwise`` else :class:`BaseConv`.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride))``.
    """
    if depthwise:
        return DWConv(in_channels, out_channels, 3, stride, act=act)
    return BaseConv(in_channels, out_channels, 3, stride, act=act)


class Bottleneck(nn.Module):
    """YOLOX/YOLOv5 bottleneck: 1x1 BaseConv -> 3x3 conv, optional residual add.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        shortcut: add the input to the output (only used when ``C_in == C_out``).
        expansion: hidden width = ``int(out_channels * expansion)``.
        depthwise: use :class:`DWConv` for the 3x3 conv.
        act: activation name.

    Shapes:
        forward: ``(B, C_in, H, W)`` float -> ``(B, C_out, H, W)`` float.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shortcut: bool = True,
        expansion: float = 1.0,
        depthwise: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1, act=act)
        self.conv2 = conv3x3(hidden, out_channels, 1, depthwise, act)
        self.use_add = bool(shortcut) and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H, W)``."""
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """Cross-stage-partial layer (YOLOv5 "C3", used by YOLOX's PAFPN).

    Two 1x1 BaseConv branches of width ``hidden = int(out_channels * expansion)``; the first runs through
    ``num_bottlenecks`` :class:`Bottleneck` blocks (``hidden -> hidden``, expansion 1.0), the two are concatenated
    and fused by a 1x1 BaseConv ``2 * hidden -> out_channels``.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        num_bottlenecks: number of bottlenecks n (YOLOX: ``round(3 * depth)``); 0 is allowed.
        shortcut: residual add inside the bottlenecks (False in the PAFPN).
        expansion: hidden width ratio (0.5 in YOLOX).
        depthwise: depthwise 3x3 convs in the bottlenecks.
        act: activation name.

    Shapes:
        forward: ``(B, C_in, H, W)`` float -> ``(B, C_out, H, W)`` float.

    Raises:
        ValueError: ``num_bottlenecks`` negative, or bad conv arguments (see :class:`BaseConv`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_bottlenecks: int = 1,
        shortcut: bool = True,
        expansion: float = 0.5,
        depthwise: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        if int(num_bottlenecks) != num_bottlenecks or num_bottlenecks < 0:
            raise ValueError(f"CSPLayer num_bottlenecks: expected an int >= 0, got {num_bottlenecks!r}")
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1, act=act)
        self.conv2 = BaseConv(in_channels, hidden, 1, 1, act=act)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1, 1, act=act)
        self.m = nn.Sequential(
            *(Bottleneck(hidden, hidden, shortcut, 1.0, depthwise, act) for _ in range(int(num_bottlenecks)))
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H, W)``."""
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))
