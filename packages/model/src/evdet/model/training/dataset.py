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
``aug_dropped_boxes``  int64 tensor (B,)                     boxes the augmentation dropped in the sample (0
                                                             without augmentation; addition to the contract)
=====================  ====================================  ===================================================

* Random sampling (:class:`RandomSequenceDataset`, map-style): one sample per labelled window ``w >= L - 1`` of
  every shard — the ``L`` windows ``w - L + 1 .. w``; like RVT (``data/genx_utils/sequence_rnd.py``), object frames
  whose sequence would start before the recording are not sampled. Every sample starts a fresh recurrent state
  (``is_first_sample`` True).
* Streaming sampling (:class:`StreamingBatches`, iterable, yields whole batches): the recordings are split over
  the ``B`` batch slots; each slot walks through its recordings in order in consecutive chunks of ``L``
  windows, so the recurrent state carries over between batches. ``is_first_sample`` is True at a recording's
  first chunk. The last chunk of a recording is filled up to ``L`` with padding windows (zeros, no label,
  ``window_end_us`` -1). A slot whose recordings are finished yields padding samples (zeros, ``is_padded``
  True, ``is_first_sample`` False, ``sequence`` "") until every slot is done, so each real window is visited
  exactly once (what evaluation needs).

* Mixed sampling (:class:`MixedBatches`, iterable, yields whole batches; RVT's default for training): each
  batch holds ``B_stream = floor(B * w_stream / (w_stream + w_random) + 0.5)`` (rounding half up) streaming
  slots at the FIXED batch positions ``0 .. B_stream - 1`` (their state carries across batches exactly as in
  streaming sampling) followed by ``B_random = B - B_stream`` random-sampling sequences at positions
  ``B_stream .. B - 1`` (``is_first_sample`` always True, so the model resets their state every batch). RVT's
  default weights are 1 / 1 (half of the batch each). An epoch lasts as long as the streaming part (every
  window once); the random part cycles through its samples in a seeded order, reshuffled when used up (with no
  streaming part: ``ceil(S / B)`` batches of random samples).

Labels come from :class:`evdet.data.shards.Shard` (the one shard reader): boxes at the representation size as the
reference's loader yields them, classes by name — the shard's ``class_names`` (checked against ``class_names``,
the dataset config's list) or mapped through ``class_map`` (:mod:`evdet.data.classes`; a class the map does not
list is a :class:`~evdet.data.labels.LabelError` naming the shard file).

Augmentation (``augmentation``, training only, :mod:`evdet.model.training.augmentation`): RVT's settings differ per sampling
mode (:class:`~evdet.model.training.augmentation.SamplingAugmentation`): one transform per random sample (``random``
settings); per streaming slot one transform per recording (``stream`` settings), drawn at its first chunk and kept
over all its chunks.

Shards are read lazily: only the small index arrays are loaded up front; histograms are read per sample from an
HDF5 handle opened in the process (DataLoader worker) that reads them, in one HDF5 read per sample decoded straight
into the sample's array; in a worker the batch is stacked straight into shared memory (what the DataLoader sends to
the main process). :func:`build_dataloader` also takes the DataLoader settings ``persistent_workers``,
``prefetch_factor`` and ``pin_memory`` (config ``hardware.*``, :class:`evdet.model.training.datamodule.ShardDataModule`).
Measured with ``evdet-bench loader --synthetic`` (640x360x20, L = 5, B = 8, RVT augmentation, 1 worker, 2 CPU
cores, best of 3): random sampling 55 -> 121 frames/s per worker (147 with shards written since the shard
compression change of :mod:`evdet.data.shards`), streaming 89 -> 142 (186). Per window, the zoom resampling went
from ~12 to ~2 ms (:meth:`~evdet.model.training.augmentation.SequenceTransform.apply_to_histograms`); what is left is the
Blosc decoding (2.4 ms, 1.1 ms for new shards) and writing the batch into shared memory (~3 ms, page faults).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from evdet.model.training.augmentation import (AugmentationConfig, SamplingAugmentation, SequenceTransform, augment_sequence,
                                     sample_transform)
