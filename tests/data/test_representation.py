"""Stacked histogram against a plain per-event reference, on random and on real (gen4.dat) events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evdet.data.events import Events
from evdet.data.labels import BBOX_DTYPE, LabelError
from evdet.data.readers import open_recording
from evdet.data.representation import downsample_boxes, representation_size, stacked_histogram

GEN4 = Path(__file__).resolve().parents[2] / "data" / "real" / "gen4.dat"


def reference_histogram(events: Events, t_start: int, window: int, bins: int, clip: int, downsample: bool):
    """Triple loop (polarity, bin, event): event is in bin b iff b*window <= (t - t_start)*bins < (b+1)*window."""
    factor = 2 if downsample else 1
    width = -(-events.width // factor)
    height = -(-events.height // factor)
    hist = np.zeros((2 * bins, height, width), dtype=np.int64)
    for polarity in (0, 1):
        for b in range(bins):
            for x, y, t, p in zip(events.x.tolist(), events.y.tolist(), events.t.tolist(), events.p.tolist()):
                scaled = (t - t_start) * bins
                if p == polarity and t_start <= t < t_start + window and b * window <= scaled < (b + 1) * window:
                    hist[polarity * bins + b, y // factor, x // factor] += 1
    return np.minimum(hist, clip).astype(np.uint8)


def random_events(rng, n, width, height, t_lo, t_hi):
    t = np.sort(rng.integers(t_lo, t_hi, n)).astype(np.int64)
    return Events(
        x=rng.integers(0, width, n).astype(np.uint16),
        y=rng.integers(0, height, n).astype(np.uint16),
        t=t,
        p=rng.integers(0, 2, n).astype(np.uint8),
        width=width,
        height=height,
    )


@pytest.mark.parametrize("downsample", [False, True])
def test_random_events_match_reference(downsample):
    rng = np.random.default_rng(0)
    # odd sensor size (tests the half-covered last column/row), events also before and after the window,
    # a dense 6x5 corner so that the clip is reached
    ev = random_events(rng, 3000, 17, 11, 9_000, 71_000)
    dense = random_events(rng, 1500, 6, 5, 10_000, 60_000)
    merged = Events.concatenate([ev, dense], 17, 11)
    order = np.argsort(merged.t, kind="stable")
    ev = Events(merged.x[order], merged.y[order], merged.t[order], merged.p[order], 17, 11)
    for window, bins, clip in ((50_000, 10, 10), (40_000, 3, 4), (1_003, 7, 255)):
        hist = stacked_histogram(ev, 10_000, window, bins, clip, downsample)
        ref = reference_histogram(ev, 10_000, window, bins, clip, downsample)
        assert hist.dtype == np.uint8
        assert ref.sum() > 50
        assert hist.shape == ((2 * bins, 6, 9) if downsample else (2 * bins, 11, 17))
        np.testing.assert_array_equal(hist, ref)
    assert stacked_histogram(ev, 10_000, 50_000, 10, 4, downsample).max() == 4  # clipped


def test_real_gen4_slice_matches_reference():
    with open_recording(GEN4) as reader:
        assert (reader.width, reader.height) == (1280, 720)
        t0 = 2_000_000
        events = reader.read_window(t0 - 3_000, t0 + 12_000)  # a little outside the window on both sides
    assert len(events) > 500
    for downsample in (False, True):
        hist = stacked_histogram(events, t0, window_us=10_000, bins=10, clip=10, downsample=downsample)
        ref = reference_histogram(events, t0, 10_000, 10, 10, downsample)
        assert hist.shape == ((20, 360, 640) if downsample else (20, 720, 1280))
        np.testing.assert_array_equal(hist, ref)
        assert hist.sum() > 0


def test_channel_order_is_polarity_major():
    one = Events(np.array([3], np.uint16), np.array([2], np.uint16), np.array([1_000 + 3 * 5_000 + 10]),
                 np.array([1], np.uint8), 8, 4)
    hist = stacked_histogram(one, 1_000)  # 50 ms, 10 bins of 5 ms: the event is in bin 3
    assert hist.shape == (20, 4, 8)
    assert np.argwhere(hist).tolist() == [[13, 2, 3]]
    assert stacked_histogram(one, 1_000, downsample=True)[13, 1, 1] == 1


def test_empty_window_and_sizes():
    ev = Events.empty(1280, 720)
    assert stacked_histogram(ev, 0, downsample=True).shape == (20, 360, 640)
    assert representation_size(1280, 720, True) == (640, 360)
    assert representation_size(346, 260, True) == (173, 130)
    assert representation_size(345, 259, False) == (345, 259)


def test_bad_arguments_and_events():
    ev = Events(np.array([9], np.uint16), np.array([0], np.uint16), np.array([5], np.int64),
                np.array([0], np.uint8), 8, 4)
    with pytest.raises(ValueError, match="'x'.*sensor width 8"):
        stacked_histogram(ev, 0)
    with pytest.raises(ValueError, match="bins"):
        stacked_histogram(ev, 0, bins=0)
    with pytest.raises(ValueError, match="clip"):
        stacked_histogram(ev, 0, clip=256)
    with pytest.raises(ValueError, match="window_us"):
        stacked_histogram(ev, 0, window_us=0)


def test_downsample_boxes():
    boxes = np.array([(7, 10.0, 20.0, 30.0, 41.0, 2, 5, 1.0)], dtype=BBOX_DTYPE)
    out = downsample_boxes(boxes, 2)
    assert out[["x", "y", "w", "h"]].tolist() == [(5.0, 10.0, 15.0, 20.5)]
    assert out["t"][0] == 7 and out["class_id"][0] == 2 and out.dtype == BBOX_DTYPE
    assert boxes["x"][0] == 10.0  # input untouched
    with pytest.raises(ValueError, match="factor"):
        downsample_boxes(boxes, 0)
    with pytest.raises(LabelError, match="BBOX_DTYPE"):
        downsample_boxes(np.zeros(2), 2)
