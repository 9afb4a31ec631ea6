"""``evdet-bench eval``: evdet's evaluation time against pycocotools, on the same synthetic detections.

Generates seeded ground truth and detections (:func:`synthetic_recordings`), builds the COCO images once
(:func:`evdet.eval.prophesee.build_images`: protocol filter and +-50 ms time matching, the same for both), then
times :func:`evdet.eval.prophesee.evaluate_images` (class-agnostic and class-aware COCO passes, per-class figures)
with the chosen backend (``--backend``, default evdet's, faster-coco-eval) and with ``backend="pycocotools"`` (the
reference's ``COCOeval``), in the same run.

Prints ONE JSON line: ``seconds`` (evdet's backend), ``pycocotools_seconds``, ``ratio`` (``seconds /
pycocotools_seconds``), ``identical`` (all 12 stats of both passes and of every class within
:data:`IDENTICAL_ABS_TOL` of pycocotools'), ``bit_identical`` (``==`` on the float64 values), ``max_abs_diff``,
``frames``, ``detections`` (input detections), ``gt_boxes``, ``images`` (COCO images after the filter),
``classes``, ``backend``, ``seed``, ``AP`` (the class-agnostic AP, to see the data is not degenerate).

Example: ``evdet-bench eval --frames 2000 --detections 50000 --seed 0``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from evdet.eval.prophesee import BACKENDS, DEFAULT_BACKEND, METRIC_NAMES, build_images, evaluate_images, resolve_protocol
from evdet.model.bench.flags import int_at_least

__all__ = ["ACCEPTS_OVERRIDES", "HELP", "IDENTICAL_ABS_TOL", "add_arguments", "benchmark_evaluation", "run",
           "synthetic_recordings"]

HELP = "evaluation time vs pycocotools, with identical figures"
ACCEPTS_OVERRIDES = False
IDENTICAL_ABS_TOL = 1e-12
"""``identical``: every figure within this of pycocotools' (float64 rounding; faster-coco-eval's precision of a
first true positive is 1.0 where pycocotools' is 1 - 2**-52, :mod:`evdet.eval.prophesee` rule 3)."""

#: Frame of the synthetic boxes: eTraM / gen4 1280x720 downsampled by 2 (thresholds 30 / 10 px).
BENCH_HEIGHT, BENCH_WIDTH = 360, 640
#: Classes of the synthetic boxes (RVT / eTraM's gen4 evaluation list).
BENCH_CLASSES = ("pedestrian", "two-wheeler", "car")
#: Object frames per synthetic recording and their spacing (µs; ~10 Hz like the reference's object frames, so a
#: detection stamped at its frame counts in that image only).
FRAMES_PER_RECORDING, FRAME_STEP_US = 200, 100_000


def _box_dtype() -> np.dtype:
    return np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<u4"),
                     ("track_id", "<u4"), ("class_confidence", "<f4")])


