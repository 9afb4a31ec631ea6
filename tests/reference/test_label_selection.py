"""Label filters, ~10 Hz object frames, window end times and loader boxes equal the reference's (label_selection.npz),
directly and through ``evdet-data preprocess`` into a shard.

The label files, splits, sensor size and every expected array come from the fixture files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from evdet.data.label_selection import loader_boxes, select_labels
from evdet.data.labels import as_bbox_array, save_boxes
from evdet.data.preprocess import PreprocessOptions, preprocess_dataset
from evdet.data.shards import Shard

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def arrays(load_npz):
    return load_npz("label_selection.npz")


@pytest.fixture(scope="module")
def sensor_hw(manifest) -> tuple[int, int]:
    height, width = manifest["files"]["label_selection.npz"]["config"]["frame_size_hw"]
    return int(height), int(width)


def _cases(arrays: dict) -> list[tuple[str, str]]:
    files = sorted({key.split("__")[0] for key in arrays if key.endswith("__input")})
    splits = sorted({key.split("__")[1] for key in arrays if key.count("__") == 2 and not key.endswith("__input_case")})
    assert files and splits
    return [(f, s) for f in files for s in splits]


def _loader_rows(selection, sensor_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, offsets = [], [0]
    for start, stop in selection.frame_label_slice:
        frame = loader_boxes(selection.labels[start:stop], sensor_hw[1], sensor_hw[0], 2)
        rows.append(frame)
        offsets.append(offsets[-1] + len(frame))
    return np.concatenate(rows), np.asarray(offsets)


def test_selection_equals_reference(arrays, sensor_hw, measured) -> None:
    cases = _cases(arrays)
    for name, split in cases:
        p = f"{name}__{split}__"
        sel = select_labels(as_bbox_array(arrays[f"{name}__input"]), sensor_hw[1], sensor_hw[0], split, source=name)
        ctx = f"{name} {split}"
        np.testing.assert_array_equal(sel.filtered, as_bbox_array(arrays[p + "filtered"]), err_msg=f"{ctx} filtered")
        np.testing.assert_array_equal(np.unique(sel.filtered["t"]), arrays[p + "unique_ts_after_filter"])
        assert sel.step_us == int(arrays[p + "base_delta_ts_us"]), ctx
        np.testing.assert_array_equal(sel.frame_t_us, arrays[p + "frame_timestamps_us"], err_msg=f"{ctx} frames")
        np.testing.assert_array_equal(sel.labels, as_bbox_array(arrays[p + "labels"]), err_msg=f"{ctx} labels")
        np.testing.assert_array_equal(sel.frame_label_slice[:, 0], arrays[p + "objframe_idx_2_label_idx"])
        np.testing.assert_array_equal(sel.window_end_us, arrays[p + "ev_repr_timestamps_us"], err_msg=f"{ctx} ends")
        np.testing.assert_array_equal(sel.frame_window_index, arrays[p + "objframe_idx_2_repr_idx"])
        rows, offsets = _loader_rows(sel, sensor_hw)
        np.testing.assert_array_equal(rows, arrays[p + "loader_labels_ds2"], err_msg=f"{ctx} loader labels")
        np.testing.assert_array_equal(offsets, arrays[p + "loader_frame_offsets"])
        yolox = np.stack([rows[:, 5], rows[:, 1] + np.float32(0.5) * rows[:, 3], rows[:, 2] + np.float32(0.5) * rows[:, 4],
                          rows[:, 3], rows[:, 4]], axis=1)
        np.testing.assert_array_equal(yolox, arrays[p + "loader_yolox_ds2"], err_msg=f"{ctx} yolox targets")
    measured("label_selection_cases_bit_exact", len(cases))


def test_special_boxes_kept_as_the_reference_keeps_them(arrays, manifest, sensor_hw) -> None:
    """Per box kind of the input (legend: manifest box_cases), the filters keep as many rows as the reference."""
    per_file = manifest["files"]["label_selection.npz"]["per_file"]
    for name, split in _cases(arrays):
        boxes = as_bbox_array(arrays[f"{name}__input"])
        case = arrays[f"{name}__input_case"]
        sel = select_labels(boxes, sensor_hw[1], sensor_hw[0], split, source=name)
        kept_ids = set(sel.filtered["track_id"].tolist())  # track_id = input row id
        expected = per_file[name][split]["special_case_rows_kept"]
        for kind, count in expected.items():
            rows = boxes["track_id"][case == int(kind)].tolist()
            assert sum(r in kept_ids for r in rows) == count, f"{name} {split}: box kind {kind}"


def _gen4(manifest: dict) -> Path:
    name, spec = next(iter(manifest["inputs"].items()))
    path = ROOT / "data" / "real" / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec["sha256"], f"{path}: not the fixtures' recording"
    return path


def test_preprocess_writes_the_reference_selection_into_shards(arrays, manifest, load_npz, tmp_path) -> None:
    """End to end: the real recording + each fixture label file -> evdet-data preprocess -> Shard; window ends,
    frames, stored boxes and the boxes the loader yields equal the reference, and windows that end where a
    histograms.npz window ends hold its histogram."""
    recording = _gen4(manifest)
    cases = _cases(arrays)
    src, out = tmp_path / "src", tmp_path / "shards"
    for name, split in cases:
        (src / split).mkdir(parents=True, exist_ok=True)
        (src / split / f"{name}_td.dat").symlink_to(recording)
        save_boxes(src / split / f"{name}_bbox.npy", as_bbox_array(arrays[f"{name}__input"]))
    splits = sorted({s for _, s in cases})
    # the fixture labels use class ids as the box kinds; name them generically
    classes = ",".join(f"class{k}" for k in range(int(max(arrays[f"{n}__input"]["class_id"].max() for n, _ in cases)) + 1))
    report = preprocess_dataset(src, out, splits=splits, options=PreprocessOptions(class_names=classes), progress=False)
    assert report["totals"]["sequences_done"] == len(cases)
    hist = load_npz("histograms.npz")
    compared = 0
    for name, split in cases:
        p = f"{name}__{split}__"
        shard = Shard(out / split / f"{name}.h5")
        np.testing.assert_array_equal(shard.window_end_us, arrays[p + "ev_repr_timestamps_us"])
        np.testing.assert_array_equal(shard.label_t_us, arrays[p + "frame_timestamps_us"])
        np.testing.assert_array_equal(shard.label_window_index, arrays[p + "objframe_idx_2_repr_idx"])
        np.testing.assert_array_equal(shard.labels, as_bbox_array(arrays[p + "labels"]))
        rows = np.concatenate([shard.frame_boxes(k) for k in range(shard.num_frames)])
        loader = arrays[p + "loader_labels_ds2"]
        np.testing.assert_array_equal(rows[:, 1:], loader[:, 1:5])
        np.testing.assert_array_equal(rows[:, 0], loader[:, 5])
        for i, t_end in enumerate(hist["t_end_us"]):
            index = np.flatnonzero(shard.window_end_us == t_end)
            if len(index):
                np.testing.assert_array_equal(shard.read_representation(int(index[0]), int(index[0]) + 1)[0],
                                              hist["hist_ds2"][i])
                compared += 1
    assert report["splits"][splits[0]]["windows"] > 0
