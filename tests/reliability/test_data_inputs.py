"""The catalogue, data inputs: broken recordings and labels, unpaired files, label times in the wrong unit, numeric
flags out of range and Ctrl-C, each run as ``evdet-data`` the way a user runs it (``reliability.harness``).

Every case expects exit 2 (130 for Ctrl-C), one message line naming the file / flag and what was expected, no
traceback, and the protected inputs and earlier outputs unchanged.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE, save_boxes
from evdet.data.synthetic import write_td_h5
from reliability.harness import MODULES, OUTCOMES, Case, check, classify, Outcome, python_env, snapshot

ROOT = Path(__file__).resolve().parents[2]
GEN4 = ROOT / "data" / "real" / "gen4.dat"
W, H = 96, 64
CLASSES = "a,b,c"


def labels_30hz(offset_us: int, seconds: float, rng) -> np.ndarray:
    """Two boxes per label time at 30 Hz (+-700 µs) from ``offset_us``, classes 0 and 1, inside a W x H frame."""
    n = int(seconds * 30)
    t = offset_us + np.round(np.arange(n) * 1e6 / 30).astype(np.int64) + rng.integers(-700, 701, n)
    rows = [(int(tk), 10.0 + 20 * j, 8.0, 14.0, 12.0, j, j + 1, 1.0) for tk in t for j in range(2)]
    return np.array(rows, dtype=BBOX_DTYPE)


def write_sequence(split_dir: Path, name: str, t_us: np.ndarray, boxes: np.ndarray, width: int = W,
                   height: int = H) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(t_us))
    events = {"x": rng.integers(0, width, len(t_us)), "y": rng.integers(0, height, len(t_us)),
              "p": rng.integers(0, 2, len(t_us)), "t": np.asarray(t_us, np.int64)}
    write_td_h5(split_dir / f"{name}_td.h5", events, width, height)
    save_boxes(split_dir / f"{name}_bbox.npy", boxes)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A valid two-sequence train split (1.3 s recordings, 30 Hz labels)."""
    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(3)
    for i, name in enumerate(("s0", "s1")):
        t = np.sort(rng.integers(0, 1_300_000, 20_000))
        write_sequence(root / "train", name, t, labels_30hz(21_111 + 7_777 * i, 1.2, rng))
    return root


def copy_of(dataset: Path, tmp_path: Path) -> Path:
    shutil.copytree(dataset, tmp_path / "src")
    return tmp_path / "src"


def preprocess(src: Path, out: Path, *extra: str) -> list[str]:
    return ["evdet-data", "preprocess", str(src), str(out), "--splits", "train", "--class-names", CLASSES,
            "--no-progress", *extra]


def dat_bytes(t: np.ndarray, width: int = 8, height: int = 8) -> bytes:
    rec = np.zeros(len(t), dtype=[("t", "<u4"), ("word", "<u4")])
    rec["t"] = np.asarray(t).astype(np.uint32)
    rec["word"] = (np.arange(len(t)) % width) | ((np.arange(len(t)) % height) << 14) | (1 << 28)
    return f"% Version 2\n% Width {width}\n% Height {height}\n".encode() + b"\x0c\x08" + rec.tobytes()


# ---------------------------------------------------------------------------------------------------------------
# recordings (readers)


