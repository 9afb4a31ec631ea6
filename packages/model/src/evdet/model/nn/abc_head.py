"""Auxiliary small-object head of the ABC detector (issue 4, "ABC head", the team's ``ABC_sod_basic`` runs).

The ABC detector keeps the main YOLOX head over all PAFPN levels and adds an auxiliary YOLOX head over the two
highest-resolution levels (P1, P2 with ``fpn.in_stages [1, 2, 3, 4]``; the two smallest strides in general),
trained only on the small classes (``head.small_classes``: class NAMES of the model's classes, default the
dataset config's ``dataset.small_classes``, e.g. pedestrian, bicycle, motorbike, wheelchair for eTraM; the detector
turns them into ids), remapped to ``0 .. K-1`` in the order given. The total training loss is
``loss_main + aux_loss_weight * loss_aux`` (``aux_loss_weight`` 2.0). The auxiliary head only shapes the shared
backbone and PAFPN features during training: detection uses the main head alone, and exported models drop it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from evdet.model.nn.yolox_head import YOLOXHead

__all__ = ["AUX_NUM_LEVELS", "DEFAULT_AUX_LOSS_WEIGHT", "filter_small_targets", "SmallObjectAuxHead"]

AUX_NUM_LEVELS = 2
"""The auxiliary head sees the two highest-resolution pyramid levels (issue 4)."""
DEFAULT_AUX_LOSS_WEIGHT = 2.0
"""Weight of the auxiliary loss in the total (the team's ``ABC_sod_basic_100k`` run)."""


def filter_small_targets(targets: Sequence[Tensor], small_classes: Sequence[int]) -> list[Tensor]:
    """Keep the boxes of the small classes and remap their class ids to ``0 .. K-1``.

    Args:
        targets: B float tensors ``(n_b, 5)``, rows ``[class_id, x, y, w, h]`` (px, top-left x, y).
        small_classes: K distinct class ids; ``small_classes[k]`` becomes class ``k``.

    Returns:
        B float tensors ``(m_b, 5)`` (same dtype and device as the input), rows in their original order, class
        ids remapped; ``(0, 5)`` for an image without small objects.

    Raises:
        ValueError: ``small_classes`` empty or with duplicates (names ``head.small_classes``), or a target that is
            not an ``(n, 5)`` tensor (names ``targets[b]``).
    """
    classes = [int(c) for c in small_classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"head.small_classes: expected distinct class ids, got {list(small_classes)!r}")
    out = []
    for b, t in enumerate(targets):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[1] != 5:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"targets[{b}]: expected a tensor of shape (n, 5) [class_id, x, y, w, h], got {shape}")
        lookup = torch.tensor(classes, dtype=t.dtype, device=t.device)
        match = t[:, :1] == lookup.unsqueeze(0)  # (n, K)
        keep = match.any(dim=1)
        small = t[keep].clone()
        small[:, 0] = match[keep].to(torch.int64).argmax(dim=1).to(t.dtype)
        out.append(small)
    return out


class SmallObjectAuxHead(nn.Module):
    """Auxiliary YOLOX head over the two highest-resolution pyramid levels, trained on the small classes only.

    Args:
        strides: strides (px) of ALL pyramid levels, highest resolution first, e.g. ``(4, 8, 16, 32)``; the head
            uses the first two.
        in_channels: channels of all pyramid levels, same order.
        small_classes: K distinct class ids of the dataset that the head learns, remapped to ``0 .. K-1``.
        num_classes: number of classes of the dataset (the small classes must lie in ``[0, num_classes)``).
        hidden_channels: width of the head's stems and branches (the detector passes the main head's width).

    Raises:
        ValueError: fewer than 2 pyramid levels (names ``model.fpn.in_stages``), empty, duplicate or out-of-range
            ``small_classes`` (names ``head.small_classes``).
    """

    def __init__(
        self,
        strides: Sequence[int],
        in_channels: Sequence[int],
        small_classes: Sequence[int],
        num_classes: int,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        if len(strides) < AUX_NUM_LEVELS or len(in_channels) != len(strides):
            raise ValueError(
                f"model.fpn.in_stages: the ABC head needs at least {AUX_NUM_LEVELS} pyramid levels, got strides "
                f"{tuple(strides)!r} / channels {tuple(in_channels)!r}"
            )
        classes = tuple(int(c) for c in small_classes)
        if (
            not classes
            or len(set(classes)) != len(classes)
            or any(c != s for c, s in zip(classes, small_classes))
            or min(classes) < 0
            or max(classes) >= num_classes
        ):
            raise ValueError(
                f"head.small_classes: expected distinct integer class ids in [0, {num_classes}), got "
                f"{list(small_classes)!r}"
            )
        self.small_classes = classes
        self.head = YOLOXHead(
            num_classes=len(classes),
            strides=tuple(strides)[:AUX_NUM_LEVELS],
            in_channels=tuple(in_channels)[:AUX_NUM_LEVELS],
            hidden_channels=hidden_channels,
        )

    def forward(self, pyramid: Sequence[Tensor]) -> list[Tensor]:
        """Raw outputs of the auxiliary head.

        Args:
            pyramid: all PAFPN outputs, highest resolution first, level i ``(B, in_channels[i], H_i, W_i)``.

        Returns:
            2 float tensors ``(B, 5 + K, H_i, W_i)`` for the two highest-resolution levels.
        """
        return self.head(list(pyramid)[:AUX_NUM_LEVELS])

    def loss(self, pyramid: Sequence[Tensor], targets: Sequence[Tensor]) -> dict[str, Tensor]:
        """YOLOX loss of the auxiliary head on the small-class targets.

        Args:
            pyramid: all PAFPN outputs, highest resolution first.
            targets: B float tensors ``(n_b, 5)`` in the dataset's classes, ``[class_id, x, y, w, h]`` px
                (top-left x, y). Other classes are dropped; an image without small objects gets an empty
                target, so only its objectness (all background) is trained.

        Returns:
            The :meth:`YOLOXHead.loss` dict of the auxiliary head (``loss``, ``loss_iou``, ``loss_obj``,
            ``loss_cls``, ``loss_l1``, ``num_fg``).

        Raises:
            ValueError: bad targets (names ``targets[b]``).
        """
        return self.head.loss(self(pyramid), filter_small_targets(targets, self.small_classes))
