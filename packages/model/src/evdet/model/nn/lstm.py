"""Convolutional LSTM cells that give the RVT backbone its memory (one cell per stage).

Both cells implement the ConvLSTM update of Shi et al. (NeurIPS 2015) with 1x1 convolutions, as used in RVT
(Gehrig & Scaramuzza, CVPR 2023, Sec. 3.2 "LSTM"):

    [f, i, o] = sigmoid(W_x * x + W_h * h + b),   g = tanh(W_x' * x + W_h' * h + b')
    c' = f * c + i * g
    h' = o * tanh(c')

Every tensor is NCHW float, (B, dim, H, W); the hidden state h and cell state c have the same shape as x.
Gate channel order in the 4 * dim pre-activation: forget, input, output, cell input (dim channels each).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LSTMState = tuple[Tensor, Tensor]
"""(h, c): hidden and cell state, each float (B, dim, H, W)."""

LSTM_CELL_NAMES = ("DWSConvLSTM2d", "PlainLSTM2d")
"""Allowed values of the `lstm_cell` key."""


def _check_step_input(cell: nn.Module, dim: int, x: Tensor, state: LSTMState | None) -> None:
    """Validate one ConvLSTM step's input and state.

    Args:
        cell: the calling cell (only its class name is used in messages).
        dim: the cell's channel count.
        x: float (B, dim, H, W).
        state: None or (h, c), each float of x's shape.

    Raises:
        ValueError: x is not a 4-D floating tensor with `dim` channels, or state is not a pair of tensors of
            x's shape.
    """
    name = type(cell).__name__
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != dim or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: input x must be a float tensor (B, {dim}, H, W), got {got}")
    if state is None:
        return
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{name}: state must be None or a pair (h, c), got {type(state).__name__}")
    for label, tensor in zip(("h", "c"), state):
        if not isinstance(tensor, Tensor) or tensor.shape != x.shape:
            got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ValueError(f"{name}: state {label} must have the input's shape {tuple(x.shape)}, got {got}")


def _lstm_update(pre_activation: Tensor, c: Tensor) -> LSTMState:
    """Apply the LSTM gate nonlinearities and state update.

    Args:
        pre_activation: float (B, 4 * dim, H, W); channel blocks forget, input, output, cell input.
        c: previous cell state, float (B, dim, H, W).

    Returns:
        (h', c'), each float (B, dim, H, W): c' = f * c + i * g, h' = o * tanh(c') (Hochreiter & Schmidhuber
        1997; convolutional form Shi et al. 2015).
    """
    forget_in, input_in, output_in, cell_in = torch.chunk(pre_activation, 4, dim=1)
    c_new = torch.sigmoid(forget_in) * c + torch.sigmoid(input_in) * torch.tanh(cell_in)
    h_new = torch.sigmoid(output_in) * torch.tanh(c_new)
    return h_new, c_new


class DWSConvLSTM2d(nn.Module):
    """RVT's default ConvLSTM cell: one 1x1 conv (with bias) on the concatenation [x, h] to the 4 gates.

    Optionally (`dws_conv=True`) h first passes through a depthwise k x k conv (groups = dim, with bias,
    padding k // 2), as in the RVT implementation's `dws_conv` option (off by default there and here).

    Parameter count: 2 * dim * 4 * dim + 4 * dim (= 8 dim^2 + 4 dim; 33,024 at dim 64, RVT-B stage 1);
    the depthwise conv adds dim * k * k + dim (= 10 * dim for k = 3).

    Args:
        dim: channels of x, h and c (the stage width).
        dws_conv: apply the depthwise conv to h before the concatenation.
        dws_conv_kernel_size: its (odd) kernel size k.

    Raises:
        ValueError: dim < 1, or dws_conv_kernel_size not a positive odd integer.
    """

    def __init__(self, dim: int, dws_conv: bool = False, dws_conv_kernel_size: int = 3) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"DWSConvLSTM2d: dim must be >= 1, got {dim}")
        if dws_conv_kernel_size < 1 or dws_conv_kernel_size % 2 == 0:
            raise ValueError(
                f"DWSConvLSTM2d: dws_conv_kernel_size must be a positive odd integer, got {dws_conv_kernel_size}"
            )
        self.dim = dim
        self.hidden_dws_conv: nn.Module = (
            nn.Conv2d(dim, dim, dws_conv_kernel_size, padding=dws_conv_kernel_size // 2, groups=dim, bias=True)
            if dws_conv
            else nn.Identity()
        )
        self.gates_conv = nn.Conv2d(2 * dim, 4 * dim, kernel_size=1, bias=True)

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        """One time step.

        Args:
            x: float (B, dim, H, W).
            state: (h, c), each float (B, dim, H, W), or None for the zero state (start of a sequence).

        Returns:
            (h', c'), each float (B, dim, H, W).

        Raises:
            ValueError: x or state has the wrong type, rank, channel count or shape.
        """
        _check_step_input(self, self.dim, x, state)
        if state is None:
            h, c = torch.zeros_like(x), torch.zeros_like(x)
        else:
            h, c = state
        pre_activation = self.gates_conv(torch.cat((x, self.hidden_dws_conv(h)), dim=1))
        return _lstm_update(pre_activation, c)


class PlainLSTM2d(nn.Module):
    """ConvLSTM cell with separate 1x1 transforms: input W_x (with bias) and hidden W_h (no bias).

    Mathematically the same function class as `DWSConvLSTM2d(dws_conv=False)` (a 1x1 conv on [x, h] equals
    the sum of 1x1 convs on x and on h); parameter count is identical: 4 dim^2 + 4 dim + 4 dim^2.

    Args:
        dim: channels of x, h and c (the stage width).

    Raises:
        ValueError: dim < 1.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"PlainLSTM2d: dim must be >= 1, got {dim}")
        self.dim = dim
        self.input_transform = nn.Conv2d(dim, 4 * dim, kernel_size=1, bias=True)
        self.hidden_transform = nn.Conv2d(dim, 4 * dim, kernel_size=1, bias=False)

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        """One time step.

        Args:
            x: float (B, dim, H, W).
            state: (h, c), each float (B, dim, H, W), or None for the zero state (start of a sequence).

        Returns:
            (h', c'), each float (B, dim, H, W).

        Raises:
            ValueError: x or state has the wrong type, rank, channel count or shape.
        """
        _check_step_input(self, self.dim, x, state)
        if state is None:
            # The hidden transform still runs on the zero state so every parameter takes part in each step
            # (keeps DistributedDataParallel's unused-parameter check quiet).
            h, c = torch.zeros_like(x), torch.zeros_like(x)
        else:
            h, c = state
        pre_activation = self.input_transform(x) + self.hidden_transform(h)
        return _lstm_update(pre_activation, c)


