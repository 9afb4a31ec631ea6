"""Confusion matrix on the AP images: match, class swap, false positive, miss, the filter, the score threshold, and
the +-50 ms matching (boundaries, a detection in two images, filtered frames, class ids beyond the list)."""

import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE
from evdet.eval.confusion import confusion_matrix, confusion_matrix_from_images, format_confusion_csv
from evdet.eval.prophesee import build_images, resolve_protocol

PROTOCOL = dict(min_box_diag_px=10.0, min_box_side_px=2.0, skip_before_us=500_000)
T = 1_000_000


def boxes(rows):
    """rows of (t, x, y, w, h, class_id, score)."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, c, s) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, 0, s)
    return out


def test_matches_swaps_false_positives_and_misses():
    gt = boxes([(T, 0, 0, 40, 40, 0, 1), (T, 100, 100, 40, 40, 1, 1), (T, 200, 0, 40, 40, 2, 1)])
    dt = boxes([
        (T, 1, 1, 40, 40, 0, 0.9),      # class 0 found as class 0
        (T, 100, 100, 40, 40, 0, 0.8),  # class 1 found as class 0 (class swap)
        (T, 300, 300, 40, 40, 1, 0.7),  # false positive class 1
        (T, 0, 0, 40, 40, 0, 0.6),      # duplicate of the class-0 box: that label is taken -> false positive
    ])
    m = confusion_matrix([gt], [dt], num_classes=3, **PROTOCOL)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1
    expected[1, 0] = 1
    expected[3, 1] = 1
    expected[3, 0] = 1
    expected[2, 3] = 1  # the class-2 label is missed
    assert np.array_equal(m, expected)


def test_iou_and_score_thresholds_and_protocol_filter():
    gt = boxes([(100_000, 0, 0, 40, 40, 0, 1), (T, 0, 0, 40, 40, 0, 1), (T, 50, 50, 3, 3, 0, 1)])
    # IoU of a 40x40 box shifted by 20 px in x: 800 / 2400 = 1/3 < 0.5 -> no match
    dt = boxes([(T, 20, 0, 40, 40, 0, 0.9), (T, 0, 0, 40, 40, 0, 0.1)])  # second one below the score threshold
    m = confusion_matrix([gt], [dt], num_classes=1, **PROTOCOL)
    # the label before 0.5 s and the 3x3 label (diagonal < 10 px) are not evaluated
    assert m.tolist() == [[0, 1], [1, 0]]
    m_low = confusion_matrix([gt], [dt], num_classes=1, iou_threshold=0.3, score_threshold=0.0, **PROTOCOL)
    assert m_low.tolist() == [[1, 0], [1, 0]]  # the best-scored detection matches at IoU 1/3; the other is a FP


@pytest.mark.parametrize(("offset", "matched"), [(-50_000, True), (50_000, True), (50_001, False),
                                                 (-50_001, False)])
def test_detections_match_within_plus_minus_50ms_inclusive(offset, matched):
    gt = boxes([(T, 0, 0, 40, 40, 0, 1)])
    dt = boxes([(T + offset, 0, 0, 40, 40, 0, 0.9)])
    m = confusion_matrix([gt], [dt], num_classes=1, **PROTOCOL)
    # outside the window the detection is in no image: not a false positive, the label is missed
    assert m.tolist() == ([[1, 0], [0, 0]] if matched else [[0, 1], [0, 0]])


def test_detection_in_two_images_counts_in_both_and_filtered_frames_are_no_images():
    gt = boxes([(T, 0, 0, 40, 40, 0, 1), (T + 100_000, 0, 0, 40, 40, 1, 1),
                (T + 300_000, 0, 0, 3, 3, 0, 1)])  # too small: no image at T + 300 ms
    dt = boxes([(T + 50_000, 0, 0, 40, 40, 0, 0.9), (T + 300_000, 100, 100, 40, 40, 1, 0.9)])
    m = confusion_matrix([gt], [dt], num_classes=2, **PROTOCOL)
    # image T: class 0 found as 0; image T+100ms: class 1 found as 0; the T+300ms detection counts nowhere
    assert m.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_same_images_as_ap_and_class_ids_beyond_the_list_are_ignored():
    gt = boxes([(T, 0, 0, 40, 40, 0, 1), (T, 100, 0, 40, 40, 5, 1)])
    dt = boxes([(T, 0, 0, 40, 40, 0, 0.9), (T, 300, 0, 40, 40, 7, 0.9)])
    settings = resolve_protocol("rvt", class_names=["a", "b"], height=100, width=100, min_box_diag_px=10,
                                min_box_side_px=2)
    images = build_images([gt], [dt], settings)
    m = confusion_matrix_from_images(images, num_classes=2)
    assert m.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert np.array_equal(m, confusion_matrix([gt], [dt], num_classes=2, **PROTOCOL))


def test_errors_and_csv():
    with pytest.raises(ValueError, match="got 1 ground-truth and 0 detection arrays"):
        confusion_matrix([boxes([])], [], num_classes=2, **PROTOCOL)
    with pytest.raises(ValueError, match="num_classes: expected a positive integer"):
        confusion_matrix([boxes([])], [boxes([])], num_classes=0, **PROTOCOL)
    with pytest.raises(ValueError, match="recording 'seq' \\(index 0\\): detections: field 't' is not sorted"):
        confusion_matrix([boxes([])], [boxes([(T, 0, 0, 9, 9, 0, 1), (0, 0, 0, 9, 9, 0, 1)])], num_classes=1,
                         recording_names=["seq"], **PROTOCOL)
    csv = format_confusion_csv(np.array([[1, 2], [3, 0]]), ["Car"])
    assert csv == "true\\predicted,Car,background\nCar,1,2\nbackground,3,0\n"