def synthetic_recordings(frames: int, detections: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seeded ground truth and detections of ``frames`` object frames in recordings of up to 200 frames.

    Frames are 100 ms apart from 0.6 s on (all after the protocol's 0.5 s skip). Each frame holds 1-15 ground-truth
    boxes (classes pedestrian / two-wheeler / car in proportions 3 : 1 : 6, sizes per class in px of the 640x360
    frame, a few below the 30 / 10 px filter). Detections, stamped at their frame's time: per ground-truth box with
    probability 0.85 a jittered copy (size and position noise ~8 %, class kept with probability 0.9), score
    ``U(0.3, 1)``; the rest of the ``detections`` are false positives anywhere in the frame with score ``U(0, 0.6)``.
    A tenth of the scores is rounded to two decimals so that equal scores occur (tie order matters to COCO).

    Args:
        frames: object frames in all, >= 1.
        detections: detections in all, >= 0 (about; each frame gets ``detections / frames`` on average, at least
            its matched copies).
        seed: seed.

    Returns:
        ``(gt per recording, detections per recording)``: Prophesee box arrays (``t`` µs sorted, ``x, y, w, h``
        float32 px, ``class_id`` uint32, ``class_confidence`` float32).
    """
    rng = np.random.default_rng(seed)
    dtype = _box_dtype()
    # (w, h) mean px per class at 640x360: pedestrians tall and small, two-wheelers small, cars wide
    size_mean = np.array([[14.0, 34.0], [24.0, 26.0], [60.0, 36.0]])
    per_frame = detections / frames
    gts, dts = [], []
    for first in range(0, frames, FRAMES_PER_RECORDING):
        n_frames = min(FRAMES_PER_RECORDING, frames - first)
        times = 600_000 + FRAME_STEP_US * np.arange(n_frames, dtype=np.int64)
        n_gt = rng.integers(1, 16, n_frames)
        g_t = np.repeat(times, n_gt)
        g_cls = rng.choice(3, size=len(g_t), p=[0.3, 0.1, 0.6])
        wh = size_mean[g_cls] * rng.lognormal(0.0, 0.45, (len(g_t), 2))
        wh = np.clip(wh, 4, [BENCH_WIDTH - 1, BENCH_HEIGHT - 1])
        xy = rng.uniform(0, 1, (len(g_t), 2)) * (np.array([BENCH_WIDTH, BENCH_HEIGHT]) - wh)
        gt = np.zeros(len(g_t), dtype)
        gt["t"], gt["class_id"], gt["track_id"] = g_t, g_cls, np.arange(len(g_t))
        gt["x"], gt["y"], gt["w"], gt["h"] = xy[:, 0], xy[:, 1], wh[:, 0], wh[:, 1]
        gt["class_confidence"] = 1.0
        # matched copies
        hit = rng.random(len(gt)) < 0.85
        m = gt[hit]
        m_wh = np.stack([m["w"], m["h"]], 1) * rng.normal(1.0, 0.08, (len(m), 2))
        m_xy = np.stack([m["x"], m["y"]], 1) + rng.normal(0.0, 0.08, (len(m), 2)) * np.stack([m["w"], m["h"]], 1)
        m_cls = np.where(rng.random(len(m)) < 0.9, m["class_id"], rng.integers(0, 3, len(m)))
        m_score = rng.uniform(0.3, 1.0, len(m))
        # false positives up to the frame's share of the detections
        wanted = rng.poisson(per_frame, n_frames)
        matched_per_frame = np.bincount(np.repeat(np.arange(n_frames), n_gt)[hit], minlength=n_frames)
        n_fp = np.maximum(wanted - matched_per_frame, 0)
        f_t = np.repeat(times, n_fp)
        f_cls = rng.choice(3, size=len(f_t), p=[0.3, 0.1, 0.6])
        f_wh = np.clip(size_mean[f_cls] * rng.lognormal(0.0, 0.6, (len(f_t), 2)), 4,
                       [BENCH_WIDTH - 1, BENCH_HEIGHT - 1])
        f_xy = rng.uniform(0, 1, (len(f_t), 2)) * (np.array([BENCH_WIDTH, BENCH_HEIGHT]) - f_wh)
        f_score = rng.uniform(0.0, 0.6, len(f_t))
        dt = np.zeros(len(m) + len(f_t), dtype)
        dt["t"] = np.concatenate([m["t"], f_t])
        dt["x"], dt["y"] = np.concatenate([m_xy[:, 0], f_xy[:, 0]]), np.concatenate([m_xy[:, 1], f_xy[:, 1]])
        dt["w"], dt["h"] = np.concatenate([m_wh[:, 0], f_wh[:, 0]]), np.concatenate([m_wh[:, 1], f_wh[:, 1]])
        dt["class_id"] = np.concatenate([m_cls, f_cls])
        score = np.concatenate([m_score, f_score])
        tie = rng.random(len(score)) < 0.1
        score[tie] = np.round(score[tie], 2)
        dt["class_confidence"] = score
        dt["track_id"] = np.arange(len(dt))
        dt = dt[np.argsort(dt["t"], kind="stable")]
        gts.append(gt)
        dts.append(dt)
    return gts, dts


def benchmark_evaluation(frames: int, detections: int, seed: int = 0,
                         backend: str | None = None) -> dict[str, Any]:
    """Time evdet's evaluation and the plain pycocotools path on the same synthetic data (module docstring).

    Args:
        frames: object frames (COCO images before the filter), >= 1.
        detections: detections in all, >= 1.
        seed: data seed.
        backend: evdet's evaluation backend (:data:`evdet.eval.prophesee.BACKENDS`); ``None`` = its default.

    Returns:
        The JSON dict of the module docstring.

    Raises:
        ValueError: an unknown backend (names ``--backend``), or data without a detection in any image.
    """
    backend = DEFAULT_BACKEND if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    gts, dts = synthetic_recordings(frames, detections, seed)
    protocol = resolve_protocol("etram", class_names=BENCH_CLASSES, height=BENCH_HEIGHT, width=BENCH_WIDTH)
    images = build_images(gts, dts, protocol)  # filter and time matching: the same for both backends
    start = time.perf_counter()
    metrics = evaluate_images(images, protocol, backend=backend)
    seconds = time.perf_counter() - start
    if metrics["no_detections"]:
        raise ValueError(f"--detections {detections}: no detection falls in any image; give more detections")
    start = time.perf_counter()
    plain = evaluate_images(images, protocol, backend="pycocotools")
    plain_seconds = time.perf_counter() - start

    def figures(m: dict) -> np.ndarray:
        return np.asarray([m["class_agnostic"]["stats"], m["class_aware"]["stats"],
                           *[m["class_aware"]["per_class"][name]["stats"] for name in BENCH_CLASSES]], np.float64)

    a, b = figures(metrics), figures(plain)
    max_abs_diff = float(np.max(np.abs(a - b)))
    return {
        "seconds": round(seconds, 4),
        "pycocotools_seconds": round(plain_seconds, 4),
        "ratio": round(seconds / plain_seconds, 4),
        "identical": max_abs_diff <= IDENTICAL_ABS_TOL,
        "bit_identical": bool(np.array_equal(a, b)),
        "max_abs_diff": max_abs_diff,
        "frames": frames,
        "detections": int(sum(len(d) for d in dts)),
        "gt_boxes": int(sum(len(g) for g in gts)),
        "images": images.num_images,
        "classes": list(BENCH_CLASSES),
        "backend": backend,
        "seed": seed,
        "AP": metrics["class_agnostic"]["stats"][METRIC_NAMES.index("AP")],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evdet-bench eval``."""
    parser.add_argument("--frames", type=int_at_least(1, "a number of object frames"), default=2000,
                        help="object frames (COCO images) of the synthetic data (default 2000)")
    parser.add_argument("--detections", type=int_at_least(1, "a number of detections"), default=50_000,
                        help="detections in all (default 50000)")
    parser.add_argument("--seed", type=int_at_least(0, "a seed"), default=0, help="data seed (default 0)")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help=f"evdet's COCO backend (default {DEFAULT_BACKEND})")


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """:func:`benchmark_evaluation` with the flags of ``args``.

    Raises:
        ValueError: see :func:`benchmark_evaluation`.
    """
    del overrides
    return benchmark_evaluation(args.frames, args.detections, args.seed, args.backend)
