"""The compiled stacked-histogram kernel against a vectorised numpy rederivation, for every option and edge case.

``numpy_histogram`` below is the previous pure-numpy ``stacked_histogram`` (per-event bin formula, selection of the
kept pixels, ``np.bincount``, clip): the kernel must equal it bit for bit. The per-event loop oracle and the
reference fixtures are in test_representation.py and tests/reference/test_histograms.py.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evdet.data
from evdet.data.events import Events
from evdet.data.histogram_kernel import BLOCK
from evdet.data.representation import HistogramConfig, stacked_histogram


def numpy_histogram(events: Events, t_end: int, cfg: HistogramConfig) -> np.ndarray:
    """(2 * bins, H, W) uint8 by whole-array numpy: window by searchsorted, float32 (stretched) or integer (fixed)
    bins, nearest-exact selection of x % k == k // 2 or k x k block sums, bincount, clip."""
    width, height = cfg.size(events.width, events.height)
    begin = np.searchsorted(events.t, t_end - cfg.window_us, side="left")
    end = np.searchsorted(events.t, t_end, side="right")
    if end <= begin:
        return np.zeros((cfg.channels, height, width), np.uint8)
    x = events.x[begin:end].astype(np.int64)
    y = events.y[begin:end].astype(np.int64)
    p = events.p[begin:end].astype(np.int64)
    t = events.t[begin:end]
    if cfg.time_bins == "fixed":
        b = ((t - (t_end - cfg.window_us)) * cfg.bins) // cfg.window_us
    else:
        span = np.float32(max(int(t[-1]) - int(t[0]), 1))
        b = np.floor((t - t[0]).astype(np.float32) / span * np.float32(cfg.bins)).astype(np.int64)
    b = np.minimum(b, cfg.bins - 1)
    k = cfg.downsample_factor
    if k > 1 and cfg.downsample == "nearest_exact":
        keep = (x % k == k // 2) & (y % k == k // 2) & (x // k < width) & (y // k < height)
        x, y, p, b = x[keep], y[keep], p[keep], b[keep]
    index = ((p * cfg.bins + b) * height + y // k) * width + x // k
    counts = np.minimum(np.bincount(index, minlength=cfg.channels * height * width), cfg.clip)
    return counts.astype(np.uint8).reshape(cfg.channels, height, width)


def make_events(x, y, t, p, width, height) -> Events:
    order = np.argsort(np.asarray(t), kind="stable")
    return Events(np.asarray(x, np.uint16)[order], np.asarray(y, np.uint16)[order], np.asarray(t, np.int64)[order],
                  np.asarray(p, np.uint8)[order], width, height)


def random_events(rng, n, width, height, t_lo, t_hi) -> Events:
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(t_lo, t_hi + 1, n),
                       rng.integers(0, 2, n), width, height)


OPTIONS = [dict(downsample_factor=k, downsample=mode, time_bins=bins_mode, bins=bins, clip=clip)
           for k, mode, bins_mode, (bins, clip) in itertools.product(
               (1, 2, 3, 4), ("nearest_exact", "sum"), ("stretched", "fixed"), ((10, 10), (3, 255), (1, 2), (7, 0)))]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_every_option_equals_numpy(options):
    rng = np.random.default_rng(abs(hash(tuple(options.values()))) % 2**32)
    cfg = HistogramConfig(window_us=41_003, **options)
    width, height = 19, 13  # odd, not multiples of 2, 3 or 4: partial blocks and dropped last rows/columns
    spread = random_events(rng, 3 * BLOCK + 17, width, height, 0, 120_000)  # several kernel blocks per bin
    corner = random_events(rng, 1500, 3, 2, 30_000, 60_000)  # dense: reaches every clip
    borders = make_events([0, width - 1, 0, width - 1], [0, 0, height - 1, height - 1], [50_000] * 4, [0, 1, 1, 0],
                          width, height)
    events = make_events(*(np.concatenate([getattr(e, f) for e in (spread, corner, borders)]) for f in "xytp"),
                         width, height)
    for t_end in (61_234, 91_003, int(events.t[700]), int(events.t[0]) + cfg.window_us, int(events.t[-1]) + 5):
        np.testing.assert_array_equal(stacked_histogram(events, t_end, cfg), numpy_histogram(events, t_end, cfg),
                                      err_msg=f"{cfg} t_end={t_end}")


def test_default_config_on_the_full_sensor():
    rng = np.random.default_rng(3)
    events = random_events(rng, 20_000, 1280, 720, 1_000, 60_000)
    cfg = HistogramConfig()
    for t_end in (50_000, 51_000, 60_000):
        ours = stacked_histogram(events, t_end, cfg)
        assert ours.shape == (20, 360, 640) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, numpy_histogram(events, t_end, cfg))


@pytest.mark.parametrize("time_bins", ["stretched", "fixed"])
def test_events_exactly_at_both_window_ends(time_bins):
    cfg = HistogramConfig(downsample_factor=1, time_bins=time_bins)
    events = make_events([0, 1, 2, 3, 4], [0] * 5, [9_999, 10_000, 35_000, 60_000, 60_001], [1] * 5, 5, 1)
    ours = stacked_histogram(events, 60_000, cfg)
    np.testing.assert_array_equal(ours, numpy_histogram(events, 60_000, cfg))
    assert int(ours.sum()) == 3 and ours[10, 0, 1] == 1 and ours[19, 0, 3] == 1  # start: bin 0; end: last bin


