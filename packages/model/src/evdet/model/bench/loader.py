"""``evdet-bench loader``: data-loading throughput from representation shards, in frames per second per worker.

Builds the training loader (:func:`evdet.model.training.dataset.build_dataloader`, the one the data module builds) over a
folder of shards and times ``--batches`` batches after the warm-up (the first batch of every worker: process start,
file opening). A *frame* is one window of one sequence, ``(C, H, W)`` uint8 (``batch_size x sequence_length``
frames per batch). Prints ONE JSON line: ``frames_per_s``, ``frames_per_s_per_worker`` (``frames_per_s`` divided by
the worker processes that decode, at least 1: with ``--workers 0`` the main process decodes), ``batches_per_s``,
``seconds`` (timed part), ``workers`` (worker processes used: streaming runs at most one, see ``build_dataloader``),
``workers_requested``, ``batches``, ``warmup_batches``, ``batch_size``, ``sequence_length``, ``input`` ([C, H, W]),
``sampling``, ``augmentation`` (RVT's training augmentation of that sampling mode applied or not), ``shards``
(number of shard files), ``shard_dir`` (null for a temporary synthetic folder), ``synthetic``, ``occupancy``
(fraction of non-zero histogram cells of the synthetic shards; null for given shards), ``persistent_workers``,
``prefetch_factor``, ``pin_memory`` (the loader settings in effect: torch pins only when CUDA is available).

Synthetic shards (``--synthetic``): ``batch_size`` recordings of ``(batches + warmup + 1) x sequence_length``
windows each (so one epoch covers the timed batches in both samplings), 640x360 px, 20 channels (10 time bins x 2
polarities), written with the project's :class:`evdet.data.shards.ShardWriter` (Blosc LZ4 + bit shuffle, as
``evdet-data preprocess`` writes them). Histogram content (:func:`synthetic_histogram`): sparse background activity
plus a few moving objects whose boxes hold denser counts, clipped at 10 like the stacked histograms of
``evdet-data preprocess``; every window is labelled with the objects' boxes (eTraM classes, sensor 1280x720 px,
downsample factor 2). Without ``SHARDS`` they go to a temporary folder removed afterwards; with ``SHARDS`` they are
written there (the folder must not hold shards yet) and kept.

``--prefetch-factor`` and ``--pin-memory`` set those DataLoader settings (training's ``hardware.prefetch_factor`` /
``hardware.pin_memory``); ``persistent_workers`` only matters between epochs and is off here.

Example: ``evdet-bench loader --synthetic --workers 2 --batches 20 --batch-size 8 --sampling random``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evdet.model.training.augmentation import RANDOM_REFERENCE, STREAM_REFERENCE, SamplingAugmentation
from evdet.model.training.dataset import build_dataloader
from evdet.data.labels import BBOX_DTYPE, ETRAM_CLASSES
from evdet.data.shards import ShardWriter, list_shards
from evdet.model.bench.flags import float_above, int_at_least

__all__ = ["ACCEPTS_OVERRIDES", "HELP", "add_arguments", "benchmark_loader", "run", "synthetic_histogram",
           "write_synthetic_shards"]

HELP = "frames/s per data-loader worker from shards"
ACCEPTS_OVERRIDES = False

#: Representation of the synthetic shards: 2 x 10 bins at 640x360 (eTraM 1280x720 downsampled by 2).
SYNTHETIC_CHANNELS, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH = 20, 360, 640
#: Histogram clip of ``evdet-data preprocess`` (counts saturate at 10).
SYNTHETIC_CLIP = 10
#: Window length (µs) of the synthetic shards.
SYNTHETIC_WINDOW_US = 50_000


def synthetic_histogram(rng: np.random.Generator, boxes: np.ndarray, occupancy: float,
                        channels: int = SYNTHETIC_CHANNELS, height: int = SYNTHETIC_HEIGHT,
                        width: int = SYNTHETIC_WIDTH) -> np.ndarray:
    """One sparse, event-like stacked histogram.

    A quarter of the non-zero cells is background activity spread over the frame (count 1 or 2), the rest lies
    inside ``boxes`` (counts ``1 + Geometric(0.5)``, clipped at :data:`SYNTHETIC_CLIP`); cells drawn twice keep one
    value, so the non-zero fraction is slightly below ``occupancy``.

    Args:
        rng: numpy generator.
        boxes: ``(n, 4)`` int ``[x, y, w, h]`` px of the representation (inside the frame, ``w, h >= 1``).
        occupancy: target fraction of non-zero cells, in (0, 1).
        channels, height, width: histogram shape.

    Returns:
        ``(channels, height, width)`` uint8.
    """
    out = np.zeros((channels, height, width), np.uint8)
    flat = out.reshape(-1)
    total = int(occupancy * flat.size)
    background = total // 4 if len(boxes) else total
    idx = rng.integers(0, flat.size, background)
    flat[idx] = rng.integers(1, 3, background, dtype=np.uint8)
    if len(boxes):
        areas = boxes[:, 2].astype(np.int64) * boxes[:, 3]
        per_box = np.maximum((total - background) * areas // max(int(areas.sum()), 1), 1)
        for (x, y, w, h), n in zip(boxes, per_box):
            c = rng.integers(0, channels, n)
            r = rng.integers(0, h, n)
            q = rng.integers(0, w, n)
            counts = np.minimum(1 + rng.geometric(0.5, n), SYNTHETIC_CLIP).astype(np.uint8)
            out[c, y + r, x + q] = counts
    return out


def write_synthetic_shards(folder: str | Path, shards: int, windows: int, *, occupancy: float = 0.03,
                           seed: int = 0) -> list[Path]:
    """Write ``shards`` synthetic format-2 shards of ``windows`` labelled windows each into ``folder``.

    Each recording has 3-6 objects (eTraM classes) moving across the 640x360 frame at constant velocity; every
    window holds :func:`synthetic_histogram` of their boxes and is labelled with them (sensor px = 2 x
    representation px, ``label_t_us`` = window end, as ``--windows label`` shards). Attributes are those of
    ``evdet-data preprocess`` shards (stacked histogram, 10 bins, clip 10, 50 ms windows, downsample factor 2).

    Args:
        folder: output folder (created if missing).
        shards: number of recordings, >= 1.
        windows: windows per recording, >= 1.
        occupancy: target fraction of non-zero histogram cells, in (0, 1).
        seed: seed of the content.

    Returns:
        The shard paths.

    Raises:
        ValueError: ``shards`` or ``windows`` < 1, ``occupancy`` outside (0, 1), or ``folder`` already holding
            ``.h5`` files (message names the folder).
    """
    if shards < 1 or windows < 1:
        raise ValueError(f"write_synthetic_shards: shards and windows must be >= 1, got {shards} and {windows}")
    if not 0 < occupancy < 1:
        raise ValueError(f"--occupancy: expected a fraction in (0, 1), got {occupancy}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.glob("*.h5")):
        raise ValueError(f"SHARDS {folder}: already holds .h5 shards; --synthetic writes into an empty folder")
    rng = np.random.default_rng(seed)
    c, h, w = SYNTHETIC_CHANNELS, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH
    paths = []
    for s in range(shards):
        n_obj = int(rng.integers(3, 7))
        size = np.stack([rng.integers(20, 160, n_obj), rng.integers(16, 90, n_obj)], axis=1)
        start = rng.uniform(0, 1, (n_obj, 2)) * (np.array([w, h]) - size)
        velocity = rng.uniform(-4, 4, (n_obj, 2))  # px per window
        classes = rng.integers(0, len(ETRAM_CLASSES), n_obj)
        path = folder / f"synthetic_{s:03d}.h5"
        ends = (np.arange(windows, dtype=np.int64) + 11) * SYNTHETIC_WINDOW_US  # first window after 0.5 s
        rows = []
        with ShardWriter(path, c, w, h) as writer:
            for i in range(windows):
                xy = start + velocity * i
                span = np.array([w, h]) - size
                xy = np.abs((xy % (2 * span)) - span)  # bounce inside the frame
                xy = span - xy
                boxes = np.concatenate([np.floor(xy).astype(np.int64), size], axis=1)
                writer.append(synthetic_histogram(rng, boxes, occupancy), int(ends[i]))
                for (x, y, bw, bh), cls in zip(boxes, classes):
                    rows.append((int(ends[i]), 2 * x, 2 * y, 2 * bw, 2 * bh, int(cls), len(rows), 1.0))
            labels = np.array(rows, dtype=BBOX_DTYPE)
            slices = np.arange(windows + 1, dtype=np.int64) * n_obj
            writer.finish(labels, ends.copy(), np.arange(windows, dtype=np.int64),
                          np.stack([slices[:-1], slices[1:]], axis=1),
                          {"width": w, "height": h, "sensor_width": 2 * w, "sensor_height": 2 * h,
                           "downsample_factor": 2, "downsample": "nearest_exact", "window_us": SYNTHETIC_WINDOW_US,
                           "bins": c // 2, "clip": SYNTHETIC_CLIP, "time_bins": "stretched", "windows": "label",
                           "split": "train", "class_names": list(ETRAM_CLASSES), "source": f"{path.stem}_td.h5",
                           "label_hz": 30, "frame_step_us": SYNTHETIC_WINDOW_US, "dropped_boxes": {},
                           "bad_events": {"total": 0}, "on_bad_events": "error"})
        paths.append(path)
    return paths


def benchmark_loader(shard_dir: str | Path, *, workers: int, batches: int, batch_size: int, sequence_length: int,
                     sampling: str, augmentation: bool = True, seed: int = 0, prefetch_factor: int | None = None,
                     pin_memory: bool = False) -> dict[str, Any]:
    """Time ``batches`` batches of the training loader over ``shard_dir`` after one warm-up batch per worker.

    Args:
        shard_dir: a folder of shards.
        workers: DataLoader worker processes requested (streaming uses at most one).
        batches: timed batches, >= 1.
        batch_size: ``B``; sequence_length: ``L``.
        sampling: ``"random"`` or ``"stream"``.
        augmentation: apply RVT's training augmentation of ``sampling`` (:data:`~evdet.model.training.augmentation.
            RANDOM_REFERENCE` / :data:`~evdet.model.training.augmentation.STREAM_REFERENCE`), as training does.
        seed: loader seed (shuffle and augmentation draws).
        prefetch_factor: batches each worker prepares ahead (``None``: torch's 2).
        pin_memory: page-locked batches (the main process copies them, as for training on CUDA).

    Returns:
        The JSON dict of the module docstring (without the synthetic keys).

    Raises:
        ShardError: a missing or malformed shard folder (names it).
        ValueError: an epoch shorter than the warm-up plus the timed batches (names the flags to change).
    """
    aug = SamplingAugmentation(enabled=True, stream=STREAM_REFERENCE, random=RANDOM_REFERENCE) if augmentation \
        else None
    loader = build_dataloader(shard_dir, sampling, batch_size=batch_size, seq_len=sequence_length,
                              num_workers=workers, seed=seed, augmentation=aug, prefetch_factor=prefetch_factor,
                              pin_memory=pin_memory)
    used = int(loader.num_workers)
    warmup = max(used, 1)
    if len(loader) < warmup + batches:
        raise ValueError(f"SHARDS {shard_dir}: one epoch of {sampling} sampling has {len(loader)} batches of "
                         f"{batch_size} x {sequence_length} windows, the benchmark needs {warmup + batches} "
                         f"({warmup} warm-up); lower --batches / --batch-size or give more shards")
    frames = 0
    shape = None
    iterator = iter(loader)
    try:
        for _ in range(warmup):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            batch = next(iterator)
            rep = batch["representation"]
            frames += int(rep.shape[0]) * int(rep.shape[1])
            shape = [int(s) for s in rep.shape[2:]]
        elapsed = time.perf_counter() - start
    finally:
        del iterator  # shuts the workers down
    return {
        "frames_per_s_per_worker": round(frames / elapsed / max(used, 1), 2),
        "frames_per_s": round(frames / elapsed, 2),
        "batches_per_s": round(batches / elapsed, 3),
        "seconds": round(elapsed, 3),
        "workers": used,
        "batches": batches,
        "warmup_batches": warmup,
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "input": shape,
        "sampling": sampling,
        "augmentation": bool(augmentation),
        "shards": len(list_shards(shard_dir)),
        "persistent_workers": bool(getattr(loader, "persistent_workers", False)),
        "prefetch_factor": getattr(loader, "prefetch_factor", None) if used else None,
        "pin_memory": bool(loader.pin_memory) and torch.cuda.is_available(),  # torch pins only with CUDA
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evdet-bench loader``."""
    parser.add_argument("shards", metavar="SHARDS", nargs="?", default=None,
                        help="folder of shards (one split); with --synthetic: where to write them (kept)")
    parser.add_argument("--synthetic", action="store_true",
                        help="write realistic 640x360x20 synthetic shards first (to SHARDS, or a temporary folder)")
    parser.add_argument("--occupancy", type=float_above(0, "a fraction of non-zero cells"), default=0.03,
                        help="non-zero cell fraction of the synthetic histograms (default 0.03)")
    parser.add_argument("--workers", type=int_at_least(0, "a number of worker processes"), default=1,
                        help="DataLoader worker processes (default 1; streaming uses at most 1)")
    parser.add_argument("--batches", type=int_at_least(1, "a number of timed batches"), default=20,
                        help="timed batches after one warm-up batch per worker (default 20)")
    parser.add_argument("--batch-size", type=int_at_least(1, "sequences per batch"), default=8,
                        help="sequences per batch (default 8)")
    parser.add_argument("--sequence-length", type=int_at_least(1, "windows per sequence"), default=5,
                        help="windows per sequence (default 5)")
    parser.add_argument("--sampling", choices=("random", "stream"), default="random",
                        help="random (independent sequences) or stream (consecutive chunks); default random")
    parser.add_argument("--augmentation", choices=("on", "off"), default="on",
                        help="RVT's training augmentation of the sampling mode (default on, as training)")
    parser.add_argument("--prefetch-factor", type=int_at_least(1, "batches prepared ahead per worker"),
                        default=None, help="batches each worker prepares ahead (default torch's 2)")
    parser.add_argument("--pin-memory", choices=("auto", "on", "off"), default="auto",
                        help="page-locked batches, as for training on CUDA (default auto: when CUDA is available)")
    parser.add_argument("--seed", type=int_at_least(0, "a seed"), default=0, help="seed (default 0)")


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Write synthetic shards if asked, then :func:`benchmark_loader` with the flags of ``args``.

    Raises:
        ValueError: neither ``SHARDS`` nor ``--synthetic``, ``--occupancy`` not below 1, a malformed shard folder
            (:class:`evdet.data.shards.ShardError`) or too few batches in an epoch (messages name the flag / file).
        FileNotFoundError: ``SHARDS`` is not a folder (without ``--synthetic``).
    """
    del overrides
    if args.shards is None and not args.synthetic:
        raise ValueError("SHARDS: give a folder of shards, or --synthetic to write synthetic ones")
    pin = torch.cuda.is_available() if args.pin_memory == "auto" else args.pin_memory == "on"
    kwargs = dict(workers=args.workers, batches=args.batches, batch_size=args.batch_size,
                  sequence_length=args.sequence_length, sampling=args.sampling,
                  augmentation=args.augmentation == "on", seed=args.seed, prefetch_factor=args.prefetch_factor,
                  pin_memory=pin)
    if not args.synthetic:
        folder = Path(args.shards)
        if not folder.is_dir():
            raise FileNotFoundError(f"SHARDS {folder}: shard folder not found")
        return {**benchmark_loader(folder, **kwargs), "shard_dir": str(folder), "synthetic": False,
                "occupancy": None, "workers_requested": args.workers}
    if not args.occupancy < 1:
        raise ValueError(f"--occupancy: expected a fraction in (0, 1), got {args.occupancy}")
    windows = (args.batches + max(args.workers, 1) + 1) * args.sequence_length
    count = max(args.batch_size, 2)

    def measure(folder: Path) -> dict[str, Any]:
        write_synthetic_shards(folder, count, windows, occupancy=args.occupancy, seed=args.seed)
        return benchmark_loader(folder, **kwargs)

    if args.shards is not None:
        result, shard_dir = measure(Path(args.shards)), str(args.shards)
    else:
        with tempfile.TemporaryDirectory(prefix="evdet-bench-loader-") as tmp:
            result, shard_dir = measure(Path(tmp)), None
    return {**result, "shard_dir": shard_dir, "synthetic": True, "occupancy": args.occupancy,
            "workers_requested": args.workers}