from evdet.data.classes import ClassMap
from evdet.data.shards import Shard, ShardError, load_shards

__all__ = [
    "MixedBatches",
    "RandomSequenceDataset",
    "StreamingBatches",
    "build_dataloader",
    "collate_sequences",
    "mixed_batch_split",
]


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _window_sample(shard: Shard | None, start: int, seq_len: int, channels: int, height: int, width: int) -> dict:
    """Windows ``start .. start + seq_len - 1`` of ``shard``; indices outside the shard become padding windows.

    The windows inside the shard are decoded by one HDF5 read straight into the sample's array (numpy-allocated:
    large numpy buffers are backed by transparent huge pages where the kernel allows, which makes their first
    touch several times cheaper than torch's allocator); only the padding windows are zeroed.
    """
    representation = np.empty((seq_len, channels, height, width), np.uint8)
    labels: list[torch.Tensor] = []
    has_label = np.zeros(seq_len, bool)
    label_t = np.full(seq_len, -1, np.int64)
    window_end = np.full(seq_len, -1, np.int64)
    lo = hi = start
    if shard is not None:
        lo, hi = max(start, 0), min(start + seq_len, shard.num_windows)
        if hi > lo:
            shard.read_representation(lo, hi, out=representation[lo - start : hi - start])
            window_end[lo - start : hi - start] = shard.window_end_us[lo:hi]
        else:
            lo = hi = start
    representation[: lo - start] = 0
    representation[hi - start :] = 0
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


def _augment(sample: dict, transform: SequenceTransform | None) -> dict:
    """Apply ``transform`` to a sample's windows and boxes and record ``aug_dropped_boxes`` (0 when none)."""
    dropped = 0
    if transform is not None and not transform.is_identity:
        sample["representation"], sample["labels"], dropped = augment_sequence(
            transform, sample["representation"], sample["labels"]
        )
    sample["aug_dropped_boxes"] = dropped
    return sample


def _stack_representations(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)``, into a buffer chosen for where the batch goes next.

    In a DataLoader worker the batch is stacked straight into shared memory (as torch's ``default_collate`` does),
    so sending it to the main process does not copy it again; in the main process into a numpy-allocated buffer
    (huge pages where available, see :func:`_window_sample`). The copies are numpy's (a plain memory copy, ~3x
    faster than ``torch.stack`` on uint8 here). Tensors that are not CPU uint8 of one shape go to ``torch.stack``.
    """
    first = tensors[0]
    if first.device.type != "cpu" or first.dtype != torch.uint8 or any(
            t.shape != first.shape or t.dtype != first.dtype or t.device != first.device or t.requires_grad
            for t in tensors):
        return torch.stack(tensors)
    shape = (len(tensors), *first.shape)
    if get_worker_info() is not None:
        storage = first.untyped_storage()._new_shared(math.prod(shape))
        out = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    else:
        out = torch.from_numpy(np.empty(shape, np.uint8))
    array = out.numpy()
    for i, tensor in enumerate(tensors):
        array[i] = tensor.numpy()
    return out


def collate_sequences(samples: list[dict]) -> dict:
    """Stack per-sample dicts (from :class:`RandomSequenceDataset`) into the batch dict (module docstring).

    Args:
        samples: ``B`` dicts with ``representation`` (L, C, H, W) uint8, ``labels`` list[L] of (n, 5) float32,
            ``has_label`` (L,) bool, ``label_t_us`` (L,) int64, ``window_end_us`` (L,) int64,
            ``is_first_sample`` bool, ``is_padded`` bool, ``sequence`` str, optionally ``aug_dropped_boxes`` int.

    Returns:
        The batch dict with ``representation`` (B, L, C, H, W), ``labels`` as list[L] of list[B] and
        ``aug_dropped_boxes`` (B,) int64 (0 for samples without it).

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
        "representation": _stack_representations([s["representation"] for s in samples]),
        "labels": [[s["labels"][t] for s in samples] for t in range(seq_len)],
        "has_label": torch.stack([s["has_label"] for s in samples]),
        "label_t_us": torch.stack([s["label_t_us"] for s in samples]),
        "window_end_us": torch.stack([s["window_end_us"] for s in samples]),
        "is_first_sample": torch.tensor([bool(s["is_first_sample"]) for s in samples], dtype=torch.bool),
        "is_padded": torch.tensor([bool(s["is_padded"]) for s in samples], dtype=torch.bool),
        "sequence": [s["sequence"] for s in samples],
        "aug_dropped_boxes": torch.tensor([int(s.get("aug_dropped_boxes", 0)) for s in samples], dtype=torch.int64),
    }


