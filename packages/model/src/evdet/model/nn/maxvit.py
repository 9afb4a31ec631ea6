"""MaxViT transformer layers as used in RVT: block attention followed by grid attention, no MBConv.

Structure per layer (Tu et al., ECCV 2022, Sec. 3; RVT, Gehrig & Scaramuzza, CVPR 2023, Sec. 3.1 and Fig. 3):

    x = x + DropPath(LayerScale(MHSA(LayerNorm(x)))),  attention within block or grid partitions
    x = x + DropPath(LayerScale(MLP(LayerNorm(x)))),   MLP: Linear(C, r C) -> GELU -> Linear(r C, C), r = 4

LayerNorm eps 1e-5, LayerScale init 1e-5 (Touvron et al., CaiT, ICCV 2021). All tensors channels-last (B, H, W, C).
"""

from __future__ import annotations

from typing import Literal

from timm.layers import DropPath, LayerScale, Mlp
from torch import Tensor, nn

from evdet.model.nn.attention import (
    MultiHeadSelfAttention,
    block_partition,
    block_unpartition,
    grid_partition,
    grid_unpartition,
)

PartitionKind = Literal["block", "grid"]


class PartitionAttentionLayer(nn.Module):
    """One pre-norm transformer layer attending within block or grid partitions.

    Parameters (dim C, ratio r): norm 2C (skipped for the first layer of a stage) + attention 4C^2 + 4C +
    LayerScale C + norm 2C + MLP 2 r C^2 + r C + C + LayerScale C.

    Args:
        dim: channels C.
        kind: "block" (local windows) or "grid" (dilated global groups).
        head_dim: channels per attention head.
        mlp_ratio: MLP hidden width / C.
        drop_path: stochastic-depth drop probability for both residual branches.
        layer_scale_init: LayerScale initial value; None or 0 disables LayerScale.
        skip_first_norm: replace the attention pre-norm by identity (input already normalised by the
            stage's downsample).

    Raises:
        ValueError: unknown kind, or dim not a multiple of head_dim.
    """

    def __init__(
        self,
        dim: int,
        kind: PartitionKind,
        head_dim: int = 32,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = 1e-5,
        skip_first_norm: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("block", "grid"):
            raise ValueError(f"partition kind must be 'block' or 'grid', got {kind!r}")
        self.kind = kind
        self.norm1: nn.Module = nn.Identity() if skip_first_norm else nn.LayerNorm(dim, eps=1e-5)
        self.attn = MultiHeadSelfAttention(dim, head_dim=head_dim)
        self.ls1: nn.Module = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path1: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.ls2: nn.Module = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path2: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _attend(self, x: Tensor, partition_size: tuple[int, int]) -> Tensor:
        """Partition (B, H, W, C), attend within each partition, and restore (B, H, W, C)."""
        size = (x.shape[1], x.shape[2])
        if self.kind == "block":
            return block_unpartition(self.attn(block_partition(x, partition_size)), partition_size, size)
        return grid_unpartition(self.attn(grid_partition(x, partition_size)), partition_size, size)

    def forward(self, x: Tensor, partition_size: tuple[int, int]) -> Tensor:
        """Apply the layer.

        Args:
            x: float (B, H, W, C) channels-last.
            partition_size: window size (block) or grid size (grid), in feature-map px; divides (H, W).

        Returns:
            float (B, H, W, C).

        Raises:
            ValueError: H or W not divisible by partition_size.
        """
        x = x + self.drop_path1(self.ls1(self._attend(self.norm1(x), partition_size)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class MaxViTBlock(nn.Module):
    """MaxViT block without MBConv (RVT): block-partition attention layer, then grid-partition attention layer.

    Args:
        dim, head_dim, mlp_ratio, drop_path, layer_scale_init: as in `PartitionAttentionLayer`.
        skip_first_norm: skip the pre-norm of the block-attention layer (first block of a stage).
    """

    def __init__(
        self,
        dim: int,
        head_dim: int = 32,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = 1e-5,
        skip_first_norm: bool = False,
    ) -> None:
        super().__init__()
        common = dict(head_dim=head_dim, mlp_ratio=mlp_ratio, drop_path=drop_path, layer_scale_init=layer_scale_init)
        self.block_attention = PartitionAttentionLayer(dim, "block", skip_first_norm=skip_first_norm, **common)
        self.grid_attention = PartitionAttentionLayer(dim, "grid", **common)

    def forward(self, x: Tensor, partition_size: tuple[int, int]) -> Tensor:
        """Apply block then grid attention.

        Args:
            x: float (B, H, W, C) channels-last.
            partition_size: block window size = grid size, in feature-map px.

        Returns:
            float (B, H, W, C).
        """
        return self.grid_attention(self.block_attention(x, partition_size), partition_size)
