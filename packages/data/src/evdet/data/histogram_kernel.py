"""Compiled (numba) counting loop of :func:`evdet.data.representation.stacked_histogram`.

:func:`accumulate_window` counts the events of one window straight into the ``uint8`` output grid, in one pass
over the events and without a full-resolution intermediate:

* **Pixel maps instead of per-event arithmetic on x, y.** ``columns[x]`` is the output column of sensor column
  ``x`` and ``rows[y]`` the output row times the output width, or ``-1`` where the downsampling discards that
  column/row (nearest-exact keeps only ``x % k == k // 2``); the maps are built once per sensor and option by
  ``evdet.data.representation._pixel_maps``. Each map has one extra last entry ``-1`` that an out-of-sensor
  coordinate is clamped to, so a bad event never indexes outside the maps.
* **Time bins as index ranges.** The bin formula (float32 ``floor((t - t0) / span * bins)`` stretched, or the
  integer ``(t - start) * bins // window`` fixed, both capped at ``bins - 1``) is non-decreasing in ``t`` (every
  step — int-to-float32 rounding, division and multiplication by a positive float32, floor — is monotone), and the
  events are time-sorted, so each bin is a contiguous run of events. A binary search with the exact formula finds
  the ``bins + 1`` run boundaries; no per-event float arithmetic is done, and the result equals evaluating the
  formula on every event bit for bit.
* **Branch-free selection, saturating count.** Per block of :data:`BLOCK` events the flat output index of every
  event is written to a small buffer and the write position advances only for kept events (no unpredictable
  branch for the 3 in 4 events that nearest-exact /2 discards); then each kept index is incremented unless it
  already holds ``clip``. Counting with saturation gives ``min(count, clip)``, the reference's clip after
  counting, also for the ``sum`` downsampling (block sum, then clip).

The loop runs on one thread (no ``prange``); numba's thread count does not matter. Compiled code is cached next to
this file (or in numba's user cache) when a writable cache location exists; on a read-only install without one the
functions are compiled in memory at first use instead (about 0.5 s per process).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["BLOCK", "accumulate_window"]

BLOCK = 2048
"""Events per selection block (the index buffer, 16 KiB of int64, stays in the L1 cache)."""


def _jit(function):
    """``numba.njit(nogil=True, cache=True)``, or without the on-disk cache where numba finds no writable
    location for it (numba raises ``RuntimeError`` at decoration then)."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True, cache=False)(function)


@_jit
def _time_bin(t: np.int64, t0: np.int64, span32: np.float32, bins: np.int64, fixed: bool, start: np.int64,
              window_us: np.int64) -> np.int64:
    """Time bin of timestamp ``t`` (µs): fixed ``min((t - start) * bins // window_us, bins - 1)``, stretched
    ``min(floor(float32(t - t0) / span32 * float32(bins)), bins - 1)`` in float32 as RVT's
    ``StackedHistogram.construct``."""
    if fixed:
        b = ((t - start) * bins) // window_us
    else:
        b = np.int64(np.floor(np.float32(t - t0) / span32 * np.float32(bins)))
    return min(b, bins - 1)


@_jit
def _bin_bounds(t: np.ndarray, bins: np.int64, t0: np.int64, span32: np.float32, fixed: bool, start: np.int64,
                window_us: np.int64) -> np.ndarray:
    """``(bins + 1,)`` int64: events ``bounds[b]:bounds[b + 1]`` of the time-sorted ``t`` fall in bin ``b``."""
    n = t.shape[0]
    bounds = np.empty(bins + 1, np.int64)
    bounds[0] = 0
    low = 0
    for b in range(1, bins):
        high = n
        while low < high:  # first event whose bin is >= b (bins are non-decreasing along t)
            mid = (low + high) >> 1
            if _time_bin(t[mid], t0, span32, bins, fixed, start, window_us) >= b:
                high = mid
            else:
                low = mid + 1
        bounds[b] = low
    bounds[bins] = n
    return bounds


@_jit
def accumulate_window(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, columns: np.ndarray,
                      rows: np.ndarray, bins: np.int64, fixed: bool, start: np.int64, window_us: np.int64,
                      span32: np.float32, clip: np.int64, out: np.ndarray) -> bool:
    """Add the events of one window to ``out`` with saturation at ``clip`` (module docstring for the method).

    Args:
        x, y: ``(N,)`` uint16 sensor column/row (px); t: ``(N,)`` int64 (µs), non-decreasing, all in the window;
            p: ``(N,)`` uint8 polarity. ``N >= 1``.
        columns: ``(sensor_width + 1,)`` int64 output column per sensor column, -1 = discarded (last entry -1).
        rows: ``(sensor_height + 1,)`` int64 output row times output width per sensor row, -1 = discarded.
        bins: time bins per polarity; fixed: fixed bins from ``start`` (µs) of ``window_us`` (µs) length, else
            stretched over ``t[0]..t[-1]`` with ``span32 = float32(max(t[-1] - t[0], 1))``.
        clip: largest count, 0..255.
        out: ``(2 * bins * H * W,)`` uint8, C-contiguous flat view of the ``(2 * bins, H, W)`` output, counted into.

    Returns:
        True; False as soon as a block holds an event with ``x >= sensor_width``, ``y >= sensor_height`` or
        ``p > 1`` (``out`` is then partly counted and should be discarded).
    """
    sensor_width = columns.shape[0] - 1
    sensor_height = rows.shape[0] - 1
    plane = out.shape[0] // (2 * bins)
    polarity_step = bins * plane
    bounds = _bin_bounds(t, bins, t[0], span32, fixed, start, window_us)
    buffer = np.empty(BLOCK, np.int64)
    for b in range(bins):
        base = b * plane
        i = bounds[b]
        end = bounds[b + 1]
        while i < end:
            stop = min(end, i + BLOCK)
            kept = 0
            bad = False
            for e in range(i, stop):
                xe = x[e]
                ye = y[e]
                pe = p[e]
                bad |= (xe >= sensor_width) | (ye >= sensor_height) | (pe > 1)
                column = columns[min(xe, sensor_width)]
                row = rows[min(ye, sensor_height)]
                buffer[kept] = base + pe * polarity_step + row + column
                kept += (column | row) >= 0
            if bad:
                return False
            for q in range(kept):
                index = buffer[q]
                if out[index] < clip:
                    out[index] += 1
            i = stop
    return True
