"""Preprocessing to shards (layout, label index, degenerate boxes, resumability, errors) and the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from evdet.data.cli import main
from evdet.data.labels import BBOX_DTYPE, LabelError, save_boxes
from evdet.data.preprocess import PreprocessError, preprocess_dataset
from evdet.data.readers import RecordingError, open_recording
from evdet.data.representation import stacked_histogram
from evdet.data.shards import REQUIRED_ATTRS, Shard
from evdet.data.synthetic import generate_dataset, write_td_h5

GEN4 = Path(__file__).resolve().parents[2] / "data" / "real" / "gen4.dat"
W, H = 320, 180


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    generate_dataset(out, seed=11, splits={"train": 2, "val": 1}, duration_s=0.6, width=W, height=H)
    return out


@pytest.fixture(scope="module")
def shards(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = preprocess_dataset(raw, out, splits=("train", "val"), progress=False)
    return out, report


def test_report(shards):
    _, report = shards
    assert set(report["splits"]) == {"train", "val"}
    train = report["splits"]["train"]
    assert train["sequences_done"] == 2 and train["sequences_skipped"] == 0
    assert train["windows"] == 2 * 12  # 0.6 s of 50 ms windows per sequence
    assert train["label_timestamps"] == 2 * 12 and train["boxes_kept"] > 0
    assert report["totals"]["sequences_done"] == 3


def test_shard_layout_and_content(raw, shards):
    out, _ = shards
    path = out / "train" / "synth_train_000.h5"
    with h5py.File(path, "r") as f:
        rep = f["representation"]
        assert rep.dtype == np.uint8 and rep.shape == (12, 20, H // 2, W // 2)
        assert rep.chunks == (1, 20, H // 2, W // 2)
        plist = rep.id.get_create_plist()
        assert hdf5plugin.BLOSC_ID in [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert f["window_end_us"].dtype == np.int64 and f["labels"].dtype == BBOX_DTYPE
        for key in ("label_t_us", "label_window_index", "label_slice"):
            assert f[key].dtype == np.int64
        assert f["label_slice"].shape == (len(f["label_t_us"]), 2)
        attrs = dict(f.attrs)
        assert set(REQUIRED_ATTRS) <= set(attrs)
        sizes = (attrs["width"], attrs["height"], attrs["sensor_width"], attrs["sensor_height"])
        assert sizes == (W // 2, H // 2, W, H)
        assert (attrs["downsample_factor"], attrs["window_us"], attrs["bins"], attrs["clip"]) == (2, 50_000, 10, 10)
        assert attrs["source"] == "synth_train_000_td.h5" and bool(attrs["complete"]) is True
        ends = f["window_end_us"][:]
        np.testing.assert_array_equal(ends, 50_000 * np.arange(1, 13))  # grid aligned to multiples of 50 ms
        window_5 = rep[5]
    # end to end: shard window == histogram of the recording's events in that window
    with open_recording(raw / "train" / "synth_train_000_td.h5") as reader:
        events = reader.read_window(ends[5] - 50_000, ends[5])
    np.testing.assert_array_equal(window_5, stacked_histogram(events, int(ends[5]) - 50_000, downsample=True))
    assert window_5.sum() > 0


def test_label_index_consistent_and_boxes_scaled(raw, shards):
    out, _ = shards
    for path in sorted((out / "train").glob("*.h5")) + sorted((out / "val").glob("*.h5")):
        shard = Shard(path)
        ends, labels = shard.window_end_us, shard.labels
        assert np.all(np.diff(shard.label_t_us) > 0)
        idx = shard.label_window_index
        assert np.all(ends[idx] >= shard.label_t_us)
        assert np.all((idx == 0) | (ends[np.maximum(idx - 1, 0)] < shard.label_t_us))
        assert shard.label_slice[0, 0] == 0 and shard.label_slice[-1, 1] == len(labels)
        np.testing.assert_array_equal(shard.label_slice[1:, 0], shard.label_slice[:-1, 1])
        for k, (a, b) in enumerate(shard.label_slice):
            assert b > a and np.all(labels["t"][a:b] == shard.label_t_us[k])
        assert np.all(labels["x"] >= 0) and np.all(labels["x"] + labels["w"] <= shard.width + 1e-4)
        assert np.all(labels["y"] >= 0) and np.all(labels["y"] + labels["h"] <= shard.height + 1e-4)
        assert np.all(labels["w"] >= 1) and np.all(labels["h"] >= 1)
    # labels are the source boxes halved (the synthetic boxes are inside the frame and large enough)
    src = np.load(raw / "train" / "synth_train_001_bbox.npy")
    shard = Shard(out / "train" / "synth_train_001.h5")
    np.testing.assert_allclose(shard.labels["x"], src["x"] / 2, rtol=1e-6)
    np.testing.assert_allclose(shard.labels["h"], src["h"] / 2, rtol=1e-6)
    np.testing.assert_array_equal(shard.labels["track_id"], src["track_id"])


def _write_sequence(split_dir: Path, name: str, t: np.ndarray, boxes: list[tuple], width=64, height=48):
    split_dir.mkdir(parents=True, exist_ok=True)
    n = len(t)
    rng = np.random.default_rng(0)
    events = {"x": rng.integers(0, width, n), "y": rng.integers(0, height, n), "p": rng.integers(0, 2, n),
              "t": np.asarray(t, np.int64)}
    write_td_h5(split_dir / f"{name}_td.h5", events, width, height)
    save_boxes(split_dir / f"{name}_bbox.npy", np.array(boxes, dtype=BBOX_DTYPE))


def test_degenerate_boxes_dropped_and_counted_and_grid_covers_labels(tmp_path):
    boxes = [
        (30_000, 10.0, 10.0, 20.0, 20.0, 0, 1, 1.0),  # before the first event: grid starts at 0
        (150_000, -10.0, 4.0, 14.0, 10.0, 1, 2, 1.0),  # 4 px visible -> 2 px after halving: kept, cropped
        (150_000, 60.0, 40.0, 1.0, 6.0, 2, 3, 1.0),  # 0.5 px wide after halving: degenerate
        (150_000, 100.0, 10.0, 8.0, 8.0, 3, 4, 1.0),  # outside the 64 px wide frame: degenerate
        (400_000, 2.0, 2.0, 10.0, 10.0, 4, 5, 1.0),  # after the last event: grid extended to cover it
    ]
    _write_sequence(tmp_path / "src" / "train", "seq", np.linspace(120_000, 260_000, 500).astype(np.int64), boxes)
    report = preprocess_dataset(tmp_path / "src", tmp_path / "out", splits=["train"], progress=False)
    assert report["splits"]["train"]["degenerate_dropped"] == 2
    assert report["splits"]["train"]["boxes_kept"] == 3
    shard = Shard(tmp_path / "out" / "train" / "seq.h5")
    assert shard.attrs["dropped_degenerate_boxes"] == 2
    np.testing.assert_array_equal(shard.window_end_us, 50_000 * np.arange(1, 9))
    assert shard.label_t_us.tolist() == [30_000, 150_000, 400_000]
    assert shard.label_window_index.tolist() == [0, 2, 7]  # label at a window end belongs to that window
    cropped = shard.labels[shard.labels["track_id"] == 2][0]
    assert (cropped["x"], cropped["y"], cropped["w"], cropped["h"]) == (0.0, 2.0, 2.0, 5.0)
    rep = shard.read_representation(0, 8)
    assert rep[:2].sum() == 0 and rep[6:].sum() == 0 and rep.sum() > 0  # events only in 100..300 ms


def test_resume_skips_finished_and_redoes_tmp(raw, tmp_path):
    out = tmp_path / "out"
    preprocess_dataset(raw, out, splits=["train"], progress=False)
    first, second = out / "train" / "synth_train_000.h5", out / "train" / "synth_train_001.h5"
    mtime = first.stat().st_mtime_ns
    again = preprocess_dataset(raw, out, splits=["train"], progress=False)
    assert again["splits"]["train"]["sequences_skipped"] == 2 and again["splits"]["train"]["sequences_done"] == 0
    assert again["splits"]["train"]["windows"] == 24  # skipped shards are still counted
    assert first.stat().st_mtime_ns == mtime
    # simulate an interrupted run: only a half-written .tmp is left for the second sequence
    second.rename(second.with_name(second.name + ".tmp"))
    third = preprocess_dataset(raw, out, splits=["train"], progress=False)
    assert third["splits"]["train"]["sequences_done"] == 1 and third["splits"]["train"]["sequences_skipped"] == 1
    assert Shard(second).num_windows == 12
    assert not second.with_name(second.name + ".tmp").exists()
    with pytest.raises(PreprocessError, match=r"synth_train_000\.h5.*bins=10.*wants 5"):
        preprocess_dataset(raw, out, splits=["train"], bins=5, progress=False)


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_corrupt_input_names_file_and_keeps_earlier_shards(raw, tmp_path, damage):
    src = tmp_path / "src"
    shutil.copytree(raw / "train", src / "train")
    bad = src / "train" / "synth_train_001_td.h5"
    data = bytearray(bad.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # header intact, compressed event chunks overwritten: fails while streaming, mid-shard
        data[len(data) // 3 : len(data) // 3 + 20_000] = bytes(20_000)
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(RecordingError, match=r"synth_train_001_td\.h5"):
        preprocess_dataset(src, out, splits=["train"], progress=False, max_events=5_000)
    assert Shard(out / "train" / "synth_train_000.h5").num_windows == 12  # finished before the error, intact
    assert sorted(os.listdir(out / "train")) == ["synth_train_000.h5"]  # no half shard, no .tmp


def test_missing_labels_unknown_class_and_missing_split(tmp_path):
    _write_sequence(tmp_path / "a" / "train", "seq", np.arange(0, 100_000, 1000), [(50_000, 1, 1, 4, 4, 0, 1, 1)])
    (tmp_path / "a" / "train" / "seq_bbox.npy").unlink()
    with pytest.raises(PreprocessError, match=r"seq_td\.h5.*seq_bbox\.npy not found"):
        preprocess_dataset(tmp_path / "a", tmp_path / "o", splits=["train"], progress=False)
    _write_sequence(tmp_path / "b" / "train", "seq", np.arange(0, 100_000, 1000), [(50_000, 1, 1, 4, 4, 12, 1, 1)])
    with pytest.raises(LabelError, match=r"seq_bbox\.npy.*\[12\]"):
        preprocess_dataset(tmp_path / "b", tmp_path / "o", splits=["train"], progress=False)
    with pytest.raises(PreprocessError, match=r"b/val: split folder not found"):
        preprocess_dataset(tmp_path / "b", tmp_path / "o", splits=["val"], progress=False)


def test_bad_histogram_parameters(raw, tmp_path):
    with pytest.raises(ValueError, match="clip=300"):
        preprocess_dataset(raw, tmp_path / "o", splits=["train"], clip=300, progress=False)
    with pytest.raises(ValueError, match="window_us=0"):
        preprocess_dataset(raw, tmp_path / "o", splits=["train"], window_us=0, progress=False)


def test_no_downsample_keeps_sensor_resolution(tmp_path):
    _write_sequence(tmp_path / "s" / "val", "seq", np.arange(0, 100_000, 100), [(60_000, 1, 1, 9, 9, 5, 1, 1)])
    preprocess_dataset(tmp_path / "s", tmp_path / "o", splits=["val"], downsample=False, progress=False)
    shard = Shard(tmp_path / "o" / "val" / "seq.h5")
    assert (shard.channels, shard.height, shard.width) == (20, 48, 64)
    assert shard.attrs["downsample_factor"] == 1 and shard.labels["w"][0] == 9.0


def test_cli_info_gen4(capsys):
    assert main(["info", str(GEN4)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"path", "format", "width", "height", "events", "t_first_us", "t_last_us"} <= set(info)
    assert (info["width"], info["height"], info["format"]) == (1280, 720, "prophesee-dat")


def test_cli_errors_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "broken.dat"
    bad.write_bytes(b"% Date 2020\n% Height 720\n\x00")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evdet-data: error: ") and "broken.dat" in err and err.count("\n") == 1
    assert main(["preprocess", str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_cli_synth_and_preprocess(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "raw"), "--seed", "3", "--train", "1", "--val", "0", "--test", "0",
                 "--duration-s", "0.2", "--width", "96", "--height", "64"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["width"] == 96 and len(summary["sequences"]) == 1
    assert main(["preprocess", str(tmp_path / "raw"), str(tmp_path / "out"), "--splits", "train",
                 "--window-us", "20000", "--bins", "4", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["totals"]["sequences_done"] == 1 and report["totals"]["windows"] == 10
    shard = Shard(tmp_path / "out" / "train" / "synth_train_000.h5")
    assert (shard.channels, shard.height, shard.width) == (8, 32, 48)
