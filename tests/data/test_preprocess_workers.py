"""``evdet-data preprocess --workers N``: the same shards and report as one process, reuse on a rerun, the first
error stops the others, a stop (``should_stop``, a real Ctrl-C) leaves no ``.tmp``, and the flag is checked."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from evdet.data.cli import main
from evdet.data.labels import BBOX_DTYPE, save_boxes
from evdet.data.preprocess import PreprocessOptions, preprocess_dataset
from evdet.data.readers import RecordingError
from evdet.data.synthetic import write_td_h5

W, H = 64, 48
CLASSES = "a,b,c"


def labels_30hz(offset_us: int, seconds: float, side: float = 12.0) -> np.ndarray:
    """Two boxes per label at 30 Hz from ``offset_us``; ``side`` < 5 px makes every box fail the size filter."""
    rows = []
    for k in range(int(seconds * 30)):
        t = offset_us + round(k * 1e6 / 30)
        rows += [(t, 5.0 + 3 * (k % 4), 6.0, side, side, 0, 1, 1.0), (t, 30.0, 20.0, side, side, 2, 2, 1.0)]
    return np.array(rows, dtype=BBOX_DTYPE)


def write_sequence(split_dir: Path, name: str, n_events: int, seconds: float, seed: int, *, width: int = W,
                   height: int = H, bad_x: int = 0, side: float = 12.0) -> None:
    """A recording of ``n_events`` uniform events over ``seconds`` (the first ``bad_x`` of them at x = width, out of
    the sensor) with 30 Hz labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, width, n_events)
    x[rng.choice(n_events, bad_x, replace=False)] = width
    events = {"x": x, "y": rng.integers(0, height, n_events), "p": rng.integers(0, 2, n_events),
              "t": np.sort(rng.integers(0, int(seconds * 1e6), n_events))}
    split_dir.mkdir(parents=True, exist_ok=True)
    write_td_h5(split_dir / f"{name}_td.h5", events, width, height)
    save_boxes(split_dir / f"{name}_bbox.npy", labels_30hz(21_111 + 1_000 * seed, seconds - 0.1, side))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for i, name in enumerate(("a", "b", "c", "d")):
        write_sequence(src / "train", name, 30_000, 1.0 + 0.2 * i, seed=i, bad_x=5 * (name == "c"))
    write_sequence(src / "train", "e_tiny_boxes", 5_000, 1.0, seed=7, side=2.0)  # no usable labels: skipped
    write_sequence(src / "val", "f", 20_000, 1.1, seed=8)
    return src