class RandomSequenceDataset(Dataset):
    """RVT random sampling: one sample per labelled window, the ``seq_len`` windows ending at it.

    Args:
        shard_dir: a split folder of shards (``<out>/<split>``).
        seq_len: sequence length ``L`` (windows), >= 1.
        class_map, class_names: see :func:`~evdet.data.shards.load_shards`.
        augmentation: the ``random`` settings of the training augmentation; one transform per sample, drawn from
            torch's global generator (seeded per DataLoader worker) in ``dataset[i]``, or from ``generator`` in
            :meth:`sample`.

    Attributes:
        shards: the :class:`~evdet.data.shards.Shard` objects.
        index: ``(S, 2)`` int64 array of ``(shard number, labelled window)`` per sample, windows ``>= L - 1``.

    ``dataset[i]`` returns a dict: ``representation`` (L, C, H, W) uint8, ``labels`` list[L] of (n, 5) float32
    tensors, ``has_label`` (L,) bool, ``label_t_us`` (L,) int64, ``window_end_us`` (L,) int64,
    ``is_first_sample`` True, ``is_padded`` False, ``sequence`` (shard name), ``aug_dropped_boxes`` (int);
    batch them with :func:`collate_sequences`.

    Raises:
        ValueError: if ``seq_len`` is not a positive integer.
        ShardError: see :func:`~evdet.data.shards.load_shards`; also if no shard has a labelled window at index ``L - 1`` or later.
        LabelError: a class unknown to ``class_map`` (names the file).
    """

    def __init__(
        self,
        shard_dir: str | Path,
        seq_len: int = 5,
        *,
        class_map: ClassMap | str | None = None,
        class_names: list[str] | tuple[str, ...] | None = None,
        augmentation: AugmentationConfig | None = None,
    ) -> None:
        self.seq_len = _check_positive("seq_len", seq_len)
        self.shard_dir = Path(shard_dir)
        self.shards = load_shards(self.shard_dir, class_map, class_names)
        self.augmentation = augmentation
        rows = []
        for number, shard in enumerate(self.shards):
            labelled = shard.label_window_index[shard.label_window_index >= self.seq_len - 1]
            rows.append(np.stack([np.full(len(labelled), number), labelled], axis=1))
        self.index = np.concatenate(rows).astype(np.int64).reshape(-1, 2)
        if len(self.index) == 0:
            raise ShardError(f"{self.shard_dir}: no shard has a labelled window at index >= {self.seq_len - 1} "
                             f"(sequence length {self.seq_len}); random sampling needs one")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        return self.sample(i)

    def sample(self, i: int, generator: torch.Generator | None = None) -> dict:
        """Sample ``i`` (see the class docstring), augmented with a transform drawn from ``generator``."""
        number, window = (int(v) for v in self.index[i])
        shard = self.shards[number]
        sample = _window_sample(shard, window - self.seq_len + 1, self.seq_len, shard.channels, shard.height,
                                shard.width)
        sample.update(is_first_sample=True, is_padded=False, sequence=shard.name)
        transform = None
        if self.augmentation is not None:
            transform = sample_transform(self.augmentation, shard.width, shard.height, generator,
                                         labels=sample["labels"])
        return _augment(sample, transform)


