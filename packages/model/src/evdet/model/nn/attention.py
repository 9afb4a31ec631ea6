"""Block and grid partitioning of channels-last feature maps, and multi-head self-attention within partitions.

MaxViT (Tu et al., ECCV 2022, Sec. 3.2, "Multi-axis attention") splits a (H, W) feature map two ways:
- block partition: non-overlapping windows of size (P_h, P_w); tokens attend within their window (local);
- grid partition: a fixed (G_h, G_w) grid; each group gathers the tokens that share the same position inside
  their (H / G_h, W / G_w) cell, i.e. tokens strided H / G_h apart (sparse, global).
RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 3.1) uses P = G = padded input size / (32 * partition_split).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _check_divisible(x: Tensor, size: tuple[int, int], kind: str) -> None:
    """Raise ValueError unless x (B, H, W, C) has H, W divisible by size."""
    if x.dim() != 4:
        raise ValueError(f"{kind} partition: expected a channels-last tensor (B, H, W, C), got {tuple(x.shape)}")
    h, w = x.shape[1:3]
    if h % size[0] or w % size[1]:
        raise ValueError(f"{kind} partition: feature map {h}x{w} is not divisible by the size {size[0]}x{size[1]}")


def block_partition(x: Tensor, window: tuple[int, int]) -> Tensor:
    """Split a feature map into non-overlapping windows (MaxViT block attention).

    Args:
        x: (B, H, W, C) channels-last, any dtype.
        window: (P_h, P_w) window size in feature-map px; H % P_h == W % P_w == 0.

    Returns:
        (B * H/P_h * W/P_w, P_h * P_w, C): one row of tokens per window, windows in row-major order.

    Raises:
        ValueError: x is not 4-D or H, W are not divisible by the window size.
    """
    _check_divisible(x, window, "block")
    b, h, w, c = x.shape
    ph, pw = window
    x = x.view(b, h // ph, ph, w // pw, pw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ph * pw, c)


def block_unpartition(windows: Tensor, window: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Inverse of `block_partition`.

    Args:
        windows: (B * H/P_h * W/P_w, P_h * P_w, C).
        window: (P_h, P_w).
        size: (H, W) of the original feature map.

    Returns:
        (B, H, W, C) channels-last.
    """
    h, w = size
    ph, pw = window
    c = windows.shape[-1]
    x = windows.view(-1, h // ph, w // pw, ph, pw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def grid_partition(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """Split a feature map into strided groups on a fixed grid (MaxViT grid attention).

    Token (i, j) of group (a, b) is the feature-map pixel (i * H/G_h + a, j * W/G_w + b).

    Args:
        x: (B, H, W, C) channels-last, any dtype.
        grid: (G_h, G_w) grid size; H % G_h == W % G_w == 0.

    Returns:
        (B * H/G_h * W/G_w, G_h * G_w, C): one row of tokens per group.

    Raises:
        ValueError: x is not 4-D or H, W are not divisible by the grid size.
    """
    _check_divisible(x, grid, "grid")
    b, h, w, c = x.shape
    gh, gw = grid
    x = x.view(b, gh, h // gh, gw, w // gw, c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, gh * gw, c)


def grid_unpartition(groups: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Inverse of `grid_partition`.

    Args:
        groups: (B * H/G_h * W/G_w, G_h * G_w, C).
        grid: (G_h, G_w).
        size: (H, W) of the original feature map.

    Returns:
        (B, H, W, C) channels-last.
    """
    h, w = size
    gh, gw = grid
    c = groups.shape[-1]
    x = groups.view(-1, h // gh, w // gw, gh, gw, c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, h, w, c)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of each partition (Vaswani et al. 2017, Sec. 3.2.2).

    One Linear (with bias) gives q, k, v; softmax(q k^T * head_dim^-0.5) v per head via
    `torch.nn.functional.scaled_dot_product_attention`; one output Linear (with bias). No relative position
    bias (RVT drops MaxViT's). Parameters: 3 dim^2 + 3 dim + dim^2 + dim.

    Args:
        dim: token channels C.
        head_dim: channels per head; heads = dim // head_dim.

    Raises:
        ValueError: dim is not a positive multiple of head_dim.
    """

    def __init__(self, dim: int, head_dim: int = 32) -> None:
        super().__init__()
        if head_dim < 1 or dim < 1 or dim % head_dim:
            raise ValueError(f"attention: dim {dim} must be a positive multiple of head_dim {head_dim}")
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, tokens: Tensor) -> Tensor:
        """Attend within each row of tokens.

        Args:
            tokens: float (N, T, dim): N partitions of T tokens.

        Returns:
            float (N, T, dim).
        """
        n, t, c = tokens.shape
        qkv = self.qkv(tokens).view(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, heads, T, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))