def test_truncated_dat(tmp_path):
    bad = tmp_path / "cut.dat"
    data = GEN4.read_bytes()
    bad.write_bytes(data[: len(data) // 2 + 3])
    check(Case("info-truncated-dat", ["evdet-data", "info", bad], names=["cut.dat", "multiple of 8"],
               protect=[bad]))


@pytest.mark.parametrize("tail", ["zeroed", "stepped-back"])
def test_dat_tail_below_the_first_timestamp(tmp_path, tail):
    t = np.arange(1_000_000, 3_000_000, 100)
    t[-400:] = 0 if tail == "zeroed" else t[-400:] // 4
    bad = tmp_path / f"{tail}.dat"
    bad.write_bytes(dat_bytes(t))
    check(Case(f"info-dat-{tail}-tail-is-no-wrap", ["evdet-data", "info", bad],
               names=[f"{tail}.dat", "event 19600", "400 of the 400 events", "no 2**32 µs wrap"], protect=[bad]))


def test_corrupt_hdf5(tmp_path):
    bad = tmp_path / "garbage_td.h5"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    check(Case("info-corrupt-hdf5", ["evdet-data", "info", bad], names=["garbage_td.h5", "cannot open as HDF5"],
               protect=[bad]))


def test_hdf5_missing_dataset(tmp_path):
    path = tmp_path / "no_t_td.h5"
    with h5py.File(path, "w") as f:
        for key in ("x", "y", "p"):
            f.create_dataset(f"events/{key}", data=np.zeros(4, np.uint16))
        f.create_dataset("events/width", data=8)
        f.create_dataset("events/height", data=8)
    check(Case("info-hdf5-missing-field", ["evdet-data", "info", path], names=["no_t_td.h5", "'events/t'"],
               protect=[path]))


def test_unknown_suffix(tmp_path):
    path = tmp_path / "events.bin"
    path.write_bytes(b"\x00" * 64)
    check(Case("info-unknown-suffix", ["evdet-data", "info", path], names=["events.bin", "'.bin'", ".dat"],
               protect=[path]))


def test_bad_events_are_one_error(dataset, tmp_path):
    rng = np.random.default_rng(2)
    t = np.sort(rng.integers(0, 1_100_000, 20_000))
    src = tmp_path / "src"
    write_sequence(src / "train", "seq", t, labels_30hz(33_333, 1.0, rng))
    with h5py.File(src / "train" / "seq_td.h5", "a") as f:
        y = f["events/y"][:]
        y[[100, 15_000]] = 33_014  # as in two eTraM training files
        f["events/y"][:] = y
    check(Case("preprocess-bad-events", preprocess(src, tmp_path / "out"),
               names=["seq_td.h5", "2 events with field 'y'", "index 100", "--on-bad-events drop"], protect=[src]))


# ---------------------------------------------------------------------------------------------------------------
# labels


def test_label_file_that_is_not_npy(dataset, tmp_path):
    src = copy_of(dataset, tmp_path)
    (src / "train" / "s1_bbox.npy").write_text("t,x,y,w,h\n0,1,2,3,4\n")
    check(Case("preprocess-label-not-npy", preprocess(src, tmp_path / "out"), names=["s1_bbox.npy", "not a readable"],
               protect=[src]))


def test_label_missing_field(dataset, tmp_path):
    src = copy_of(dataset, tmp_path)
    boxes = np.load(src / "train" / "s0_bbox.npy")
    np.save(src / "train" / "s0_bbox.npy", boxes[["t", "x", "y", "w", "h", "track_id"]].copy())
    check(Case("preprocess-label-missing-field", preprocess(src, tmp_path / "out"),
               names=["s0_bbox.npy", "missing field 'class_id'"], protect=[src]))


def test_negative_class_id(dataset, tmp_path):
    src = copy_of(dataset, tmp_path)
    dt = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<i4")])
    boxes = np.load(src / "train" / "s0_bbox.npy")
    signed = np.zeros(len(boxes), dt)
    for key in ("t", "x", "y", "w", "h", "class_id"):
        signed[key] = boxes[key]
    signed["class_id"][5] = -1
    np.save(src / "train" / "s0_bbox.npy", signed)
    check(Case("preprocess-negative-class-id", preprocess(src, tmp_path / "out"), names=["s0_bbox.npy", "'class_id'"],
               protect=[src]))


@pytest.mark.parametrize("kind,fragment", [("one-label-at-1h", "no unit mistake"),
                                           ("labels-in-ns", "look like nanoseconds"),
                                           ("labels-in-ms", "look like milliseconds")])
def test_label_times_that_do_not_fit_the_recording(tmp_path, kind, fragment):
    t = np.sort(np.random.default_rng(0).integers(0, 2_000_000, 20_000))
    base = 110_000 + np.round(np.arange(50) * 1e6 / 30).astype(np.int64)
    label_t = {"one-label-at-1h": np.append(base, 3_600_000_000), "labels-in-ns": base * 1000,
               "labels-in-ms": base // 1000 + 33}[kind]
    boxes = np.zeros(len(label_t), BBOX_DTYPE)
    boxes["t"], boxes["x"], boxes["y"], boxes["w"], boxes["h"] = label_t, 5, 5, 20, 20
    src = tmp_path / "src"
    write_sequence(src / "train", "seq", t, boxes)
    out = tmp_path / "out"
    for windows in ("label", "grid"):  # the grid option once made 35k-72k empty windows of such labels
        check(Case(f"preprocess-{kind}-{windows}", preprocess(src, out, "--windows", windows),
                   names=["seq_bbox.npy", f"label times {label_t.min()}..{label_t.max()} µs", "events of seq_td.h5 at",
                          fragment], protect=[src], timeout_s=120))
        assert not list(out.rglob("*.h5*"))


# ---------------------------------------------------------------------------------------------------------------
# the dataset folder


@pytest.mark.parametrize("kind", ["labels-without-recording", "recording-without-labels", "misnamed-recording"])
def test_unpaired_files_with_strict(dataset, tmp_path, kind):
    src = copy_of(dataset, tmp_path)
    split = src / "train"
    if kind == "labels-without-recording":
        shutil.copy(split / "s1_bbox.npy", split / "lonely_bbox.npy")
        name = "train/lonely_bbox.npy (labels without recording)"
    elif kind == "recording-without-labels":
        (split / "s1_bbox.npy").unlink()
        name = "train/s1_td.h5 (recording without labels)"
    else:
        (split / "s1_td.h5").rename(split / "s1.h5")
        name = "train/s1.h5 (misnamed recording"
    out = tmp_path / "out"
    check(Case(f"preprocess-{kind}-strict", preprocess(src, out, "--strict"), names=[name, "--strict"],
               protect=[src]))
    assert not out.exists()  # refused before anything is written


def test_rerun_with_other_options_is_refused(dataset, tmp_path):
    out = tmp_path / "out"
    from evdet.data.cli import main

    assert main(preprocess(dataset, out)[1:]) == 0
    check(Case("preprocess-rerun-other-options", preprocess(dataset, out, "--bins", "5"),
               names=["s0.h5", "finished shard has bins=10, this run wants 5"], protect=[out, dataset]))


def test_output_folder_is_the_dataset(dataset):
    check(Case("preprocess-src-is-out", preprocess(dataset, dataset), names=[str(dataset), "must not be the dataset"],
               protect=[dataset]))


# ---------------------------------------------------------------------------------------------------------------
# numeric flags: one line naming the flag, nothing written


@pytest.mark.parametrize("argv,flag", [
    (["synth", "{out}", "--train", "-1"], "--train: expected a non-negative number of sequences, got -1"),
    (["synth", "{out}", "--duration-s", "0"], "--duration-s: expected a positive duration in seconds, got 0.0"),
    (["synth", "{out}", "--width", "0"], "--width: expected a sensor width in px"),
    (["preprocess", "{src}", "{out}", "--bins", "0"], "--bins: expected a positive number of time bins, got 0"),
    (["preprocess", "{src}", "{out}", "--window-us", "-5"], "--window-us: expected a positive window length in µs"),
    (["preprocess", "{src}", "{out}", "--downsample-factor", "0"], "--downsample-factor: expected a positive integer"),
    (["histogram", str(GEN4), "--end-us", "100000", "--output", "{out}/h.npy", "--clip", "300"],
     "--clip: expected a count clip value 0..255, got 300"),
])
def test_numeric_flags(dataset, tmp_path, argv, flag):
    out = tmp_path / "out"
    argv = [a.format(out=out, src=dataset) for a in argv]
    check(Case(f"data-flag {flag.split(':')[0]}", ["evdet-data", *argv], names=[flag], protect=[dataset]))
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_during_preprocess_stops_with_130_and_leaves_no_half_shard(tmp_path):
    """A real SIGINT once the second shard's .tmp exists (a condition, polled): exit 130, one line, no traceback,
    no .tmp, the first shard intact; a rerun reuses it and finishes."""
    rng = np.random.default_rng(9)
    src = tmp_path / "src"
    write_sequence(src / "train", "a_short", np.sort(rng.integers(0, 1_200_000, 10_000)), labels_30hz(40_000, 1.1, rng))
    long_s = 120.0  # thousands of windows at 1280x720: minutes of work, so the signal always lands inside it
    write_sequence(src / "train", "b_long", np.sort(rng.integers(0, int(long_s * 1e6), 400_000)),
                   labels_30hz(40_000, long_s - 0.2, rng), width=1280, height=720)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", MODULES["evdet-data"], *preprocess(src, out)[1:]]
    before = snapshot([src])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
    tmp_file = out / "train" / "b_long.h5.tmp"
    deadline = time.monotonic() + 300
    while not tmp_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tmp_file.exists(), f"the second shard never started: {proc.poll()} {proc.stderr.read() if proc.poll() else ''}"
    first = out / "train" / "a_short.h5"
    first_bytes = first.read_bytes()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    outcome = Outcome(proc.returncode, stdout, stderr)
    case = Case("preprocess-ctrl-c", cmd, expect_rc=130, names=["interrupted by SIGINT", "preprocess stopped"])
    kind = classify(case, outcome, before, snapshot([src]))
    lines = [line for line in stderr.splitlines() if line.strip()]
    OUTCOMES.append({"case": case.name, "outcome": kind, "returncode": proc.returncode,
                     "message": lines[-1][:300] if lines else ""})
    assert kind == "clear_error" and len(lines) == 1, (proc.returncode, stderr)
    assert stdout == "" and sorted(p.name for p in (out / "train").iterdir()) == ["a_short.h5"]
    assert first.read_bytes() == first_bytes  # finished before the signal: intact
    from evdet.data.shards import Shard

    assert Shard(first).num_windows > 0
    # the rerun reuses the finished shard (shortened so it ends quickly)
    write_sequence(src / "train", "b_long", np.sort(rng.integers(0, 1_200_000, 10_000)), labels_30hz(40_000, 1.1, rng))
    from evdet.data.cli import main

    assert main(preprocess(src, out)[1:]) == 0
    assert first.read_bytes() == first_bytes and (out / "train" / "b_long.h5").is_file()
