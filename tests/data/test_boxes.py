"""evdet.data.boxes: the one numpy box clipping and IoU, and the store modules without an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from evdet.data.boxes import clip_boxes, clip_xywh, iou_matrix
from evdet.data.labels import BBOX_DTYPE


def _boxes(rows):
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (x, y, w, h) in enumerate(rows):
        out[i]["x"], out[i]["y"], out[i]["w"], out[i]["h"] = x, y, w, h
        out[i]["class_id"] = i
    return out


def test_clip_boxes_clamps_corners_keeps_rows_and_other_fields():
    boxes = _boxes([(-5, 2, 20, 10), (95, 95, 10, 10), (120, 5, 3, 3)])
    out = clip_boxes(boxes, 99, 99)
    assert out.dtype == BBOX_DTYPE and list(out["class_id"]) == [0, 1, 2]
    np.testing.assert_array_equal(out["x"], np.float32([0, 95, 99]))
    np.testing.assert_array_equal(out["w"], np.float32([15, 4, 0]))  # the last box is outside: no area, kept
    np.testing.assert_array_equal(out["h"], np.float32([10, 4, 3]))
    assert boxes["x"][0] == -5  # the input is not changed


def test_clip_xywh_on_loader_rows_is_float32():
    rows = np.float32([[0, -1.5, 3.25, 10, 10]])
    x, y, w, h = clip_xywh(rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4], 7, 7)
    assert x.dtype == np.float32 and (float(x[0]), float(y[0]), float(w[0]), float(h[0])) == (0.0, 3.25, 7.0, 3.75)


def test_iou_matrix():
    a = _boxes([(0, 0, 10, 10), (0, 0, 0, 0)])
    b = _boxes([(5, 0, 10, 10), (20, 20, 5, 5), (0, 0, 10, 10)])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3) and iou.dtype == np.float64
    np.testing.assert_allclose(iou[0], [50 / 150, 0.0, 1.0])
    np.testing.assert_array_equal(iou[1], [0.0, 0.0, 0.0])  # an empty box overlaps nothing


def test_storage_and_s3_credentials_do_not_import_each_other():
    import evdet.data

    root = Path(evdet.data.__file__).parent

    def imported(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "evdet.data.storage" not in imported("s3_credentials")
    assert "evdet.data.s3_credentials" in imported("storage")
