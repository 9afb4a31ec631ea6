"""Pins evdet.eval.coco.evaluate_detections to hand-computed Prophesee-protocol cases.

Geometry used below: a 100x100 px label box and a detection shifted by ``dx`` px horizontally have
IoU = (100 - dx) / (100 + dx): dx = 23 -> 0.626 (passes IoU .50, .55, .60; fails .65 ... .95, so AP = 3/10),
dx = 33 -> 0.5038 (passes .50), dx = 34 -> 0.4925 (fails .50).
"""

from __future__ import annotations

import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE
from evdet.eval.coco import METRIC_NAMES, check_box_array, evaluate_detections, filter_boxes

CLASSES = ("Car", "Truck", "Pedestrian")
T1 = 1_000_000  # µs, a label timestamp after the 0.5 s skip
T2 = 1_050_000


def boxes(*rows: tuple) -> np.ndarray:
    """rows of (t, x, y, w, h, class_id, score) -> BBOX_DTYPE array."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, c, s) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, i, s)
    return out


def evaluate(labels, detections, **kwargs):
    kwargs.setdefault("width", 1280)
    kwargs.setdefault("height", 720)
    kwargs.setdefault("class_names", CLASSES)
    return evaluate_detections(labels, detections, **kwargs)


def test_perfect_detections_give_ap_one():
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0), (T1, 400, 300, 200, 120, 1, 1.0), (T2, 120, 100, 100, 100, 0, 1.0))
    det = lab.copy()
    det["class_confidence"] = [0.9, 0.8, 0.7]
    m = evaluate([lab], [det])
    for key in ("AP", "AP_50", "AP_75", "AR_100"):
        assert m[key] == pytest.approx(1.0)
    assert (m["num_labels"], m["num_detections"], m["num_images"], m["num_recordings"]) == (3, 3, 2, 1)
    assert m["per_class_AP"] == {"Car": pytest.approx(1.0), "Truck": pytest.approx(1.0), "Pedestrian": None}
    assert m["per_class_num_labels"] == {"Car": 2, "Truck": 1, "Pedestrian": 0}


def test_no_detections_give_zero_not_minus_one():
    lab = boxes((T1, 100, 100, 80, 80, 0, 1.0))  # area 6400 px²: medium (32² <= area < 96²)
    m = evaluate([lab], [np.zeros(0, BBOX_DTYPE)])
    for key in ("AP", "AP_50", "AP_75", "AP_M", "AR_1", "AR_100", "AR_M"):
        assert m[key] == 0.0
    assert m["per_class_AP"]["Car"] == 0.0
    assert m["num_detections"] == 0


def test_metrics_without_labels_in_their_range_are_none_not_minus_one():
    lab = boxes((T1, 100, 100, 80, 80, 0, 1.0))  # area 6400 px²: medium only
    m = evaluate([lab], [lab.copy()])
    assert m["AP_M"] == pytest.approx(1.0)
    assert m["AP_S"] is None and m["AP_L"] is None and m["AR_S"] is None
    assert set(METRIC_NAMES) <= set(m)


@pytest.mark.parametrize(
    ("dx", "ap_50", "ap_75", "ap"),
    [(23, 1.0, 0.0, 0.3), (33, 1.0, 0.0, 0.1), (34, 0.0, 0.0, 0.0)],
    ids=["iou0.626", "iou0.504", "iou0.493"],
)
def test_shifted_box_with_known_iou(dx, ap_50, ap_75, ap):
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0))
    det = boxes((T1, 100 + dx, 100, 100, 100, 0, 0.9))
    m = evaluate([lab], [det])
    assert m["AP_50"] == pytest.approx(ap_50)
    assert m["AP_75"] == pytest.approx(ap_75)
    assert m["AP"] == pytest.approx(ap)


def test_wrong_class_is_not_a_match():
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0))
    det = boxes((T1, 100, 100, 100, 100, 1, 0.9))
    assert evaluate([lab], [det])["AP_50"] == 0.0


def test_boxes_in_the_first_half_second_are_ignored():
    lab = boxes(
        (400_000, 100, 100, 100, 100, 0, 1.0),  # label before 0.5 s, never detected
        (500_000, 300, 100, 100, 100, 0, 1.0),  # exactly 0.5 s: dropped too (Prophesee keeps t > 0.5 s)
        (T1, 100, 100, 100, 100, 0, 1.0),
    )
    det = boxes(
        (400_000, 700, 400, 100, 100, 0, 0.99),  # confident false positive before 0.5 s
        (T1, 100, 100, 100, 100, 0, 0.5),
    )
    m = evaluate([lab], [det])
    assert m["AP"] == pytest.approx(1.0)
    assert (m["num_labels"], m["num_detections"], m["num_images"]) == (1, 1, 1)


def test_skip_before_is_measured_from_time_zero_not_the_first_label():
    # first label at 0.3 s: measured from t = 0 the 0.7 s label is kept (0.7 s > 0.5 s); measured from the first
    # label it would be dropped (0.7 s < 0.3 s + 0.5 s)
    lab = boxes((300_000, 100, 100, 100, 100, 0, 1.0), (700_000, 100, 100, 100, 100, 0, 1.0))
    m = evaluate([lab], [lab.copy()])
    assert m["num_labels"] == 1 and m["num_images"] == 1
    assert evaluate([lab], [lab.copy()], skip_before_us=0)["num_labels"] == 2


def test_small_boxes_are_ignored():
    lab = boxes(
        (T1, 100, 100, 100, 100, 0, 1.0),
        (T1, 500, 500, 15, 15, 0, 1.0),  # diag 21 px < 60 px: ignored although never detected
        (T1, 700, 500, 100, 19, 0, 1.0),  # h 19 px < 20 px: ignored
    )
    det = boxes((T1, 100, 100, 100, 100, 0, 0.5), (T1, 900, 100, 30, 30, 0, 0.99))  # small confident FP ignored
    m = evaluate([lab], [det])
    assert m["AP"] == pytest.approx(1.0)
    assert (m["num_labels"], m["num_detections"]) == (1, 1)


def test_min_size_thresholds_scale_with_downsample_factor():
    # at 640x360 (downsample 2) the thresholds are 30 px / 10 px: a 25x25 box (diag 35.4 px) counts there,
    # but not at full resolution (60 px / 20 px).
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0), (T1, 300, 200, 25, 25, 0, 1.0))
    det = boxes((T1, 100, 100, 100, 100, 0, 0.9))
    full = evaluate([lab], [det], width=1280, height=720, downsample_factor=1)
    half = evaluate([lab], [det], width=640, height=360, downsample_factor=2)
    assert full["num_labels"] == 1 and full["AP_50"] == pytest.approx(1.0)
    assert half["num_labels"] == 2 and half["AP_50"] == pytest.approx(51 / 101)  # recall 0.5 at precision 1
    # COCO area ranges use w*h in evaluated px: the missed 25x25 box (625 px²) is small, the 100x100 one large
    assert half["AP_S"] == 0.0 and half["AP_L"] == pytest.approx(1.0) and half["AP_M"] is None
    assert half["protocol"]["min_box_diag_px"] == 30.0 and half["protocol"]["min_box_side_px"] == 10.0


def test_gen1_camera_uses_its_own_thresholds_and_explicit_values_override():
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0), (T1, 300, 200, 25, 25, 0, 1.0))
    assert evaluate([lab], [lab.copy()], camera="gen1")["num_labels"] == 2  # 30 px / 10 px at full res
    m = evaluate([lab], [lab.copy()], camera="gen1", min_box_diag_px=40.0, min_box_side_px=10.0)
    assert m["num_labels"] == 1


def test_detections_at_non_label_timestamps_are_ignored():
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0))
    det = boxes(
        (T1, 100, 100, 100, 100, 0, 0.5),
        (T1 + 1, 600, 400, 100, 100, 0, 0.99),  # 1 µs off the label timestamp
        (T2, 600, 400, 100, 100, 0, 0.99),  # no label at T2 in this recording
    )
    m = evaluate([lab], [det])
    assert m["AP"] == pytest.approx(1.0)
    assert m["num_detections"] == 1


def test_recordings_are_separate_images():
    lab_a = boxes((T1, 100, 100, 100, 100, 0, 1.0))
    lab_b = boxes((T1, 600, 400, 100, 100, 0, 1.0))
    # recording b's detection lies on recording a's box: a false positive, and both labels are missed
    m = evaluate([lab_a, lab_b], [np.zeros(0, BBOX_DTYPE), boxes((T1, 100, 100, 100, 100, 0, 0.9))])
    assert m["num_images"] == 2 and m["AP_50"] == 0.0
    m = evaluate([lab_a, lab_b], [lab_a.copy(), lab_b.copy()])
    assert m["num_images"] == 2 and m["AP"] == pytest.approx(1.0)


def test_per_class_ap_with_several_classes():
    lab = boxes(
        (T1, 100, 100, 100, 100, 0, 1.0),
        (T1, 400, 100, 100, 100, 1, 1.0),
        (T2, 100, 300, 100, 100, 0, 1.0),
    )
    # Car: both found; Truck: the detection is shifted to IoU 0.626 (AP 0.3)
    det = boxes((T1, 100, 100, 100, 100, 0, 0.9), (T1, 423, 100, 100, 100, 1, 0.8), (T2, 100, 300, 100, 100, 0, 0.7))
    m = evaluate([lab], [det])
    assert m["per_class_AP"]["Car"] == pytest.approx(1.0)
    assert m["per_class_AP"]["Truck"] == pytest.approx(0.3)
    assert m["per_class_AP"]["Pedestrian"] is None  # no labels of that class
    assert m["AP"] == pytest.approx((1.0 + 0.3) / 2)  # mean over classes with labels
    assert m["AP_50"] == pytest.approx(1.0)


def test_lower_scored_false_positive_ranked_after_true_positive_keeps_ap():
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0), (T1, 400, 100, 100, 100, 0, 1.0))
    det_fp_last = boxes(
        (T1, 100, 100, 100, 100, 0, 0.9), (T1, 400, 100, 100, 100, 0, 0.8), (T1, 800, 400, 100, 100, 0, 0.1)
    )
    det_fp_first = det_fp_last.copy()
    det_fp_first["class_confidence"] = [0.8, 0.7, 0.9]
    assert evaluate([lab], [det_fp_last])["AP_50"] == pytest.approx(1.0)
    # precision 1/2 at recall 0.5 and 2/3 at recall 1: interpolated precision is 2/3 everywhere
    assert evaluate([lab], [det_fp_first])["AP_50"] == pytest.approx(2 / 3)


def test_pycocotools_output_is_silenced(capsys):
    lab = boxes((T1, 100, 100, 100, 100, 0, 1.0))
    evaluate([lab], [lab.copy()])
    assert capsys.readouterr().out == ""


def test_no_labels_at_all_is_a_clear_error():
    with pytest.raises(ValueError, match="no label boxes in any of the 2 recordings"):
        evaluate([np.zeros(0, BBOX_DTYPE)] * 2, [np.zeros(0, BBOX_DTYPE)] * 2)


def test_all_labels_filtered_out_is_a_clear_error():
    lab = boxes((100_000, 100, 100, 100, 100, 0, 1.0))
    with pytest.raises(ValueError, match="all 1 label boxes were dropped"):
        evaluate([lab], [lab.copy()])


@pytest.mark.parametrize(
    ("labels", "detections", "kwargs", "message"),
    [
        ([boxes((T1, 1, 1, 99, 99, 0, 1))], [], {}, "got 1 label arrays and 0 detection arrays"),
        ([boxes((T1, 1, 1, 99, 99, 5, 1))], [np.zeros(0, BBOX_DTYPE)], {}, "labels of recording 0: field 'class_id'"),
        ([boxes((T1, 1, 1, 99, 99, 0, 1))], [np.zeros(0, BBOX_DTYPE)], {"camera": "gen3"}, "camera: expected one of"),
        ([boxes((T1, 1, 1, 99, 99, 0, 1))], [np.zeros(0, BBOX_DTYPE)], {"width": 0}, "width: expected a positive"),
        ([boxes((T1, 1, 1, 99, 99, 0, 1))], [np.zeros(0, BBOX_DTYPE)], {"downsample_factor": 1.5}, "downsample_factor"),
        (
            [boxes((T1, 1, 1, 99, 99, 0, 1))],
            [np.zeros(0, BBOX_DTYPE)[["t", "x", "y", "w", "h", "class_id"]]],
            {"recording_names": ["seq_a"]},
            r"detections of recording 'seq_a': missing field\(s\) \['class_confidence'\]",
        ),
        ([np.zeros((0, 5), np.float32)], [np.zeros(0, BBOX_DTYPE)], {}, "labels of recording 0: expected a 1-D"),
    ],
    ids=["length", "class_id", "camera", "width", "downsample", "missing-field", "plain-array"],
)
def test_bad_input_raises_one_clear_value_error(labels, detections, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(labels, detections, **kwargs)


def test_check_box_array_rejects_non_finite_coordinates():
    det = boxes((T1, np.nan, 1, 99, 99, 0, 1))
    with pytest.raises(ValueError, match="det.npy: field 'x' holds NaN or inf"):
        check_box_array(det, "det.npy", require_confidence=True)


def test_filter_boxes_rule():
    b = boxes(
        (500_001, 0, 0, 42.43, 42.43, 0, 1),  # diag 60.004 >= 60, sides >= 20: kept
        (500_001, 0, 0, 42.42, 42.42, 0, 1),  # diag 59.99 < 60: dropped
        (500_001, 0, 0, 19.9, 200, 0, 1),  # w < 20: dropped
        (500_000, 0, 0, 100, 100, 0, 1),  # t not > 0.5 s: dropped
    )
    kept = filter_boxes(b, min_box_diag_px=60, min_box_side_px=20, skip_before_us=500_000)
    assert kept["track_id"].tolist() == [0]