def _shared_epoch() -> torch.Tensor:
    """A 0-d int64 tensor in shared memory holding a dataset's epoch.

    DataLoader workers hold a copy of the dataset; with ``persistent_workers`` they keep it across epochs, so an
    epoch stored as a plain attribute and changed by ``set_epoch`` in the main process would never reach them (the
    same shuffle every epoch). Shared memory is seen by forked and spawned workers alike.
    """
    return torch.zeros((), dtype=torch.int64).share_memory_()


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
        seed: seed of that shuffle and of the augmentation draws; both also change with :meth:`set_epoch`.
        class_map, class_names: see :func:`~evdet.data.shards.load_shards`.
        augmentation: the ``stream`` settings of the training augmentation; per slot, one transform per recording
            (drawn at its first chunk from a generator seeded with ``(seed, epoch, slot)``, kept for all its
            chunks).

    Raises:
        ValueError: if ``batch_size`` or ``seq_len`` is not a positive integer.
        ShardError: see :func:`~evdet.data.shards.load_shards`.
        LabelError: a label class id unknown to ``class_map`` (names the file).
    """

    def __init__(
        self,
        shard_dir: str | Path,
        batch_size: int,
        seq_len: int = 5,
        *,
        shuffle_recordings: bool = False,
        seed: int = 0,
        class_map: ClassMap | str | None = None,
        class_names: list[str] | tuple[str, ...] | None = None,
        augmentation: AugmentationConfig | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.batch_size = _check_positive("batch_size", batch_size)
        self.seq_len = _check_positive("seq_len", seq_len)
        self.world_size = _check_positive("world_size", world_size)
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank must be in 0..{self.world_size - 1}, got {rank}")
        self.rank = int(rank)
        self.shard_dir = Path(shard_dir)
        self.shards = load_shards(self.shard_dir, class_map, class_names)
        self.augmentation = augmentation
        self.shuffle_recordings = bool(shuffle_recordings)
        self.seed = int(seed)
        self._epoch = _shared_epoch()

    @property
    def epoch(self) -> int:
        """The epoch of :meth:`set_epoch` (0 at first), in shared memory: persistent DataLoader workers see it."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle and augmentation draws of epoch ``epoch`` (also in running persistent workers)."""
        self._epoch.fill_(int(epoch))

    def chunks_per_recording(self) -> list[int]:
        """Chunks of ``seq_len`` windows per shard: ``ceil(num_windows / seq_len)``."""
        return [-(-s.num_windows // self.seq_len) for s in self.shards]

    def _all_slots(self) -> list[list[int]]:
        """Assignment over every rank's slots: ``batch_size x world_size`` slots of one global stream."""
        lengths = self.chunks_per_recording()
        if self.shuffle_recordings:
            order = [int(i) for i in np.random.default_rng([self.seed, self.epoch]).permutation(len(lengths))]
        else:
            order = sorted(range(len(lengths)), key=lambda r: (-lengths[r], r))
        return _assign_slots(lengths, self.batch_size * self.world_size, order)

    def slot_assignment(self) -> list[list[int]]:
        """Shard numbers per slot of this rank, in the order the slot plays them.

        Under data-parallel training the ``world_size`` ranks share one assignment of ``batch_size x world_size``
        slots and rank ``r`` plays slots ``r*B .. (r+1)*B - 1``, so every recording is streamed by exactly one rank.
        """
        return self._all_slots()[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        """Number of batches: the longest slot's chunk count over ALL ranks, so every rank takes as many steps
        (ranks with shorter slots yield padding batches)."""
        lengths = self.chunks_per_recording()
        return max(sum(lengths[r] for r in slot) for slot in self._all_slots())

    def _slot_stream(self, recordings: list[int]):
        for r in recordings:
            shard = self.shards[r]
            for chunk, start in enumerate(range(0, shard.num_windows, self.seq_len)):
                yield shard, start, chunk == 0

    def iter_samples(self) -> Iterator[list[dict]]:
        """Per step, the ``batch_size`` per-slot sample dicts (slot order), before :func:`collate_sequences`."""
        ref = self.shards[0]
        shape = (ref.channels, ref.height, ref.width)
        streams = [self._slot_stream(slot) for slot in self.slot_assignment()]
        first_slot = self.rank * self.batch_size
        generators = [torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, k])
                                                        .generate_state(1)[0]))
                      for k in range(first_slot, first_slot + self.batch_size)]
        transforms: list[SequenceTransform | None] = [None] * self.batch_size
        for _ in range(len(self)):
            items = [next(stream, None) for stream in streams]
            samples = []
            for k, item in enumerate(items):
                if item is None:
                    sample = _window_sample(None, 0, self.seq_len, *shape)
                    sample.update(is_first_sample=False, is_padded=True, sequence="")
                    sample = _augment(sample, None)
                else:
                    shard, start, first = item
                    sample = _window_sample(shard, start, self.seq_len, *shape)
                    sample.update(is_first_sample=first, is_padded=False, sequence=shard.name)
                    if self.augmentation is not None and first:
                        transforms[k] = sample_transform(self.augmentation, shard.width, shard.height, generators[k],
                                                         labels=sample["labels"])
                    sample = _augment(sample, transforms[k])
                samples.append(sample)
            yield samples

    def __iter__(self):
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError(f"StreamingBatches({self.shard_dir}): streaming needs num_workers <= 1, "
                             f"got {info.num_workers}")
        for samples in self.iter_samples():
            yield collate_sequences(samples)


