"""RVT's flip / zoom-in / zoom-out augmentation (evdet.model.training.augmentation): exact maps, draws, config parsing.

The expected numbers are worked out by hand from the formulas of RVT ``data/utils/augmentor.py`` and
``data/genx_utils/labels.py`` (see the module docstring of :mod:`evdet.model.training.augmentation`).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from evdet.model.training.augmentation import (
    RANDOM_REFERENCE,
    STREAM_REFERENCE,
    AugmentationConfig,
    SamplingAugmentation,
    SequenceTransform,
    augment_sequence,
    nearest_exact_index,
    sample_transform,
    scale_boxes,
)

C, H, W = 4, 20, 32


def ramp_frames(n: int = 2, channels: int = C, height: int = H, width: int = W) -> torch.Tensor:
    """(n, channels, height, width) uint8 with distinct-ish values: 7*row + col + 50*channel + n (mod 256)."""
    rows = torch.arange(height).view(1, 1, height, 1)
    cols = torch.arange(width).view(1, 1, 1, width)
    chans = torch.arange(channels).view(1, channels, 1, 1)
    seq = torch.arange(n).view(n, 1, 1, 1)
    return ((7 * rows + cols + 50 * chans + seq) % 251 + 1).to(torch.uint8)


def boxes(*rows) -> torch.Tensor:
    """(n, 5) float32 [class_id, x, y, w, h] from tuples."""
    return torch.tensor([list(r) for r in rows], dtype=torch.float32).reshape(-1, 5)


def zoom_config(mode: str = "random", **kw) -> AugmentationConfig:
    values = {"flip_p": 0.0, "zoom_p": 1.0, "zoom_in_weight": 1.0, "zoom_in_max": 1.5, "zoom_out_weight": 0.0,
              "zoom_out_max": 1.2}
    values.update(kw)
    return AugmentationConfig(mode=mode, **values)


# --------------------------------------------------------------------------------------------------- flip

def test_flip_reverses_columns_and_maps_boxes_in_pixel_index_convention():
    frames = ramp_frames()
    t = SequenceTransform(W, H, flip=True)
    out = t.apply_to_histograms(frames)
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    assert torch.equal(out[..., 22], frames[..., 9])  # column j -> W - 1 - j = 31 - j
    assert torch.equal(out[..., 0], frames[..., 31]) and torch.equal(out[..., 31], frames[..., 0])
    kept, dropped = t.apply_to_boxes(boxes((3, 9, 5, 7, 4), (1, 0, 0, 31, 19), (2, 30, 1, 0, 2)))
    # x' = W - 1 - x - w: 31 - 9 - 7 = 15; the full-frame box stays; flat boxes are not removed by a flip (RVT)
    assert dropped == 0
    assert kept.tolist() == [[3, 15, 5, 7, 4], [1, 0, 0, 31, 19], [2, 1, 1, 0, 2]]
    assert torch.equal(t.apply_to_boxes(kept)[0], boxes((3, 9, 5, 7, 4), (1, 0, 0, 31, 19), (2, 30, 1, 0, 2)))


# --------------------------------------------------------------------------------------------------- zoom out

def test_zoom_out_by_two_exact_pixels_and_boxes():
    t = SequenceTransform(W, H, mode="zoom_out", factor=2.0, x0=10, y0=6)
    assert t.window_hw == (10, 16)
    frames = ramp_frames()
    out = t.apply_to_histograms(frames)
    # nearest-exact 32 -> 16 and 20 -> 10: destination u reads floor((u + 0.5) * 2) = 2u + 1
    expected = torch.zeros_like(frames)
    expected[..., 6:16, 10:26] = frames[..., 1::2, 1::2]
    assert torch.equal(out, expected)
    kept, dropped = t.apply_to_boxes(boxes(
        (1, 8, 4, 8, 6),      # x2 = 16 / 2 = 8, x = 4 -> w 4; y2 = 5, y = 2 -> h 3; + (10, 6)
        (2, 20, 10, 11, 9),   # x2 = min(31 / 2, 16 - 1) = 15, x = 10 -> w 5; y2 = min(9.5, 9) = 9, y = 5 -> h 4
        (3, 30, 2, 1, 4),     # x2 = min(15.5, 15) = 15 = x: flat, removed
    ))
    assert dropped == 1
    assert kept.tolist() == [[1, 14, 8, 4, 3], [2, 20, 11, 5, 4]]


def test_zoom_out_non_integer_factor():
    t = SequenceTransform(W, H, mode="zoom_out", factor=1.25, x0=3, y0=2)
    assert t.window_hw == (16, 25)  # int(20 / 1.25), int(32 / 1.25) = int(25.6)
    kept, dropped = t.apply_to_boxes(boxes((0, 10, 5, 10, 5), (4, 20, 10, 11, 9)))
    # scale 0.8, image 25.6 x 16: (10, 5, 10, 5) -> x2 = 16, x = 8, y2 = 8, y = 4 -> (8, 4, 8, 4) + (3, 2)
    # (20, 10, 11, 9) -> x2 = min(24.8, 24.6) = 24.6, x = 16; y2 = min(15.2, 15) = 15, y = 8 -> (16, 8, 8.6, 7)
    assert dropped == 0
    assert torch.allclose(kept, boxes((0, 11, 6, 8, 4), (4, 19, 10, 8.6, 7)), atol=1e-5, rtol=0)
    out = t.apply_to_histograms(ramp_frames(1))
    assert out[..., :2, :].sum() == 0 and out[..., 18:, :].sum() == 0
    assert out[..., :3].sum() == 0 and out[..., 28:].sum() == 0
    assert bool((out[..., 2:18, 3:28] > 0).all())  # ramp values are >= 1 everywhere


# --------------------------------------------------------------------------------------------------- zoom in

def test_zoom_in_by_two_exact_pixels_and_boxes():
    t = SequenceTransform(W, H, mode="zoom_in", factor=2.0, x0=4, y0=2)
    frames = ramp_frames()
    out = t.apply_to_histograms(frames)
    # crop rows 2..11, cols 4..19; nearest-exact 16 -> 32 reads floor((u + 0.5) / 2) = u // 2
    rows = 2 + torch.arange(H) // 2
    cols = 4 + torch.arange(W) // 2
    assert torch.equal(out, frames[..., rows[:, None], cols[None, :]])
    kept, dropped = t.apply_to_boxes(boxes(
        (0, 9, 5, 7, 4),     # inside: shift -> (5, 3, 7, 4), x2 = min(24, 31), y2 = 14 -> (10, 6, 14, 8)
        (1, 12, 8, 10, 6),   # right/bottom clamped to z_x1 - 1 = 19, z_y1 - 1 = 11 -> (8, 6, 7, 3) -> (16, 12, 14, 6)
        (2, 24, 2, 4, 4),    # right of the window: x and x + w clamp to 19 -> flat, removed
        (3, 0, 0, 3, 3),     # left/above the window: clamp to x0 = 4 / y0 = 2 -> flat, removed
        (4, 18, 2, 6, 4),    # 1 of 6 px inside: a sliver, KEPT (no visibility filter in RVT): (28, 0, 2, 8)
    ))
    assert dropped == 2
    assert kept.tolist() == [[0, 10, 6, 14, 8], [1, 16, 12, 14, 6], [4, 28, 0, 2, 8]]


def test_zoom_in_window_at_the_frame_edge_uses_w_minus_one():
    t = SequenceTransform(W, H, mode="zoom_in", factor=2.0, x0=16, y0=10)
    # z_x1 = min(16 + 16, 31) = 31, z_y1 = min(20, 19) = 19: corners clamp to <= 30 / <= 18
    kept, dropped = t.apply_to_boxes(boxes((5, 20, 12, 11, 7)))
    # (20..31, 12..19) -> (20..30, 12..18) - (16, 10) = (4, 2, 10, 6) -> x2 = min(28, 31), y2 = min(16, 19)
    assert dropped == 0 and kept.tolist() == [[5, 8, 4, 20, 12]]


def test_flip_is_applied_before_the_zoom():
    frames = ramp_frames()
    labels = boxes((0, 2, 3, 6, 5), (1, 20, 8, 9, 7))
    for mode in ("zoom_in", "zoom_out"):
        both = SequenceTransform(W, H, flip=True, mode=mode, factor=1.6, x0=5, y0=4)
        zoom = SequenceTransform(W, H, mode=mode, factor=1.6, x0=5, y0=4)
        flip = SequenceTransform(W, H, flip=True)
        assert torch.equal(both.apply_to_histograms(frames), zoom.apply_to_histograms(torch.flip(frames, dims=(-1,))))
        assert torch.equal(both.apply_to_boxes(labels)[0], zoom.apply_to_boxes(flip.apply_to_boxes(labels)[0])[0])
        zoom_then_flip = flip.apply_to_histograms(zoom.apply_to_histograms(frames))
        assert not torch.equal(both.apply_to_histograms(frames), zoom_then_flip)


def test_scale_boxes_clamps_to_the_new_image_and_removes_flat():
    out = scale_boxes(boxes((0, 2, 2, 4, 4), (1, 15, 0, 1, 3), (2, 1, 1, 0, 3)), 2.0, 16, 10)
    # x2 = min((x + w) * 2, 31): (4, 4, 8, 8); (30, 0, min(32, 31) - 30 = 1, 6); w 0 -> removed
    assert out.tolist() == [[0, 4, 4, 8, 8], [1, 30, 0, 1, 6]]
    with pytest.raises(ValueError, match="factor"):
        scale_boxes(out, 0.0, 16, 10)


# --------------------------------------------------------------------------------------------------- interpolation

def torch_index(m: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Source index per destination pixel as torch's interpolate reads it (contiguous NCHW, C = 2, like RVT's
    (1, C, H, W) input; values encode the index in two bytes so uint8 works for spans > 255)."""
    idx = torch.arange(m)
    parts = [(idx // 256).to(dtype), (idx % 256).to(dtype)]
    out = [F.interpolate(p.view(1, 1, 1, m).expand(1, 2, 2, m).contiguous(), size=(2, n), mode="nearest-exact")
           [0, 1, 1].to(torch.int64) for p in parts]
    return out[0] * 256 + out[1]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_nearest_exact_index_equals_torch_interpolate(dtype):
    pairs = [(m, n) for m in range(1, 41) for n in range(1, 41)]
    for full, f_max in ((360, 1.5), (640, 1.5), (20, 1.5), (32, 1.5)):  # every zoom window of eTraM / the tests
        for win in range(int(full / f_max), full + 1):
            pairs += [(full, win), (win, full)]
    for m, n in pairs:
        assert torch.equal(nearest_exact_index(m, n), torch_index(m, n, dtype)), (m, n)
    # torch evaluates the scale in float32: an exact tie (40.5 * 360 / 243 = 60) reads the pixel before
    assert int(nearest_exact_index(360, 243)[40]) == 59 == int(torch_index(360, 243, dtype)[40])
    frames = ramp_frames(1, 3, 33, 47).to(dtype)
    for size in [(20, 31), (50, 64), (33, 47), (7, 90)]:
        rows, cols = nearest_exact_index(33, size[0]), nearest_exact_index(47, size[1])
        mine = frames[..., rows[:, None], cols[None, :]]
        assert torch.equal(mine, F.interpolate(frames, size=size, mode="nearest-exact"))


def reference_histograms(t: SequenceTransform, frames: torch.Tensor) -> torch.Tensor:
    """Oracle: the transform written with torch.flip and torch's interpolate(mode='nearest-exact')."""
    out = torch.flip(frames, dims=(-1,)) if t.flip else frames
    if not t.zooms:
        return out
    (h, w), x0, y0 = t.window_hw, t.x0, t.y0
    if t.mode == "zoom_in":
        return F.interpolate(out[..., y0:y0 + h, x0:x0 + w], size=(t.height, t.width), mode="nearest-exact")
    canvas = torch.zeros_like(out)
    canvas[..., y0:y0 + h, x0:x0 + w] = F.interpolate(out, size=(h, w), mode="nearest-exact")
    return canvas


@pytest.mark.parametrize("seed", range(6))
def test_histograms_equal_torch_at_the_etram_size(seed):
    g = torch.Generator().manual_seed(seed)
    height, width = 360, 640
    frames = torch.randint(0, 11, (2, 3, height, width), generator=g, dtype=torch.uint8)
    labels = [boxes(), boxes((0, 100, 50, 80, 60), (1, 500, 300, 120, 59))]
    for cfg in (zoom_config(flip_p=0.5), zoom_config(flip_p=0.5, zoom_in_weight=0.0, zoom_out_weight=1.0)):
        for _ in range(4):
            t = sample_transform(cfg, width, height, g, labels=labels)
            assert t.zooms
            assert torch.equal(t.apply_to_histograms(frames), reference_histograms(t, frames))


# --------------------------------------------------------------------------------------------------- zoom-in window

def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


@pytest.mark.parametrize("seed", range(4))
def test_zoom_in_window_contains_the_chosen_box(seed):
    """Along each axis the window contains the box (the box the window when it is larger), up to the < 1 px the
    reference loses by truncating the corner with int()."""
    g = torch.Generator().manual_seed(seed)
    height, width = 360, 640
    cfg = zoom_config(flip_p=0.5, zoom_in_max=3.0)
    for _ in range(300):
        x = float(torch.randint(0, width - 1, (), generator=g))
        y = float(torch.randint(0, height - 1, (), generator=g))
        w = float(torch.randint(1, width - int(x), (), generator=g)) - 0.25 * float(torch.rand((), generator=g))
        h = float(torch.randint(1, height - int(y), (), generator=g)) - 0.25 * float(torch.rand((), generator=g))
        labels = [boxes((0, x, y, w, h)), boxes()]
        t = sample_transform(cfg, width, height, g, labels=labels)
        assert t.mode == "zoom_in"
        if t.flip:
            x = width - 1 - x - w
        h_win, w_win = t.window_hw
        assert 0 <= t.x0 <= width - w_win and 0 <= t.y0 <= height - h_win
        assert overlap(t.x0, t.x0 + w_win, x, x + w) > min(w_win, w) - 1 - 1e-3  # 1e-3: float32 box coordinates
        assert overlap(t.y0, t.y0 + h_win, y, y + h) > min(h_win, h) - 1 - 1e-3


def test_zoom_in_uses_a_box_of_the_latest_labelled_window():
    early, left, right = boxes((0, 27, 2, 4, 4)), boxes((1, 0, 14, 3, 3)), boxes((2, 28, 14, 3, 3))
    labels = [early, left, right, boxes()]  # latest window with boxes: index 2 (the right box)
    g = torch.Generator().manual_seed(3)
    seen = {False: 0, True: 0}
    for _ in range(100):
        t = sample_transform(zoom_config(flip_p=0.5, zoom_in_max=1.5), W, H, g, labels=labels)
        h_win, w_win = t.window_hw
        bx = W - 1 - 28 - 3 if t.flip else 28  # the window follows the FLIPPED box
        assert t.x0 <= bx and t.x0 + w_win >= bx + 3 - 1
        assert t.y0 <= 14 and t.y0 + h_win >= 14 + 3 - 1
        seen[t.flip] += 1
    assert min(seen.values()) > 20


def test_zoom_in_picks_every_box_of_the_frame():
    """Three boxes far apart: each is chosen about a third of the time (RVT's randint never picks the last one)."""
    labels = [boxes((0, 0, 0, 2, 2), (1, 15, 9, 2, 2), (2, 30, 17, 1, 2))]
    g = torch.Generator().manual_seed(0)
    counts = [0, 0, 0]
    for _ in range(600):
        t = sample_transform(zoom_config(zoom_in_max=4.0), W, H, g, labels=labels)
        h_win, w_win = t.window_hw
        inside = [i for i, (x, y) in enumerate([(0, 0), (15, 9), (30, 17)])
                  if t.x0 <= x and x + 1 <= t.x0 + w_win and t.y0 <= y and y + 1 <= t.y0 + h_win]
        if len(inside) == 1:  # the window holds exactly one box: that one was chosen
            counts[inside[0]] += 1
    assert all(c > 100 for c in counts), counts


def test_zoom_in_without_boxes_warns_and_does_not_zoom():
    cfg = zoom_config(flip_p=1.0)
    with pytest.warns(UserWarning, match="without any box"):
        t = sample_transform(cfg, W, H, torch.Generator().manual_seed(0), labels=[boxes(), boxes()])
    assert t.flip and not t.zooms and t.mode == "none"
    with pytest.raises(ValueError, match="labels"):
        sample_transform(cfg, W, H, torch.Generator().manual_seed(0))
    # streaming never zooms in, so it needs no labels and never warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(20):
            sample_transform(STREAM_REFERENCE, W, H, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------- draws

def draw_stats(cfg: AugmentationConfig, n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = [boxes((0, 100, 60, 50, 40))]
    stats = {"flip": 0, "zoom_in": 0, "zoom_out": 0, "in_f": [], "out_f": [], "x0_max": 0}
    for _ in range(n):
        t = sample_transform(cfg, 640, 360, g, labels=labels)
        stats["flip"] += t.flip
        if t.mode != "none":
            stats[t.mode] += 1
            stats["in_f" if t.mode == "zoom_in" else "out_f"].append(t.factor)
    return stats


def test_random_sampling_draw_statistics():
    n = 20_000
    s = draw_stats(RANDOM_REFERENCE, n, seed=1)  # fixed seed: deterministic; tolerances ~6 standard deviations
    zooms = s["zoom_in"] + s["zoom_out"]
    assert abs(s["flip"] / n - 0.5) < 0.02
    assert abs(zooms / n - 0.8) < 0.02
    assert abs(s["zoom_in"] / zooms - 0.8) < 0.02  # weights 8 : 2
    assert 1.0 <= min(s["in_f"]) and max(s["in_f"]) < 1.5 and abs(sum(s["in_f"]) / len(s["in_f"]) - 1.25) < 0.01
    assert 1.0 <= min(s["out_f"]) and max(s["out_f"]) < 1.2 and abs(sum(s["out_f"]) / len(s["out_f"]) - 1.1) < 0.01


def test_streaming_draw_statistics_never_zoom_in():
    n = 20_000
    s = draw_stats(STREAM_REFERENCE, n, seed=2)
    assert s["zoom_in"] == 0
    assert abs(s["flip"] / n - 0.5) < 0.02
    assert abs(s["zoom_out"] / n - 0.5) < 0.02
    assert max(s["out_f"]) < 1.2 and abs(sum(s["out_f"]) / len(s["out_f"]) - 1.1) < 0.01


def test_zoom_out_corner_is_uniform_over_the_free_room():
    g = torch.Generator().manual_seed(5)
    cfg = zoom_config(zoom_in_weight=0.0, zoom_out_weight=1.0, zoom_out_max=2.0)
    xs = []
    for _ in range(2000):
        t = sample_transform(cfg, W, H, g)
        h_win, w_win = t.window_hw
        assert (h_win, w_win) == (int(H / t.factor), int(W / t.factor))
        assert 0 <= t.x0 <= W - w_win and 0 <= t.y0 <= H - h_win
        if W - w_win > 0:
            xs.append((t.x0 + 0.5) / (W - w_win))  # int(U(0, room)) is uniform over 0 .. room - 1
    assert abs(sum(xs) / len(xs) - 0.5) < 0.03


def test_draws_are_reproducible_with_a_seeded_generator():
    labels = [boxes((0, 9, 5, 7, 4))]
    a = [sample_transform(RANDOM_REFERENCE, W, H, torch.Generator().manual_seed(s), labels=labels) for s in range(30)]
    b = [sample_transform(RANDOM_REFERENCE, W, H, torch.Generator().manual_seed(s), labels=labels) for s in range(30)]
    assert a == b and len({(t.flip, t.mode, t.factor) for t in a}) > 10


# --------------------------------------------------------------------------------------------------- sequences

def test_augment_sequence_applies_one_transform_and_counts_drops():
    frames = ramp_frames(3)
    labels = [boxes((0, 9, 5, 7, 4), (3, 24, 2, 4, 4)), boxes(), boxes((1, 0, 0, 3, 3))]
    t = SequenceTransform(W, H, flip=False, mode="zoom_in", factor=2.0, x0=4, y0=2)
    rep, out, dropped = augment_sequence(t, frames, labels)
    assert rep.dtype == torch.uint8 and rep.shape == frames.shape
    for k in range(3):
        assert torch.equal(rep[k], t.apply_to_histograms(frames[k]))
    assert dropped == 2 and [len(b) for b in out] == [1, 0, 0]
    assert out[0].tolist() == [[0, 10, 6, 14, 8]] and out[1].shape == (0, 5) and out[1].dtype == torch.float32
    assert labels[0].tolist() == [[0, 9, 5, 7, 4], [3, 24, 2, 4, 4]]  # inputs untouched
    with pytest.raises(ValueError, match="one per window"):
        augment_sequence(t, frames, labels[:2])


def test_blob_and_box_move_together_under_random_transforms():
    """A blob of events filling a box (pixel indices x..x+w): after any drawn transform the non-zero pixels still
    span the transformed box, within the resampling / clamping slack (~2 px)."""
    x, y, w, h = 20, 6, 7, 5
    frames = torch.zeros((1, 2, H, W), dtype=torch.uint8)
    frames[..., y:y + h + 1, x:x + w + 1] = 5
    labels = [boxes((0, x, y, w, h))]
    g = torch.Generator().manual_seed(11)
    for cfg in (RANDOM_REFERENCE, STREAM_REFERENCE):
        for _ in range(60):
            t = sample_transform(cfg, W, H, g, labels=labels)
            rep, out, _ = augment_sequence(t, frames, labels)
            assert set(rep.unique().tolist()) <= {0, 5}
            (bx, by, bw, bh), = out[0][:, 1:].tolist()
            ys, xs = torch.nonzero(rep[0, 0], as_tuple=True)
            assert abs(xs.min() - bx) <= 2 and abs(xs.max() - (bx + bw)) <= 2, t
            assert abs(ys.min() - by) <= 2 and abs(ys.max() - (by + bh)) <= 2, t


def test_identity_transform_and_disabled_settings():
    frames = ramp_frames()
    labels = [boxes((0, 9, 5, 7, 4)), boxes()]
    t = SequenceTransform(W, H)
    assert t.is_identity and SequenceTransform(W, H, mode="zoom_out", factor=1.0).is_identity
    rep, out, dropped = augment_sequence(t, frames, labels)
    assert torch.equal(rep, frames) and rep is not frames and dropped == 0
    assert [b.tolist() for b in out] == [b.tolist() for b in labels]
    off = AugmentationConfig(flip_p=0.0, zoom_p=0.0)
    assert all(sample_transform(off, W, H, torch.Generator().manual_seed(s), labels=labels).is_identity
               for s in range(20))
    assert SamplingAugmentation.from_mapping(None).enabled is False
    assert SamplingAugmentation.from_mapping({"enabled": False}).enabled is False


# --------------------------------------------------------------------------------------------------- config

def test_reference_settings():
    assert (RANDOM_REFERENCE.flip_p, RANDOM_REFERENCE.zoom_p, RANDOM_REFERENCE.zoom_in_weight,
            RANDOM_REFERENCE.zoom_out_weight, RANDOM_REFERENCE.zoom_in_max, RANDOM_REFERENCE.zoom_out_max) == \
        (0.5, 0.8, 8.0, 2.0, 1.5, 1.2)
    assert (STREAM_REFERENCE.flip_p, STREAM_REFERENCE.zoom_p, STREAM_REFERENCE.zoom_in_weight,
            STREAM_REFERENCE.zoom_out_max) == (0.5, 0.5, 0.0, 1.2)
    assert math.isclose(RANDOM_REFERENCE.zoom_in_prob, 0.64) and math.isclose(RANDOM_REFERENCE.zoom_out_prob, 0.16)
    assert STREAM_REFERENCE.zoom_in_prob == 0.0 and STREAM_REFERENCE.zoom_out_prob == 0.5
    aug = SamplingAugmentation.from_mapping({"enabled": True})
    assert aug.enabled and aug.random == RANDOM_REFERENCE and aug.stream == STREAM_REFERENCE
    aug = SamplingAugmentation.from_mapping({"enabled": True, "random": {"flip_p": 0.0}, "stream": {"zoom_p": 0.2}})
    assert aug.random == AugmentationConfig(mode="random", flip_p=0.0, zoom_p=0.8, zoom_in_weight=8.0,
                                            zoom_in_max=1.5, zoom_out_weight=2.0, zoom_out_max=1.2)
    assert aug.stream.zoom_p == 0.2 and aug.stream.zoom_out_max == 1.2 and aug.stream.mode == "stream"
    assert AugmentationConfig.reference("stream") is STREAM_REFERENCE


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"flip": 0.5}, r"dataset\.augmentation\.flip: unknown key"),
        ({"enabled": "yes"}, r"dataset\.augmentation\.enabled"),
        ({"random": {"flip_prob": 0.5}}, r"dataset\.augmentation\.random\.flip_prob: unknown key"),
        ({"random": {"flip_p": 1.5}}, r"dataset\.augmentation\.random\.flip_p"),
        ({"random": {"zoom_p": True}}, r"dataset\.augmentation\.random\.zoom_p"),
        ({"random": {"zoom_in_max": 0.9}}, r"dataset\.augmentation\.random\.zoom_in_max"),
        ({"random": {"zoom_out_weight": -1}}, r"dataset\.augmentation\.random\.zoom_out_weight"),
        ({"random": {"zoom_out_max": float("nan")}}, r"dataset\.augmentation\.random\.zoom_out_max"),
        ({"random": {"zoom_in_weight": 0, "zoom_out_weight": 0}}, r"dataset\.augmentation\.random\.zoom_out_weight"),
        ({"stream": {"zoom_in_weight": 1}}, r"dataset\.augmentation\.stream\.zoom_in_weight"),
        ({"stream": {"zoom_in_weight": 0.5, "zoom_p": 0.0}}, r"dataset\.augmentation\.stream\.zoom_in_weight"),
        ({"stream": {"zoom_p": 2}}, r"dataset\.augmentation\.stream\.zoom_p"),
        ({"stream": 3}, r"dataset\.augmentation\.stream: expected a mapping"),
        ([1, 2], r"dataset\.augmentation: expected a mapping"),
    ],
)
def test_bad_settings_name_the_key(mapping, match):
    with pytest.raises(ValueError, match=match):
        SamplingAugmentation.from_mapping(mapping)


