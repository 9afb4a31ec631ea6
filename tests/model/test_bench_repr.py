"""``evdet-bench repr``: the JSON line, the yardstick equal to evdet's histogram, one-line errors (no timed asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evdet.data.events import Events
from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.model.bench.representation import benchmark_representation, dense_window, reference_style_histogram

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GEN4 = ROOT / "data" / "real" / "gen4.dat"

KEYS = ("recording", "windows", "events_per_window_mean", "events_per_s", "bincount_events_per_s", "speedup",
        "identical", "dense_events_per_s", "dense_bincount_events_per_s", "dense_speedup", "cpu", "jit_warmup_s")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "evdet-bench"), "repr", *args], capture_output=True, text=True, cwd=ROOT)


def test_prints_one_json_line_with_identical_outputs():
    proc = bench("data/real/gen4.dat", "--windows", "3", "--dense-events", "100000", "--repeats", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert all(key in result for key in KEYS), sorted(set(KEYS) - set(result))
    assert result["identical"] is True
    assert result["recording"] == "data/real/gen4.dat" and result["windows"] == 3
    assert result["sensor"] == [1280, 720] and result["dense_events"] == 100_000
    assert result["events_per_window_mean"] > 0 and result["events"] == round(3 * result["events_per_window_mean"])
    for key in ("events_per_s", "bincount_events_per_s", "dense_events_per_s", "dense_bincount_events_per_s"):
        assert result[key] > 0


@pytest.mark.parametrize("args, named", [
    (["data/real/missing.dat"], "data/real/missing.dat"),
    (["data/real/gen4.dat", "--windows", "0"], "--windows"),
    (["data/real/gen4.dat", "--dense-events", "-1"], "--dense-events"),
    (["data/real/gen4.dat", "key=value"], "key=value"),
])
def test_errors_are_one_line_with_exit_2(args, named):
    proc = bench(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evdet-bench: error:") and named in lines[0], proc.stderr


def test_in_process_skips_the_dense_window_and_restores_the_affinity():
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    result = benchmark_representation(GEN4, windows=2, window_us=20_000, dense_events=0, repeats=1)
    assert result["identical"] is True and result["windows"] == 2 and result["config"]["window_us"] == 20_000
    assert result["dense_events_per_s"] is None and result["dense_speedup"] is None
    if before is not None:
        assert os.sched_getaffinity(0) == before and result["cpu"] in before


@pytest.mark.parametrize("width, height", [(1280, 720), (37, 21)])
def test_yardstick_equals_stacked_histogram(width, height):
    for n in (0, 1, 7, 30_000):
        events = dense_window(n, width, height, 90_000, 50_000, seed=n)
        ours = stacked_histogram(events, 90_000, HistogramConfig())
        np.testing.assert_array_equal(reference_style_histogram(events.x, events.y, events.t, events.p, width,
                                                                height), ours)
    one_time = Events(np.array([1, 1, 3], np.uint16), np.array([1, 1, 1], np.uint16), np.full(3, 5, np.int64),
                      np.array([1, 1, 0], np.uint8), width, height)
    expected = np.zeros((20, height // 2, width // 2), np.uint8)
    expected[10, 0, 0], expected[0, 0, 1] = 2, 1
    np.testing.assert_array_equal(reference_style_histogram(one_time.x, one_time.y, one_time.t, one_time.p, width,
                                                            height), expected)
    np.testing.assert_array_equal(stacked_histogram(one_time, 5), expected)