def build_lstm_cell(name: str, dim: int, **kwargs) -> nn.Module:
    """Build a ConvLSTM cell by its config name.

    Args:
        name: value of the `lstm_cell` key: "DWSConvLSTM2d" or "PlainLSTM2d".
        dim: channels (stage width).
        **kwargs: passed to the cell (`dws_conv`, `dws_conv_kernel_size` for DWSConvLSTM2d; none for
            PlainLSTM2d).

    Returns:
        The cell module.

    Raises:
        ValueError: unknown name (message names `lstm_cell` and the allowed values), or keyword arguments the
            chosen cell does not take.
    """
    if name == "DWSConvLSTM2d":
        unknown = set(kwargs) - {"dws_conv", "dws_conv_kernel_size"}
        if unknown:
            raise ValueError(f"lstm_cell 'DWSConvLSTM2d' does not take {sorted(unknown)}")
        return DWSConvLSTM2d(dim, **kwargs)
    if name == "PlainLSTM2d":
        if kwargs.get("dws_conv", False):
            raise ValueError("lstm_cell 'PlainLSTM2d' has no depthwise conv: dws_conv must be False")
        unknown = set(kwargs) - {"dws_conv", "dws_conv_kernel_size"}
        if unknown:
            raise ValueError(f"lstm_cell 'PlainLSTM2d' does not take {sorted(unknown)}")
        return PlainLSTM2d(dim)
    raise ValueError(f"lstm_cell must be one of {list(LSTM_CELL_NAMES)}, got {name!r}")
