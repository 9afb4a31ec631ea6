"""Box arrays: loading real-file variants, saving; the reference's box filters."""

from __future__ import annotations

import numpy as np
import pytest

from evdet.data.label_selection import filter_boxes
from evdet.data.labels import BBOX_DTYPE, ETRAM_CLASSES, LabelError, load_boxes, save_boxes


def _boxes(rows):
    return np.array(rows, dtype=BBOX_DTYPE)


def test_constants():
    assert ETRAM_CLASSES == ("pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair")
    assert BBOX_DTYPE.names == ("t", "x", "y", "w", "h", "class_id", "track_id", "class_confidence")
    assert BBOX_DTYPE["t"] == np.int64 and BBOX_DTYPE["class_id"] == np.uint32


def test_save_load_round_trip(tmp_path):
    boxes = _boxes([(50_000, 1.5, 2.0, 10.0, 20.0, 3, 7, 0.9), (100_000, 0.0, 0.0, 5.0, 5.0, 0, 1, 1.0)])
    path = save_boxes(tmp_path / "seq_bbox.npy", boxes)
    loaded = load_boxes(path)
    assert loaded.dtype == BBOX_DTYPE
    np.testing.assert_array_equal(loaded, boxes)


def test_load_prophesee_variant_converts_widths_and_ts_alias(tmp_path):
    # older Gen1 files: 'ts' uint64, class_id uint8, float64 coordinates, no track_id / confidence
    legacy = np.dtype([("ts", "<u8"), ("x", "<f8"), ("y", "<f8"), ("w", "<f8"), ("h", "<f8"), ("class_id", "u1")])
    arr = np.array([(123, 1.25, 2.5, 3.0, 4.0, 2)], dtype=legacy)
    np.save(tmp_path / "old_bbox.npy", arr)
    boxes = load_boxes(tmp_path / "old_bbox.npy")
    assert boxes.dtype == BBOX_DTYPE
    assert boxes["t"][0] == 123 and boxes["class_id"][0] == 2
    assert boxes["x"][0] == np.float32(1.25) and boxes["h"][0] == np.float32(4.0)
    assert boxes["track_id"][0] == 0 and boxes["class_confidence"][0] == np.float32(1.0)


def test_missing_field_names_file_and_field(tmp_path):
    bad = np.zeros(2, dtype=[("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("class_id", "<u4")])
    path = tmp_path / "nobox_bbox.npy"
    np.save(path, bad)
    with pytest.raises(LabelError, match=r"nobox_bbox\.npy.*missing field 'h'"):
        load_boxes(path)


def test_unstructured_or_missing_file_errors(tmp_path):
    np.save(tmp_path / "plain_bbox.npy", np.zeros((3, 4)))
    with pytest.raises(LabelError, match=r"plain_bbox\.npy.*structured"):
        load_boxes(tmp_path / "plain_bbox.npy")
    with pytest.raises(LabelError, match=r"absent_bbox\.npy.*not found"):
        load_boxes(tmp_path / "absent_bbox.npy")
    (tmp_path / "junk_bbox.npy").write_bytes(b"not a numpy file")
    with pytest.raises(LabelError, match=r"junk_bbox\.npy.*not a readable"):
        load_boxes(tmp_path / "junk_bbox.npy")


def test_negative_class_id_and_nonfinite_rejected(tmp_path):
    dt = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<i4")])
    np.save(tmp_path / "neg_bbox.npy", np.array([(0, 0, 0, 1, 1, -1)], dtype=dt))
    with pytest.raises(LabelError, match=r"neg_bbox\.npy.*'class_id'"):
        load_boxes(tmp_path / "neg_bbox.npy")
    np.save(tmp_path / "nan_bbox.npy", np.array([(0, np.nan, 0, 1, 1, 1)], dtype=dt))
    with pytest.raises(LabelError, match=r"nan_bbox\.npy.*'x'"):
        load_boxes(tmp_path / "nan_bbox.npy")


def test_reference_filters_crop_to_the_last_pixel_then_min_side_then_train_width():
    boxes = _boxes([
        (0, -5.0, 10.0, 20.0, 10.0, 0, 1, 1.0),  # crosses the left edge: cropped to x 0..15
        (0, 93.0, 43.0, 10.0, 10.0, 1, 2, 1.0),  # crosses right and bottom: clipped to the last pixel 99 / 49
        (0, 120.0, 10.0, 5.0, 5.0, 2, 3, 1.0),  # fully outside: zero width after the crop
        (0, 10.0, 10.0, 4.9, 8.0, 3, 4, 1.0),  # narrower than 5 px: min side
        (0, 0.0, 20.0, 95.0, 8.0, 4, 5, 1.0),  # wider than 9 * 100 // 10 = 90: train split only
    ])
    kept, dropped = filter_boxes(boxes, 100, 50, "train")
    assert dropped == {"crop": 1, "min_side": 1, "max_width": 1}
    assert kept["track_id"].tolist() == [1, 2]
    np.testing.assert_allclose(kept[["x", "y", "w", "h"]].tolist(), [(0, 10, 15, 10), (93, 43, 6, 6)])
    val, dropped = filter_boxes(boxes, 100, 50, "val")
    assert val["track_id"].tolist() == [1, 2, 5] and dropped["max_width"] == 0
    with pytest.raises(LabelError, match="BBOX_DTYPE"):
        filter_boxes(np.zeros(2), 100, 50, "train")