def mixed_batch_split(batch_size: int, w_stream: float, w_random: float) -> tuple[int, int]:
    """Split a batch into streaming slots and random sequences: ``(B_stream, B_random)``.

    ``B_stream = floor(B * w_stream / (w_stream + w_random) + 0.5)`` (rounding half up), ``B_random = B - B_stream``
    (RVT's mixed sampling; its default weights 1 / 1 give half of the batch to each).

    Raises:
        ValueError: ``batch_size`` not a positive integer, a negative or non-finite weight, or both weights 0
            (message names ``dataset.w_stream`` / ``dataset.w_random``).
    """
    batch_size = _check_positive("batch_size", batch_size)
    for key, w in (("dataset.w_stream", w_stream), ("dataset.w_random", w_random)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{key}: expected a finite weight >= 0, got {w!r}")
    if w_stream + w_random <= 0:
        raise ValueError(f"dataset.w_stream + dataset.w_random must be > 0, got {w_stream} + {w_random}")
    b_stream = int(math.floor(batch_size * w_stream / (w_stream + w_random) + 0.5))
    return b_stream, batch_size - b_stream


class MixedBatches(IterableDataset):
    """RVT mixed sampling: streaming slots and random sequences in one batch (module docstring).

    Positions ``0 .. B_stream - 1`` are the streaming slots of a :class:`StreamingBatches` (state carried, fixed
    positions), positions ``B_stream .. B - 1`` random samples of a :class:`RandomSequenceDataset`
    (``is_first_sample`` True). Use with ``DataLoader(batch_size=None)`` and at most one worker.

    Args:
        shard_dir: a split folder of shards.
        batch_size: ``B`` >= 1; seq_len: ``L`` >= 1.
        w_stream, w_random: weights of the two parts (:func:`mixed_batch_split`).
        shuffle: shuffle the streaming part's recordings (the random part is always shuffled).
        seed: seed of all shuffles and augmentation draws; they also change with :meth:`set_epoch`.
        class_map, class_names: see :func:`~evdet.data.shards.load_shards`.
        augmentation: the training augmentation; its ``stream`` settings go to the streaming part, its ``random``
            settings to the random part.

    Attributes:
        stream_size, random_size: ``B_stream``, ``B_random``.
        stream, random: the two part datasets (``None`` for an empty part).

    Raises:
        ValueError: invalid sizes or weights (:func:`mixed_batch_split`).
        ShardError, LabelError: see :func:`~evdet.data.shards.load_shards`; ShardError also when the random part has no labelled
            window.
    """

    def __init__(
        self,
        shard_dir: str | Path,
        batch_size: int,
        seq_len: int = 5,
        *,
        w_stream: float = 1.0,
        w_random: float = 1.0,
        shuffle: bool = True,
        seed: int = 0,
        class_map: ClassMap | str | None = None,
        class_names: list[str] | tuple[str, ...] | None = None,
        augmentation: SamplingAugmentation | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.batch_size = _check_positive("batch_size", batch_size)
        self.seq_len = _check_positive("seq_len", seq_len)
        self.shard_dir = Path(shard_dir)
        augmentation = augmentation if augmentation is not None and augmentation.enabled else None
        self.stream_size, self.random_size = mixed_batch_split(self.batch_size, w_stream, w_random)
        self.seed = int(seed)
        self.rank = int(rank)
        self._epoch = _shared_epoch()
        self.stream = (StreamingBatches(shard_dir, self.stream_size, seq_len, shuffle_recordings=shuffle, seed=seed,
                                        class_map=class_map, class_names=class_names,
                                        augmentation=augmentation.stream if augmentation else None, rank=rank,
                                        world_size=world_size)
                       if self.stream_size else None)
        self.random = (RandomSequenceDataset(shard_dir, seq_len, class_map=class_map, class_names=class_names,
                                             augmentation=augmentation.random if augmentation else None)
                       if self.random_size else None)

    @property
    def epoch(self) -> int:
        """The epoch of :meth:`set_epoch` (0 at first), in shared memory: persistent DataLoader workers see it."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffles and augmentation draws of epoch ``epoch`` (also in running persistent workers)."""
        self._epoch.fill_(int(epoch))
        if self.stream is not None:
            self.stream.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches per epoch: the streaming part's length, or ``ceil(S / B_random)`` without a streaming part."""
        if self.stream is not None:
            return len(self.stream)
        assert self.random is not None
        return -(-len(self.random) // self.random_size)

    def _random_samples(self) -> Iterator[dict]:
        """Endless random samples: seeded permutations of the random dataset, one after another."""
        assert self.random is not None
        seeds = np.random.SeedSequence([self.seed, self.epoch, 1_000_003, self.rank])  # ranks draw differently
        rng = np.random.default_rng(seeds)
        generator = torch.Generator().manual_seed(int(seeds.generate_state(1)[0]))
        while True:
            for i in rng.permutation(len(self.random)):
                yield self.random.sample(int(i), generator)

    def __iter__(self):
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError(f"MixedBatches({self.shard_dir}): mixed sampling needs num_workers <= 1, "
                             f"got {info.num_workers}")
        randoms = self._random_samples() if self.random is not None else None
        streams: Iterator[list[dict]] | None = self.stream.iter_samples() if self.stream is not None else None
        for _ in range(len(self)):
            samples = next(streams) if streams is not None else []
            if randoms is not None:
                samples = samples + [next(randoms) for _ in range(self.random_size)]
            yield collate_sequences(samples)


def build_dataloader(
    shard_dir: str | Path,
    sampling: str = "stream",
    batch_size: int = 8,
    seq_len: int = 5,
    num_workers: int = 0,
    seed: int = 0,
    shuffle: bool | None = None,
    *,
    w_stream: float = 1.0,
    w_random: float = 1.0,
    class_map: ClassMap | str | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    augmentation: SamplingAugmentation | Mapping[str, Any] | None = None,
    rank: int = 0,
    world_size: int = 1,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """DataLoader yielding batch dicts (module docstring) from one split folder of shards.

    Args:
        shard_dir: ``<out>/<split>``.
        sampling: ``"stream"`` (:class:`StreamingBatches`), ``"random"`` (:class:`RandomSequenceDataset`) or
            ``"mixed"`` (:class:`MixedBatches`).
        batch_size: ``B``; seq_len: ``L``.
        num_workers: DataLoader worker processes; streaming and mixed use at most 1 (larger values are reduced
            to 1, since one ordered stream cannot be split across workers).
        seed: seed of the shuffling and augmentation draws.
        shuffle: random: shuffle samples (default True); stream: shuffle recordings (default False); mixed:
            shuffle the streaming part's recordings (default True).
        w_stream, w_random: mixed sampling weights (:func:`mixed_batch_split`); ignored otherwise.
        class_map, class_names: see :func:`~evdet.data.shards.load_shards`.
        augmentation: :class:`~evdet.model.training.augmentation.SamplingAugmentation` or its mapping
            (``dataset.augmentation``); ``None`` or disabled: no augmentation. Pass it for training only.
        rank, world_size: data-parallel rank and number of ranks. Stream and mixed sampling split the recordings
            over the ranks (same number of batches on every rank); random sampling leaves the split to the
            trainer's distributed sampler.
        persistent_workers: keep the worker processes between epochs (no restart and no refill of the prefetch
            queue at each epoch; ignored without workers). Stream and mixed sampling still follow ``set_epoch``
            (their epoch is in shared memory). Random sampling: the workers' torch generators are seeded once
            instead of every epoch, so augmentation draws after the first epoch differ from a run without
            persistent workers (still reproducible for a seed).
        prefetch_factor: batches each worker prepares ahead (torch's default 2 when ``None``; ignored without
            workers).
        pin_memory: copy batches into page-locked memory in the main process (a DataLoader thread), so that
            ``.to("cuda", non_blocking=True)`` is asynchronous; only useful when training on CUDA.

    Returns:
        A DataLoader whose items are batch dicts (random: collated by :func:`collate_sequences`; stream and
        mixed: whole batches, ``batch_size=None``).

    Raises:
        ValueError: unknown ``sampling``, a non-positive ``batch_size``/``seq_len``/``prefetch_factor``, negative
            ``num_workers``, invalid weights or augmentation settings, unknown ``class_map`` name.
        ShardError, LabelError: see :func:`~evdet.data.shards.load_shards`.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if prefetch_factor is not None:
        _check_positive("prefetch_factor", prefetch_factor)
    if sampling not in ("stream", "random", "mixed"):
        raise ValueError(f"sampling must be 'stream', 'random' or 'mixed', got {sampling!r}")
    if not isinstance(augmentation, SamplingAugmentation):
        augmentation = SamplingAugmentation.from_mapping(augmentation)
    if not augmentation.enabled:
        augmentation = None
    if sampling == "random":
        dataset = RandomSequenceDataset(shard_dir, seq_len, class_map=class_map, class_names=class_names,
                                        augmentation=augmentation.random if augmentation else None)
        generator = torch.Generator().manual_seed(int(seed))
        return DataLoader(
            dataset,
            batch_size=_check_positive("batch_size", batch_size),
            shuffle=True if shuffle is None else bool(shuffle),
            collate_fn=collate_sequences,
            num_workers=num_workers,
            generator=generator,
            **_loader_settings(num_workers, persistent_workers, prefetch_factor, pin_memory),
        )
    if sampling == "stream":
        dataset = StreamingBatches(shard_dir, batch_size, seq_len, shuffle_recordings=bool(shuffle), seed=seed,
                                   class_map=class_map, class_names=class_names,
                                   augmentation=augmentation.stream if augmentation else None, rank=rank,
                                   world_size=world_size)
    else:
        dataset = MixedBatches(shard_dir, batch_size, seq_len, w_stream=w_stream, w_random=w_random,
                               shuffle=True if shuffle is None else bool(shuffle), seed=seed, class_map=class_map,
                               class_names=class_names, augmentation=augmentation, rank=rank,
                               world_size=world_size)
    workers = min(num_workers, 1)
    return DataLoader(dataset, batch_size=None, num_workers=workers,
                      **_loader_settings(workers, persistent_workers, prefetch_factor, pin_memory))


def _loader_settings(num_workers: int, persistent_workers: bool, prefetch_factor: int | None,
                     pin_memory: bool) -> dict[str, Any]:
    """DataLoader keyword arguments of :func:`build_dataloader`'s loader settings (torch refuses the worker
    settings without workers, so they are left out then)."""
    settings: dict[str, Any] = {"pin_memory": bool(pin_memory)}
    if num_workers > 0:
        settings["persistent_workers"] = bool(persistent_workers)
        if prefetch_factor is not None:
            settings["prefetch_factor"] = int(prefetch_factor)
    return settings
