"""Post-processing: score = obj x class prob, confidence threshold, class-aware NMS, cap, errors."""

import pytest
import torch

from evdet.model.nn.postprocess import detection_score, postprocess


def _row(cx, cy, w, h, obj, class_probs):
    return [cx, cy, w, h, obj, *class_probs]


def test_box_format_and_score():
    decoded = torch.tensor([[_row(20.0, 10.0, 8.0, 4.0, 0.8, [0.1, 0.5])]])
    (det,) = postprocess(decoded)
    assert det.shape == (1, 7) and det.dtype == torch.float32
    assert torch.allclose(det[0], torch.tensor([16.0, 8.0, 24.0, 12.0, 0.8, 0.5, 1.0]))
    assert detection_score(det, "obj_x_class").tolist() == pytest.approx([0.4])
    assert detection_score(det, "class_conf").tolist() == pytest.approx([0.5])
    with pytest.raises(ValueError, match="score: expected one of"):
        detection_score(det, "max")


def test_confidence_threshold():
    decoded = torch.tensor(
        [[_row(10.0, 10.0, 4.0, 4.0, 0.5, [0.5, 0.1]), _row(50.0, 50.0, 4.0, 4.0, 0.5, [0.1, 0.3])]]
    )
    kept = postprocess(decoded, conf_threshold=0.2)[0]
    assert detection_score(kept, "obj_x_class").tolist() == pytest.approx([0.25])
    assert len(postprocess(decoded, conf_threshold=0.1)[0]) == 2
    assert postprocess(decoded, conf_threshold=0.3)[0].shape == (0, 7)


def test_class_aware_nms():
    a = _row(20.0, 20.0, 10.0, 10.0, 0.9, [0.9, 0.0])
    b_same = _row(21.0, 20.0, 10.0, 10.0, 0.8, [0.9, 0.0])  # IoU 0.82 with a, class 0
    b_other = _row(21.0, 20.0, 10.0, 10.0, 0.8, [0.0, 0.9])  # same box, class 1
    same = postprocess(torch.tensor([[a, b_same]]), nms_threshold=0.65)[0]
    assert len(same) == 1 and float(detection_score(same, "obj_x_class")[0]) == pytest.approx(0.81)
    other = postprocess(torch.tensor([[a, b_other]]), nms_threshold=0.65)[0]
    assert len(other) == 2 and sorted(other[:, 6].tolist()) == [0.0, 1.0]
    # below the NMS threshold both boxes of one class survive
    assert len(postprocess(torch.tensor([[a, b_same]]), nms_threshold=0.9)[0]) == 2


def test_max_detections_keeps_highest_scores_per_image():
    rows = [_row(10.0 + 20 * i, 10.0, 8.0, 8.0, 0.1 * (i + 1), [1.0]) for i in range(5)]
    silent = [_row(10.0, 10.0, 8.0, 8.0, 0.0, [1.0])] * 3  # score 0 < default threshold 0.001
    decoded = torch.tensor([rows, rows[:2] + silent])
    first, second = postprocess(decoded, max_detections=3)
    assert detection_score(first, "obj_x_class").tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert len(second) == 2


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"decoded: expected shape \(B, A, 5 \+ C\)"):
        postprocess(torch.zeros(2, 10, 5))
    with pytest.raises(ValueError, match="conf_threshold: expected a value in \\[0, 1\\]"):
        postprocess(torch.zeros(1, 1, 6), conf_threshold=1.5)
    with pytest.raises(ValueError, match="max_detections: expected None or >= 0"):
        postprocess(torch.zeros(1, 1, 6), max_detections=-1)
