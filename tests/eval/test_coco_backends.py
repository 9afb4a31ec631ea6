"""The two COCO backends of evdet.eval.prophesee give the same figures (to float64 rounding).

``"faster-coco-eval"`` (default) and ``"pycocotools"`` run on the same pycocotools ``COCO`` objects. The random
data are made to hit every rule of COCO matching: equal scores (stable order), duplicate boxes (equal IoUs), IoUs
exactly on thresholds, more than 100 detections in an image (truncation), areas on the area-range limits, classes
beyond the list, images with ground truth of one class only and detections of another.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from evdet.eval.prophesee import (BACKENDS, METRIC_NAMES, _coco_objects, _run_pass, build_images, evaluate_images,
                                  evaluate_prophesee, resolve_protocol)

BOX_DTYPE = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<u4"),
                      ("track_id", "<u4"), ("class_confidence", "<f4")])
CLASSES = ("pedestrian", "two-wheeler", "car")


def random_recording(rng: np.random.Generator, frames: int, crowded_frame: int | None = None):
    """Ground truth and detections of one recording (640x360 px frame, 4 class ids of which 3 are categories)."""
    gt_rows, dt_rows = [], []
    for f in range(frames):
        t = 1_000_000 + 100_000 * f
        n = int(rng.integers(0, 7))
        for _ in range(n):
            # sides on the area limits now and then: 32 x 32 = 1024 and 96 x 96 = 9216 px^2 exactly
            w, h = (32.0, 32.0) if rng.random() < 0.1 else (96.0, 96.0) if rng.random() < 0.1 else \
                tuple(rng.uniform(4, 150, 2))
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 360 - h)
            c = int(rng.choice(4, p=[0.3, 0.2, 0.45, 0.05]))
            gt_rows.append((t, x, y, w, h, c))
            for _ in range(int(rng.integers(0, 3))):  # jittered copies, sometimes exact duplicates
                j = 0.0 if rng.random() < 0.2 else 0.1
                dt_rows.append((t, x + rng.normal(0, j * w), y + rng.normal(0, j * h), w * rng.normal(1, j),
                                h * rng.normal(1, j), c if rng.random() < 0.8 else int(rng.integers(0, 4)),
                                round(float(rng.uniform(0.2, 1)), 1 if rng.random() < 0.5 else 6)))
            if rng.random() < 0.2:  # IoU exactly 0.5 and 0.75 with this box (same left edge, narrower)
                for frac in (0.5, 0.75):
                    dt_rows.append((t, x, y, w * frac, h, c, round(float(rng.uniform(0, 1)), 1)))
        for _ in range(int(rng.integers(0, 6))):  # false positives
            w, h = rng.uniform(4, 120, 2)
            dt_rows.append((t, rng.uniform(0, 640 - w), rng.uniform(0, 360 - h), w, h, int(rng.integers(0, 4)),
                            round(float(rng.uniform(0, 0.7)), 2)))
        if f == crowded_frame:  # more than maxDets = 100 detections in one image and class
            for _ in range(130):
                w, h = rng.uniform(10, 60, 2)
                dt_rows.append((t, rng.uniform(0, 580), rng.uniform(0, 300), w, h, 2, round(float(rng.random()), 2)))
    gt = np.zeros(len(gt_rows), BOX_DTYPE)
    dt = np.zeros(len(dt_rows), BOX_DTYPE)
    for out, rows, has_score in ((gt, gt_rows, False), (dt, dt_rows, True)):
        for i, row in enumerate(rows):
            out[i] = (*row[:6], i, row[6] if has_score else 1.0)
    return gt, dt


def images_and_protocol(seed: int, recordings: int = 3, frames: int = 40):
    rng = np.random.default_rng(seed)
    gts, dts = zip(*(random_recording(rng, frames, crowded_frame=5 if r == 0 else None) for r in range(recordings)))
    protocol = resolve_protocol("etram", class_names=CLASSES, height=360, width=640, min_box_diag_px=0,
                                min_box_side_px=0, skip_before_us=0)
    return build_images(list(gts), list(dts), protocol), protocol


def _numbers(metrics, prefix=""):
    """Every number of a metrics dict, by key path (None stays None)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) or value is None:
            out[f"{prefix}{key}"] = value
    return out


def assert_same_figures(a: dict, b: dict) -> float:
    """Same keys, same None entries, numbers equal to float64 rounding (1e-12); returns the largest difference."""
    na, nb = _numbers(a), _numbers(b)
    assert na.keys() == nb.keys()
    worst = 0.0
    for key in na:
        assert (na[key] is None) == (nb[key] is None), key
        if na[key] is not None:
            worst = max(worst, abs(na[key] - nb[key]))
            assert na[key] == pytest.approx(nb[key], rel=0, abs=1e-12), key
    return worst


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_faster_coco_eval_gives_pycocotools_figures(seed):
    images, protocol = images_and_protocol(seed)
    k = len(CLASSES)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _coco_objects(images, protocol)
        for use_cats in (0, 1):
            fast = _run_pass(coco_gt, coco_dt, images.num_images, k, use_cats, backend="faster-coco-eval")
            slow = _run_pass(coco_gt, coco_dt, images.num_images, k, use_cats, backend="pycocotools")
            for key in ("precision", "recall"):
                np.testing.assert_allclose(fast.eval[key], slow.eval[key], rtol=0, atol=1e-12, err_msg=key)
    a = evaluate_images(images, protocol, backend="faster-coco-eval")
    b = evaluate_images(images, protocol, backend="pycocotools")
    assert (a["backend"], b["backend"]) == ("faster-coco-eval", "pycocotools")
    assert a["num_detections"] > 0 and a["class_agnostic"]["AP"] > 0
    assert_same_figures(a, b)


def test_figures_agree_with_the_protocol_filter():
    """The default 640x360 thresholds (30 / 10 px) and the 0.5 s skip on top: still the same figures."""
    rng = np.random.default_rng(7)
    gts, dts = zip(*(random_recording(rng, 30) for _ in range(2)))
    results = [evaluate_prophesee(list(gts), list(dts), protocol="rvt", class_names=CLASSES, height=360, width=640,
                                  backend=backend) for backend in BACKENDS]
    assert results[0]["num_detections"] > 0
    assert_same_figures(results[0], results[1])
    assert [m for m in METRIC_NAMES if results[0]["class_aware"][m] is not None]


def test_unknown_backend_is_one_clear_error():
    images, protocol = images_and_protocol(0, recordings=1, frames=3)
    with pytest.raises(ValueError, match=r"backend: expected one of \['faster-coco-eval', 'pycocotools'\], got 'fast'"):
        evaluate_images(images, protocol, backend="fast")
