"""Stacked-histogram event representation, as RVT builds and stores it.

RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 3.1 and 4) feeds the network one tensor per 50 ms window: the events
of the window are split by polarity and into ``bins`` time bins, each (polarity, bin) pair becomes one image of
per-pixel event counts, the counts are clipped at 10 and stored as ``uint8``; 2 polarities x 10 bins give 20
channels, polarity-major (``channel = p * bins + bin``). The reference implementation (RVT
``data/utils/representations.py`` ``StackedHistogram.construct``, eTraM ``scripts/genx/preprocess_dataset.py``
``write_event_representations``) fixes the details this module reproduces by default:

* **Window** ending at ``t_end``: every event with ``t_end - window_us <= t <= t_end``, both ends inclusive, so a
  window ending at a label time contains the events stamped exactly at it.
* **Time bins stretched over the events present**: with ``t0``, ``t1`` the first and last event time in the window,
  ``bin = floor(float32(t - t0) / float32(max(t1 - t0, 1)) * bins)`` in float32 arithmetic as the reference, then
  ``bin = bins - 1`` where it reaches ``bins`` (the events at ``t1``). For spans up to 50 ms this equals the exact
  integer ``floor(bins * (t - t0) / max(t1 - t0, 1))`` (checked for every span in the tests). One distinct
  timestamp puts every event in bin 0; an empty window is all zeros.
* **Histogram at full resolution, clip, then downsample** by nearest-exact interpolation
  (``torch.nn.functional.interpolate(scale_factor=1/k, mode='nearest-exact')``): output pixel ``(i, j)`` is a copy
  of sensor pixel ``(k*i + k//2, k*j + k//2)`` — for ``k = 2`` pixel ``(2i+1, 2j+1)`` — and the other pixels of each
  ``k x k`` block are discarded. Only events on those pixels can reach the output, so they are selected before
  counting; ``t0``/``t1`` still come from all events of the window.

The other variants are named options (``docs/protocol.md``): ``time_bins="fixed"`` (bins of ``window_us / bins``
from ``t_end - window_us``) and ``downsample="sum"`` (each ``k x k`` block summed, then clipped; the block of an
odd last row/column is partial).
"""

from __future__ import annotations

import numpy as np

from evdet.data.events import Events

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_CLIP",
    "DEFAULT_WINDOW_US",
    "DOWNSAMPLE_MODES",
    "TIME_BIN_MODES",
    "HistogramConfig",
    "representation_size",
    "stacked_histogram",
    "window_event_range",
]

DEFAULT_WINDOW_US = 50_000
"""Window length (µs) of RVT's stacked histograms (``stacked_histogram_dt=50_nbins=10``, Sec. 4.1)."""
DEFAULT_BINS = 10
"""Time bins per polarity (RVT Sec. 3.1)."""
DEFAULT_CLIP = 10
"""Largest stored count per cell (``count_cutoff`` of the reference)."""
TIME_BIN_MODES = ("stretched", "fixed")
"""``stretched``: bins span the first to the last event of the window (reference); ``fixed``: equal slices of the
window length."""
DOWNSAMPLE_MODES = ("nearest_exact", "sum")
"""``nearest_exact``: keep one sensor pixel per output pixel (reference); ``sum``: add the ``k x k`` block."""


