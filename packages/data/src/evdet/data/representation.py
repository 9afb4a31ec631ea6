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

import functools

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

    The counting is :func:`evdet.data.histogram_kernel.accumulate_window` (numba, one thread, one pass over the
    window's events straight into the output, saturating at ``clip``); it equals counting every event with the bin
    formula above, ``np.bincount`` and clipping, bit for bit (tests/data/test_histogram_kernel.py). The first call
    in a process compiles the kernel or loads it from numba's cache.

    Raises:
        ValueError: an event of the window lies outside the sensor or has a polarity other than 0/1 (the message
            names the field), or the sensor is smaller than the downsample factor.
    """
    cfg = config if config is not None else HistogramConfig()
    width, height = cfg.size(events.width, events.height)
    out = np.zeros((cfg.channels, height, width), dtype=np.uint8)
    begin, end = window_event_range(events.t, t_end_us, cfg.window_us)
    if end == begin:
        return out
    x = np.ascontiguousarray(events.x[begin:end])
    y = np.ascontiguousarray(events.y[begin:end])
    p = np.ascontiguousarray(events.p[begin:end])
    t = np.ascontiguousarray(events.t[begin:end])
    # The numba kernel is imported at the first histogram, so importing this module (HistogramConfig, sizes) does not
    # load numba.
    from evdet.data.histogram_kernel import accumulate_window

    columns, rows = _pixel_maps(events.width, events.height, cfg.downsample_factor, cfg.downsample, width, height)
    span32 = np.float32(max(int(t[-1]) - int(t[0]), 1))
    ok = accumulate_window(x, y, t, p, columns, rows, cfg.bins, cfg.time_bins == "fixed",
                           int(t_end_us) - cfg.window_us, cfg.window_us, span32, cfg.clip, out.reshape(-1))
    if not ok:
        _raise_for_bad_field(x, y, p, events.width, events.height)
    return out


def _raise_for_bad_field(x: np.ndarray, y: np.ndarray, p: np.ndarray, sensor_width: int, sensor_height: int) -> None:
    """Raise ``ValueError`` naming the first of ``x``, ``y``, ``p`` (in that order) whose largest value is out of
    range: ``x >= sensor_width``, ``y >= sensor_height`` (px) or ``p >= 2``."""
    for name, column, limit in (("x", x, sensor_width), ("y", y, sensor_height), ("p", p, 2)):
        if int(column.max()) >= limit:
            raise ValueError(f"stacked_histogram: event field '{name}' has {int(column.max())}, expected < {limit}")


@functools.lru_cache(maxsize=32)
def _pixel_maps(sensor_width: int, sensor_height: int, k: int, downsample: str, width: int,
                height: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each sensor column and row lands in the ``width`` x ``height`` output (module docstring for the rules).

    Returns:
        ``columns`` ``(sensor_width + 1,)`` int64: output column of sensor column ``x``; ``rows``
        ``(sensor_height + 1,)`` int64: output row times ``width`` (the offset in one channel) of sensor row ``y``;
        ``-1`` where the column/row is discarded (nearest-exact keeps ``x % k == k // 2`` with ``x // k < width``;
        ``sum`` and ``k = 1`` keep all) and in the extra last entry, which
        :func:`evdet.data.histogram_kernel.accumulate_window` clamps out-of-sensor coordinates to. Read-only:
        the arrays are cached per sensor size and option.
    """
    def side(n: int, out_n: int, scale: int) -> np.ndarray:
        pos = np.arange(n + 1, dtype=np.int64)
        cell = pos // k
        keep = (pos < n) & (cell < out_n)
        if k > 1 and downsample == "nearest_exact":
            keep &= pos % k == k // 2
        mapped = np.where(keep, cell * scale, -1)
        mapped.setflags(write=False)
        return mapped

    return side(sensor_width, width, 1), side(sensor_height, height, width)
