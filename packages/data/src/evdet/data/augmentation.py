"""Geometric training augmentation of stacked-histogram sequences and their boxes: horizontal flip, zoom in/out.

RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 4.1 / supplementary) trains with random horizontal flips and random
zoom; this module implements that family of transforms on the uint8 stacked histograms of a shard.

* **One transform per sequence.** A recurrent detector sees a sequence of ``L`` windows; every window of it and
  every box of it get the SAME transform (:class:`SequenceTransform`), otherwise the scene would jump between
  windows. With streaming sampling one transform is drawn when a batch slot starts a recording (its
  ``is_first_sample`` chunk) and kept for every following chunk of that recording, since the recurrent state is
  carried across those chunks; it is redrawn at the slot's next recording (the state is reset there anyway).
* **Flip** (probability ``flip_p``): ``x -> W - x`` on the continuous pixel-edge axis, i.e. column ``j`` becomes
  column ``W - 1 - j``; a box ``[x, x + w]`` becomes ``[W - x - w, W - x]``.
* **Zoom in** (probability ``zoom_in_p``, factor ``s ~ U(1, zoom_in_max)``): a region of
  ``round(W / s) x round(H / s)`` px at a uniformly random position is cropped and resized up to ``W x H``.
* **Zoom out** (probability ``zoom_out_p``, factor ``s ~ U(1, zoom_out_max)``): the frame is resized down to
  ``round(W / s) x round(H / s)`` px and placed at a uniformly random position on a zero canvas of ``W x H``
  (zero = no events).
  Zoom in and zoom out are exclusive: one draw ``u ~ U(0, 1)`` picks zoom in when ``u < zoom_in_p``, zoom out
  when ``u < zoom_in_p + zoom_out_p``, else no zoom. The defaults 0.64 / 0.16 zoom 80 % of the sequences with a
  4 : 1 split between zoom in and zoom out, modelled on RVT's training recipe (zoom in up to 1.5, zoom out up to
  1.2, zoom in the more frequent); they are configuration, change them in ``dataset.augmentation``.
* **Resampling**: nearest neighbour with pixel-centre alignment (``nearest-exact``: destination pixel ``u`` of
  a destination span of ``n`` px reads source pixel ``floor((u + 0.5) * m / n)`` of a source span of ``m`` px).
  Counts are copied, never mixed, so the result stays uint8 and ``<= clip`` exactly as the input (bilinear
  would invent fractional counts). Zoom out therefore subsamples events rather than summing them.
* **Boxes** (``[class_id, x, y, w, h]``, px, top-left) follow the same affine map (per axis
  ``x' = dst0 + (x - src0) * dst_size / src_size``), are clipped to ``[0, W] x [0, H]``, and are **dropped** when
  degenerate: a clipped side ``< min_side_px`` (default 1 px) or "mostly outside", i.e. less than
  ``min_visible_fraction`` (default 0.5) of the transformed box area lies inside the frame. Dropped boxes are
  counted (batch key ``aug_dropped_boxes``, see :mod:`evdet.data.dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch

__all__ = ["AugmentationConfig", "SequenceTransform", "augment_sequence", "sample_transform"]


@dataclass(frozen=True)
class AugmentationConfig:
    """Settings of the training augmentation (config group ``dataset.augmentation``).

    Attributes:
        enabled: apply the augmentation at all (the data module only passes it for the train split).
        flip_p: probability of a horizontal flip, in [0, 1].
        zoom_in_p: probability of a zoom in, in [0, 1].
        zoom_in_max: largest zoom-in factor (>= 1); the factor is drawn from ``U(1, zoom_in_max)``.
        zoom_out_p: probability of a zoom out, in [0, 1]; ``zoom_in_p + zoom_out_p <= 1`` (exclusive choices).
        zoom_out_max: largest zoom-out factor (>= 1); drawn from ``U(1, zoom_out_max)``.
        min_side_px: boxes whose clipped width or height is below this (px) are dropped (> 0).
        min_visible_fraction: boxes with less than this share of their transformed area inside the frame are
            dropped, in [0, 1].

    Raises:
        ValueError: on construction, for a value outside its range (message names ``dataset.augmentation.<key>``).
    """

    enabled: bool = False
    flip_p: float = 0.5
    zoom_in_p: float = 0.64
    zoom_in_max: float = 1.5
    zoom_out_p: float = 0.16
    zoom_out_max: float = 1.2
    min_side_px: float = 1.0
    min_visible_fraction: float = 0.5

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> ValueError:
            return ValueError(f"dataset.augmentation.{key}: expected {expected}, got {getattr(self, key)!r}")

        if not isinstance(self.enabled, bool):
            raise bad("enabled", "true or false")
        for key in ("flip_p", "zoom_in_p", "zoom_out_p", "min_visible_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise bad(key, "a probability in [0, 1]")
        for key in ("zoom_in_max", "zoom_out_max"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1.0:
                raise bad(key, "a zoom factor >= 1")
        if isinstance(self.min_side_px, bool) or not isinstance(self.min_side_px, (int, float)) \
                or not self.min_side_px > 0:
            raise bad("min_side_px", "a positive side length in px")
        if self.zoom_in_p + self.zoom_out_p > 1.0 + 1e-9:
            raise bad("zoom_out_p", f"zoom_in_p + zoom_out_p <= 1 (zoom_in_p is {self.zoom_in_p})")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> "AugmentationConfig":
        """Build from a config mapping (``dataset.augmentation``); ``None`` gives the disabled default.

        Raises:
            ValueError: an unknown key (message names ``dataset.augmentation.<key>`` and the known keys) or a
                value out of range.
        """
        if cfg is None:
            return cls()
        known = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in known:
                raise ValueError(f"dataset.augmentation.{key}: unknown key; expected one of {sorted(known)}")
        return cls(**{k: (bool(v) if k == "enabled" else v) for k, v in dict(cfg).items()})


@dataclass(frozen=True)
class SequenceTransform:
    """One geometric transform of a ``W x H`` frame, applied identically to every window and box of a sequence.

    The (optionally flipped) frame's source rectangle ``src = (x0, y0, w, h)`` (integer px) is resampled onto the
    destination rectangle ``dst = (x0, y0, w, h)`` (integer px) of a zero ``W x H`` canvas. Identity:
    ``src == dst == (0, 0, W, H)``; zoom in: ``src`` a crop, ``dst`` the whole frame; zoom out: ``src`` the whole
    frame, ``dst`` a smaller placed rectangle.

    Attributes:
        width, height: frame size W, H (px).
        flip: mirror horizontally before resampling.
        src, dst: ``(x0, y0, w, h)`` rectangles in px, inside the frame, sides >= 1.
        mode: ``"none"``, ``"zoom_in"`` or ``"zoom_out"`` (descriptive).

    Raises:
        ValueError: on construction, for a rectangle outside the frame or with a side < 1 px.
    """

    width: int
    height: int
    flip: bool = False
    src: tuple[int, int, int, int] | None = None
    dst: tuple[int, int, int, int] | None = None
    mode: str = "none"

    def __post_init__(self) -> None:
        full = (0, 0, int(self.width), int(self.height))
        if self.width < 1 or self.height < 1:
            raise ValueError(f"SequenceTransform: frame size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "src", tuple(int(v) for v in (self.src or full)))
        object.__setattr__(self, "dst", tuple(int(v) for v in (self.dst or full)))
        for name in ("src", "dst"):
            x0, y0, w, h = getattr(self, name)
            if w < 1 or h < 1 or x0 < 0 or y0 < 0 or x0 + w > self.width or y0 + h > self.height:
                raise ValueError(f"SequenceTransform {name}: rectangle {(x0, y0, w, h)} must lie inside the "
                                 f"{self.width}x{self.height} frame with sides >= 1 px")

    @property
    def is_identity(self) -> bool:
        """True when the transform changes nothing."""
        return not self.flip and self.src == self.dst == (0, 0, self.width, self.height)

    def apply_to_histograms(self, frames: torch.Tensor) -> torch.Tensor:
        """Transform stacked histograms.

        Args:
            frames: ``(..., H, W)`` tensor of any dtype (uint8 histograms: ``(L, 2*bins, H, W)``).

        Returns:
            A new tensor of the same shape and dtype; pixels outside ``dst`` are 0, values are copied by
            nearest-exact resampling (module docstring), so uint8 counts stay ``<= clip``.

        Raises:
            ValueError: if the last two dimensions are not ``(height, width)``.
        """
        if frames.dim() < 2 or tuple(frames.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"SequenceTransform: frames must end in (H, W) = ({self.height}, {self.width}), "
                             f"got shape {tuple(frames.shape)}")
        if self.is_identity:
            return frames.clone()
        if self.flip:
            frames = torch.flip(frames, dims=(-1,))
        sx0, sy0, sw, sh = self.src
        dx0, dy0, dw, dh = self.dst
        cols = sx0 + _nearest_exact_index(sw, dw)
        rows = sy0 + _nearest_exact_index(sh, dh)
        out = torch.zeros_like(frames)
        out[..., dy0 : dy0 + dh, dx0 : dx0 + dw] = frames.index_select(-2, rows).index_select(-1, cols)
        return out

    def apply_to_boxes(
        self, boxes: torch.Tensor, min_side_px: float = 1.0, min_visible_fraction: float = 0.5
    ) -> tuple[torch.Tensor, int, int]:
        """Transform, clip and filter boxes.

        Args:
            boxes: ``(n, 5)`` float32 ``[class_id, x, y, w, h]`` (px, top-left).
            min_side_px: drop a box whose clipped width or height is below this (px).
            min_visible_fraction: drop a box with less than this share of its transformed area in the frame.

        Returns:
            ``(kept (n', 5) float32, n_clipped, n_dropped)``: ``n_clipped`` counts kept boxes that were cut by the
            frame border, ``n_dropped`` the removed ones.

        Raises:
            ValueError: if ``boxes`` is not ``(n, 5)``.
        """
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"SequenceTransform: boxes must be (n, 5) [class_id, x, y, w, h], got "
                             f"{tuple(boxes.shape)}")
        if len(boxes) == 0 or self.is_identity:
            return boxes.clone(), 0, 0
        x1, y1 = boxes[:, 1].double(), boxes[:, 2].double()
        x2, y2 = x1 + boxes[:, 3].double(), y1 + boxes[:, 4].double()
        if self.flip:
            x1, x2 = self.width - x2, self.width - x1
        (sx0, sy0, sw, sh), (dx0, dy0, dw, dh) = self.src, self.dst
        ax, ay = dw / sw, dh / sh
        x1, x2 = dx0 + (x1 - sx0) * ax, dx0 + (x2 - sx0) * ax
        y1, y2 = dy0 + (y1 - sy0) * ay, dy0 + (y2 - sy0) * ay
        full_area = (x2 - x1) * (y2 - y1)
        cx1, cx2 = x1.clamp(0, self.width), x2.clamp(0, self.width)
        cy1, cy2 = y1.clamp(0, self.height), y2.clamp(0, self.height)
        cw, ch = cx2 - cx1, cy2 - cy1
        visible = torch.where(full_area > 0, cw * ch / full_area.clamp_min(1e-12), torch.zeros_like(full_area))
        keep = (cw >= min_side_px) & (ch >= min_side_px) & (visible >= min_visible_fraction)
        clipped = (cx1 != x1) | (cx2 != x2) | (cy1 != y1) | (cy2 != y2)
        out = torch.stack([boxes[:, 0].double(), cx1, cy1, cw, ch], dim=1).to(torch.float32)[keep]
        return out, int((clipped & keep).sum()), int((~keep).sum())


def _nearest_exact_index(src_size: int, dst_size: int) -> torch.Tensor:
    """Source index per destination pixel, ``floor((u + 0.5) * src / dst)`` clamped to ``src - 1``: (dst,) int64."""
    u = torch.arange(dst_size, dtype=torch.float64)
    return ((u + 0.5) * (src_size / dst_size)).floor().clamp(max=src_size - 1).to(torch.int64)


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _offset(generator: torch.Generator | None, room: int) -> int:
    """Uniform integer in ``0..room``."""
    return int(torch.randint(0, room + 1, (), generator=generator))


def sample_transform(
    config: AugmentationConfig, width: int, height: int, generator: torch.Generator | None = None
) -> SequenceTransform:
    """Draw one :class:`SequenceTransform` (module docstring gives the distribution).

    Args:
        config: the augmentation settings; a disabled config gives the identity.
        width, height: frame size W, H (px).
        generator: torch random generator; ``None`` uses torch's global generator (seeded per DataLoader worker).

    Returns:
        The drawn transform (zoom sizes ``round(W / s) x round(H / s)``, at least 1 px).

    Raises:
        ValueError: if the frame size is not positive.
    """
    if width < 1 or height < 1:
        raise ValueError(f"sample_transform: frame size must be positive, got {width}x{height}")
    if not config.enabled:
        return SequenceTransform(width, height)
    flip = _uniform(generator) < config.flip_p
    u = _uniform(generator)
    if u < config.zoom_in_p:
        mode, factor = "zoom_in", _uniform(generator, 1.0, config.zoom_in_max)
    elif u < config.zoom_in_p + config.zoom_out_p:
        mode, factor = "zoom_out", _uniform(generator, 1.0, config.zoom_out_max)
    else:
        return SequenceTransform(width, height, flip=flip)
    w = min(width, max(1, round(width / factor)))
    h = min(height, max(1, round(height / factor)))
    rect = (_offset(generator, width - w), _offset(generator, height - h), w, h)
    full = (0, 0, width, height)
    if mode == "zoom_in":
        return SequenceTransform(width, height, flip=flip, src=rect, dst=full, mode=mode)
    return SequenceTransform(width, height, flip=flip, src=full, dst=rect, mode=mode)


def augment_sequence(
    transform: SequenceTransform,
    representation: torch.Tensor,
    labels: list[torch.Tensor],
    config: AugmentationConfig | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Apply one transform to every window and every box list of a sequence.

    Args:
        transform: the sequence's transform.
        representation: ``(L, 2*bins, H, W)`` uint8 stacked histograms.
        labels: ``L`` float32 tensors ``(n_t, 5)`` ``[class_id, x, y, w, h]`` (px, top-left).
        config: supplies ``min_side_px`` and ``min_visible_fraction`` (defaults when ``None``).

    Returns:
        ``(representation, labels, n_dropped)``: transformed copies and the number of boxes dropped over the
        whole sequence.

    Raises:
        ValueError: if ``labels`` does not have one entry per window, or a shape does not match the transform.
    """
    if len(labels) != representation.shape[0]:
        raise ValueError(f"augment_sequence: 'labels' has {len(labels)} entries, expected one per window "
                         f"({representation.shape[0]})")
    config = config or AugmentationConfig()
    out_labels, dropped = [], 0
    for boxes in labels:
        kept, _, n_dropped = transform.apply_to_boxes(boxes, config.min_side_px, config.min_visible_fraction)
        out_labels.append(kept)
        dropped += n_dropped
    return transform.apply_to_histograms(representation), out_labels, dropped