class HistogramConfig:
    """Parameters of the stacked histogram, validated once.

    Args:
        window_us: window length (µs), > 0.
        bins: time bins per polarity, >= 1.
        clip: largest count stored, 0..255 (uint8).
        downsample_factor: integer ``k >= 1``; 1 keeps the sensor resolution.
        downsample: one of :data:`DOWNSAMPLE_MODES` (ignored for ``k = 1``).
        time_bins: one of :data:`TIME_BIN_MODES`.

    Attributes:
        the arguments, and ``channels = 2 * bins``.

    Raises:
        ValueError: a value out of range; the message names the parameter and the allowed values.
    """

    def __init__(
        self,
        window_us: int = DEFAULT_WINDOW_US,
        bins: int = DEFAULT_BINS,
        clip: int = DEFAULT_CLIP,
        downsample_factor: int = 2,
        downsample: str = "nearest_exact",
        time_bins: str = "stretched",
    ) -> None:
        checks = {
            "window_us": (window_us, _is_int(window_us) and window_us > 0, "an integer > 0 (µs)"),
            "bins": (bins, _is_int(bins) and bins >= 1, "an integer >= 1"),
            "clip": (clip, _is_int(clip) and 0 <= clip <= 255, "an integer in 0..255 (stored as uint8)"),
            "downsample_factor": (downsample_factor, _is_int(downsample_factor) and downsample_factor >= 1,
                                  "an integer >= 1"),
            "downsample": (downsample, downsample in DOWNSAMPLE_MODES, f"one of {list(DOWNSAMPLE_MODES)}"),
            "time_bins": (time_bins, time_bins in TIME_BIN_MODES, f"one of {list(TIME_BIN_MODES)}"),
        }
        for name, (value, ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"stacked histogram: {name} must be {expected}, got {value!r}")
        self.window_us = int(window_us)
        self.bins = int(bins)
        self.clip = int(clip)
        self.downsample_factor = int(downsample_factor)
        self.downsample = str(downsample)
        self.time_bins = str(time_bins)
        self.channels = 2 * self.bins

    def size(self, width: int, height: int) -> tuple[int, int]:
        """Representation size ``(width, height)`` (px) for a ``width`` x ``height`` sensor.

        ``nearest_exact``: ``floor(W / k) x floor(H / k)`` (what ``interpolate(scale_factor=1/k)`` returns, 1280x720
        -> 640x360); ``sum``: ``ceil(W / k) x ceil(H / k)``.

        Raises:
            ValueError: a side is not positive or smaller than ``k`` with ``nearest_exact``.
        """
        return representation_size(width, height, self.downsample_factor, self.downsample)

    def as_attrs(self) -> dict:
        """The parameters as plain values (shard attributes, reports)."""
        return {"window_us": self.window_us, "bins": self.bins, "clip": self.clip,
                "downsample_factor": self.downsample_factor, "downsample": self.downsample,
                "time_bins": self.time_bins}

    def __repr__(self) -> str:
        return "HistogramConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_attrs().items()) + ")"


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def representation_size(width: int, height: int, downsample_factor: int = 2,
                        downsample: str = "nearest_exact") -> tuple[int, int]:
    """Size ``(width, height)`` (px) of the representation of a ``width`` x ``height`` sensor.

    Args:
        width, height: sensor size (px), > 0.
        downsample_factor: integer ``k >= 1``.
        downsample: ``nearest_exact`` (``floor(side / k)``) or ``sum`` (``ceil(side / k)``).

    Raises:
        ValueError: a non-positive size or factor, an unknown mode, or a side below ``k`` with ``nearest_exact``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"representation_size: sensor size must be positive, got {width}x{height}")
    if not _is_int(downsample_factor) or downsample_factor < 1:
        raise ValueError(f"representation_size: downsample_factor must be an integer >= 1, got {downsample_factor!r}")
    k = int(downsample_factor)
    if downsample == "sum":
        return -(-int(width) // k), -(-int(height) // k)
    if downsample != "nearest_exact":
        raise ValueError(f"representation_size: downsample must be one of {list(DOWNSAMPLE_MODES)}, got {downsample!r}")
    if width < k or height < k:
        raise ValueError(f"representation_size: a {width}x{height} sensor is smaller than the factor {k}")
    return int(width) // k, int(height) // k


def window_event_range(t: np.ndarray, t_end_us: int, window_us: int = DEFAULT_WINDOW_US) -> tuple[int, int]:
    """Index range ``[begin, end)`` of the events with ``t_end_us - window_us <= t <= t_end_us`` in sorted ``t``.

    Args:
        t: ``(N,)`` int64 timestamps (µs), non-decreasing.
        t_end_us: window end (µs), inclusive.
        window_us: window length (µs); the start ``t_end_us - window_us`` is inclusive too.

    Returns:
        ``(searchsorted(t, t_end - window, 'left'), searchsorted(t, t_end, 'right'))``.
    """
    begin = int(np.searchsorted(t, int(t_end_us) - int(window_us), side="left"))
    end = int(np.searchsorted(t, int(t_end_us), side="right"))
    return begin, max(begin, end)


def stacked_histogram(events: Events, t_end_us: int, config: HistogramConfig | None = None) -> np.ndarray:
    """Stacked histogram of the events of the window ending at ``t_end_us`` (module docstring for the rules).

    Args:
        events: time-sorted events of a ``width`` x ``height`` sensor (``t`` µs); events outside the window
            ``[t_end_us - window_us, t_end_us]`` are ignored (found by binary search on ``t``).
        t_end_us: window end (µs), inclusive.
        config: the parameters (default: RVT's 50 ms, 10 bins, clip 10, factor 2, nearest-exact, stretched bins).

    Returns:
        ``(2 * bins, H, W)`` ``uint8``, ``(W, H) = config.size(events.width, events.height)``; channel
        ``p * bins + bin``.

    Raises:
        ValueError: an event of the window lies outside the sensor or has a polarity other than 0/1 (the message
            names the field), or the sensor is smaller than the downsample factor.
    """
    cfg = config if config is not None else HistogramConfig()
    width, height = cfg.size(events.width, events.height)
    out_size = cfg.channels * height * width
    begin, end = window_event_range(events.t, t_end_us, cfg.window_us)
    if end == begin:
        return np.zeros((cfg.channels, height, width), dtype=np.uint8)
    x = events.x[begin:end]
    y = events.y[begin:end]
    p = events.p[begin:end]
    t = events.t[begin:end]
    for name, column, limit in (("x", x, events.width), ("y", y, events.height), ("p", p, 2)):
        if int(column.max()) >= limit:
            raise ValueError(f"stacked_histogram: event field '{name}' has {int(column.max())}, expected < {limit}")

    time_bin = _time_bins(t, int(t_end_us), cfg)
    k = cfg.downsample_factor
    if k > 1 and cfg.downsample == "nearest_exact":
        keep = ((x % k) == k // 2) & ((y % k) == k // 2) & (x // k < width) & (y // k < height)
        x, y, p, time_bin = x[keep], y[keep], p[keep], time_bin[keep]
    col = x.astype(np.int64) // k
    row = y.astype(np.int64) // k
    index = ((p.astype(np.int64) * cfg.bins + time_bin) * height + row) * width + col
    counts = np.bincount(index, minlength=out_size)
    np.minimum(counts, cfg.clip, out=counts)
    return counts.astype(np.uint8).reshape(cfg.channels, height, width)


def _time_bins(t: np.ndarray, t_end_us: int, cfg: HistogramConfig) -> np.ndarray:
    """``(N,)`` int64 time bin of each event of one window (module docstring)."""
    if cfg.time_bins == "fixed":
        start = t_end_us - cfg.window_us
        return np.minimum(((t - start) * cfg.bins) // cfg.window_us, cfg.bins - 1)
    t0 = int(t[0])
    span = np.float32(max(int(t[-1]) - t0, 1))
    scaled = (t - t0).astype(np.float32) / span * np.float32(cfg.bins)
    return np.minimum(np.floor(scaled).astype(np.int64), cfg.bins - 1)
