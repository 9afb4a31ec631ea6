"""evdet.eval.prophesee on hand-built cases: filter, time matching boundaries, images, both COCO passes, settings,
the no-detections case and input validation.

Geometry: a 100x100 px ground-truth box and a detection shifted by ``dx`` px horizontally have
IoU = (100 - dx) / (100 + dx): dx = 23 -> 0.626 (passes IoU .50 .. .60, fails .65 .. .95: AP = 3/10).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evdet.eval.prophesee import (
    METRIC_NAMES,
    build_images,
    check_box_array,
    evaluate_images,
    evaluate_prophesee,
    filter_boxes,
    resolve_protocol,
)

BOX_DTYPE = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<u4"),
                      ("track_id", "<u4"), ("class_confidence", "<f4")])
CLASSES = ("pedestrian", "two-wheeler", "car")
T = 1_000_000  # us, after the 0.5 s skip
TOL = 50_000


def boxes(*rows: tuple) -> np.ndarray:
    """rows of (t, x, y, w, h, class_id, score) -> Prophesee box array; track_id = row index."""
    out = np.zeros(len(rows), dtype=BOX_DTYPE)
    for i, (t, x, y, w, h, c, s) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, i, s)
    return out


NONE = boxes()


def evaluate(gt, dt, **kwargs):
    """Full-resolution gen4 (thresholds 60 / 20 px), RVT protocol unless given."""
    kwargs.setdefault("protocol", "rvt")
    kwargs.setdefault("class_names", CLASSES)
    kwargs.setdefault("height", 720)
    kwargs.setdefault("width", 1280)
    return evaluate_prophesee(gt, dt, **kwargs)


def images_of(gt, dt, **kwargs):
    kwargs.setdefault("class_names", CLASSES)
    kwargs.setdefault("height", 720)
    kwargs.setdefault("width", 1280)
    names = kwargs.pop("recording_names", None)
    settings = resolve_protocol(kwargs.pop("protocol", "rvt"), **kwargs)
    return build_images(gt, dt, settings, recording_names=names), settings


# ------------------------------------------------------------------------------------------------ time matching


@pytest.mark.parametrize(
    ("offset", "matched"),
    [(-TOL - 1, False), (-TOL, True), (-1, True), (0, True), (1, True), (TOL, True), (TOL + 1, False)],
)
def test_time_window_is_inclusive_at_plus_minus_50ms(offset, matched):
    gt = boxes((T, 100, 100, 100, 100, 0, 1))
    dt = boxes((T + offset, 100, 100, 100, 100, 0, 0.9))
    images, _ = images_of([gt], [dt])
    assert images.counts().tolist() == [[0, T, 1, int(matched)]]
    m = evaluate([gt], [dt])
    assert m["AP"] == (pytest.approx(1.0) if matched else 0.0)
    assert m["no_detections"] is (not matched)


def test_one_detection_counts_in_two_images():
    gt = boxes((T, 100, 100, 100, 100, 0, 1), (T + 2 * TOL, 100, 100, 100, 100, 0, 1))
    dt = boxes((T + TOL, 100, 100, 100, 100, 0, 0.9))  # exactly +50 ms after the first, -50 ms before the second
    images, _ = images_of([gt], [dt])
    assert images.counts().tolist() == [[0, T, 1, 1], [0, T + 2 * TOL, 1, 1]]
    assert images.dt_row.tolist() == [0, 0] and images.dt_image.tolist() == [0, 1]
    assert images.num_dt_matched.tolist() == [1]
    m = evaluate([gt], [dt])
    assert m["num_detections"] == 2 and m["AP"] == pytest.approx(1.0)


def test_frame_with_only_filtered_ground_truth_is_no_image_and_its_detections_do_not_count():
    gt = boxes(
        (T, 100, 100, 100, 100, 0, 1),
        (T + 200_000, 500, 300, 15, 15, 0, 1),  # diagonal 21 px < 60 px: filtered, so no image at T + 200 ms
    )
    dt = boxes(
        (T, 100, 100, 100, 100, 0, 0.5),
        (T + 200_000, 800, 400, 100, 100, 0, 0.99),  # a confident box far from any kept ground truth
    )
    images, _ = images_of([gt], [dt])
    assert images.counts().tolist() == [[0, T, 1, 1]]
    m = evaluate([gt], [dt])
    assert m["AP"] == pytest.approx(1.0)  # the confident box is not a false positive
    assert m["num_detections_outside_images"] == 1 and m["num_gt_filtered_out"] == 1


def test_ground_truth_timestamps_are_exact_and_recordings_separate():
    gt_a = boxes((T, 100, 100, 100, 100, 0, 1), (T + 1, 400, 100, 100, 100, 0, 1))  # two images, 1 us apart
    gt_b = boxes((T, 600, 400, 100, 100, 0, 1))
    dt_b = boxes((T, 100, 100, 100, 100, 0, 0.9))  # lies on recording a's box: a false positive in b
    images, _ = images_of([gt_a, gt_b], [NONE, dt_b], recording_names=["a", "b"])
    assert images.counts().tolist() == [[0, T, 1, 0], [0, T + 1, 1, 0], [1, T, 1, 1]]
    assert images.recording_names == ("a", "b")
    assert images.per_recording()[1] == {"name": "b", "num_gt_input": 1, "num_detections_input": 1, "num_gt_kept": 1,
                                         "num_detections_kept": 1, "num_detections_matched": 1, "num_images": 1}
    assert evaluate([gt_a, gt_b], [NONE, dt_b])["AP_50"] == 0.0


# ------------------------------------------------------------------------------------------------ filter


def test_filter_rule_strict_time_and_float32_diagonal():
    side = np.float32(np.sqrt(450.0))  # float32: side*side + side*side == 900 exactly; in float64 it is < 900
    b = boxes(
        (500_001, 0, 0, side, side, 0, 1),  # diagonal^2 = 900 in float32: kept (as numpy float32 in the reference)
        (500_001, 0, 0, 42.42, 42.42, 0, 1),  # diagonal 59.99 < 60 (full-res thresholds below)
        (500_001, 0, 0, 9.99, 200, 0, 1),  # w < 10
        (500_001, 0, 0, 200, 9.99, 0, 1),  # h < 10
        (500_000, 0, 0, 100, 100, 0, 1),  # t not > 0.5 s
        (500_001, 0, 0, 10, 100, 0, 1),  # w == min side: kept
    )
    keep = filter_boxes(b, min_box_diag_px=30, min_box_side_px=10, skip_before_us=500_000)
    assert keep.tolist() == [True, True, False, False, False, True]
    keep = filter_boxes(b, min_box_diag_px=60, min_box_side_px=20, skip_before_us=500_000)
    assert keep.tolist() == [False, False, False, False, False, False]


def test_skip_is_measured_from_time_zero():
    gt = boxes((300_000, 100, 100, 100, 100, 0, 1), (700_000, 100, 100, 100, 100, 0, 1))
    assert evaluate([gt], [gt.copy()])["num_images"] == 1
    assert evaluate([gt], [gt.copy()], skip_before_us=0)["num_images"] == 2


@pytest.mark.parametrize(
    ("camera", "height", "width", "factor", "diag", "side"),
    [("gen4", 720, 1280, 1, 60, 20), ("gen4", 360, 640, 2, 30, 10), ("gen1", 240, 304, 1, 30, 10),
     ("gen1", 120, 152, 2, 15, 5)],
)
def test_thresholds_follow_camera_and_frame_size(camera, height, width, factor, diag, side):
    s = resolve_protocol("rvt", class_names=CLASSES, height=height, width=width, camera=camera)
    assert (s.downsample_factor, s.min_box_diag_px, s.min_box_side_px, s.thresholds_source) == (
        factor, diag, side, "camera")


def test_threshold_settings_padded_frame_explicit_values_and_errors():
    # RVT passes the padded 384x640 frame: the factor must then be given (or the thresholds)
    with pytest.raises(ValueError, match=r"384x640 px is neither the gen4 sensor size .* --min-box-diag-px"):
        resolve_protocol("etram", class_names=CLASSES, height=384, width=640)
    s = resolve_protocol("etram", class_names=CLASSES, height=384, width=640, downsample_factor=2)
    assert (s.min_box_diag_px, s.min_box_side_px) == (30, 10)
    s = resolve_protocol("etram", class_names=CLASSES, height=384, width=640, min_box_diag_px=12.5,
                         min_box_side_px=4)
    assert (s.min_box_diag_px, s.min_box_side_px, s.thresholds_source, s.downsample_factor) == (
        12.5, 4, "explicit", None)
    with pytest.raises(ValueError, match="give both explicit thresholds or neither"):
        resolve_protocol("rvt", class_names=CLASSES, height=720, width=1280, min_box_diag_px=10)
    with pytest.raises(ValueError, match="downsample_factor: 1 contradicts height x width 360x640"):
        resolve_protocol("rvt", class_names=CLASSES, height=360, width=640, downsample_factor=1)
    with pytest.raises(ValueError, match="downsample_factor: 3 does not divide the gen4 thresholds"):
        resolve_protocol("rvt", class_names=CLASSES, height=240, width=427, downsample_factor=3)
    with pytest.raises(ValueError, match="protocol: expected one of"):
        resolve_protocol("coco", class_names=CLASSES, height=720, width=1280)
    with pytest.raises(ValueError, match="class_names: names must be distinct"):
        resolve_protocol("rvt", class_names=["car", "car"], height=720, width=1280)


def test_area_ranges_are_absolute_px2_of_the_frame():
    # 60x20 px (1200 px^2: medium) at 640x360 -> x2 = 120x40 px (4800 px^2: still medium); 25x25 (625: small) ->
    # 50x50 (2500: medium). Same AP, different AP_S/AP_M.
    half = boxes((T, 100, 100, 25, 25, 0, 1), (T, 300, 100, 60, 20, 0, 1))
    det = boxes((T, 100, 100, 25, 25, 0, 0.9))
    full = half.copy()
    dfull = det.copy()
    for f in ("x", "y", "w", "h"):
        full[f] *= 2
        dfull[f] *= 2
    m_half = evaluate([half], [det], height=360, width=640)
    m_full = evaluate([full], [dfull], height=720, width=1280)
    for key in ("AP", "AP_50", "AP_75"):
        assert m_half[key] == pytest.approx(m_full[key])
    assert m_half["AP_S"] == pytest.approx(1.0) and m_half["AP_M"] == 0.0
    assert m_full["AP_S"] is None and m_full["AP_M"] == pytest.approx(m_full["AP"])


# ------------------------------------------------------------------------------------------------ COCO passes


def test_class_aware_and_class_agnostic_passes_and_headline():
    gt = boxes((T, 100, 100, 100, 100, 2, 1))  # a car
    dt = boxes((T, 100, 100, 100, 100, 1, 0.9))  # detected as a two-wheeler
    rvt = evaluate([gt], [dt], protocol="rvt")
    etram = evaluate([gt], [dt], protocol="etram")
    for m in (rvt, etram):
        assert m["class_aware"]["AP"] == 0.0  # car missed; two-wheeler has no GT, so it is out of the mean
        assert m["class_agnostic"]["AP"] == pytest.approx(1.0)
        assert m["per_class_AP"] == {"pedestrian": None, "two-wheeler": None, "car": 0.0}
        assert m["per_class_num_gt"] == {"pedestrian": 0, "two-wheeler": 0, "car": 1}
    assert rvt["headline"] == "class_aware" and rvt["AP"] == 0.0
    assert etram["headline"] == "class_agnostic" and etram["AP"] == pytest.approx(1.0)
    assert etram["protocol"]["headline_use_cats"] == 0 and rvt["protocol"]["headline_use_cats"] == 1
    assert rvt["class_aware"]["use_cats"] == 1 and rvt["class_agnostic"]["use_cats"] == 0


def test_class_ids_beyond_the_class_list_are_ignored_by_both_passes():
    gt = boxes((T, 100, 100, 100, 100, 0, 1), (T, 400, 100, 100, 100, 5, 1))  # class 5: no category of 3
    dt = boxes((T, 100, 100, 100, 100, 0, 0.9), (T, 700, 400, 100, 100, 7, 0.99))
    for protocol in ("rvt", "etram"):
        m = evaluate([gt], [dt], protocol=protocol)
        assert m["class_aware"]["AP"] == pytest.approx(1.0)
        # pycocotools pools useCats=0 over params.catIds (1..K) only, so class 5 GT is not a miss here either
        assert m["class_agnostic"]["AP"] == pytest.approx(1.0)
        assert (m["num_gt"], m["num_gt_all_classes"], m["num_detections"], m["num_detections_all_classes"]) == (
            1, 2, 1, 2)
        assert any("class_id >= 3" in note for note in m["notes"])
    # with the class in the list it counts: the class-5 GT is missed in both passes
    m = evaluate([gt], [dt], class_names=[f"c{i}" for i in range(6)])
    assert m["class_agnostic"]["AP"] < 1.0 and m["per_class_AP"]["c5"] == 0.0


def test_shifted_box_known_iou_and_per_class_stats():
    gt = boxes((T, 100, 100, 100, 100, 0, 1), (T, 400, 300, 100, 100, 2, 1))
    dt = boxes((T, 123, 100, 100, 100, 0, 0.9), (T, 400, 300, 100, 100, 2, 0.8))
    m = evaluate([gt], [dt])
    ped = m["class_aware"]["per_class"]["pedestrian"]
    assert ped["AP"] == pytest.approx(0.3) and ped["AP_50"] == pytest.approx(1.0) and ped["AP_75"] == 0.0
    assert len(ped["stats"]) == 12 and ped["category_id"] == 1 and ped["num_gt"] == 1
    assert m["per_class_AP_50"]["car"] == pytest.approx(1.0)
    assert m["class_aware"]["AP"] == pytest.approx((0.3 + 1.0) / 2)
    assert m["class_aware"]["per_class"]["two-wheeler"]["stats"] == [-1.0] * 12
    assert m["class_aware"]["per_class"]["two-wheeler"]["AP"] is None


def test_raw_stats_keep_minus_one_named_figures_use_none():
    gt = boxes((T, 100, 100, 80, 80, 0, 1))  # 6400 px^2: medium only
    m = evaluate([gt], [gt.copy()])
    for key in ("class_aware", "class_agnostic"):
        stats = m[key]["stats"]
        assert stats[METRIC_NAMES.index("AP_S")] == -1.0 and m[key]["AP_S"] is None
        assert stats[METRIC_NAMES.index("AP_M")] == pytest.approx(1.0)
    assert m["AP_S"] is None and m["AP_L"] is None and m["AR_S"] is None
    assert m["headline_stats"] == m["class_aware"]["stats"]
    json.dumps(m, allow_nan=False)  # plain JSON types


def test_no_detections_gives_the_reference_zeros():
    gt = boxes((T, 100, 100, 80, 80, 0, 1))
    far = boxes((T + 10 * TOL, 100, 100, 80, 80, 0, 0.9))  # outside every window
    for dt in (NONE, far):
        for protocol in ("rvt", "etram"):
            m = evaluate([gt], [dt], protocol=protocol)
            assert m["no_detections"] is True
            assert any("every figure is 0.0" in note for note in m["notes"])
            for key in ("class_aware", "class_agnostic"):
                assert m[key]["stats"] == [0.0] * 12
                assert all(m[key][name] == 0.0 for name in METRIC_NAMES)  # also AP_S: 0.0, as the reference
            assert all(m[name] == 0.0 for name in METRIC_NAMES)
            assert m["per_class_AP"] == {"pedestrian": 0.0, "two-wheeler": None, "car": None}


def test_no_ground_truth_left_is_zeros_with_a_note():
    gt = boxes((100_000, 100, 100, 80, 80, 0, 1))
    m = evaluate([gt], [gt.copy()])
    assert m["num_images"] == 0 and m["no_detections"] is True and m["AP"] == 0.0
    assert any("no ground-truth box is left" in note for note in m["notes"])


def test_settings_are_recorded():
    gt = boxes((T, 100, 100, 80, 80, 0, 1))
    m = evaluate([gt], [gt.copy()], protocol="etram", height=360, width=640, time_tolerance_us=20_000,
                 skip_before_us=100_000)
    p = m["protocol"]
    assert (p["name"], p["camera"], p["height"], p["width"], p["downsample_factor"]) == ("etram", "gen4", 360, 640, 2)
    assert (p["min_box_diag_px"], p["min_box_side_px"], p["skip_before_us"], p["time_tolerance_us"]) == (
        30, 10, 100_000, 20_000)
    assert p["class_names"] == list(CLASSES) and p["category_ids"] == [1, 2, 3]
    assert p["score_field"] == "class_confidence" and p["pycocotools"] and p["headline"] == "class_agnostic"


def test_pycocotools_output_is_silenced(capsys):
    gt = boxes((T, 100, 100, 100, 100, 0, 1))
    evaluate([gt], [gt.copy()], protocol="etram")
    assert capsys.readouterr().out == ""


def test_evaluate_images_equals_evaluate_prophesee():
    gt = boxes((T, 100, 100, 100, 100, 0, 1), (T + 100_000, 300, 100, 100, 100, 2, 1))
    dt = boxes((T + 30_000, 110, 100, 100, 100, 0, 0.7), (T + 90_000, 300, 120, 100, 100, 2, 0.6))
    images, settings = images_of([gt], [dt], protocol="etram")
    direct = evaluate([gt], [dt], protocol="etram")
    assert evaluate_images(images, settings) == direct


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("gt", "dt", "message"),
    [
        ([boxes((T, 1, 1, 99, 99, 0, 1))], [], "got 1 ground-truth and 0 detection arrays"),
        ([np.zeros((2, 5), np.float32)], [NONE], r"recording 'r0' \(index 0\): ground truth: expected a 1-D "
                                                 "structured Prophesee box array"),
        ([NONE], [NONE[["t", "x", "y", "w", "h", "class_id"]]],
         r"recording 'r0' \(index 0\): detections: missing field\(s\) \['class_confidence'\]"),
        ([NONE.astype([(n, "<f8" if n == "t" else f) for n, f in zip(BOX_DTYPE.names, ["<i8", "<f4", "<f4", "<f4",
                                                                                      "<f4", "<u4", "<u4", "<f4"])])],
         [NONE], "ground truth: field 't' must have an integer dtype"),
        ([boxes((T, 1, 1, 99, 99, 0, 1))], [boxes((T, 1, np.inf, 99, 99, 0, 1))],
         "detections: field 'y' holds NaN or inf"),
        ([boxes((T, 1, 1, 99, 99, 0, 1))], [boxes((T, 1, 1, 99, 99, 0, np.nan))],
         "detections: field 'class_confidence' holds NaN or inf"),
        ([boxes((T + 5, 1, 1, 99, 99, 0, 1), (T, 1, 1, 99, 99, 0, 1))], [NONE],
         r"ground truth: field 't' is not sorted .* sort by t"),
        ([boxes((T, 1, 1, 99, 99, 0, 1))], [boxes((T, 1, 1, 99, 99, 0, 1), (T - 1, 1, 1, 99, 99, 0, 1))],
         r"recording 'r0' \(index 0\): detections: field 't' is not sorted"),
    ],
    ids=["length", "plain-array", "missing-field", "float-t", "inf", "nan-score", "unsorted-gt", "unsorted-dt"],
)
def test_bad_input_is_one_clear_value_error(gt, dt, message):
    names = ["r0"] if len(gt) == len(dt) else None
    with pytest.raises(ValueError, match=message):
        evaluate(gt, dt, recording_names=names)


def test_recording_is_named_by_index_without_names_and_negative_class_ids_are_rejected():
    bad = np.zeros(1, dtype=[("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                             ("class_id", "<i4")])
    bad["class_id"] = -1
    with pytest.raises(ValueError, match=r"recording 1: ground truth: field 'class_id' must be >= 0"):
        evaluate([NONE, bad], [NONE, NONE])
    with pytest.raises(ValueError, match="recording_names: expected 2 names"):
        evaluate([NONE, NONE], [NONE, NONE], recording_names=["a"])


def test_check_box_array_accepts_ground_truth_without_score_and_copies():
    gt = np.zeros(2, dtype=[("t", "<i8"), ("x", "<f8"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                            ("class_id", "<u4")])
    gt["t"] = [1, 2]
    out = check_box_array(gt, "gt", detections=False)
    assert out.dtype["x"] == np.float32 and out["class_confidence"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="gt: missing field"):
        check_box_array(gt, "gt", detections=True)
