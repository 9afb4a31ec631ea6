"""``evdet-bench repr``: stacked-histogram speed of evdet against a reference-style numpy ``bincount``, on one core.

Reads the first ``--windows`` windows of ``--window-us`` (default 50 000 µs) of a recording with evdet's reader
(windows end on the grid of multiples of the window length, the first one holding the first event, as
``evdet-detect`` cuts a raw recording), and times, per window, evdet's
:func:`evdet.data.representation.stacked_histogram` (reference configuration: 2 polarities x 10 stretched time
bins, clip 10, nearest-exact /2) against :func:`reference_style_histogram`, the way the reference computes the same
tensor with numpy. Optionally (``--dense-events N``, default 2 000 000; 0 skips) the same on one synthetic window of
N events spread uniformly over the sensor and the window (the dense case). Every output of both is compared.

Method: one warm-up call of each first (evdet's compiles or loads its numba kernel: ``jit_warmup_s``); then
``--repeats`` rounds, each timing all windows with evdet and then with the yardstick (``time.perf_counter``), and the
best round of each is reported (the least disturbed by other processes). The process is pinned to one CPU for the
measurement (``os.sched_setaffinity``, restored afterwards; ``cpu``); evdet's kernel has no parallel loop and the
yardstick's numpy calls (``bincount``, ``minimum``, slicing) are single-threaded, so this is one core for both.
Only the calls are timed, not a consumer reading the outputs: evdet's output is a fresh ``np.zeros`` array whose
pages the OS zeroes lazily (a sparse window touches few of them; reading or copying the whole output later costs
about as much as one ``np.zeros(...).copy()`` of 4.6 MB), the yardstick's a strided view of its full-resolution
counts.

Prints ONE JSON line: ``recording``, ``sensor`` ([W, H] px), ``config`` (histogram parameters), ``windows``,
``events`` (in the timed windows), ``events_per_window_mean``, ``events_per_s`` (evdet), ``bincount_events_per_s``
(yardstick, same run), ``speedup`` (their ratio), ``ms_per_window``, ``bincount_ms_per_window``, ``identical``
(every compared array equal, recording and dense window), ``dense_events``, ``dense_events_per_s``,
``dense_bincount_events_per_s``, ``dense_speedup`` (null with ``--dense-events 0``), ``repeats``, ``cpu``,
``jit_warmup_s``.

Example: ``evdet-bench repr data/real/gen4.dat --windows 200``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from evdet.data.events import Events
from evdet.data.readers import open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram, window_event_range
from evdet.data.windows import grid_window_ends, iter_window_events
from evdet.model.bench.flags import int_at_least

__all__ = ["ACCEPTS_OVERRIDES", "HELP", "add_arguments", "benchmark_representation", "dense_window", "read_windows",
           "reference_style_histogram", "run"]

HELP = "stacked histogram speed vs a reference-style numpy bincount"
ACCEPTS_OVERRIDES = False

#: Seed of the synthetic dense window.
DENSE_SEED = 0


def reference_style_histogram(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, width: int, height: int,
                              bins: int = 10, clip: int = 10) -> np.ndarray:
    """The benchmark's yardstick: the stacked histogram computed the way the reference does, in numpy.

    RVT ``data/utils/representations.py`` ``StackedHistogram.construct`` (github.com/uzh-rpg/RVT @ b80f568) counts
    the window's events into a full-resolution ``(2 * bins, height, width)`` tensor through flat indices
    ``x + W*y + W*H*bin + W*H*bins*p`` (``put_(..., accumulate=True)``), with ``bin = floor(float32(t - t0) /
    float32(max(t1 - t0, 1)) * bins)`` capped at ``bins - 1``, and clips the counts at ``clip``; eTraM's
    preprocessing then downsamples by 2 with ``interpolate(mode='nearest-exact')``, which keeps full-resolution
    pixel ``(2i+1, 2j+1)`` (tests/fixtures/reference-protocol/README.md, "histograms.npz"). Here: ``np.bincount``
    over the flat indices with ``minlength`` the full-resolution size, reshape, clip, slice ``[..., 1::2, 1::2]``.
    (The reference counts in uint8 before clipping; the int64 count here differs only for 256+ events in one cell
    and bin, and costs the same per cell.)

    Args:
        x, y: ``(N,)`` uint16 pixel column/row (px); t: ``(N,)`` int64 (µs), sorted, only the window's events;
            p: ``(N,)`` uint8 polarity 0/1.
        width, height: sensor size (px).
        bins: time bins per polarity; clip: largest count.

    Returns:
        ``(2 * bins, height // 2, width // 2)`` uint8.
    """
    if len(t) == 0:
        return np.zeros((2 * bins, height // 2, width // 2), dtype=np.uint8)
    t0 = int(t[0])
    span = np.float32(max(int(t[-1]) - t0, 1))
    time_bin = np.minimum(np.floor((t - t0).astype(np.float32) / span * np.float32(bins)).astype(np.int64), bins - 1)
    plane = width * height
    index = (x.astype(np.int64) + width * y.astype(np.int64) + plane * time_bin
             + plane * bins * p.astype(np.int64))
    counts = np.bincount(index, minlength=2 * bins * plane).reshape(2 * bins, height, width)
    return np.minimum(counts, clip).astype(np.uint8)[..., 1::2, 1::2]


def read_windows(recording: str | Path, windows: int, window_us: int) -> tuple[list[tuple[int, Events]], int, int]:
    """The first ``windows`` grid windows of a recording (fewer if it ends first), each cut to exactly its events.

    Window ``[end - window_us, end]`` (µs, both ends inclusive), ends on the multiples of ``window_us`` from the
    first at or after the first event (:func:`evdet.data.windows.grid_window_ends`).

    Returns:
        ``([(end_us, events), ...], sensor_width, sensor_height)``.

    Raises:
        RecordingError: the recording is missing, unreadable or has bad events (names the file).
        ValueError: the recording holds no event (names the file).
    """
    with open_recording(recording) as reader:
        time_range = reader.time_range()
        if time_range is None:
            raise ValueError(f"{recording}: the recording holds no event")
        ends = itertools.islice(grid_window_ends(time_range[0], window_us), windows)
        out = []
        for end, events in iter_window_events(reader.iter_chunks(), ends, window_us, reader.width, reader.height,
                                              stop_at_stream_end=True):
            begin, stop = window_event_range(events.t, end, window_us)
            out.append((end, Events(events.x[begin:stop].copy(), events.y[begin:stop].copy(),
                                    events.t[begin:stop].copy(), events.p[begin:stop].copy(),
                                    reader.width, reader.height)))
        return out, reader.width, reader.height


def dense_window(n: int, width: int, height: int, end_us: int, window_us: int, seed: int = DENSE_SEED) -> Events:
    """``n`` events uniform over a ``width`` x ``height`` sensor (px), polarity and ``[end - window_us, end]`` (µs),
    time-sorted."""
    rng = np.random.default_rng(seed)
    return Events(rng.integers(0, width, n, dtype=np.uint16), rng.integers(0, height, n, dtype=np.uint16),
                  np.sort(rng.integers(end_us - window_us, end_us + 1, n, dtype=np.int64)),
                  rng.integers(0, 2, n, dtype=np.uint8), width, height)


@contextlib.contextmanager
def _one_cpu() -> Iterator[int | None]:
    """Pin this process to the first CPU it may run on, and restore the affinity after; yields the CPU (None where
    the OS has no affinity call)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def _best_seconds(histogram: Callable[[tuple[int, Events]], np.ndarray], windows: list[tuple[int, Events]],
                  repeats: int) -> float:
    """Shortest of ``repeats`` rounds of ``histogram`` over all ``windows`` (s); each output is dropped at once, so
    no round pays for memory held by the previous outputs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for window in windows:
            histogram(window)
        best = min(best, time.perf_counter() - start)
    return best


def benchmark_representation(recording: str | Path, *, windows: int = 200, window_us: int = 50_000,
                             dense_events: int = 2_000_000, repeats: int = 3) -> dict[str, Any]:
    """Measure evdet's stacked histogram and the yardstick on the same windows (module docstring for the method).

    Args:
        recording: an event recording readable by :func:`evdet.data.readers.open_recording`.
        windows: number of grid windows timed (fewer if the recording ends first), >= 1.
        window_us: window length (µs), > 0.
        dense_events: events of the synthetic dense window; 0 skips it.
        repeats: timed rounds, the best is reported, >= 1.

    Returns:
        The JSON dict of the module docstring.

    Raises:
        RecordingError, ValueError: see :func:`read_windows`; a sensor smaller than 2 x 2 px.
    """
    cfg = HistogramConfig(window_us=window_us)
    cut, width, height = read_windows(recording, windows, window_us)
    cfg.size(width, height)  # a sensor too small for the /2 downsampling fails here, before any timing

    def ours(window: tuple[int, Events]) -> np.ndarray:
        return stacked_histogram(window[1], window[0], cfg)

    def yardstick(window: tuple[int, Events]) -> np.ndarray:
        ev = window[1]
        return reference_style_histogram(ev.x, ev.y, ev.t, ev.p, width, height, cfg.bins, cfg.clip)

    dense = None
    if dense_events:
        end = cut[-1][0]
        dense = (end, dense_window(dense_events, width, height, end, window_us))
    with _one_cpu() as cpu:
        start = time.perf_counter()
        ours(cut[0])
        jit_warmup_s = time.perf_counter() - start
        yardstick(cut[0])
        identical = all(np.array_equal(ours(w), yardstick(w)) for w in cut)
        ours_s = _best_seconds(ours, cut, repeats)
        yardstick_s = _best_seconds(yardstick, cut, repeats)
        if dense is not None:
            identical = identical and np.array_equal(ours(dense), yardstick(dense))
            dense_s = _best_seconds(ours, [dense], repeats)
            dense_yardstick_s = _best_seconds(yardstick, [dense], repeats)
    events = sum(len(w[1]) for w in cut)
    result: dict[str, Any] = {
        "recording": str(recording),
        "sensor": [width, height],
        "config": cfg.as_attrs(),
        "windows": len(cut),
        "events": events,
        "events_per_window_mean": round(events / len(cut), 1),
        "events_per_s": round(events / ours_s),
        "bincount_events_per_s": round(events / yardstick_s),
        "speedup": round(yardstick_s / ours_s, 2),
        "ms_per_window": round(1e3 * ours_s / len(cut), 4),
        "bincount_ms_per_window": round(1e3 * yardstick_s / len(cut), 4),
        "identical": bool(identical),
        "dense_events": dense_events,
        "dense_events_per_s": None,
        "dense_bincount_events_per_s": None,
        "dense_speedup": None,
        "repeats": repeats,
        "cpu": cpu,
        "jit_warmup_s": round(jit_warmup_s, 3),
    }
    if dense is not None:
        result.update(dense_events_per_s=round(dense_events / dense_s),
                      dense_bincount_events_per_s=round(dense_events / dense_yardstick_s),
                      dense_speedup=round(dense_yardstick_s / dense_s, 2))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evdet-bench repr``."""
    parser.add_argument("recording", help="event recording (.dat, .h5/.hdf5, .aedat4)")
    parser.add_argument("--windows", type=int_at_least(1, "a number of windows"), default=200,
                        help="grid windows timed from the first event (default 200)")
    parser.add_argument("--window-us", type=int_at_least(1, "a window length in µs"), default=50_000,
                        help="window length in µs (default 50000)")
    parser.add_argument("--dense-events", type=int_at_least(0, "a number of events"), default=2_000_000,
                        help="events of the synthetic dense window (default 2000000; 0 skips it)")
    parser.add_argument("--repeats", type=int_at_least(1, "a number of timed rounds"), default=3,
                        help="timed rounds, the best is reported (default 3)")


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Run :func:`benchmark_representation` with the flags of ``args`` (``overrides`` is empty: none accepted).

    Raises:
        RecordingError (a ValueError): missing or unreadable recording, naming the file; ValueError: no events.
    """
    return benchmark_representation(args.recording, windows=args.windows, window_us=args.window_us,
                                    dense_events=args.dense_events, repeats=args.repeats)