def test_one_timestamp_and_empty_window():
    cfg = HistogramConfig(downsample_factor=1)
    events = make_events([0, 1, 1, 2], [0, 0, 0, 1], [7_000] * 4, [0, 1, 1, 0], 3, 2)
    ours = stacked_histogram(events, 8_000, cfg)
    np.testing.assert_array_equal(ours, numpy_histogram(events, 8_000, cfg))
    assert ours[0, 0, 0] == 1 and ours[10, 0, 1] == 2 and ours[0, 1, 2] == 1 and int(ours.sum()) == 4
    for t_end in (6_999, 57_001):  # before the events, and a window that starts just after them
        empty = stacked_histogram(events, t_end, cfg)
        assert empty.shape == (20, 2, 3) and not empty.any()
    assert not stacked_histogram(Events.empty(4, 4), 0).any()


@pytest.mark.parametrize("bins, span", [(10, 1), (10, 9), (10, 10), (10, 11), (10, 49_999), (10, 50_000),
                                        (7, 63_999), (3, 12_345)])
def test_every_event_time_gets_the_float32_bin(bins, span):
    """One event per µs of the span, each on its own pixel: the channel it lands in is its time bin."""
    width, height = 1000, 64
    d = np.arange(span + 1)
    t0 = 1_234_567
    events = make_events(d % width, d // width, t0 + d, np.zeros_like(d), width, height)
    for cfg in (HistogramConfig(window_us=span, bins=bins, downsample_factor=1, clip=255),
                HistogramConfig(window_us=span, bins=bins, downsample_factor=1, clip=255, time_bins="fixed")):
        ours = stacked_histogram(events, t0 + span, cfg)
        np.testing.assert_array_equal(ours, numpy_histogram(events, t0 + span, cfg), err_msg=str(cfg))
        assert int(ours.sum()) == span + 1


def test_long_windows_where_float32_rounds():
    """Spans above 2^24 µs, where float32(t - t0) is rounded: the bins still match the numpy formula."""
    rng = np.random.default_rng(11)
    width, height = 200, 100
    for span in (2**24 + 1, 987_654_321, 3_000_000_007):
        bins = 10
        near = (np.arange(1, bins)[:, None] * span // bins + np.arange(-40, 41)[None, :]).ravel()  # around edges
        d = np.unique(np.concatenate([[0, span], near, rng.integers(0, span, width * height - len(near) - 2)]))
        events = make_events(np.arange(len(d)) % width, np.arange(len(d)) // width, 10**10 + d, np.zeros(len(d)),
                             width, height)
        cfg = HistogramConfig(window_us=span, bins=bins, downsample_factor=1, clip=255)
        np.testing.assert_array_equal(stacked_histogram(events, 10**10 + span, cfg),
                                      numpy_histogram(events, 10**10 + span, cfg))


def test_strided_and_read_only_arrays():
    rng = np.random.default_rng(5)
    base = random_events(rng, 6_000, 31, 17, 0, 50_000)
    strided = Events(base.x[::2], base.y[::2], base.t[::2], base.p[::2], 31, 17)
    assert not strided.x.flags.c_contiguous
    for arr in (base.x, base.y, base.t, base.p):
        arr.setflags(write=False)
    for events in (strided, base):
        cfg = HistogramConfig(downsample_factor=3)
        np.testing.assert_array_equal(stacked_histogram(events, 50_000, cfg), numpy_histogram(events, 50_000, cfg))


@pytest.mark.parametrize("field, value, message", [("x", 20, "'x' has 20, expected < 19"),
                                                   ("y", 13, "'y' has 13, expected < 13"),
                                                   ("p", 3, "'p' has 3, expected < 2")])
def test_a_bad_event_late_in_the_window_on_a_discarded_pixel_is_reported(field, value, message):
    """The kernel checks every event of the window, not only the kept ones, in every block."""
    rng = np.random.default_rng(2)
    events = random_events(rng, 3 * BLOCK, 19, 13, 0, 50_000)
    columns = {f: getattr(events, f).copy() for f in "xytp"}
    columns["x"][-3], columns["y"][-3] = 0, 0  # an even column/row: nearest-exact /2 discards the pixel
    columns[field][-3] = value
    bad = Events(columns["x"], columns["y"], columns["t"], columns["p"], 19, 13)
    with pytest.raises(ValueError, match=message):
        stacked_histogram(bad, 50_000, HistogramConfig())
    stacked_histogram(bad, int(bad.t[-3]) - 1, HistogramConfig(window_us=1_000))  # outside the window: ignored


def test_works_where_numba_can_write_no_cache(tmp_path):
    """A read-only install (e.g. a container with a read-only root file system and no writable home): numba finds no
    cache location, raises at decoration, and the kernel is compiled in memory instead."""
    package = tmp_path / "src" / "evdet" / "data"
    shutil.copytree(Path(evdet.data.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__pycache__").write_text("a file where numba wants its cache folder")
    script = (
        "import numpy as np, evdet.data.histogram_kernel as k\n"
        "from evdet.data.events import Events\n"
        "from evdet.data.representation import stacked_histogram\n"
        "ev = Events(np.array([1, 3], np.uint16), np.array([1, 1], np.uint16), np.array([0, 9], np.int64),\n"
        "            np.array([0, 1], np.uint8), 4, 4)\n"
        "h = stacked_histogram(ev, 9)\n"
        "print(k.__file__, type(k.accumulate_window._cache).__name__, h[0, 0, 0], h[19, 0, 1], int(h.sum()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "HOME": "/dev/null", "PYTHONDONTWRITEBYTECODE": "1",
           "NUMBA_CACHE_DIR": "/dev/null/numba"}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(package / "histogram_kernel.py"), "NullCache", "1", "1", "2"]