def shard_content(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        content = {f"attr:{k}": str(v) for k, v in f.attrs.items()}
        f.visititems(lambda name, obj: content.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return content


def run(src: Path, out: Path, workers: int, caplog, **kwargs) -> tuple[dict, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evdet.data"):
        report = preprocess_dataset(src, out, splits=("train", "val"), progress=False, workers=workers,
                                    options=PreprocessOptions(class_names=CLASSES, on_bad_events="drop"), **kwargs)
    return report, sorted(r.getMessage() for r in caplog.records if r.name.startswith("evdet.data"))


def test_same_shards_report_and_warnings_as_one_process(dataset, tmp_path, caplog):
    serial, serial_log = run(dataset, tmp_path / "one", 1, caplog)
    parallel, parallel_log = run(dataset, tmp_path / "three", 3, caplog)
    assert serial["totals"]["sequences_done"] == 5 and serial["totals"]["sequences_without_labels"] == 1
    assert serial["totals"]["bad_events_dropped"] == 5
    assert {k: v for k, v in parallel.items() if k != "out_dir"} == {k: v for k, v in serial.items() if k != "out_dir"}
    assert parallel_log == serial_log and any("dropped" in m for m in serial_log) and \
        any(m.startswith("skipping") for m in serial_log)
    for split, names in (("train", "abcd"), ("val", "f")):
        assert sorted(p.name for p in (tmp_path / "three" / split).iterdir()) == [f"{n}.h5" for n in names]
        for name in names:
            ours, expected = shard_content(tmp_path / "three" / split / f"{name}.h5"), \
                shard_content(tmp_path / "one" / split / f"{name}.h5")
            assert ours.keys() == expected.keys()
            for key in expected:
                np.testing.assert_array_equal(ours[key], expected[key], err_msg=f"{split}/{name}: {key}")
    # a rerun reuses every shard; a changed label file is redone
    again, _ = run(dataset, tmp_path / "three", 2, caplog)
    assert again["totals"]["sequences_skipped"] == 5 and again["totals"]["sequences_done"] == 0
    labels = dataset / "train" / "b_bbox.npy"
    original = labels.read_bytes()
    try:
        boxes = np.load(labels)
        boxes["w"] += 1
        save_boxes(labels, boxes)
        redone, messages = run(dataset, tmp_path / "three", 2, caplog)
    finally:
        labels.write_bytes(original)
    assert redone["totals"]["sequences_redone"] == 1 and redone["totals"]["sequences_skipped"] == 4
    assert any(m.startswith("redoing") and "b.h5" in m for m in messages)


def test_the_first_error_stops_the_run_and_leaves_no_tmp(dataset, tmp_path, caplog):
    src = tmp_path / "src"
    for split in ("train", "val"):
        (src / split).mkdir(parents=True)
        for f in (dataset / split).iterdir():
            (src / split / f.name).symlink_to(f)
    broken = src / "train" / "b_td.h5"
    broken.unlink()
    broken.write_bytes(b"not an hdf5 file")
    with pytest.raises(RecordingError, match="b_td.h5"):
        run(src, tmp_path / "out", 2, caplog)
    left = sorted(p.name for p in (tmp_path / "out" / "train").iterdir())
    assert not [n for n in left if n.endswith(".tmp")] and "b.h5" not in left


def test_should_stop_reaches_the_workers(dataset, tmp_path, caplog):
    out = tmp_path / "out"

    def should_stop() -> bool:  # polled by this process while the workers run: stop once one has begun writing
        return any(out.rglob("*.tmp")) or any(out.rglob("*.h5"))

    with pytest.raises(KeyboardInterrupt):
        run(dataset, tmp_path / "out", 2, caplog, should_stop=should_stop)
    assert not list((tmp_path / "out").rglob("*.tmp"))
    report, _ = run(dataset, tmp_path / "out", 2, caplog)  # the rerun finishes what is missing
    assert report["totals"]["sequences_done"] + report["totals"]["sequences_skipped"] == 5


def test_workers_flag_is_checked_before_anything_runs(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["preprocess", str(dataset), str(out), "--workers", "0", "--class-names", CLASSES]) == 2
    assert capsys.readouterr().err.strip() == \
        "evdet-data: error: --workers: expected a positive number of worker processes, got 0"
    assert not out.exists()
    with pytest.raises(ValueError, match="--workers"):
        preprocess_dataset(dataset, out, workers=True)


def test_ctrl_c_to_the_process_group_exits_130_without_tmp(tmp_path):
    """A real Ctrl-C (SIGINT to the whole process group, workers included) once both long shards are being
    written: exit 130, one line on stderr, no .tmp left."""
    src = tmp_path / "src"
    for name in ("long_a", "long_b"):  # thousands of windows at 1280x720: the signal lands inside them
        write_sequence(src / "train", name, 300_000, 100.0, seed=len(name) + ord(name[-1]), width=1280, height=720)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "evdet.data.cli", "preprocess", str(src), str(out), "--splits", "train",
           "--class-names", CLASSES, "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    tmp_files = [out / "train" / "long_a.h5.tmp", out / "train" / "long_b.h5.tmp"]
    deadline = time.monotonic() + 120
    while not all(f.exists() for f in tmp_files) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(f.exists() for f in tmp_files), proc.poll()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted by SIGINT" in lines[0] and "preprocess stopped" in lines[0], stderr
    assert stdout == "" and not list(out.rglob("*.tmp"))


def test_cli_prints_the_report(dataset, tmp_path, capsys):
    assert main(["preprocess", str(dataset), str(tmp_path / "out"), "--splits", "val", "--class-names", CLASSES,
                 "--workers", "2", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["totals"]["sequences_done"] == 1
