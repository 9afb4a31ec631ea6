"""Confusion matrix: hand-built cases (match, class swap, false positive, miss, filtering, score threshold)."""

import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE
from evdet.eval.confusion import confusion_matrix, format_confusion_csv

PROTOCOL = dict(min_box_diag_px=10.0, min_box_side_px=2.0, skip_before_us=500_000)


def boxes(rows):
    """rows of (t, x, y, w, h, class_id, score)."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, c, s) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, 0, s)
    return out


def test_matches_swaps_false_positives_and_misses():
    t = 1_000_000
    gt = boxes([(t, 0, 0, 40, 40, 0, 1), (t, 100, 100, 40, 40, 1, 1), (t, 200, 0, 40, 40, 2, 1)])
    dt = boxes([
        (t, 1, 1, 40, 40, 0, 0.9),      # car found as car
        (t, 100, 100, 40, 40, 0, 0.8),  # truck found as car (class swap)
        (t, 300, 300, 40, 40, 1, 0.7),  # false positive truck
        (t, 0, 0, 40, 40, 0, 0.6),      # duplicate of the car: the car label is taken -> false positive
    ])
    m = confusion_matrix([gt], [dt], num_classes=3, **PROTOCOL)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1  # car -> car
    expected[1, 0] = 1  # truck -> car
    expected[3, 1] = 1  # background -> truck
    expected[3, 0] = 1  # duplicate car
    expected[2, 3] = 1  # the class-2 label is missed
    assert np.array_equal(m, expected)


def test_iou_and_score_thresholds_and_protocol_filter():
    t = 1_000_000
    gt = boxes([(t, 0, 0, 40, 40, 0, 1), (100_000, 0, 0, 40, 40, 0, 1), (t, 50, 50, 3, 3, 0, 1)])
    # IoU of a 40x40 box shifted by 20 px in x: 800 / 2400 = 1/3 < 0.5 -> no match
    dt = boxes([(t, 20, 0, 40, 40, 0, 0.9), (t, 0, 0, 40, 40, 0, 0.1)])  # second one below the score threshold
    m = confusion_matrix([gt], [dt], num_classes=1, **PROTOCOL)
    # the label before 0.5 s and the 3x3 label (diagonal < 10 px) are not evaluated
    assert m.tolist() == [[0, 1], [1, 0]]
    m_low = confusion_matrix([gt], [dt], num_classes=1, iou_threshold=0.3, score_threshold=0.0, **PROTOCOL)
    assert m_low.tolist() == [[1, 0], [1, 0]]  # the best-scored detection matches at IoU 1/3; the other is a FP


def test_errors_and_csv():
    with pytest.raises(ValueError, match="1 label arrays but 0"):
        confusion_matrix([boxes([])], [], num_classes=2, **PROTOCOL)
    with pytest.raises(ValueError, match="class id 5"):
        confusion_matrix([boxes([(1_000_000, 0, 0, 40, 40, 5, 1)])], [boxes([])], num_classes=2, **PROTOCOL)
    csv = format_confusion_csv(np.array([[1, 2], [3, 0]]), ["Car"])
    assert csv == "true\\predicted,Car,background\nCar,1,2\nbackground,3,0\n"