def test_sampling_augmentation_checks_its_parts():
    with pytest.raises(ValueError, match=r"dataset\.augmentation\.stream"):
        SamplingAugmentation(enabled=True, stream=RANDOM_REFERENCE)
    with pytest.raises(ValueError, match=r"dataset\.augmentation\.stream\.zoom_in_weight"):
        AugmentationConfig(mode="stream")  # the field defaults are the random reference: zoom in not allowed
    with pytest.raises(ValueError, match="mode"):
        AugmentationConfig(mode="mixed")


def test_shape_and_window_errors():
    t = SequenceTransform(W, H, flip=True)
    with pytest.raises(ValueError, match=r"\(H, W\) = \(20, 32\)"):
        t.apply_to_histograms(torch.zeros((1, C, H + 1, W), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        t.apply_to_boxes(torch.zeros((2, 4)))
    with pytest.raises(ValueError, match="inside"):
        SequenceTransform(W, H, mode="zoom_in", factor=2.0, x0=17, y0=0)  # 16 px window at 17 leaves the frame
    with pytest.raises(ValueError, match="factor"):
        SequenceTransform(W, H, mode="zoom_out", factor=0.5)
    with pytest.raises(ValueError, match="mode"):
        SequenceTransform(W, H, mode="rotate")
    with pytest.raises(ValueError, match="positive"):
        sample_transform(RANDOM_REFERENCE, 0, H)
