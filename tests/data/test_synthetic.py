"""Synthetic eTraM-layout dataset: files, read-back with the HDF5 reader, labels, determinism."""

from __future__ import annotations

import filecmp

import h5py
import hdf5plugin
import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE, EXPERIMENT_CLASSES, load_boxes
from evdet.data.readers import open_recording
from evdet.data.synthetic import generate_dataset, simulate_sequence

WIDTH, HEIGHT, DURATION_S = 320, 180, 1.0
SPLITS = {"train": 2, "val": 1, "test": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(out, seed=7, splits=SPLITS, duration_s=DURATION_S, width=WIDTH, height=HEIGHT)
    return out, summary


def test_layout_and_readme(dataset):
    out, summary = dataset
    names = {(s["split"], s["name"]) for s in summary["sequences"]}
    assert len(names) == 4
    for split, count in SPLITS.items():
        files = sorted(p.name for p in (out / split).iterdir())
        expected = sorted(f"synth_{split}_{i:03d}{suffix}" for i in range(count) for suffix in ("_td.h5", "_bbox.npy"))
        assert files == expected
    with h5py.File(out / "train" / "synth_train_000_td.h5", "r") as f:
        assert {"x", "y", "p", "t", "width", "height"} <= set(f["events"].keys())
        assert f["events/t"].dtype == np.int64 and f["events/x"].dtype == np.uint16
        assert int(f["events/width"][()]) == WIDTH and int(f["events/height"][()]) == HEIGHT
        plist = f["events/t"].id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert hdf5plugin.BLOSC_ID in filters  # Blosc (HDF5 filter 32001) via hdf5plugin
    readme = (out / "README.md").read_text()
    assert "SYNTHETIC" in readme and "seed: 7" in readme and "ESIM" in readme
    assert summary["synthetic"] is True and summary["total_events"] > 0


def test_events_read_back_sorted_in_range(dataset):
    out, summary = dataset
    for seq in summary["sequences"]:
        with open_recording(out / seq["split"] / f"{seq['name']}_td.h5") as reader:
            assert reader.format == "etram-hdf5" and (reader.width, reader.height) == (WIDTH, HEIGHT)
            ev = reader.read()  # the reader itself rejects unsorted timestamps and out-of-range pixels
        assert len(ev) == seq["events"] > 20_000
        assert np.all(np.diff(ev.t) >= 0)
        assert ev.t[0] >= 0 and ev.t[-1] <= DURATION_S * 1e6
        assert 0.2 < ev.p.mean() < 0.8  # both polarities


def test_boxes_cover_all_classes_and_are_consistent(dataset):
    out, summary = dataset
    seen = set()
    for seq in summary["sequences"]:
        boxes = load_boxes(out / seq["split"] / f"{seq['name']}_bbox.npy")
        assert boxes.dtype == BBOX_DTYPE and len(boxes) == seq["boxes"] > 0
        assert set(np.unique(boxes["t"]) % 50_000) == {0}  # 20 Hz
        assert boxes["t"].min() >= 50_000 and boxes["t"].max() <= DURATION_S * 1e6
        assert np.all(np.diff(boxes["t"]) >= 0)
        assert np.all(boxes["x"] >= 0) and np.all(boxes["x"] + boxes["w"] <= WIDTH + 1e-3)
        assert np.all(boxes["y"] >= 0) and np.all(boxes["y"] + boxes["h"] <= HEIGHT + 1e-3)
        assert np.all(boxes["w"] >= 1) and np.all(boxes["h"] >= 1)
        for track in np.unique(boxes["track_id"]):  # one class per track
            assert len(np.unique(boxes["class_id"][boxes["track_id"] == track])) == 1
        seen |= set(boxes["class_id"].tolist())
    assert seen == set(range(len(EXPERIMENT_CLASSES)))


def test_events_come_from_the_labelled_objects(dataset):
    """Without noise, nearly all events of the 10 ms before a label time lie in (slightly grown) boxes."""
    events, boxes = simulate_sequence([7, 9], duration_s=0.5, width=WIDTH, height=HEIGHT, noise_rate_hz=0.0)
    t_label = 400_000
    sel = (events["t"] >= t_label - 10_000) & (events["t"] < t_label)
    x, y = events["x"][sel].astype(float), events["y"][sel].astype(float)
    assert sel.sum() > 500
    inside = np.zeros(len(x), bool)
    for b in boxes[boxes["t"] == t_label]:
        inside |= (x >= b["x"] - 4) & (x < b["x"] + b["w"] + 4) & (y >= b["y"] - 4) & (y < b["y"] + b["h"] + 4)
    assert inside.mean() > 0.95


def test_same_seed_identical_files_other_seed_differs(tmp_path):
    kwargs = dict(splits={"train": 1}, duration_s=0.3, width=160, height=90)
    a = generate_dataset(tmp_path / "a", seed=1, **kwargs)
    generate_dataset(tmp_path / "b", seed=1, **kwargs)
    c = generate_dataset(tmp_path / "c", seed=2, **kwargs)
    for suffix in ("_td.h5", "_bbox.npy"):
        name = f"train/synth_train_000{suffix}"
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
        assert not filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, shallow=False)
    assert a["total_events"] != c["total_events"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="width"):
        simulate_sequence(0, width=0)
    with pytest.raises(ValueError, match="frame_dt_us"):
        simulate_sequence(0, frame_dt_us=0)
    with pytest.raises(ValueError, match="split 'train' has negative count"):
        generate_dataset(tmp_path, splits={"train": -1})
    with pytest.raises(ValueError, match="invalid split name"):
        generate_dataset(tmp_path, splits={"../x": 1})
