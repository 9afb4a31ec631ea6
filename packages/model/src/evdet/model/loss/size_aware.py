"""Size-aware weights for the YOLOX loss: small ground-truth boxes weigh more.

The team's size-aware loss (issue 4, "Size-aware loss on the YOLOX head") multiplies each positive anchor's IoU
loss and class loss by a weight of the area ``w x h`` (px², input pixels) of the ground-truth box that SimOTA
assigned to it. With ``W = size_aware_weight`` (2.0), ``S = small_threshold`` (1024 px² = 32², the COCO
small-object limit) and ``M = medium_threshold`` (9216 px² = 96², the COCO medium-object limit):

* ``exponential``: ``clamp(W * exp(-area / S), 1, W)``;
* ``step``: ``W`` for ``area < S``, ``(W + 1) / 2`` for ``S <= area < M``, else 1;
* ``linear``: ``clamp(W * (1 - area / M) + 1, 1, W)``.

Every weight lies in ``[1, W]``, so ``W = 1`` turns weighting off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "WEIGHT_TYPES",
    "DEFAULT_SIZE_AWARE_WEIGHT",
    "DEFAULT_SMALL_THRESHOLD",
    "DEFAULT_MEDIUM_THRESHOLD",
    "SizeAwareWeighting",
    "exponential_weights",
    "step_weights",
    "linear_weights",
]

WEIGHT_TYPES = ("exponential", "step", "linear")
"""Allowed values of ``head.weight_type``."""
DEFAULT_SIZE_AWARE_WEIGHT = 2.0
"""Maximum weight W of the team's runs (issue 4)."""
DEFAULT_SMALL_THRESHOLD = 1024.0
"""Small-object area limit S in px² (32², COCO "small", Lin et al., ECCV 2014)."""
DEFAULT_MEDIUM_THRESHOLD = 9216.0
"""Medium-object area limit M in px² (96², COCO "medium")."""


def exponential_weights(area: Tensor, weight: float, small_threshold: float) -> Tensor:
    """``clamp(weight * exp(-area / small_threshold), 1, weight)``.

    Args:
        area: float ``(N,)`` box areas in px².
        weight: maximum weight W (>= 1).
        small_threshold: S in px² (> 0).

    Returns:
        float ``(N,)`` weights in ``[1, W]``, same dtype and device as ``area``.
    """
    return (weight * torch.exp(-area / small_threshold)).clamp(min=1.0, max=weight)


def step_weights(area: Tensor, weight: float, small_threshold: float, medium_threshold: float) -> Tensor:
    """``W`` below ``small_threshold``, ``(W + 1) / 2`` below ``medium_threshold``, else 1 (thresholds exclusive).

    Args:
        area: float ``(N,)`` box areas in px².
        weight: maximum weight W (>= 1).
        small_threshold: S in px² (> 0).
        medium_threshold: M in px² (>= S).

    Returns:
        float ``(N,)`` weights in ``{W, (W + 1) / 2, 1}``, same dtype and device as ``area``.
    """
    one = torch.ones_like(area)
    medium = torch.where(area < medium_threshold, one * ((weight + 1.0) / 2.0), one)
    return torch.where(area < small_threshold, one * weight, medium)


def linear_weights(area: Tensor, weight: float, medium_threshold: float) -> Tensor:
    """``clamp(weight * (1 - area / medium_threshold) + 1, 1, weight)``.

    Args:
        area: float ``(N,)`` box areas in px².
        weight: maximum weight W (>= 1).
        medium_threshold: M in px² (> 0).

    Returns:
        float ``(N,)`` weights in ``[1, W]``, same dtype and device as ``area``.
    """
    return (weight * (1.0 - area / medium_threshold) + 1.0).clamp(min=1.0, max=weight)


@dataclass(frozen=True)
class SizeAwareWeighting:
    """Per-target weight of the size-aware YOLOX loss (see the module docstring for the formulas).

    Attributes:
        weight_type: one of :data:`WEIGHT_TYPES` (config ``head.weight_type``).
        size_aware_weight: maximum weight W >= 1 (``head.size_aware_weight``).
        small_threshold: S in px², > 0 (``head.small_threshold``).
        medium_threshold: M in px², >= S (``head.medium_threshold``).

    Raises:
        ValueError: unknown ``weight_type`` (names ``head.weight_type`` and the allowed values), W < 1 or not
            finite, a non-positive threshold or ``medium_threshold < small_threshold``; the message names the key.
    """

    weight_type: str = "exponential"
    size_aware_weight: float = DEFAULT_SIZE_AWARE_WEIGHT
    small_threshold: float = DEFAULT_SMALL_THRESHOLD
    medium_threshold: float = DEFAULT_MEDIUM_THRESHOLD

    def __post_init__(self) -> None:
        if self.weight_type not in WEIGHT_TYPES:
            raise ValueError(f"head.weight_type: expected one of {list(WEIGHT_TYPES)}, got {self.weight_type!r}")
        w = float(self.size_aware_weight)
        if not math.isfinite(w) or w < 1.0:
            raise ValueError(f"head.size_aware_weight: expected a finite number >= 1, got {self.size_aware_weight!r}")
        s, m = float(self.small_threshold), float(self.medium_threshold)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"head.small_threshold: expected a finite area > 0 px², got {self.small_threshold!r}")
        if not (math.isfinite(m) and m >= s):
            raise ValueError(
                f"head.medium_threshold: expected a finite area >= head.small_threshold ({s}) px², got "
                f"{self.medium_threshold!r}"
            )
        object.__setattr__(self, "size_aware_weight", w)
        object.__setattr__(self, "small_threshold", s)
        object.__setattr__(self, "medium_threshold", m)

    def __call__(self, area: Tensor) -> Tensor:
        """Weights of targets with the given areas.

        Args:
            area: float ``(N,)`` target areas ``w * h`` in input px².

        Returns:
            float ``(N,)`` weights in ``[1, size_aware_weight]``.

        Raises:
            ValueError: ``area`` is not a 1-D floating-point tensor.
        """
        if not isinstance(area, Tensor) or area.dim() != 1 or not area.is_floating_point():
            shape = tuple(area.shape) if isinstance(area, Tensor) else type(area).__name__
            raise ValueError(f"size-aware area: expected a float tensor of shape (N,) in px², got {shape}")
        if self.weight_type == "exponential":
            return exponential_weights(area, self.size_aware_weight, self.small_threshold)
        if self.weight_type == "step":
            return step_weights(area, self.size_aware_weight, self.small_threshold, self.medium_threshold)
        return linear_weights(area, self.size_aware_weight, self.medium_threshold)
