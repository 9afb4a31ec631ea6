"""RVT's geometric training augmentation of stacked-histogram sequences and their boxes: h-flip, zoom in / zoom out.

Reproduces RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 4.1 / supplementary; code ``uzh-rpg/RVT``:
``data/utils/augmentor.py`` ``RandomSpatialAugmentorGenX`` for the draws and the histograms,
``data/genx_utils/labels.py`` ``ObjectLabels`` for the boxes, settings ``config/dataset/base.yaml`` inherited by
``config/dataset/gen4.yaml``) on the uint8 stacked histograms ``(L, C, H, W)`` of a shard and its boxes
``[class_id, x, y, w, h]`` (float32, px, top-left, RVT's pixel-index convention: boxes lie in ``[0, W - 1] x
[0, H - 1]``).

* **Settings per sampling mode** (:class:`SamplingAugmentation`, config node ``dataset.augmentation``): random
  sampling flips with probability 0.5 and zooms with probability 0.8, zoom in : zoom out = 8 : 2, zoom-in factor
  ``~ U(1, 1.5)``, zoom-out factor ``~ U(1, 1.2)`` (:data:`RANDOM_REFERENCE`); streaming flips with probability 0.5
  and zooms with probability 0.5, zoom out only, factor ``~ U(1, 1.2)`` (:data:`STREAM_REFERENCE`). Zoom in is not
  allowed for streaming (its window depends on the labels of one chunk, RVT asserts a zero zoom-in weight there).
  Rotation (probability 0 in RVT) is not implemented.
* **One transform per sequence** (:class:`SequenceTransform`): every window and every box of a sequence get the
  same transform. Random sampling draws one per sample; streaming draws one per recording, at its first chunk, and
  keeps it for the following chunks (:class:`evdet.model.training.dataset.StreamingBatches` does that).
* **Draws** (:func:`sample_transform`, all from one seeded ``torch.Generator``): ``flip = U < flip_p``; ``zoom =
  U < zoom_p``; if zooming, zoom in with probability ``zoom_in_weight / (zoom_in_weight + zoom_out_weight)``, else
  zoom out (exclusive). Then the factor ``f`` and the window position.
* **Application order**: flip, then zoom in or zoom out.
* **Flip**: histogram columns reversed (``torch.flip`` on the last dim); box ``x' = W - 1 - x - w``.
* **Zoom out** by ``f``: window ``h_win x w_win = int(H / f) x int(W / f)`` px at ``x0 = int(U(0, W - w_win))``,
  ``y0 = int(U(0, H - h_win))``. The whole frame is resampled (nearest-exact) to the window and pasted at
  ``(y0, x0)`` into a zero canvas (zero = no events). Boxes are scaled by ``1 / f`` (:func:`scale_boxes`, image
  size ``f`` times smaller, floats), flat ones removed, then shifted by ``(x0, y0)``.
* **Zoom in** by ``f``: window ``int(H / f) x int(W / f)`` px whose top-left corner is drawn so that the window
  contains one randomly chosen box of the most recent window of the sequence that has boxes (after the flip);
  along x, for that box ``(x_l, w_l)``: ``lo = max(x_l + w_l - max(w_win, w_l), 0)``, ``hi = max(min(x_l +
  max(w_win, w_l), W - 1) - w_win, lo)``, ``x0 = int(U(lo, hi))``; same for y. A box larger than the window
  contains the window instead. Without any box in the sequence no zoom is applied (a warning, as in RVT). The
  window is cropped and resampled (nearest-exact) to ``H x W``. Boxes (float window ``H / f x W / f``): ``z_x1 =
  min(x0 + W / f, W - 1)``, corners ``x`` and ``x + w`` clamped to ``[x0, z_x1 - 1]`` (same for y), shifted by
  ``-(x0, y0)``, flat ones removed, then scaled by ``f`` (:func:`scale_boxes`).
* **Flat boxes** (``w <= 0`` or ``h <= 0`` after a zoom) are removed and counted (batch key ``aug_dropped_boxes``,
  :mod:`evdet.model.training.dataset`). There is no other filter: like RVT, a box cut down to a sliver by the zoom-in
  window is kept (the former ``min_side_px`` / ``min_visible_fraction`` options are gone).
* **Resampling** ``nearest-exact`` (what RVT calls: ``torch.nn.functional.interpolate(..., size=...,
  mode='nearest-exact')``): destination pixel ``u`` of a span of ``n`` px reads source pixel
  ``min(floor((u + 0.5) * m / n), m - 1)`` of a span of ``m`` px, evaluated like torch with the scale ``m / n`` in
  float32 (:func:`nearest_exact_index`), so an exact tie can read the pixel before (360 -> 243 px: destination 40
  reads 59, not 60). Equal to torch's CPU kernel for every span pair with a ratio up to 1.6 (all zoom windows).
  Counts are copied, never mixed: histograms stay uint8 and ``<= clip``; zoom out subsamples events.
* Box arithmetic is done in the boxes' dtype (float32) in the reference's order of operations, so that given the
  same transform the boxes should equal RVT's bit for bit (checked against hand-worked examples, not against
  RVT's code). Like RVT's loader (``ObjectLabelFactory.clamp_to_frame_``), the input boxes are expected inside
  ``[0, W - 1] x [0, H - 1]``; that clamp is the shard reader's job, not this module's.

Differences from the reference (also in ``docs/protocol.md``):

* The random numbers come from evdet's seeded ``torch.Generator`` (float64 uniforms), not from torch's global
  generator (float32 uniforms); the distributions are the same, the streams of numbers are not.
* Zoom in picks its box uniformly among ALL boxes of that window; RVT's ``th.randint(0, n - 1)`` never picks the
  last box of a window with ``n >= 2`` boxes (exclusive upper bound).
* The minimum zoom factors are fixed at 1 (RVT's configurable ``factor.min``, 1 in every RVT config).
* Boxes that extend beyond the frame (not produced by RVT's loader, which clamps them to ``[0, W - 1]``) cannot
  push the zoom-in window out of the frame: its corner is clamped to ``[0, W - w_win] x [0, H - h_win]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

__all__ = [
    "RANDOM_REFERENCE",
    "STREAM_REFERENCE",
    "AugmentationConfig",
    "SamplingAugmentation",
    "SequenceTransform",
    "augment_sequence",
    "nearest_exact_index",
    "sample_transform",
    "scale_boxes",
]

#: Tensor dtypes whose CPU histograms are resampled through numpy (``SequenceTransform.apply_to_histograms``).
_NUMPY_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                           torch.float32, torch.float64, torch.bool})

#: Sampling modes and the config key of each under ``dataset.augmentation``.
MODES = ("random", "stream")

#: Warning emitted when a zoom in is drawn for a sequence without any box (RVT ``NO_LABEL_WARN_MSG``).
NO_BOX_WARNING = "zoom in drawn for a sequence without any box: no zoom applied (as in RVT)"


@dataclass(frozen=True)
class AugmentationConfig:
    """RVT's augmentation settings of ONE sampling mode (``dataset.augmentation.<mode>``).

    Source: RVT ``config/dataset/base.yaml`` (``data_augmentation.random`` / ``.stream``, inherited by
    ``gen4.yaml``) read by ``data/utils/augmentor.py`` ``RandomSpatialAugmentorGenX.__init__``; field ``flip_p``
    is RVT's ``prob_hflip``, ``zoom_p`` ``zoom.prob``, ``zoom_in_weight`` / ``zoom_out_weight``
    ``zoom.zoom_in.weight`` / ``zoom.zoom_out.weight``, ``zoom_in_max`` / ``zoom_out_max`` ``...factor.max``
    (``factor.min`` is 1). The field defaults are the random-sampling reference (:data:`RANDOM_REFERENCE`); use
    :meth:`reference` or :data:`STREAM_REFERENCE` for streaming.

    Attributes:
        mode: ``"random"`` or ``"stream"`` (the sampling mode; names the config node in error messages).
        flip_p: probability of a horizontal flip, in [0, 1].
        zoom_p: probability of a zoom (in or out), in [0, 1].
        zoom_in_weight: categorical weight of zoom in vs zoom out, finite, >= 0; must be 0 for ``"stream"``.
        zoom_in_max: largest zoom-in factor, finite, >= 1; the factor is drawn from ``U(1, zoom_in_max)``.
        zoom_out_weight: categorical weight of zoom out, finite, >= 0; ``zoom_in_weight + zoom_out_weight > 0``
            when ``zoom_p > 0``.
        zoom_out_max: largest zoom-out factor, finite, >= 1; drawn from ``U(1, zoom_out_max)``.

    Raises:
        ValueError: on construction, for a value of the wrong type or outside its range, a zoom-in weight > 0 for
            streaming, or zero weights with ``zoom_p > 0``; the message names
            ``dataset.augmentation.<mode>.<key>``.
    """

    mode: str = "random"
    flip_p: float = 0.5
    zoom_p: float = 0.8
    zoom_in_weight: float = 8.0
    zoom_in_max: float = 1.5
    zoom_out_weight: float = 2.0
    zoom_out_max: float = 1.2

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"dataset.augmentation: AugmentationConfig mode must be one of {MODES}, "
                             f"got {self.mode!r}")

        def bad(key: str, expected: str) -> ValueError:
            return ValueError(f"dataset.augmentation.{self.mode}.{key}: expected {expected}, "
                              f"got {getattr(self, key)!r}")

        def number(key: str) -> float:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(key, "a finite number")
            return float(value)

        for key in ("flip_p", "zoom_p"):
            if not 0.0 <= number(key) <= 1.0:
                raise bad(key, "a probability in [0, 1]")
        for key in ("zoom_in_weight", "zoom_out_weight"):
            if not number(key) >= 0.0:
                raise bad(key, "a weight >= 0")
        for key in ("zoom_in_max", "zoom_out_max"):
            if not number(key) >= 1.0:
                raise bad(key, "a zoom factor >= 1")
        if self.mode == "stream" and self.zoom_in_weight > 0:
            raise bad("zoom_in_weight", "0 for streaming (zoom in needs the labels of the whole sequence; RVT "
                      "asserts it is 0 there)")
        if self.zoom_p > 0 and self.zoom_in_weight + self.zoom_out_weight <= 0:
            raise bad("zoom_out_weight", f"zoom_in_weight + zoom_out_weight > 0 when zoom_p > 0 "
                      f"(zoom_p is {self.zoom_p})")

    @property
    def zoom_in_prob(self) -> float:
        """Probability of a zoom in per draw: ``zoom_p * zoom_in_weight / (zoom_in_weight + zoom_out_weight)``."""
        total = self.zoom_in_weight + self.zoom_out_weight
        return self.zoom_p * self.zoom_in_weight / total if total > 0 else 0.0

    @property
    def zoom_out_prob(self) -> float:
        """Probability of a zoom out per draw: ``zoom_p * zoom_out_weight / (zoom_in_weight + zoom_out_weight)``."""
        total = self.zoom_in_weight + self.zoom_out_weight
        return self.zoom_p * self.zoom_out_weight / total if total > 0 else 0.0

    @classmethod
    def reference(cls, mode: str) -> AugmentationConfig:
        """RVT's settings for sampling mode ``mode`` (:data:`RANDOM_REFERENCE` or :data:`STREAM_REFERENCE`).

        Raises:
            ValueError: an unknown mode.
        """
        if mode not in MODES:
            raise ValueError(f"dataset.augmentation: unknown sampling mode {mode!r}; expected one of {MODES}")
        return RANDOM_REFERENCE if mode == "random" else STREAM_REFERENCE

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None, mode: str = "random") -> AugmentationConfig:
        """Build one mode's settings from its config node ``dataset.augmentation.<mode>``.

        Args:
            cfg: mapping with any of ``flip_p, zoom_p, zoom_in_weight, zoom_in_max, zoom_out_weight,
                zoom_out_max``; missing keys (or ``None``) take the mode's reference value (:meth:`reference`).
            mode: ``"random"`` or ``"stream"``.

        Raises:
            ValueError: an unknown mode, a non-mapping node, an unknown key (message names
                ``dataset.augmentation.<mode>.<key>`` and the known keys) or a value out of range.
        """
        base = cls.reference(mode)
        if cfg is None:
            return base
        if not isinstance(cfg, Mapping):
            raise ValueError(f"dataset.augmentation.{mode}: expected a mapping of settings, got {cfg!r}")
        known = [f.name for f in fields(cls) if f.name != "mode"]
        for key in cfg:
            if key not in known:
                raise ValueError(f"dataset.augmentation.{mode}.{key}: unknown key; expected one of {known}")
        values = {key: getattr(base, key) for key in known}
        values.update(dict(cfg))
        return cls(mode=mode, **values)


#: RVT's random-sampling settings (``config/dataset/base.yaml`` ``data_augmentation.random``, used by gen4.yaml).
RANDOM_REFERENCE = AugmentationConfig(mode="random", flip_p=0.5, zoom_p=0.8, zoom_in_weight=8.0, zoom_in_max=1.5,
                                      zoom_out_weight=2.0, zoom_out_max=1.2)
#: RVT's streaming settings (``config/dataset/base.yaml`` ``data_augmentation.stream``: no ``zoom_in`` node, so
#: weight 0 and factor 1; ``zoom_out.weight`` absent, so 1 (``augmentor.py`` default)).
STREAM_REFERENCE = AugmentationConfig(mode="stream", flip_p=0.5, zoom_p=0.5, zoom_in_weight=0.0, zoom_in_max=1.0,
                                      zoom_out_weight=1.0, zoom_out_max=1.2)


@dataclass(frozen=True)
class SamplingAugmentation:
    """The training augmentation of every sampling mode: config node ``dataset.augmentation``.

    ``{enabled: bool, stream: {...}, random: {...}}``; the streaming part of a batch uses ``stream``, random
    sampling ``random`` (RVT ``config/dataset/base.yaml`` ``data_augmentation``, ``train.py`` building one
    ``RandomSpatialAugmentorGenX`` per mode).

    Attributes:
        enabled: apply the augmentation at all (the data module passes it for the train split only).
        stream: settings of streaming sampling (``mode == "stream"``, zoom-in weight 0).
        random: settings of random sampling (``mode == "random"``).

    Raises:
        ValueError: on construction, ``enabled`` not a bool or a part of the wrong mode (the message names
            ``dataset.augmentation.<key>``); the parts validate themselves (:class:`AugmentationConfig`).
    """

    enabled: bool = False
    stream: AugmentationConfig = STREAM_REFERENCE
    random: AugmentationConfig = RANDOM_REFERENCE

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"dataset.augmentation.enabled: expected true or false, got {self.enabled!r}")
        for mode in MODES:
            part = getattr(self, mode)
            if not isinstance(part, AugmentationConfig) or part.mode != mode:
                raise ValueError(f"dataset.augmentation.{mode}: expected an AugmentationConfig with mode "
                                 f"{mode!r}, got {part!r}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> SamplingAugmentation:
        """Parse the config node ``dataset.augmentation``.

        Args:
            cfg: ``None`` (disabled, reference settings) or a mapping with optional keys ``enabled`` (bool,
                default false), ``stream`` and ``random`` (mappings for :meth:`AugmentationConfig.from_mapping`;
                missing keys take RVT's values of that mode).

        Returns:
            The parsed settings (``enabled`` False when ``cfg`` is ``None`` or says so).

        Raises:
            ValueError: a non-mapping node, an unknown key (message names ``dataset.augmentation.<key>``), or an
                invalid value (message names ``dataset.augmentation[.<mode>].<key>``), e.g. a streaming
                ``zoom_in_weight`` > 0 (``dataset.augmentation.stream.zoom_in_weight``).
        """
        if cfg is None:
            return cls()
        if not isinstance(cfg, Mapping):
            raise ValueError(f"dataset.augmentation: expected a mapping with keys enabled, stream, random; "
                             f"got {cfg!r}")
        known = ("enabled", *MODES)
        for key in cfg:
            if key not in known:
                raise ValueError(f"dataset.augmentation.{key}: unknown key; expected one of {list(known)}")
        return cls(enabled=cfg.get("enabled", False),
                   **{mode: AugmentationConfig.from_mapping(cfg.get(mode), mode) for mode in MODES})


def nearest_exact_index(src_size: int, dst_size: int) -> torch.Tensor:
    """Source pixel read by each destination pixel under ``nearest-exact`` resampling (torch semantics).

    ``min(floor(fl32((u + 0.5) * fl32(src / dst))), src - 1)`` for ``u = 0 .. dst - 1``, ``fl32`` = rounding to
    float32: ATen's ``nearest_neighbor_exact_compute_source_index`` (float32 scale, ``floorf`` of the product),
    i.e. what ``torch.nn.functional.interpolate(..., size=..., mode='nearest-exact')`` (RVT ``augmentor.py``)
    reads. It differs from the exact ``floor((u + 0.5) * src / dst)`` at some exact ties (360 -> 243 px: ``u = 40``
    reads 59, not 60). Checked equal to torch's CPU kernel for all span pairs with ratio <= 1.6 up to 1300 px
    (every zoom window of RVT's settings); at extreme ratios (e.g. 2 -> 427 px) torch's own CPU kernels disagree by
    one pixel at ties depending on the memory layout, and this function follows the float32-scale formula.

    Args:
        src_size, dst_size: spans in px (>= 1).

    Returns:
        ``(dst_size,)`` int64 indices in ``0 .. src_size - 1``.

    Raises:
        ValueError: a span < 1.
    """
    if src_size < 1 or dst_size < 1:
        raise ValueError(f"nearest_exact_index: spans must be >= 1 px, got {src_size} -> {dst_size}")
    scale = torch.tensor(float(src_size), dtype=torch.float32) / torch.tensor(float(dst_size), dtype=torch.float32)
    u = torch.arange(dst_size, dtype=torch.float64) + 0.5
    return (u * scale.double()).float().floor().to(torch.int64).clamp(max=src_size - 1)


def scale_boxes(boxes: torch.Tensor, factor: float, width: float, height: float) -> torch.Tensor:
    """Scale boxes with their image by ``factor`` and remove flat ones (RVT ``ObjectLabels.scale_``).

    With the new image size ``W' = factor * width``, ``H' = factor * height`` (floats): ``x2 = min((x + w) *
    factor, W' - 1)``, ``y2 = min((y + h) * factor, H' - 1)``, ``x = x * factor``, ``y = y * factor``, ``w = x2 -
    x``, ``h = y2 - y``; boxes with ``w <= 0`` or ``h <= 0`` are removed. Computed in the boxes' dtype in RVT's
    order of operations.

    Args:
        boxes: ``(n, 5)`` float ``[class_id, x, y, w, h]`` (px, top-left) of a ``width x height`` image.
        factor: scale factor (> 0).
        width, height: image size before scaling (px, may be fractional).

    Returns:
        ``(n', 5)`` new tensor of the same dtype, ``n' <= n``.

    Raises:
        ValueError: ``boxes`` not ``(n, 5)`` or ``factor <= 0``.
    """
    _check_boxes(boxes)
    if not factor > 0:
        raise ValueError(f"scale_boxes: factor must be > 0, got {factor!r}")
    out = boxes.clone()
    if len(out) == 0 or factor == 1:
        return out
    new_w, new_h = factor * width, factor * height
    x, y, w, h = out[:, 1], out[:, 2], out[:, 3], out[:, 4]
    x2 = torch.clamp((x + w) * factor, max=new_w - 1)
    y2 = torch.clamp((y + h) * factor, max=new_h - 1)
    x, y = x * factor, y * factor
    out[:, 1], out[:, 2], out[:, 3], out[:, 4] = x, y, x2 - x, y2 - y
    return _remove_flat(out)


def _check_boxes(boxes: torch.Tensor) -> None:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 5:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be an (n, 5) tensor [class_id, x, y, w, h], got {shape}")


def _remove_flat(boxes: torch.Tensor) -> torch.Tensor:
    """Keep boxes with ``w > 0`` and ``h > 0`` (RVT ``remove_flat_labels_``)."""
    return boxes[(boxes[:, 3] > 0) & (boxes[:, 4] > 0)]


def _flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """``x' = W - 1 - x - w`` (RVT ``ObjectLabels.flip_lr_``); a new tensor."""
    out = boxes.clone()
    out[:, 1] = (width - 1) - out[:, 1] - out[:, 3]
    return out


@dataclass(frozen=True)
class SequenceTransform:
    """One augmentation of a ``W x H`` frame, applied identically to every window and box of a sequence.

    Flip first (if ``flip``), then the zoom ``mode`` by ``factor`` with the integer window
    ``window_hw = (int(H / factor), int(W / factor))`` px whose top-left corner is ``(x0, y0)`` (px): for
    ``"zoom_in"`` the window is the crop that is enlarged to ``H x W``; for ``"zoom_out"`` the place where the
    shrunk frame is pasted into a zero canvas. Module docstring: the exact maps (RVT
    ``RandomSpatialAugmentorGenX.__call__`` and ``ObjectLabels.flip_lr_`` / ``zoom_in_and_rescale_`` /
    ``zoom_out_and_rescale_``).

    Attributes:
        width, height: frame size W, H (px).
        flip: mirror horizontally before the zoom.
        mode: ``"none"``, ``"zoom_in"`` or ``"zoom_out"``.
        factor: zoom factor (>= 1; ignored for ``"none"``; 1 zooms nothing, as in RVT).
        x0, y0: window top-left corner (px); ``0 <= x0 <= W - w_win``, ``0 <= y0 <= H - h_win``.

    Raises:
        ValueError: on construction, for a non-positive frame size, an unknown mode, a factor < 1 or not finite,
            a window side < 1 px, or a window that does not fit in the frame.
    """

    width: int
    height: int
    flip: bool = False
    mode: str = "none"
    factor: float = 1.0
    x0: int = 0
    y0: int = 0

    def __post_init__(self) -> None:
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"SequenceTransform: frame size must be positive, got {self.width}x{self.height}")
        if self.mode not in ("none", "zoom_in", "zoom_out"):
            raise ValueError(f"SequenceTransform: mode must be 'none', 'zoom_in' or 'zoom_out', got {self.mode!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1.0):
            raise ValueError(f"SequenceTransform: factor must be a finite number >= 1, got {self.factor!r}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "flip", bool(self.flip))
        object.__setattr__(self, "factor", float(self.factor))
        object.__setattr__(self, "x0", int(self.x0))
        object.__setattr__(self, "y0", int(self.y0))
        if self.mode != "none":
            h_win, w_win = self.window_hw
            if h_win < 1 or w_win < 1:
                raise ValueError(f"SequenceTransform: zoom window {w_win}x{h_win} px must have sides >= 1 px")
            if not (0 <= self.x0 <= self.width - w_win and 0 <= self.y0 <= self.height - h_win):
                raise ValueError(f"SequenceTransform: zoom window {w_win}x{h_win} px at (x0, y0) = "
                                 f"({self.x0}, {self.y0}) must lie inside the {self.width}x{self.height} frame")

    @property
    def window_hw(self) -> tuple[int, int]:
        """Integer zoom window ``(int(H / factor), int(W / factor))`` in px (the frame size for ``"none"``)."""
        if self.mode == "none":
            return self.height, self.width
        return int(self.height / self.factor), int(self.width / self.factor)

    @property
    def zooms(self) -> bool:
        """True when a zoom changes the frame (mode not ``"none"`` and ``factor != 1``)."""
        return self.mode != "none" and self.factor != 1.0

    @property
    def is_identity(self) -> bool:
        """True when the transform changes nothing (no flip, no effective zoom)."""
        return not self.flip and not self.zooms

    def apply_to_histograms(self, frames: torch.Tensor) -> torch.Tensor:
        """Transform stacked histograms (RVT ``_flip_tensor``, ``_zoom_in_and_rescale_tensor``,
        ``_zoom_out_and_rescale_tensor``).

        Args:
            frames: ``(..., H, W)`` tensor of any dtype (uint8 histograms: ``(L, 2*bins, H, W)``).

        Returns:
            A new tensor of the same shape and dtype. Zoom out: 0 outside the window. Values are copied by
            nearest-exact resampling (:func:`nearest_exact_index`), so uint8 counts stay ``<= clip``.

        Raises:
            ValueError: if the last two dimensions are not ``(height, width)``.
        """
        if frames.dim() < 2 or tuple(frames.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"SequenceTransform: frames must end in (H, W) = ({self.height}, {self.width}), "
                             f"got shape {tuple(frames.shape)}")
        if not self.zooms:
            return torch.flip(frames, dims=(-1,)) if self.flip else frames.clone()
        (h_win, w_win), x0, y0 = self.window_hw, self.x0, self.y0
        if self.mode == "zoom_in":
            rows = y0 + nearest_exact_index(h_win, self.height)
            cols = x0 + nearest_exact_index(w_win, self.width)
        else:
            rows = nearest_exact_index(self.height, h_win)
            cols = nearest_exact_index(self.width, w_win)
        on_numpy = frames.device.type == "cpu" and frames.dtype in _NUMPY_DTYPES and not frames.requires_grad
        if on_numpy:
            # Two separable numpy gathers, rows then columns (contiguous row copies, then one pass over the
            # columns), ~5x faster on 640x360 uint8 histograms than one 2-D advanced-indexing gather. Output column j
            # reads input column c_j = W - 1 - cols[j] with the flip (column j of the flipped frame is column
            # W - 1 - j of the input); those decrease, and numpy's take is ~3x slower on decreasing indices, so
            # the columns are gathered in increasing order (c reversed) and the result is mirrored back. Same
            # values, element for element, as the gather below.
            col_index = cols.numpy()
            if self.flip:
                col_index = (self.width - 1 - col_index)[::-1]
            resampled = torch.from_numpy(np.take(np.take(frames.numpy(), rows.numpy(), axis=-2), col_index, axis=-1))
            if self.flip:
                resampled = torch.flip(resampled, dims=(-1,))
        else:
            # One advanced-indexing gather (index_select on uint8 has pathologically slow paths); the flip is
            # folded into the column indices: column j of the flipped frame is column W - 1 - j of the input.
            if self.flip:
                cols = self.width - 1 - cols
            resampled = frames[..., rows[:, None], cols[None, :]]
        if self.mode == "zoom_in":
            return resampled
        canvas = (torch.from_numpy(np.zeros(tuple(frames.shape), resampled.numpy().dtype)) if on_numpy
                  else torch.zeros_like(frames, memory_format=torch.contiguous_format))
        canvas[..., y0 : y0 + h_win, x0 : x0 + w_win] = resampled
        return canvas

    def apply_to_boxes(self, boxes: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Transform boxes and remove the flat ones (RVT ``ObjectLabels.flip_lr_``, ``zoom_in_and_rescale_``,
        ``zoom_out_and_rescale_``; formulas in the module docstring).

        Args:
            boxes: ``(n, 5)`` float32 ``[class_id, x, y, w, h]`` (px, top-left, inside ``[0, W - 1] x [0, H - 1]``).

        Returns:
            ``(kept (n', 5) same dtype, n_dropped)``: the transformed boxes in their original order and the number
            removed as flat (``w <= 0`` or ``h <= 0``) by the zoom.

        Raises:
            ValueError: if ``boxes`` is not ``(n, 5)``.
        """
        _check_boxes(boxes)
        out = _flip_boxes(boxes, self.width) if self.flip and len(boxes) else boxes.clone()
        if not self.zooms or len(out) == 0:
            return out, 0
        f, x0, y0 = self.factor, self.x0, self.y0
        if self.mode == "zoom_out":
            out = scale_boxes(out, 1 / f, self.width, self.height)
            out[:, 1] = out[:, 1] + x0
            out[:, 2] = out[:, 2] + y0
        else:
            win_w, win_h = self.width / f, self.height / f
            z_x1 = min(x0 + win_w, self.width - 1)
            z_y1 = min(y0 + win_h, self.height - 1)
            x, y, w, h = out[:, 1], out[:, 2], out[:, 3], out[:, 4]
            left = torch.clamp(x, min=x0, max=z_x1 - 1)
            top = torch.clamp(y, min=y0, max=z_y1 - 1)
            right = torch.clamp(x + w, min=x0, max=z_x1 - 1)
            bottom = torch.clamp(y + h, min=y0, max=z_y1 - 1)
            out[:, 1], out[:, 2], out[:, 3], out[:, 4] = left - x0, top - y0, right - left, bottom - top
            out = scale_boxes(_remove_flat(out), f, win_w, win_h)
        return out, len(boxes) - len(out)


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    """``low + (high - low) * U[0, 1)`` (RVT ``torch_uniform_sample_scalar``; ``low`` when ``high == low``)."""
    if high == low:
        return float(low)
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _zoom_in_corner(
    box: torch.Tensor, win: int, size: int, generator: torch.Generator | None
) -> int:
    """Window corner along one axis so that the window contains the box (or the box the window): RVT
    ``randomly_sample_zoom_window_from_label_rectangle``. ``box`` = (start, length) px; clamped into the frame."""
    start, length = float(box[0]), float(box[1])
    lo = max(start + length - max(win, length), 0.0)
    hi = min(start + max(win, length), size - 1)
    hi = max(hi - win, lo)
    return min(max(int(_uniform(generator, lo, hi)), 0), size - win)


def sample_transform(
    config: AugmentationConfig,
    width: int,
    height: int,
    generator: torch.Generator | None = None,
    labels: list[torch.Tensor] | None = None,
) -> SequenceTransform:
    """Draw one sequence's :class:`SequenceTransform` (RVT ``RandomSpatialAugmentorGenX.randomize_augmentation``
    and ``_zoom_in_and_rescale``; distribution in the module docstring).

    Draw order: flip ``U < flip_p``; zoom ``U < zoom_p``; if zooming, zoom in when ``U * (zoom_in_weight +
    zoom_out_weight) < zoom_in_weight`` else zoom out; zoom out: factor ``U(1, zoom_out_max)``, ``x0``, ``y0``;
    zoom in: factor ``U(1, zoom_in_max)``, box index, ``x0``, ``y0``.

    Args:
        config: one sampling mode's settings (``SamplingAugmentation.random`` or ``.stream``).
        width, height: frame size W, H (px).
        generator: torch random generator; ``None`` uses torch's global generator (seeded per DataLoader worker).
        labels: the sequence's per-window boxes, ``L`` float32 ``(n_t, 5)`` ``[class_id, x, y, w, h]`` (px,
            before any augmentation); the zoom-in window is placed around one box of the LAST window with
            ``n_t > 0`` (after the flip). Required when ``config`` can zoom in.

    Returns:
        The drawn transform. A zoom in drawn for a sequence without any box gives no zoom (flip kept) and a
        ``UserWarning`` (as RVT).

    Raises:
        ValueError: a non-positive frame size, a zoom window that would be empty, ``labels`` missing while
            ``config`` can zoom in, or a label tensor not ``(n, 5)``.
    """
    if width < 1 or height < 1:
        raise ValueError(f"sample_transform: frame size must be positive, got {width}x{height}")
    if labels is None and config.zoom_in_prob > 0:
        raise ValueError(f"sample_transform: the {config.mode!r} settings can zoom in (zoom_in_weight "
                         f"{config.zoom_in_weight}), which needs the sequence's labels; pass labels=")
    flip = _uniform(generator) < config.flip_p
    if not _uniform(generator) < config.zoom_p:
        return SequenceTransform(width, height, flip=flip)
    total = config.zoom_in_weight + config.zoom_out_weight
    if _uniform(generator) * total < config.zoom_in_weight:
        factor = _uniform(generator, 1.0, config.zoom_in_max)
        if factor == 1.0:  # RVT returns before looking at the labels
            return SequenceTransform(width, height, flip=flip)
        h_win, w_win = int(height / factor), int(width / factor)
        for boxes in labels:
            _check_boxes(boxes)
        latest = next((b for b in reversed(labels) if len(b) > 0), None)
        if latest is None:
            warnings.warn(NO_BOX_WARNING, UserWarning, stacklevel=2)
            return SequenceTransform(width, height, flip=flip)
        if flip:
            latest = _flip_boxes(latest, width)
        box = latest[int(torch.randint(0, len(latest), (), generator=generator))]
        x0 = _zoom_in_corner(box[[1, 3]], w_win, width, generator)
        y0 = _zoom_in_corner(box[[2, 4]], h_win, height, generator)
        return SequenceTransform(width, height, flip=flip, mode="zoom_in", factor=factor, x0=x0, y0=y0)
    factor = _uniform(generator, 1.0, config.zoom_out_max)
    h_win, w_win = int(height / factor), int(width / factor)
    x0 = int(_uniform(generator, 0.0, width - w_win))
    y0 = int(_uniform(generator, 0.0, height - h_win))
    return SequenceTransform(width, height, flip=flip, mode="zoom_out", factor=factor, x0=x0, y0=y0)


def augment_sequence(
    transform: SequenceTransform,
    representation: torch.Tensor,
    labels: list[torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Apply one transform to every window and every box list of a sequence (RVT ``RandomSpatialAugmentorGenX.
    __call__`` on one sample's ``EV_REPR`` and ``OBJLABELS_SEQ``).

    Args:
        transform: the sequence's transform (:func:`sample_transform`).
        representation: ``(L, 2*bins, H, W)`` uint8 stacked histograms.
        labels: ``L`` float32 tensors ``(n_t, 5)`` ``[class_id, x, y, w, h]`` (px, top-left).

    Returns:
        ``(representation, labels, n_dropped)``: transformed copies (same shapes / dtypes, ``(n_t', 5)`` boxes)
        and the number of boxes removed as flat over the whole sequence.

    Raises:
        ValueError: if ``labels`` does not have one entry per window, a box tensor is not ``(n, 5)``, or the frame
            size does not match the transform.
    """
    if len(labels) != representation.shape[0]:
        raise ValueError(f"augment_sequence: 'labels' has {len(labels)} entries, expected one per window "
                         f"({representation.shape[0]})")
    out_labels, dropped = [], 0
    for boxes in labels:
        kept, n_dropped = transform.apply_to_boxes(boxes)
        out_labels.append(kept)
        dropped += n_dropped
    return transform.apply_to_histograms(representation), out_labels, dropped
