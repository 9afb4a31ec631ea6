"""The stored stacked histogram equals the reference's bit for bit (histograms.npz).

Every window, its configuration and the expected arrays come from the fixture files; nothing is copied into this
file, so another fixture set of the same layout runs unchanged.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evdet.data.events import Events
from evdet.data.readers import open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram, window_event_range

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def hist(load_npz):
    return load_npz("histograms.npz")


@pytest.fixture(scope="module")
def config(manifest) -> dict:
    return manifest["files"]["histograms.npz"]["config"]


def _reference_config(config: dict, downsample_factor: int) -> HistogramConfig:
    rep = config["representation"]
    window_ms = rep["event_window_extraction"]["value"]
    full_h, full_w = config["height_width_full"]
    stored_h, stored_w = config["height_width_stored"]
    assert (full_h // stored_h, full_w // stored_w) == (2, 2), "fixture stores a factor-2 downsampled histogram"
    return HistogramConfig(window_us=1000 * window_ms, bins=rep["nbins"], clip=rep["count_cutoff"],
                           downsample_factor=downsample_factor)


def _window_events(hist: dict, i: int, sensor_hw: list[int]) -> Events:
    lo, hi = hist["events_offsets"][i], hist["events_offsets"][i + 1]
    return Events(hist["events_x"][lo:hi].astype(np.uint16), hist["events_y"][lo:hi].astype(np.uint16),
                  hist["events_t"][lo:hi].astype(np.int64), hist["events_p"][lo:hi].astype(np.uint8),
                  sensor_hw[1], sensor_hw[0])


def test_every_window_downsampled_bit_exact(hist, config, measured) -> None:
    cfg = _reference_config(config, 2)
    mismatches = 0
    for i, t_end in enumerate(hist["t_end_us"]):
        events = _window_events(hist, i, config["height_width_full"])
        ours = stacked_histogram(events, int(t_end), cfg)
        expected = hist["hist_ds2"][i]
        assert ours.shape == expected.shape and ours.dtype == expected.dtype
        mismatches += int((ours != expected).sum())
        np.testing.assert_array_equal(ours, expected, err_msg=f"window {i} ({hist['window_kind'][i]}, end {t_end})")
    measured("histograms_ds2_cells_differing", mismatches)
    measured("histograms_windows_compared", len(hist["t_end_us"]))


def test_full_resolution_histograms_bit_exact(hist, config, measured) -> None:
    cfg = _reference_config(config, 1)
    for j, i in enumerate(hist["fullres_window_index"]):
        events = _window_events(hist, int(i), config["height_width_full"])
        ours = stacked_histogram(events, int(hist["t_end_us"][i]), cfg)
        np.testing.assert_array_equal(ours, hist["hist_full"][j], err_msg=f"full-resolution window {i}")
    measured("histograms_fullres_windows_compared", len(hist["fullres_window_index"]))


def test_window_bounds_both_inclusive(hist) -> None:
    """The events the fixture lists per window are exactly those with t_end - window <= t <= t_end."""
    for i, t_end in enumerate(hist["t_end_us"]):
        t = hist["events_t"][hist["events_offsets"][i]:hist["events_offsets"][i + 1]]
        assert len(t) == hist["n_events"][i]
        if len(t):
            assert t.min() >= hist["t_start_us"][i] and t.max() <= t_end
            assert (t.min(), t.max()) == (hist["t_first_event_us"][i], hist["t_last_event_us"][i])


def _recording_path(manifest: dict) -> Path:
    """data/real/<name of the fixture's input>, checked against the manifest's sha256."""
    name, spec = next(iter(manifest["inputs"].items()))
    path = ROOT / "data" / "real" / name
    assert path.is_file(), f"{path}: the fixture's input recording is not in data/real"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == spec["sha256"], f"{path}: sha256 {digest}, the fixtures were made from {spec['sha256']}"
    return path


def test_window_event_ranges_on_the_recording(hist, manifest, config) -> None:
    """evdet's window slicing of the real recording finds the fixture's [begin, end) event indices."""
    window_us = _reference_config(config, 2).window_us
    with open_recording(_recording_path(manifest)) as reader:
        t = reader.read().t
    assert len(t) == next(iter(manifest["inputs"].values()))["events"]
    for i, t_end in enumerate(hist["t_end_us"]):
        assert window_event_range(t, int(t_end), window_us) == (hist["event_index_begin"][i],
                                                                 hist["event_index_end"][i])


def test_histogram_cli_on_the_recording(hist, manifest, config, tmp_path) -> None:
    """``evdet-data histogram`` reads the recording itself and stores exactly the reference's tensor."""
    out = tmp_path / "hist.npy"
    ends = ",".join(str(int(t)) for t in hist["t_end_us"])
    proc = subprocess.run([str(BIN / "evdet-data"), "histogram", str(_recording_path(manifest)), "--end-us", ends,
                           "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out), hist["hist_ds2"])


def test_nearest_exact_probe(config) -> None:
    """The manifest's 4x4 ramp: output (i, j) = full-resolution pixel (2i+1, 2j+1)."""
    probe = np.asarray(config["downsample_probe_4x4_arange"])
    counts = np.arange(16).reshape(4, 4)
    ys, xs = np.nonzero(counts)
    reps = counts[ys, xs]
    x = np.repeat(xs, reps).astype(np.uint16)
    y = np.repeat(ys, reps).astype(np.uint16)
    events = Events(x, y, np.zeros(len(x), np.int64), np.zeros(len(x), np.uint8), 4, 4)
    ours = stacked_histogram(events, 0, HistogramConfig(bins=1, clip=255, downsample_factor=2))
    np.testing.assert_array_equal(ours[0], probe)


def test_float32_bins_equal_the_integer_formula_for_every_span() -> None:
    """The fixture notes that the reference's float32 bin formula equals floor(10 (t - t0) / span) for windows of at
    most 50 ms; the only candidates for a difference are exact multiples (10 (t - t0) = k span). Check them all."""
    cfg = HistogramConfig()
    spans = np.arange(1, cfg.window_us + 1, dtype=np.int64)
    for k in range(1, cfg.bins):
        span = spans[(k * spans) % cfg.bins == 0]
        d = k * span // cfg.bins
        f32 = np.floor(d.astype(np.float32) / span.astype(np.float32) * np.float32(cfg.bins)).astype(np.int64)
        assert np.array_equal(f32, np.full_like(f32, k)), f"bin {k}: float32 formula differs"
