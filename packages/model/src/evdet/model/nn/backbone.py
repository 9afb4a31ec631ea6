"""The RVT backbone (MaxViT-RNN): 4 stages of downsample -> MaxViT blocks -> ConvLSTM.

Gehrig & Scaramuzza, "Recurrent Vision Transformers for Object Detection with Event Cameras", CVPR 2023,
Sec. 3 and Fig. 2. Each stage s = 1..4:
- an "overlapping" strided conv (stem: kernel 2 * patch_size - 1, stride patch_size; later: kernel 3, stride 2;
  padding kernel // 2, no bias) followed by a LayerNorm over channels (eps 1e-5), output channels-last;
- `num_blocks[s]` MaxViT blocks (block then grid partition attention, see `evdet.model.nn.maxvit`), attention
  partition size = padded input size / (32 * partition_split) at every stage (RVT: 384x640 -> 6x10);
- a ConvLSTM (hidden = stage width) whose hidden state h is the stage output and the next stage's input.

The backbone runs one time step per call; the caller loops over the sequence and owns the states.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from evdet.model.nn.lstm import LSTMState, build_lstm_cell
from evdet.model.nn.maxvit import MaxViTBlock

NUM_STAGES = 4

BACKBONE_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=32, head_dim=32),
    "small": dict(embed_dim=48, head_dim=24),
    "base": dict(embed_dim=64, head_dim=32),
}
"""RVT-T / RVT-S / RVT-B backbone widths (RVT paper, Tab. 7; RVT-S uses attention head dim 24)."""


class OverlapDownsample(nn.Module):
    """Strided conv with an overlapping kernel, then LayerNorm over channels; NCHW in, channels-last out.

    Kernel k = 2 * factor - 1, stride = factor, padding k // 2, no bias (RVT, Sec. 3.1), so an H x W input
    divisible by factor gives H / factor x W / factor. Parameters: in * out * k^2 + 2 * out.

    Args:
        in_channels: input channels.
        out_channels: output channels (stage width).
        factor: downsampling factor (stride), >= 1.

    Raises:
        ValueError: factor < 1.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"downsample factor must be >= 1, got {factor}")
        kernel = 2 * factor - 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=factor, padding=kernel // 2, bias=False)
        self.norm = nn.LayerNorm(out_channels, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        """Downsample.

        Args:
            x: float (B, C_in, H, W).

        Returns:
            float (B, H / factor, W / factor, C_out), channels-last, normalised over C_out.
        """
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class MaxViTRNNStage(nn.Module):
    """One RVT stage: `OverlapDownsample` -> `num_blocks` x `MaxViTBlock` -> ConvLSTM.

    Args:
        in_channels: input channels (20 for the stem, the previous stage width otherwise).
        dim: stage width C.
        factor: downsampling factor of this stage.
        num_blocks: MaxViT blocks (>= 1).
        head_dim, mlp_ratio, drop_path, layer_scale_init: see `evdet.model.nn.maxvit.PartitionAttentionLayer`.
        lstm_cell: "DWSConvLSTM2d" or "PlainLSTM2d".
        dws_conv: depthwise 3x3 conv on h (DWSConvLSTM2d only).

    Raises:
        ValueError: num_blocks < 1, bad head_dim, unknown lstm_cell, or dws_conv with PlainLSTM2d.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        factor: int,
        num_blocks: int,
        head_dim: int,
        mlp_ratio: float,
        drop_path: float,
        layer_scale_init: float | None,
        lstm_cell: str,
        dws_conv: bool,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1 per stage, got {num_blocks}")
        self.downsample = OverlapDownsample(in_channels, dim, factor)
        self.blocks = nn.ModuleList(
            MaxViTBlock(
                dim,
                head_dim=head_dim,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path,
                layer_scale_init=layer_scale_init,
                skip_first_norm=i == 0,  # the downsample's LayerNorm already normalised the input
            )
            for i in range(num_blocks)
        )
        self.lstm = build_lstm_cell(lstm_cell, dim, dws_conv=dws_conv)

    def forward(self, x: Tensor, state: LSTMState | None, partition_size: tuple[int, int]) -> LSTMState:
        """One time step of the stage.

        Args:
            x: float (B, C_in, H, W) NCHW.
            state: previous (h, c), each float (B, C, H / factor, W / factor), or None (zero state).
            partition_size: attention window = grid size in feature px.

        Returns:
            (h, c), each float (B, C, H / factor, W / factor); h is the stage output.
        """
        x = self.downsample(x)
        for block in self.blocks:
            x = block(x, partition_size)
        return self.lstm(x.permute(0, 3, 1, 2), state)


def _as_stage_tuple(value: Sequence, name: str) -> tuple:
    """Return value as a tuple of NUM_STAGES entries; ValueError naming `name` otherwise."""
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {NUM_STAGES} values, got {value!r}") from None
    if len(out) != NUM_STAGES:
        raise ValueError(f"{name} must have {NUM_STAGES} entries (one per stage), got {len(out)}: {out}")
    return out


class MaxViTRNN(nn.Module):
    """RVT backbone: 4 recurrent MaxViT stages over a stacked-histogram input, one time step per call.

    Parameter counts (RVT reference implementation, in_channels 20): RVT-B (embed_dim 64) 12,784,768 with
    patch 4 and 12,733,568 with patch 2; RVT-S (48, head_dim 24) 7,209,312; RVT-T (32) 3,220,032.

    Args:
        in_channels: input channels (20 = 2 polarities x 10 bins).
        embed_dim: stage-1 width; stage widths are embed_dim * dim_multiplier.
        dim_multiplier: 4 width multipliers.
        num_blocks: 4 MaxViT block counts.
        patch_size: stem stride (4 -> strides 4, 8, 16, 32; 2 -> 2, 4, 8, 16); must divide 4 * partition_split.
        head_dim: channels per attention head; every stage width must be a multiple of it.
        mlp_ratio: MLP hidden width / stage width.
        lstm_cell: "DWSConvLSTM2d" (RVT default) or "PlainLSTM2d".
        dws_conv: depthwise 3x3 conv on h in DWSConvLSTM2d.
        drop_path: stochastic-depth probability for every residual branch.
        partition_split: input H, W are split into 32 * partition_split-px units; attention partition size =
            (H / (32 * partition_split), W / (32 * partition_split)).
        layer_scale_init: LayerScale initial value (None or 0: no LayerScale).
        checkpoint_stages: recompute each stage in the backward pass (torch.utils.checkpoint) to save memory;
            only active while autograd is recording.

    Attributes:
        num_stages: 4.
        out_channels: {stage: width}, stages 1..4.
        strides: {stage: stride in input px}, stages 1..4.
        required_input_multiple: H and W of the input must be multiples of this (32 * partition_split).

    Raises:
        ValueError: a per-stage tuple without 4 entries, patch_size < 1 or not dividing 4 * partition_split,
            partition_split < 1, a stage width not a multiple of head_dim, an unknown lstm_cell, or
            dws_conv=True with lstm_cell "PlainLSTM2d".
    """

    num_stages = NUM_STAGES

    def __init__(
        self,
        in_channels: int = 20,
        embed_dim: int = 64,
        dim_multiplier: Sequence[int] = (1, 2, 4, 8),
        num_blocks: Sequence[int] = (1, 1, 1, 1),
        patch_size: int = 4,
        head_dim: int = 32,
        mlp_ratio: float = 4.0,
        lstm_cell: str = "DWSConvLSTM2d",
        dws_conv: bool = False,
        drop_path: float = 0.0,
        partition_split: int = 2,
        layer_scale_init: float | None = 1e-5,
        checkpoint_stages: bool = False,
    ) -> None:
        super().__init__()
        dim_multiplier = _as_stage_tuple(dim_multiplier, "dim_multiplier")
        num_blocks = _as_stage_tuple(num_blocks, "num_blocks")
        if partition_split < 1:
            raise ValueError(f"partition_split must be >= 1, got {partition_split}")
        if patch_size < 1 or (4 * partition_split) % patch_size:
            # The stage-4 map (input / (8 * patch_size)) must hold a whole number of partitions.
            raise ValueError(
                f"patch_size must be >= 1 and divide 4 * partition_split = {4 * partition_split}, got {patch_size}"
            )
        widths = [embed_dim * m for m in dim_multiplier]
        for stage, width in enumerate(widths, start=1):
            if width < 1 or width % head_dim:
                raise ValueError(f"stage {stage} width {width} (embed_dim x dim_multiplier) is not a multiple "
                                 f"of head_dim {head_dim}")
        self.in_channels = in_channels
        self.partition_split = partition_split
        self.checkpoint_stages = checkpoint_stages
        self.out_channels: dict[int, int] = {s: widths[s - 1] for s in range(1, NUM_STAGES + 1)}
        self.strides: dict[int, int] = {s: patch_size * 2 ** (s - 1) for s in range(1, NUM_STAGES + 1)}
        stage_inputs = [in_channels] + widths[:-1]
        self.stages = nn.ModuleList(
            MaxViTRNNStage(
                in_channels=stage_inputs[i],
                dim=widths[i],
                factor=patch_size if i == 0 else 2,
                num_blocks=num_blocks[i],
                head_dim=head_dim,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path,
                layer_scale_init=layer_scale_init,
                lstm_cell=lstm_cell,
                dws_conv=dws_conv,
            )
            for i in range(NUM_STAGES)
        )

    @property
    def required_input_multiple(self) -> int:
        """H and W of the input must be multiples of this: 32 * partition_split px (64 by default)."""
        return 32 * self.partition_split

    def partition_size(self, height: int, width: int) -> tuple[int, int]:
        """Attention partition size (block window = grid size) for a padded input of height x width px.

        Returns:
            (height, width) // required_input_multiple, e.g. (6, 10) for 384 x 640 at partition_split 2.

        Raises:
            ValueError: height or width is not a positive multiple of `required_input_multiple`.
        """
        multiple = self.required_input_multiple
        if height < multiple or width < multiple or height % multiple or width % multiple:
            raise ValueError(
                f"backbone input size {height}x{width} (HxW) must be a positive multiple of {multiple} "
                f"(32 x partition_split {self.partition_split}); pad the input first"
            )
        return height // multiple, width // multiple

    def _check_states(self, states: object, x: Tensor) -> list[LSTMState | None]:
        """Validate states against x (B, C_in, H, W); returns a list of NUM_STAGES entries."""
        if states is None:
            return [None] * NUM_STAGES
        if not isinstance(states, (list, tuple)) or len(states) != NUM_STAGES:
            got = len(states) if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(f"states must be None or a list of {NUM_STAGES} entries (one per stage), got {got}")
        b, _, h, w = x.shape
        checked: list[LSTMState | None] = []
        for i, state in enumerate(states):
            if state is None:
                checked.append(None)
                continue
            stage = i + 1
            expected = (b, self.out_channels[stage], h // self.strides[stage], w // self.strides[stage])
            if (
                not isinstance(state, (list, tuple))
                or len(state) != 2
                or not all(isinstance(t, Tensor) and tuple(t.shape) == expected for t in state)
            ):
                got = (
                    [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in state]
                    if isinstance(state, (list, tuple))
                    else type(state).__name__
                )
                raise ValueError(f"states[{i}] (stage {stage}) must be a pair (h, c) of shape {expected}, got {got}")
            checked.append((state[0], state[1]))
        return checked

    def forward(
        self, x: Tensor, states: Sequence[LSTMState | None] | None = None
    ) -> tuple[dict[int, Tensor], list[LSTMState]]:
        """One time step through the 4 stages.

        Args:
            x: float (B, in_channels, H, W) stacked histograms, H and W multiples of `required_input_multiple`.
            states: None (zero states) or a list of 4 entries, each None (zero state for that stage) or (h, c)
                with h, c float (B, out_channels[s], H / strides[s], W / strides[s]).

        Returns:
            features: {stage: float (B, out_channels[s], H / strides[s], W / strides[s])} NCHW, the LSTM h;
            new_states: list of 4 (h, c) pairs for the next time step (not detached).

        Raises:
            ValueError: x is not a float (B, in_channels, H, W) tensor, H or W is not a multiple of
                `required_input_multiple`, or states do not match (count or shapes).
        """
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels or not x.is_floating_point():
            got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"backbone input x must be a float tensor (B, {self.in_channels}, H, W), got {got}")
        partition_size = self.partition_size(x.shape[2], x.shape[3])
        stage_states = self._check_states(states, x)
        use_checkpoint = self.checkpoint_stages and torch.is_grad_enabled()
        features: dict[int, Tensor] = {}
        new_states: list[LSTMState] = []
        for i, stage in enumerate(self.stages):
            if use_checkpoint:
                h, c = checkpoint(stage, x, stage_states[i], partition_size, use_reentrant=False)
            else:
                h, c = stage(x, stage_states[i], partition_size)
            features[i + 1] = h
            new_states.append((h, c))
            x = h
        return features, new_states
