"""Mixed sampling (RVT): streaming slots at fixed batch positions plus random sequences, in one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shard_factory import write_test_shard

from evdet.model.training.dataset import MixedBatches, StreamingBatches, build_dataloader, mixed_batch_split

C, H, W, WINDOW = 2, 4, 6, 50_000
# shard name -> (windows, labelled windows); window i of shard s has pixel value 20 * s + i + 1
SPEC = {"rec_a": (7, [0, 3, 6]), "rec_b": (3, [2]), "rec_c": (12, [1, 5, 9, 10, 11]), "rec_d": (5, [4])}


def write_shard(path, number, n_windows, labelled):
    frames = np.stack([np.full((C, H, W), 20 * number + i + 1, np.uint8) for i in range(n_windows)])
    write_test_shard(path, frames, (np.arange(n_windows) + 1) * WINDOW,
                     {w: [(1.0, 1.0, 2.0, 2.0, 0)] for w in labelled})


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    for number, (name, (n, labelled)) in enumerate(SPEC.items()):
        write_shard(d / f"{name}.h5", number, n, labelled)
    return d


def decode(batch, b: int, t: int) -> tuple[int, int]:
    """(shard number, window) of window t of batch item b; (-1, -1) for a padding window."""
    value = int(batch["representation"][b, t, 0, 0, 0])
    return ((value - 1) // 20, (value - 1) % 20) if value else (-1, -1)


@pytest.mark.parametrize(
    ("batch", "w_stream", "w_random", "expected"),
    [(6, 1, 1, (3, 3)), (5, 1, 1, (3, 2)), (4, 3, 1, (3, 1)), (4, 1, 3, (1, 3)), (4, 0, 1, (0, 4)),
     (4, 1, 0, (4, 0)), (1, 1, 1, (1, 0)), (2, 0.5, 0.5, (1, 1))],
)
def test_batch_split_rounds_half_up(batch, w_stream, w_random, expected):
    assert mixed_batch_split(batch, w_stream, w_random) == expected


def test_bad_weights_name_the_key():
    with pytest.raises(ValueError, match="dataset.w_stream"):
        mixed_batch_split(4, -1, 1)
    with pytest.raises(ValueError, match="dataset.w_random"):
        mixed_batch_split(4, 1, float("nan"))
    with pytest.raises(ValueError, match=r"dataset.w_stream \+ dataset.w_random"):
        mixed_batch_split(4, 0, 0)


def test_batch_composition_over_consecutive_batches(shard_dir):
    mixed = MixedBatches(shard_dir, batch_size=5, seq_len=3, w_stream=1, w_random=1, shuffle=True, seed=3)
    assert (mixed.stream_size, mixed.random_size) == (3, 2)
    reference = StreamingBatches(shard_dir, 3, 3, shuffle_recordings=True, seed=3)
    batches = list(mixed)
    assert len(batches) == len(mixed) == len(reference) > 2
    previous_last: list[tuple[int, int] | None] = [None] * 3
    first_counts = []
    for batch, ref in zip(batches, reference):
        assert batch["representation"].shape == (5, 3, C, H, W) and batch["representation"].dtype == torch.uint8
        assert len(batch["labels"]) == 3 and all(len(per_t) == 5 for per_t in batch["labels"])
        assert batch["has_label"].shape == (5, 3) and batch["aug_dropped_boxes"].tolist() == [0] * 5
        # streaming part: positions 0..2 are exactly the 3-slot stream, slot by slot
        assert torch.equal(batch["representation"][:3], ref["representation"])
        assert torch.equal(batch["is_first_sample"][:3], ref["is_first_sample"])
        assert torch.equal(batch["is_padded"][:3], ref["is_padded"])
        assert batch["sequence"][:3] == ref["sequence"]
        for k in range(3):
            if batch["is_padded"][k]:
                continue
            shard, start = decode(batch, k, 0)
            assert bool(batch["is_first_sample"][k]) == (start == 0)
            if start > 0:  # continuation: same recording at the same position, the next windows
                assert previous_last[k] == (shard, start - 1)
            previous_last[k] = decode(batch, k, 2) if decode(batch, k, 2) != (-1, -1) else None
        first_counts.append(int(batch["is_first_sample"][:3].sum()))
        # random part: positions 3..4 always start a fresh state and end at a labelled window
        assert batch["is_first_sample"][3:].tolist() == [True, True]
        assert batch["is_padded"][3:].tolist() == [False, False]
        assert batch["has_label"][3:, -1].all()
        for b in (3, 4):
            shard, window = decode(batch, b, 2)
            assert window in SPEC[batch["sequence"][b]][1] and list(SPEC).index(batch["sequence"][b]) == shard
    assert first_counts[0] == 3 and sum(first_counts[1:]) == len(SPEC) - 3  # each recording starts once


def test_random_part_cycles_through_every_labelled_window(shard_dir):
    mixed = MixedBatches(shard_dir, batch_size=4, seq_len=2, w_stream=1, w_random=1, seed=0)
    seen = set()
    for batch in mixed:
        for b in (2, 3):
            seen.add(decode(batch, b, 1))
    total = sum(sum(w >= 1 for w in v[1]) for v in SPEC.values())  # sequences of 2 start at window >= 0
    assert len(mixed) * 2 >= total and len(seen) == total


def test_mixed_is_reproducible_and_changes_with_the_epoch(shard_dir):
    def seqs(epoch):
        mixed = MixedBatches(shard_dir, batch_size=4, seq_len=3, seed=7)
        mixed.set_epoch(epoch)
        return [b["sequence"] + [decode(b, 3, 2)] for b in mixed]

    assert seqs(0) == seqs(0)
    assert seqs(0) != seqs(1)


def test_only_random_weight_gives_random_batches(shard_dir):
    loader = build_dataloader(shard_dir, sampling="mixed", batch_size=3, seq_len=2, w_stream=0, w_random=1)
    batches = list(loader)
    total = sum(sum(w >= 1 for w in v[1]) for v in SPEC.values())
    assert len(batches) == -(-total // 3)
    assert all(b["is_first_sample"].all() and b["representation"].shape[0] == 3 for b in batches)


def test_build_dataloader_mixed(shard_dir):
    loader = build_dataloader(shard_dir, sampling="mixed", batch_size=4, seq_len=3, num_workers=0, seed=1,
                              w_stream=1, w_random=1)
    assert isinstance(loader.dataset, MixedBatches) and loader.dataset.stream_size == 2
    batch = next(iter(loader))
    assert batch["is_first_sample"].tolist() == [True, True, True, True]
    with pytest.raises(ValueError, match="'stream', 'random' or 'mixed'"):
        build_dataloader(shard_dir, sampling="mix")
