"""The faster loading path gives the same data: numpy resampling of the augmentation, decoding into the sample,
stacking into shared memory in workers, and the DataLoader settings (persistent workers follow ``set_epoch``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shard_factory import write_test_shard

from evdet.model.training.augmentation import (RANDOM_REFERENCE, STREAM_REFERENCE, SamplingAugmentation, SequenceTransform,
                                     nearest_exact_index, sample_transform)
from evdet.model.training.dataset import build_dataloader
from evdet.data.shards import Shard

C, H, W = 4, 12, 20


def gather_reference(tr: SequenceTransform, frames: torch.Tensor) -> torch.Tensor:
    """The one 2-D advanced-indexing gather of RVT's maps (the code before the numpy path)."""
    if not tr.zooms:
        return torch.flip(frames, dims=(-1,)) if tr.flip else frames.clone()
    (h_win, w_win), x0, y0 = tr.window_hw, tr.x0, tr.y0
    if tr.mode == "zoom_in":
        rows, cols = y0 + nearest_exact_index(h_win, tr.height), x0 + nearest_exact_index(w_win, tr.width)
    else:
        rows, cols = nearest_exact_index(tr.height, h_win), nearest_exact_index(tr.width, w_win)
    if tr.flip:
        cols = tr.width - 1 - cols
    out = frames[..., rows[:, None], cols[None, :]]
    if tr.mode == "zoom_in":
        return out
    canvas = torch.zeros_like(frames, memory_format=torch.contiguous_format)
    canvas[..., y0:y0 + h_win, x0:x0 + w_win] = out
    return canvas


@pytest.mark.parametrize(("dtype", "width", "height"), [(torch.uint8, 640, 360), (torch.uint8, 37, 23),
                                                      (torch.float32, 37, 23), (torch.bfloat16, 37, 23)])
def test_numpy_resampling_equals_the_2d_gather(dtype, width, height):
    gen = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 11, (2, 2, height, width), generator=gen).to(dtype)
    modes = set()
    for k in range(40):
        labels = [torch.tensor([[1.0, width * 0.2, height * 0.3, width * 0.3, height * 0.2]])] * 2
        tr = sample_transform(RANDOM_REFERENCE if k % 2 else STREAM_REFERENCE, width, height, gen, labels=labels)
        modes.add((tr.mode, tr.flip))
        for x in (frames, frames.transpose(0, 1)):  # contiguous and not
            got, want = tr.apply_to_histograms(x), gather_reference(tr, x)
            assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want), tr
    assert {("zoom_in", True), ("zoom_in", False), ("zoom_out", True), ("zoom_out", False)} <= modes


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """Three recordings; window i of shard s holds random counts seeded by (s, i); every other window labelled."""
    d = tmp_path_factory.mktemp("fast")
    for s, n in enumerate((9, 5, 12)):
        rng = np.random.default_rng(s)
        frames = (rng.random((n, C, H, W)) < 0.3).astype(np.uint8) * rng.integers(1, 11, (n, C, H, W), dtype=np.uint8)
        boxes = {w: [(4.0 + w, 6.0, 12.0, 8.0, w % 3)] for w in range(0, n, 2)}
        write_test_shard(d / f"rec_{s}.h5", frames, (np.arange(n) + 1) * 50_000, boxes)
    return d


def test_read_representation_into_out(shard_dir):
    shard = Shard(shard_dir / "rec_0.h5")
    out = np.full((3, C, H, W), 255, np.uint8)
    assert shard.read_representation(2, 5, out=out) is out
    assert np.array_equal(out, shard.read_representation(2, 5))
    with pytest.raises(ValueError, match="rec_0.h5: read_representation out= must be a C-contiguous uint8"):
        shard.read_representation(2, 5, out=np.zeros((2, C, H, W), np.uint8))


def batches_equal(a: list[dict], b: list[dict]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if set(x) != set(y):
            return False
        for key in x:
            if key == "labels":
                if not all(torch.equal(p, q) for lp, lq in zip(x[key], y[key]) for p, q in zip(lp, lq)):
                    return False
            elif isinstance(x[key], torch.Tensor):
                if not torch.equal(x[key], y[key]):
                    return False
            elif x[key] != y[key]:
                return False
    return True


AUG = SamplingAugmentation(enabled=True, stream=STREAM_REFERENCE, random=RANDOM_REFERENCE)


def test_worker_batches_equal_main_process_batches(shard_dir):
    """Stacking into shared memory in a worker changes nothing (random: no augmentation, whose draws depend on the
    worker seed; stream: augmented, its draws are seeded per slot)."""
    for sampling, aug in (("random", None), ("stream", AUG)):
        main = list(build_dataloader(shard_dir, sampling, batch_size=3, seq_len=4, num_workers=0, seed=2,
                                     augmentation=aug))
        worker = build_dataloader(shard_dir, sampling, batch_size=3, seq_len=4, num_workers=1, seed=2,
                                  augmentation=aug, prefetch_factor=3)
        got = list(worker)
        assert batches_equal(main, got), sampling
        assert all(b["representation"].is_shared() for b in got)


def test_persistent_workers_follow_set_epoch(shard_dir):
    def epochs(persistent: bool) -> list[list[dict]]:
        loader = build_dataloader(shard_dir, "stream", batch_size=2, seq_len=3, num_workers=1, seed=4,
                                  shuffle=True, augmentation=AUG, persistent_workers=persistent)
        out = []
        for epoch in range(3):
            loader.dataset.set_epoch(epoch)
            len(loader)  # the epoch's length (it depends on the shuffle) before the epoch's iterator
            out.append(list(loader))
        return out

    fresh, persistent = epochs(False), epochs(True)
    assert [[b["sequence"] for b in e] for e in fresh] != [[b["sequence"] for b in fresh[0]]] * 3  # epochs differ
    for a, b in zip(fresh, persistent):
        assert batches_equal(a, b)


def test_loader_settings_reach_the_dataloader(shard_dir):
    loader = build_dataloader(shard_dir, "random", batch_size=2, seq_len=2, num_workers=2, persistent_workers=True,
                              prefetch_factor=4, pin_memory=False)
    assert (loader.persistent_workers, loader.prefetch_factor, loader.pin_memory) == (True, 4, False)
    plain = build_dataloader(shard_dir, "mixed", batch_size=2, seq_len=2, num_workers=0, persistent_workers=True,
                             prefetch_factor=4)  # without workers the worker settings do not apply
    assert plain.num_workers == 0 and not plain.persistent_workers
    with pytest.raises(ValueError, match="prefetch_factor must be a positive integer, got 0"):
        build_dataloader(shard_dir, "random", num_workers=1, prefetch_factor=0)


def test_data_module_loader_settings():
    from evdet.model.training.datamodule import ShardDataModule

    module = ShardDataModule.__new__(ShardDataModule)
    module.config = {"hardware": {"accelerator": "auto", "pin_memory": "auto"}}
    assert module.loader_settings() == {"persistent_workers": False, "prefetch_factor": 2,
                                        "pin_memory": torch.cuda.is_available()}
    module.config = {"hardware": {"accelerator": "cpu", "pin_memory": "auto", "persistent_workers": True,
                                  "prefetch_factor": 6}}
    assert module.loader_settings() == {"persistent_workers": True, "prefetch_factor": 6, "pin_memory": False}
    module.config = {"hardware": {"pin_memory": "yes"}}
    with pytest.raises(ValueError, match="hardware.pin_memory: expected true, false or auto, got 'yes'"):
        module.loader_settings()
