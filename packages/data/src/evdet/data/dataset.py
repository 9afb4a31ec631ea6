"""Sequence datasets over representation shards: RVT's random and streaming sampling.

RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 4) trains its recurrent detector on sequences of ``L`` consecutive
50 ms windows. Two samplings are provided, both producing the batch dict of ``docs/architecture.md``
("Batch"), for batch size ``B`` and sequence length ``L``:

=====================  ====================================  ===================================================
key                    type                                  meaning
=====================  ====================================  ===================================================
``representation``     uint8 tensor (B, L, 2*bins, H, W)     stacked histograms
``labels``             list[L] of list[B] of float32 (n, 5)  ``[class_id, x, y, w, h]`` (px, top-left); (0, 5)
``has_label``          bool tensor (B, L)                    window has a label timestamp
``label_t_us``         int64 tensor (B, L)                   that timestamp (µs), -1 when none
``window_end_us``      int64 tensor (B, L)                   window end (µs), -1 for padding windows
``is_first_sample``    bool tensor (B,)                      first chunk of a recording: reset the state
``is_padded``          bool tensor (B,)                      padding (stream exhausted): ignore
``sequence``           list[B] of str                        shard name ("" for padding)
=====================  ====================================  ===================================================

* Random sampling (:class:`RandomSequenceDataset`, map-style): one sample per labelled window ``w`` of every
  shard — the ``L`` windows ``w - L + 1 .. w`` (windows before the recording start are zero padding windows,
  ``window_end_us`` -1, no label). Every sample starts a fresh recurrent state (``is_first_sample`` True).
* Streaming sampling (:class:`StreamingBatches`, iterable, yields whole batches): the recordings are split over
  the ``B`` batch slots; each slot walks through its recordings in order in consecutive chunks of ``L``
  windows, so the recurrent state carries over between batches. ``is_first_sample`` is True at a recording's
  first chunk. The last chunk of a recording is filled up to ``L`` with padding windows (zeros, no label,
  ``window_end_us`` -1). A slot whose recordings are finished yields padding samples (zeros, ``is_padded``
  True, ``is_first_sample`` False, ``sequence`` "") until every slot is done, so each real window is visited
  exactly once (what evaluation needs).

A window with several label timestamps (label rate above 1 / window) uses the last one (closest to its end).
Shards are read lazily: only the small index arrays are loaded up front; histograms are read per sample from an
HDF5 handle opened in the process (DataLoader worker) that reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from evdet.data.shards import Shard, ShardError, list_shards

__all__ = ["RandomSequenceDataset", "StreamingBatches", "build_dataloader", "collate_sequences", "load_shards"]


def load_shards(shard_dir: str | Path) -> list[Shard]:
    """Open every shard of a split folder (index arrays only) and check they share one tensor shape.

    Returns:
        :class:`~evdet.data.shards.Shard` objects sorted by file name.

    Raises:
        ShardError: if the folder is missing or empty, a shard is unfinished or malformed, or two shards differ
            in ``(channels, height, width)`` (message names the file).
    """
    shards = [Shard(p) for p in list_shards(shard_dir)]
    ref = shards[0]
    for shard in shards[1:]:
        if (shard.channels, shard.height, shard.width) != (ref.channels, ref.height, ref.width):
            raise ShardError(f"{shard.path}: representation is {shard.channels}x{shard.height}x{shard.width}, "
                             f"expected {ref.channels}x{ref.height}x{ref.width} as {ref.path.name}")
    return shards


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _window_sample(shard: Shard | None, start: int, seq_len: int, channels: int, height: int, width: int) -> dict:
    """Windows ``start .. start + seq_len - 1`` of ``shard``; indices outside the shard become padding windows."""
    representation = np.zeros((seq_len, channels, height, width), np.uint8)
    labels: list[torch.Tensor] = []
    has_label = np.zeros(seq_len, bool)
    label_t = np.full(seq_len, -1, np.int64)
    window_end = np.full(seq_len, -1, np.int64)
    if shard is not None:
        lo, hi = max(start, 0), min(start + seq_len, shard.num_windows)
        if hi > lo:
            representation[lo - start : hi - start] = shard.read_representation(lo, hi)
            window_end[lo - start : hi - start] = shard.window_end_us[lo:hi]
    for i in range(seq_len):
        window = start + i
        if shard is not None and 0 <= window < shard.num_windows:
            t_label, boxes = shard.window_labels(window)
            has_label[i] = t_label >= 0
            label_t[i] = t_label
            labels.append(torch.from_numpy(boxes))
        else:
            labels.append(torch.zeros((0, 5), dtype=torch.float32))
    return {
        "representation": torch.from_numpy(representation),
        "labels": labels,
        "has_label": torch.from_numpy(has_label),
        "label_t_us": torch.from_numpy(label_t),
        "window_end_us": torch.from_numpy(window_end),
    }


def collate_sequences(samples: list[dict]) -> dict:
    """Stack per-sample dicts (from :class:`RandomSequenceDataset`) into the batch dict (module docstring).

    Args:
        samples: ``B`` dicts with ``representation`` (L, C, H, W) uint8, ``labels`` list[L] of (n, 5) float32,
            ``has_label`` (L,) bool, ``label_t_us`` (L,) int64, ``window_end_us`` (L,) int64,
            ``is_first_sample`` bool, ``is_padded`` bool, ``sequence`` str.

    Returns:
        The batch dict with ``representation`` (B, L, C, H, W) and ``labels`` as list[L] of list[B].

    Raises:
        ValueError: if ``samples`` is empty or the samples differ in sequence length (message names the key).
    """
    if not samples:
        raise ValueError("collate_sequences: got no samples")
    seq_len = len(samples[0]["labels"])
    for i, s in enumerate(samples):
        if len(s["labels"]) != seq_len or s["representation"].shape[0] != seq_len:
            raise ValueError(f"collate_sequences: sample {i} key 'labels'/'representation' has sequence length "
                             f"{len(s['labels'])}, expected {seq_len}")
    return {
        "representation": torch.stack([s["representation"] for s in samples]),
        "labels": [[s["labels"][t] for s in samples] for t in range(seq_len)],
        "has_label": torch.stack([s["has_label"] for s in samples]),
        "label_t_us": torch.stack([s["label_t_us"] for s in samples]),
        "window_end_us": torch.stack([s["window_end_us"] for s in samples]),
        "is_first_sample": torch.tensor([bool(s["is_first_sample"]) for s in samples], dtype=torch.bool),
        "is_padded": torch.tensor([bool(s["is_padded"]) for s in samples], dtype=torch.bool),
        "sequence": [s["sequence"] for s in samples],
    }


class RandomSequenceDataset(Dataset):
    """RVT random sampling: one sample per labelled window, the ``seq_len`` windows ending at it.

    Args:
        shard_dir: a split folder of shards (``<out>/<split>``).
        seq_len: sequence length ``L`` (windows), >= 1.

    Attributes:
        shards: the :class:`~evdet.data.shards.Shard` objects.
        index: ``(S, 2)`` int64 array of ``(shard number, labelled window)`` per sample.

    ``dataset[i]`` returns a dict: ``representation`` (L, C, H, W) uint8, ``labels`` list[L] of (n, 5) float32
    tensors, ``has_label`` (L,) bool, ``label_t_us`` (L,) int64, ``window_end_us`` (L,) int64,
    ``is_first_sample`` True, ``is_padded`` False, ``sequence`` (shard name); batch them with
    :func:`collate_sequences`.

    Raises:
        ValueError: if ``seq_len`` is not a positive integer.
        ShardError: see :func:`load_shards`; also if no shard has a labelled window.
    """

    def __init__(self, shard_dir: str | Path, seq_len: int = 5) -> None:
        self.seq_len = _check_positive("seq_len", seq_len)
        self.shard_dir = Path(shard_dir)
        self.shards = load_shards(self.shard_dir)
        rows = []
        for number, shard in enumerate(self.shards):
            labelled = np.flatnonzero(shard.window_label_row >= 0)
            rows.append(np.stack([np.full(len(labelled), number), labelled], axis=1))
        self.index = np.concatenate(rows).astype(np.int64).reshape(-1, 2)
        if len(self.index) == 0:
            raise ShardError(f"{self.shard_dir}: no shard has a labelled window; random sampling needs labels")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        number, window = (int(v) for v in self.index[i])
        shard = self.shards[number]
        sample = _window_sample(shard, window - self.seq_len + 1, self.seq_len, shard.channels, shard.height,
                                shard.width)
        sample.update(is_first_sample=True, is_padded=False, sequence=shard.name)
        return sample


def _assign_slots(lengths: list[int], batch_size: int, order: list[int]) -> list[list[int]]:
    """Split recordings over ``batch_size`` slots: each recording (taken in ``order``) goes to the slot with the
    fewest chunks so far (ties: lowest slot), which balances the stream lengths."""
    slots: list[list[int]] = [[] for _ in range(batch_size)]
    load = [0] * batch_size
    for r in order:
        s = min(range(batch_size), key=lambda k: (load[k], k))
        slots[s].append(r)
        load[s] += lengths[r]
    return slots


class StreamingBatches(IterableDataset):
    """RVT streaming sampling: yields whole batches (dicts, module docstring) of consecutive chunks.

    Recordings go to the ``batch_size`` slots balancing the number of chunks (longest first, or in a seeded
    random order with ``shuffle_recordings``); each slot yields its recordings' chunks of ``seq_len`` windows in
    order; exhausted slots yield padding until all are done. Use with ``DataLoader(batch_size=None)`` and at
    most one worker: the whole stream is one ordered sequence, so it is not split across workers (iterating in
    a second worker raises).

    Args:
        shard_dir: a split folder of shards.
        batch_size: number of slots ``B``, >= 1.
        seq_len: chunk length ``L`` (windows), >= 1.
        shuffle_recordings: randomise which recordings share a slot and their order (training).
        seed: seed of that shuffle; the order also changes with :meth:`set_epoch`.

    Raises:
        ValueError: if ``batch_size`` or ``seq_len`` is not a positive integer.
        ShardError: see :func:`load_shards`.
    """

    def __init__(
        self,
        shard_dir: str | Path,
        batch_size: int,
        seq_len: int = 5,
        *,
        shuffle_recordings: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = _check_positive("batch_size", batch_size)
        self.seq_len = _check_positive("seq_len", seq_len)
        self.shard_dir = Path(shard_dir)
        self.shards = load_shards(self.shard_dir)
        self.shuffle_recordings = bool(shuffle_recordings)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of epoch ``epoch`` (only used with ``shuffle_recordings``)."""
        self.epoch = int(epoch)

    def chunks_per_recording(self) -> list[int]:
        """Chunks of ``seq_len`` windows per shard: ``ceil(num_windows / seq_len)``."""
        return [-(-s.num_windows // self.seq_len) for s in self.shards]

    def slot_assignment(self) -> list[list[int]]:
        """Shard numbers per slot, in the order the slot plays them."""
        lengths = self.chunks_per_recording()
        if self.shuffle_recordings:
            order = [int(i) for i in np.random.default_rng([self.seed, self.epoch]).permutation(len(lengths))]
        else:
            order = sorted(range(len(lengths)), key=lambda r: (-lengths[r], r))
        return _assign_slots(lengths, self.batch_size, order)

    def __len__(self) -> int:
        """Number of batches: the longest slot's chunk count."""
        lengths = self.chunks_per_recording()
        return max(sum(lengths[r] for r in slot) for slot in self.slot_assignment())

    def _slot_stream(self, recordings: list[int]):
        for r in recordings:
            shard = self.shards[r]
            for chunk, start in enumerate(range(0, shard.num_windows, self.seq_len)):
                yield shard, start, chunk == 0

    def __iter__(self):
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError(f"StreamingBatches({self.shard_dir}): streaming needs num_workers <= 1, "
                             f"got {info.num_workers}")
        ref = self.shards[0]
        shape = (ref.channels, ref.height, ref.width)
        streams = [self._slot_stream(slot) for slot in self.slot_assignment()]
        while True:
            items = [next(stream, None) for stream in streams]
            if all(item is None for item in items):
                return
            samples = []
            for item in items:
                if item is None:
                    sample = _window_sample(None, 0, self.seq_len, *shape)
                    sample.update(is_first_sample=False, is_padded=True, sequence="")
                else:
                    shard, start, first = item
                    sample = _window_sample(shard, start, self.seq_len, *shape)
                    sample.update(is_first_sample=first, is_padded=False, sequence=shard.name)
                samples.append(sample)
            yield collate_sequences(samples)


def build_dataloader(
    shard_dir: str | Path,
    sampling: str = "stream",
    batch_size: int = 8,
    seq_len: int = 5,
    num_workers: int = 0,
    seed: int = 0,
    shuffle: bool | None = None,
) -> DataLoader:
    """DataLoader yielding batch dicts (module docstring) from one split folder of shards.

    Args:
        shard_dir: ``<out>/<split>``.
        sampling: ``"stream"`` (:class:`StreamingBatches`) or ``"random"`` (:class:`RandomSequenceDataset`).
        batch_size: ``B``; seq_len: ``L``.
        num_workers: DataLoader worker processes; streaming uses at most 1 (larger values are reduced to 1,
            since one ordered stream cannot be split across workers).
        seed: seed of the shuffling (random: sample order; stream: recording order).
        shuffle: random: shuffle samples (default True); stream: shuffle recordings (default False).

    Returns:
        A DataLoader whose items are batch dicts (random: collated by :func:`collate_sequences`; stream: the
        batches of :class:`StreamingBatches`, ``batch_size=None``).

    Raises:
        ValueError: unknown ``sampling``, or a non-positive ``batch_size``/``seq_len``, or negative
            ``num_workers``.
        ShardError: see :func:`load_shards`.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if sampling == "random":
        dataset = RandomSequenceDataset(shard_dir, seq_len)
        generator = torch.Generator().manual_seed(int(seed))
        return DataLoader(
            dataset,
            batch_size=_check_positive("batch_size", batch_size),
            shuffle=True if shuffle is None else bool(shuffle),
            collate_fn=collate_sequences,
            num_workers=num_workers,
            generator=generator,
        )
    if sampling == "stream":
        dataset = StreamingBatches(shard_dir, batch_size, seq_len, shuffle_recordings=bool(shuffle), seed=seed)
        return DataLoader(dataset, batch_size=None, num_workers=min(num_workers, 1))
    raise ValueError(f"sampling must be 'stream' or 'random', got {sampling!r}")
