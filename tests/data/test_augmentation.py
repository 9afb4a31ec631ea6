"""Flip / zoom augmentation: histograms and boxes move together, one transform per sequence, drops counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evdet.data.augmentation import AugmentationConfig, SequenceTransform, augment_sequence, sample_transform
from evdet.data.dataset import RandomSequenceDataset, StreamingBatches, build_dataloader
from evdet.data.labels import BBOX_DTYPE
from evdet.data.shards import ShardWriter

C, H, W, CLIP, WINDOW = 4, 20, 32, 10, 50_000
BLOB = (9.0, 5.0, 7.0, 4.0)  # x, y, w, h (px) of the event blob and of its box


def blob_frames(n: int = 3, box=BLOB) -> torch.Tensor:
    """(n, C, H, W) uint8 histograms with counts 1..CLIP inside ``box`` and zero elsewhere."""
    x, y, w, h = (int(v) for v in box)
    frames = torch.zeros((n, C, H, W), dtype=torch.uint8)
    values = torch.arange(w * h * C, dtype=torch.int64).reshape(C, h, w) % CLIP + 1
    frames[:, :, y : y + h, x : x + w] = values.to(torch.uint8)
    return frames


def nonzero_bbox(frame: torch.Tensor) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the non-zero pixels of a (C, H, W) frame."""
    ys, xs = torch.nonzero(frame.amax(dim=0), as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def box_tensor(*boxes) -> torch.Tensor:
    return torch.tensor([[cls, *xywh] for cls, xywh in boxes], dtype=torch.float32).reshape(-1, 5)


def test_flip_moves_blob_and_box_together():
    frames = blob_frames()
    t = SequenceTransform(W, H, flip=True)
    out = t.apply_to_histograms(frames)
    boxes, clipped, dropped = t.apply_to_boxes(box_tensor((3, BLOB)))
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    assert torch.equal(out, torch.flip(frames, dims=(-1,)))
    assert (clipped, dropped) == (0, 0)
    assert boxes.tolist() == [[3.0, W - 9.0 - 7.0, 5.0, 7.0, 4.0]]
    assert nonzero_bbox(out[0]) == tuple(int(v) for v in boxes[0, 1:].tolist())


def test_exact_zoom_in_by_two_maps_blob_and_box():
    t = SequenceTransform(W, H, src=(4, 2, 16, 10), dst=(0, 0, W, H), mode="zoom_in")
    out = t.apply_to_histograms(blob_frames(1))
    boxes, _, dropped = t.apply_to_boxes(box_tensor((0, BLOB)))
    assert dropped == 0 and boxes.tolist() == [[0.0, 10.0, 6.0, 14.0, 8.0]]
    assert nonzero_bbox(out[0]) == (10, 6, 14, 8)
    assert out.max() <= CLIP and set(out.unique().tolist()) <= set(range(CLIP + 1))


def test_exact_zoom_out_by_two_places_blob_on_a_zero_canvas():
    t = SequenceTransform(W, H, src=(0, 0, W, H), dst=(10, 6, 16, 10), mode="zoom_out")
    frames = blob_frames(1, box=(8.0, 4.0, 8.0, 6.0))
    out = t.apply_to_histograms(frames)
    boxes, _, dropped = t.apply_to_boxes(box_tensor((1, (8.0, 4.0, 8.0, 6.0))))
    assert dropped == 0 and boxes.tolist() == [[1.0, 14.0, 8.0, 4.0, 3.0]]
    assert nonzero_bbox(out[0]) == (14, 8, 4, 3)
    assert out[..., :, :10].sum() == 0 and out[..., :6, :].sum() == 0  # outside dst: no events


@pytest.mark.parametrize("seed", range(12))
def test_random_transforms_keep_blob_inside_box(seed):
    """Nearest-exact resampling: the non-zero pixels are those whose centres lie in the box (edges within 0.5 px)."""
    cfg = AugmentationConfig(enabled=True, flip_p=0.5, zoom_in_p=0.5, zoom_out_p=0.5)
    t = sample_transform(cfg, W, H, torch.Generator().manual_seed(seed))
    out = t.apply_to_histograms(blob_frames(2))
    boxes, _, dropped = t.apply_to_boxes(box_tensor((2, BLOB)), min_visible_fraction=0.0)
    assert out.dtype == torch.uint8 and out.max() <= CLIP
    assert dropped == 0 and len(boxes) == 1
    x, y, w, h = boxes[0, 1:].tolist()
    bx, by, bw, bh = nonzero_bbox(out[1])
    assert abs(bx - x) <= 0.5 and abs(by - y) <= 0.5
    assert abs((bx + bw) - (x + w)) <= 0.5 and abs((by + bh) - (y + h)) <= 0.5
    assert torch.equal(out[0], out[1])


def test_boxes_clipped_or_dropped_and_counted():
    # zoom in on the left half: x in [0, 16) -> [0, 32)
    t = SequenceTransform(W, H, src=(0, 0, 16, 10), dst=(0, 0, W, H), mode="zoom_in")
    boxes = box_tensor(
        (0, (2.0, 2.0, 4.0, 4.0)),     # inside: kept, not clipped
        (1, (12.0, 2.0, 6.0, 4.0)),    # 4 of 6 px wide inside: clipped, kept (2/3 visible)
        (2, (14.0, 2.0, 6.0, 4.0)),    # 2 of 6 px inside: mostly outside, dropped
        (3, (20.0, 2.0, 4.0, 4.0)),    # fully outside: dropped
        (4, (2.0, 9.8, 4.0, 4.0)),     # 0.2 px tall inside -> 0.4 px after zoom: degenerate, dropped
    )
    kept, clipped, dropped = t.apply_to_boxes(boxes)
    assert kept[:, 0].tolist() == [0.0, 1.0] and (clipped, dropped) == (1, 3)
    assert kept[1, 1:].tolist() == [24.0, 4.0, 8.0, 8.0]
    frames = torch.zeros((2, C, H, W), dtype=torch.uint8)
    _, labels, total = augment_sequence(t, frames, [boxes, boxes[:1]])
    assert total == 3 and [len(b) for b in labels] == [2, 1]


def write_blob_shard(path, n_windows=6, box=BLOB, labelled=(1, 3, 4, 5)):
    frame = blob_frames(1, box)[0].numpy()
    writer = ShardWriter(path, C, W, H)
    for i in range(n_windows):
        writer.append(frame, (i + 1) * WINDOW)
    rows = [((w + 1) * WINDOW - 1, *box, 1, 0, 1.0) for w in labelled]
    labels = np.array(rows, BBOX_DTYPE)
    writer.finish(labels, labels["t"], np.asarray(labelled, np.int64),
                  np.stack([np.arange(len(rows)), np.arange(1, len(rows) + 1)], 1),
                  {"width": W, "height": H, "sensor_width": W, "sensor_height": H, "downsample_factor": 1,
                   "window_us": WINDOW, "bins": C // 2, "clip": CLIP, "source": path.name,
                   "dropped_degenerate_boxes": 0, "class_map": "experiment8"})


@pytest.fixture(scope="module")
def blob_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("blob")
    write_blob_shard(d / "a.h5")
    write_blob_shard(d / "b.h5", n_windows=9, labelled=(0, 2, 8))
    return d


def assert_consistent(representation: torch.Tensor, labels: list[torch.Tensor], has_label: torch.Tensor):
    """All windows identical (same transform) and every kept box covers the blob (within 0.5 px)."""
    real = [t for t in range(representation.shape[0]) if representation[t].any()]
    for t in real:
        assert torch.equal(representation[t], representation[real[0]])
    for t in range(representation.shape[0]):
        if has_label[t] and len(labels[t]):
            assert len(labels[t]) == 1
            x, y, w, h = labels[t][0, 1:].tolist()
            bx, by, bw, bh = nonzero_bbox(representation[t])
            assert abs(bx - x) <= 0.5 and abs(by - y) <= 0.5 and abs(bx + bw - x - w) <= 0.5
            assert abs(by + bh - y - h) <= 0.5


def test_every_window_of_a_random_sample_gets_the_same_transform(blob_dir):
    cfg = AugmentationConfig(enabled=True, flip_p=0.5, zoom_in_p=0.5, zoom_out_p=0.5)
    ds = RandomSequenceDataset(blob_dir, seq_len=4, augmentation=cfg)
    plain = RandomSequenceDataset(blob_dir, seq_len=4)
    changed = 0
    for seed in range(6):
        for i in range(len(ds)):
            s = ds.sample(i, torch.Generator().manual_seed(seed))
            assert_consistent(s["representation"], s["labels"], s["has_label"])
            changed += int(not torch.equal(s["representation"], plain[i]["representation"]))
    assert changed > 0


def test_streaming_slot_keeps_one_transform_per_recording(blob_dir):
    cfg = AugmentationConfig(enabled=True, flip_p=0.5, zoom_in_p=0.5, zoom_out_p=0.5)
    stream = StreamingBatches(blob_dir, batch_size=1, seq_len=2, seed=4, augmentation=cfg)
    per_recording: dict[str, torch.Tensor] = {}
    for batch in stream:
        name = batch["sequence"][0]
        rep = batch["representation"][0]
        assert_consistent(rep, [batch["labels"][t][0] for t in range(2)], batch["has_label"][0])
        first_real = next(t for t in range(2) if rep[t].any())
        per_recording.setdefault(name, rep[first_real])
        assert torch.equal(rep[first_real], per_recording[name])  # same transform over all chunks
    assert set(per_recording) == {"a", "b"}


def test_dropped_boxes_reach_the_batch(tmp_path):
    write_blob_shard(tmp_path / "edge.h5", box=(28.0, 0.0, 4.0, 3.0), labelled=(3,))
    cfg = AugmentationConfig(enabled=True, flip_p=0.0, zoom_in_p=1.0, zoom_out_p=0.0, zoom_in_max=1.5)
    ds = RandomSequenceDataset(tmp_path, seq_len=2, augmentation=cfg)
    raw = RandomSequenceDataset(tmp_path, seq_len=2)[0]
    counts = []
    for seed in range(30):
        sample = ds.sample(0, torch.Generator().manual_seed(seed))
        transform = sample_transform(cfg, W, H, torch.Generator().manual_seed(seed))
        expected = augment_sequence(transform, raw["representation"], raw["labels"], cfg)[2]
        assert sample["aug_dropped_boxes"] == expected
        assert len(sample["labels"][1]) == 1 - expected
        counts.append(expected)
    assert 0 < sum(counts) < 30  # the corner box is cut out by some crops, not by all
    batch = next(iter(build_dataloader(tmp_path, sampling="random", batch_size=1, seq_len=2, augmentation=None)))
    assert batch["aug_dropped_boxes"].tolist() == [0] and batch["aug_dropped_boxes"].dtype == torch.int64


def test_disabled_augmentation_is_the_identity():
    t = sample_transform(AugmentationConfig(), W, H, torch.Generator().manual_seed(0))
    assert t.is_identity
    frames = blob_frames(2)
    assert torch.equal(t.apply_to_histograms(frames), frames)


@pytest.mark.parametrize(
    ("mapping", "match"),
    [({"flip_p": 1.5}, "dataset.augmentation.flip_p"), ({"zoom_in_max": 0.9}, "dataset.augmentation.zoom_in_max"),
     ({"zoom_in_p": 0.7, "zoom_out_p": 0.5}, "zoom_in_p \\+ zoom_out_p"), ({"flip": 0.5}, "augmentation.flip: unknown"),
     ({"min_side_px": 0}, "dataset.augmentation.min_side_px")],
)
def test_bad_settings_name_the_key(mapping, match):
    with pytest.raises(ValueError, match=match):
        AugmentationConfig.from_mapping(mapping)


def test_shape_mismatch_is_an_error():
    t = SequenceTransform(W, H, flip=True)
    with pytest.raises(ValueError, match=r"\(H, W\) = \(20, 32\)"):
        t.apply_to_histograms(torch.zeros((1, C, H + 1, W), dtype=torch.uint8))
    with pytest.raises(ValueError, match="rectangle"):
        SequenceTransform(W, H, src=(20, 0, 16, 10))
