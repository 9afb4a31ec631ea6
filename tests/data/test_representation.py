"""Stacked histogram against a plain per-event rederivation of the reference rules, options, sizes and errors.

The bit-exact comparison with the reference's own output is in tests/reference/test_histograms.py; here random
windows that do not sit on any grid check every option against a straightforward loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from evdet.data.events import Events
from evdet.data.representation import HistogramConfig, representation_size, stacked_histogram, window_event_range


def loop_histogram(events: Events, t_end: int, cfg: HistogramConfig) -> np.ndarray:
    """Per event: window [t_end - window, t_end]; bin from the window's first/last event (stretched) or the window
    start (fixed); full-resolution counts, clip, then keep pixel (k*i + k//2) or sum k x k blocks."""
    in_window = [(int(x), int(y), int(t), int(p)) for x, y, t, p in zip(events.x, events.y, events.t, events.p)
                 if t_end - cfg.window_us <= t <= t_end]
    full = np.zeros((cfg.channels, events.height, events.width), dtype=np.int64)
    if in_window:
        t0, t1 = in_window[0][2], in_window[-1][2]
        for x, y, t, p in in_window:
            if cfg.time_bins == "stretched":
                b = min(int(np.floor(np.float32(t - t0) / np.float32(max(t1 - t0, 1)) * np.float32(cfg.bins))),
                        cfg.bins - 1)
            else:
                b = min((t - (t_end - cfg.window_us)) * cfg.bins // cfg.window_us, cfg.bins - 1)
            full[p * cfg.bins + b, y, x] += 1
    k = cfg.downsample_factor
    width, height = cfg.size(events.width, events.height)
    if cfg.downsample == "sum":
        out = np.zeros((cfg.channels, height, width), dtype=np.int64)
        for y in range(events.height):
            for x in range(events.width):
                out[:, y // k, x // k] += full[:, y, x]
        return np.minimum(out, cfg.clip).astype(np.uint8)
    clipped = np.minimum(full, cfg.clip)
    rows = [k * i + k // 2 for i in range(height)]
    cols = [k * j + k // 2 for j in range(width)]
    return clipped[:, rows][:, :, cols].astype(np.uint8)


def random_events(rng, n, width, height, t_lo, t_hi):
    t = np.sort(rng.integers(t_lo, t_hi, n)).astype(np.int64)
    return Events(rng.integers(0, width, n).astype(np.uint16), rng.integers(0, height, n).astype(np.uint16), t,
                  rng.integers(0, 2, n).astype(np.uint8), width, height)


@pytest.mark.parametrize("options", [
    dict(),                                                   # the reference
    dict(downsample_factor=1),
    dict(downsample_factor=3),
    dict(time_bins="fixed"),
    dict(downsample="sum"),
    dict(window_us=41_003, bins=3, clip=4),
])
def test_random_windows_match_the_rules(options):
    rng = np.random.default_rng(7)
    width, height = 17, 11  # odd sizes: the last row/column of a block is partial
    events = random_events(rng, 2500, width, height, 3_000, 120_000)
    dense = random_events(rng, 2000, 5, 4, 20_000, 70_000)  # a dense corner reaches the clip
    merged = Events.concatenate([events, dense], width, height)
    order = np.argsort(merged.t, kind="stable")
    events = Events(merged.x[order], merged.y[order], merged.t[order], merged.p[order], width, height)
    cfg = HistogramConfig(**options)
    for t_end in (61_234, 99_999, int(events.t[500])):  # off any grid; one ends exactly at an event
        ours = stacked_histogram(events, t_end, cfg)
        expected = loop_histogram(events, t_end, cfg)
        assert ours.dtype == np.uint8 and ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected)
        assert expected.sum() > 0


def test_both_window_ends_inclusive():
    ev = Events(np.array([1, 2, 3], np.uint16), np.zeros(3, np.uint16), np.array([10_000, 30_000, 60_000], np.int64),
                np.ones(3, np.uint8), 4, 2)
    cfg = HistogramConfig(downsample_factor=1)
    hist = stacked_histogram(ev, 60_000, cfg)  # window [10 000, 60 000]: all three events
    assert int(hist.sum()) == 3
    assert hist[10 + 0, 0, 1] == 1 and hist[10 + 9, 0, 3] == 1  # first event bin 0, last event bin 9 (stretched)
    assert window_event_range(ev.t, 60_000, 50_000) == (0, 3)
    assert window_event_range(ev.t, 59_999, 50_000) == (0, 2)
    assert window_event_range(ev.t, 60_001, 50_000) == (1, 3)


def test_single_timestamp_goes_to_bin_zero_and_empty_window_is_zero():
    ev = Events(np.array([0, 1], np.uint16), np.array([0, 1], np.uint16), np.array([5_000, 5_000], np.int64),
                np.array([0, 1], np.uint8), 2, 2)
    hist = stacked_histogram(ev, 20_000, HistogramConfig(downsample_factor=1))
    assert hist[0, 0, 0] == 1 and hist[10, 1, 1] == 1 and int(hist.sum()) == 2
    empty = stacked_histogram(ev, 200_000, HistogramConfig())
    assert empty.shape == (20, 1, 1) and not empty.any()


def test_sizes():
    assert representation_size(1280, 720) == (640, 360)
    assert representation_size(1281, 721) == (640, 360)  # nearest-exact: floor
    assert representation_size(1281, 721, 2, "sum") == (641, 361)  # sum: the partial block is kept
    assert representation_size(346, 260, 1) == (346, 260)
    with pytest.raises(ValueError, match="smaller than the factor"):
        representation_size(1, 10, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(window_us=0), "window_us"),
    (dict(bins=0), "bins"),
    (dict(clip=256), "clip"),
    (dict(downsample_factor=0), "downsample_factor"),
    (dict(downsample="mean"), "downsample"),
    (dict(time_bins="equal"), "time_bins"),
])
def test_bad_parameters_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HistogramConfig(**kwargs)


@pytest.mark.parametrize("field, value", [("x", 9), ("y", 5), ("p", 2)])
def test_out_of_range_events_name_the_field(field, value):
    columns = {"x": np.array([1], np.uint16), "y": np.array([1], np.uint16), "p": np.array([1], np.uint8)}
    columns[field] = np.array([value], columns[field].dtype)
    ev = Events(columns["x"], columns["y"], np.array([10], np.int64), columns["p"], 8, 4)
    with pytest.raises(ValueError, match=f"field '{field}'"):
        stacked_histogram(ev, 10, HistogramConfig(downsample_factor=1))
