"""Random and streaming sequence sampling over hand-made shards whose pixels encode (shard, window)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from shard_factory import write_test_shard

from evdet.model.training.dataset import RandomSequenceDataset, StreamingBatches, build_dataloader, collate_sequences
from evdet.data.shards import Shard, ShardError

C, H, W, WINDOW = 4, 6, 8, 50_000
# shard name -> (number of windows, labelled windows); window i of shard s has pixel value 20 * s + i + 1
SPEC = {"rec_a": (7, [0, 3, 6]), "rec_b": (3, [2]), "rec_c": (12, [1, 5, 9, 10, 11])}


def write_shard(path, number, n_windows, labelled, channels=C, complete=True):
    """Window i has pixel value 20 * number + i + 1; the k-th labelled window w gets k + 1 boxes at x = w (sensor px,
    halved by the reader)."""
    frames = np.stack([np.full((channels, H, W), 20 * number + i + 1, np.uint8) for i in range(n_windows)])
    boxes = {w: [(float(w), 2.0, 4.0, 6.0, k % 8)] * (k + 1) for k, w in enumerate(labelled)}
    return write_test_shard(path, frames, (np.arange(n_windows) + 1) * WINDOW, boxes, downsample_factor=2,
                            finish=complete)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    for number, (name, (n, labelled)) in enumerate(SPEC.items()):
        write_shard(d / f"{name}.h5", number, n, labelled)
    return d


def window_of(representation_value: int) -> tuple[int, int]:
    return (representation_value - 1) // 20, (representation_value - 1) % 20


def test_shard_reader(shard_dir):
    shard = Shard(shard_dir / "rec_c.h5")
    assert (shard.num_windows, shard.channels, shard.height, shard.width) == (12, C, H, W)
    assert shard.read_representation(2, 4)[:, 0, 0, 0].tolist() == [43, 44]
    t, boxes = shard.window_labels(5)
    assert t == 6 * WINDOW - 10_000 and boxes.shape == (2, 5) and boxes.dtype == np.float32
    assert boxes[:, 1].tolist() == [2.5, 2.5] and boxes[:, 0].tolist() == [1.0, 1.0]
    assert boxes[0, 2:].tolist() == [1.0, 2.0, 3.0]  # sensor px halved by the loader rule
    assert shard.window_labels(0) == (-1, pytest.approx(np.zeros((0, 5))))
    with pytest.raises(IndexError, match="rec_c"):
        shard.read_representation(10, 13)


def test_random_samples_end_at_labelled_windows(shard_dir):
    ds = RandomSequenceDataset(shard_dir, seq_len=4)
    # as RVT: only frames whose window has L - 1 windows before it in the recording are sampled
    assert len(ds) == sum(sum(w >= 3 for w in v[1]) for v in SPEC.values())
    ends = Counter()
    for i in range(len(ds)):
        s = ds[i]
        assert s["representation"].shape == (4, C, H, W) and s["representation"].dtype == torch.uint8
        assert s["is_first_sample"] is True and s["is_padded"] is False
        assert bool(s["has_label"][-1])
        number = list(SPEC).index(s["sequence"])
        last = int(s["representation"][-1, 0, 0, 0])
        assert window_of(last)[0] == number
        w = window_of(last)[1]
        ends[(s["sequence"], w)] += 1
        assert int(s["window_end_us"][-1]) == (w + 1) * WINDOW
        assert int(s["label_t_us"][-1]) == (w + 1) * WINDOW - 10_000
        for j in range(4):  # earlier windows: consecutive, never before the recording start
            wj = w - 3 + j
            value = int(s["representation"][j, 0, 0, 0])
            assert wj >= 0 and value == 20 * number + wj + 1
            assert bool(s["has_label"][j]) == (wj in SPEC[s["sequence"]][1])
            assert s["labels"][j].shape[0] == (SPEC[s["sequence"]][1].index(wj) + 1 if s["has_label"][j] else 0)
    assert set(ends) == {(name, w) for name, (_, lab) in SPEC.items() for w in lab if w >= 3}


def test_random_loader_batches(shard_dir):
    loader = build_dataloader(shard_dir, sampling="random", batch_size=3, seq_len=2, seed=5)
    batches = list(loader)
    assert sum(b["representation"].shape[0] for b in batches) == 8  # rec_a window 0 cannot start a 2-sequence
    b = batches[0]
    assert b["representation"].shape == (3, 2, C, H, W)
    assert len(b["labels"]) == 2 and len(b["labels"][0]) == 3
    assert b["has_label"].shape == (3, 2) and b["has_label"].dtype == torch.bool
    assert b["label_t_us"].dtype == torch.int64 and b["window_end_us"].shape == (3, 2)
    assert b["is_first_sample"].all() and not b["is_padded"].any() and len(b["sequence"]) == 3
    again = list(build_dataloader(shard_dir, sampling="random", batch_size=3, seq_len=2, seed=5))
    assert [x["sequence"] for x in again] == [x["sequence"] for x in batches]  # seeded order


@pytest.mark.parametrize("batch_size,seq_len,workers", [(2, 4, 0), (5, 3, 0), (1, 5, 1)])
def test_stream_visits_every_window_once(shard_dir, batch_size, seq_len, workers):
    loader = build_dataloader(shard_dir, sampling="stream", batch_size=batch_size, seq_len=seq_len,
                              num_workers=workers)
    seen = Counter()
    firsts = []
    n_batches = 0
    previous = [None] * batch_size
    for batch in loader:
        n_batches += 1
        assert batch["representation"].shape == (batch_size, seq_len, C, H, W)
        for b in range(batch_size):
            rep = batch["representation"][b, :, 0, 0, 0].tolist()
            ends = batch["window_end_us"][b].tolist()
            if batch["is_padded"][b]:
                assert sum(rep) == 0 and set(ends) == {-1} and batch["sequence"][b] == ""
                assert not batch["is_first_sample"][b] and not batch["has_label"][b].any()
                previous[b] = "padding"
                continue
            assert previous[b] != "padding"  # padding only after a slot's data is exhausted
            name = batch["sequence"][b]
            number = list(SPEC).index(name)
            windows = [window_of(v)[1] for v in rep if v]
            assert windows == list(range(windows[0], windows[0] + len(windows)))  # consecutive, in order
            assert windows[0] % seq_len == 0
            assert bool(batch["is_first_sample"][b]) == (windows[0] == 0)
            if windows[0] == 0:
                firsts.append(name)
            elif previous[b] is not None:
                assert previous[b] == (name, windows[0] - 1)  # state carries over: continues the same recording
            for j, v in enumerate(rep):
                if v:
                    assert window_of(v)[0] == number and ends[j] == (window_of(v)[1] + 1) * WINDOW
                    seen[(name, window_of(v)[1])] += 1
                    labelled = window_of(v)[1] in SPEC[name][1]
                    assert bool(batch["has_label"][b, j]) == labelled
                    assert len(batch["labels"][j][b]) == (SPEC[name][1].index(window_of(v)[1]) + 1 if labelled else 0)
                else:  # tail of a recording's last chunk
                    assert ends[j] == -1 and not batch["has_label"][b, j]
            previous[b] = (name, windows[-1])
    expected = {(name, w) for name, (n, _) in SPEC.items() for w in range(n)}
    assert set(seen) == expected and set(seen.values()) == {1}
    assert sorted(firsts) == sorted(SPEC)
    assert n_batches == len(loader.dataset)


def test_stream_shuffle_is_seeded(shard_dir):
    a = StreamingBatches(shard_dir, 2, 3, shuffle_recordings=True, seed=1).slot_assignment()
    b = StreamingBatches(shard_dir, 2, 3, shuffle_recordings=True, seed=1).slot_assignment()
    assert a == b and sorted(sum(a, [])) == [0, 1, 2]
    ds = StreamingBatches(shard_dir, 2, 3, shuffle_recordings=True, seed=1)
    orders = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        orders.add(tuple(map(tuple, ds.slot_assignment())))
    assert len(orders) > 1
    balanced = StreamingBatches(shard_dir, 2, 3).slot_assignment()
    assert balanced == [[2], [0, 1]]  # longest first: rec_c (4 chunks) | rec_a (3) + rec_b (1)


def test_collate_rejects_mixed_lengths(shard_dir):
    ds = RandomSequenceDataset(shard_dir, seq_len=2)
    other = RandomSequenceDataset(shard_dir, seq_len=3)
    with pytest.raises(ValueError, match="sequence length 3, expected 2"):
        collate_sequences([ds[0], other[0]])
    with pytest.raises(ValueError, match="no samples"):
        collate_sequences([])


def test_bad_inputs(tmp_path, shard_dir):
    with pytest.raises(ValueError, match="seq_len"):
        RandomSequenceDataset(shard_dir, seq_len=0)
    with pytest.raises(ValueError, match="batch_size"):
        StreamingBatches(shard_dir, 0)
    with pytest.raises(ValueError, match="sampling"):
        build_dataloader(shard_dir, sampling="sequential")
    with pytest.raises(ShardError, match="no .h5 shards"):
        RandomSequenceDataset(tmp_path)
    with pytest.raises(ShardError, match="not found"):
        RandomSequenceDataset(tmp_path / "missing")
    # unfinished shard renamed to look finished: complete is False
    tmp = write_shard(tmp_path / "half.h5", 0, 2, [1], complete=False)
    tmp.rename(tmp_path / "half.h5")
    with pytest.raises(ShardError, match=r"half\.h5.*'complete' is missing or False"):
        Shard(tmp_path / "half.h5")
    # shards of different sizes in one folder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_shard(mixed / "a.h5", 0, 2, [1])
    write_shard(mixed / "b.h5", 1, 2, [1], channels=2 * C)
    with pytest.raises(ShardError, match=r"b\.h5.*expected 4x6x8"):
        StreamingBatches(mixed, 2)
