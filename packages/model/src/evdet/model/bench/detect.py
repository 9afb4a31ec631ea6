"""``evdet-bench detect``: batch-1 streaming inference latency per 50 ms window, as ``evdet-detect`` runs it.

Runs :class:`evdet.model.streaming.StreamingDetector` (the network step of ``evdet-detect``) over consecutive
windows, synchronising the device after each, and prints ONE JSON line with ``latency_ms_p50``,
``latency_ms_p95``, ``latency_ms_mean`` (model step: host-to-device copy, backbone with states, PAFPN, head,
decoding, NMS), ``histogram_ms_p50`` (stacked histogram of the window on the host, when ``--recording`` is given),
``real_time_factor`` = (histogram + model time) / covered stream time (< 1: faster than the events arrive),
``windows``, ``window_us``, ``params``, ``embed_dim``, ``device``, ``compile``, ``input``, ``torch``.

The model is the experiment config's (Hydra overrides, random weights: latency does not depend on the weights except
through the number of boxes NMS sees) or a checkpoint's (``--checkpoint``). Inputs are the windows of
``--recording`` (histograms as ``evdet-detect`` builds them) or, without it, sparse random histograms of the model's
input size.

Example: ``evdet-bench detect model=rvt_tiny --device cpu --recording data/real/gen4.dat --windows 100``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evdet.model.bench.flags import float_above, int_at_least
from evdet.model.bench.train import check_device
from evdet.model.config import compose_checked, to_container
from evdet.model.datamodule import dataset_classes
from evdet.model.detector import build_detector
from evdet.model.streaming import STREAMING_COMPILE, StreamingDetector

__all__ = ["ACCEPTS_OVERRIDES", "HELP", "add_arguments", "benchmark_detect", "run"]

HELP = "batch-1 streaming detect latency and real-time factor"
ACCEPTS_OVERRIDES = True
WINDOW_US = 50_000
"""Window length of the random-input mode, µs (RVT's 50 ms)."""


def _recording_histograms(recording: Path, width: int, height: int, windows: int) -> tuple[list[np.ndarray],
                                                                                          list[float], int]:
    """The first ``windows`` stacked histograms of ``recording`` for a ``width x height`` model input, the host time
    of each (ms), and the window length (µs)."""
    from evdet.data.readers import open_recording
    from evdet.data.representation import stacked_histogram
    from evdet.data.windows import grid_window_ends, iter_window_events
    from evdet.model.detect import histogram_config, input_scale_factor

    histograms, times_ms = [], []
    with open_recording(recording) as reader:
        factor = input_scale_factor(reader.width, reader.height, width, height)
        config = histogram_config(None, factor)
        first_t = next((int(chunk.t[0]) for chunk in reader.iter_chunks() if len(chunk)), None)
        if first_t is None:
            raise ValueError(f"--recording {recording}: no events")
        ends = grid_window_ends(first_t, config.window_us)
        for t_end, events in iter_window_events(reader.iter_chunks(), ends, config.window_us, reader.width,
                                                reader.height, stop_at_stream_end=True):
            start = time.perf_counter()
            histograms.append(stacked_histogram(events, t_end, config))
            times_ms.append((time.perf_counter() - start) * 1e3)
            if len(histograms) >= windows:
                break
    if not histograms:
        raise ValueError(f"--recording {recording}: no 50 ms window with events")
    return histograms, times_ms, config.window_us


def benchmark_detect(config: dict[str, Any], *, device: str, windows: int, warmup: int, recording: Path | None,
                     checkpoint: Path | None, compile: str, confidence: float) -> dict[str, Any]:  # noqa: A002
    """Time :meth:`StreamingDetector.step` over ``windows`` windows after ``warmup`` untimed ones.

    Args:
        config: resolved config (model, dataset, validation) when ``checkpoint`` is None.
        device: ``cpu`` or ``cuda[:i]``.
        windows: timed windows (recording windows are reused cyclically when it has fewer).
        warmup: untimed windows first (compilation, cuDNN autotuning, allocator).
        recording: event file whose windows are the input, or None for random histograms.
        checkpoint: trained checkpoint to load instead of random weights.
        compile: ``none``, ``inductor`` or ``cuda_graphs`` (:class:`StreamingDetector`).
        confidence: post-processing confidence threshold.

    Raises:
        ValueError: ``cuda_graphs`` without CUDA; a recording without events (names the flag).
    """
    if checkpoint is not None:
        from evdet.model.checkpoint import load_module

        module, config = load_module(checkpoint, device)
        model = module.model
    else:
        ds = config["dataset"]
        torch.manual_seed(int(config["seed"]))
        model = build_detector(config["model"], num_classes=int(ds["num_classes"]), in_channels=int(ds["in_channels"]),
                               include_aux=False, class_names=list(dataset_classes(ds).class_names))
        model.to(device)
    ds = config["dataset"]
    channels, height, width = int(ds["in_channels"]), int(ds["height"]), int(ds["width"])
    if recording is not None:
        histograms, hist_ms, window_us = _recording_histograms(recording, width, height, windows + warmup)
    else:
        gen = np.random.default_rng(int(config["seed"]))
        histograms = [(gen.integers(1, 11, (channels, height, width)) * (gen.random((channels, height, width)) < 0.05))
                      .astype(np.uint8) for _ in range(min(windows + warmup, 16))]
        hist_ms, window_us = [], WINDOW_US
    detector = StreamingDetector(model, device, confidence, float(config["validation"]["nms_threshold"]),
                                 compile=compile)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    latencies = []
    for index in range(warmup + windows):
        histogram = histograms[index % len(histograms)]
        sync()
        start = time.perf_counter()
        detector.step(histogram)
        sync()
        if index >= warmup:
            latencies.append((time.perf_counter() - start) * 1e3)
    lat = np.asarray(latencies)
    hist = np.asarray(hist_ms[warmup:] or hist_ms or [0.0])
    per_window_ms = float(lat.mean()) + (float(hist.mean()) if hist_ms else 0.0)
    return {
        "embed_dim": int(config["model"]["backbone"]["embed_dim"]),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 3),
        "latency_ms_mean": round(float(lat.mean()), 3),
        "histogram_ms_p50": round(float(np.percentile(hist, 50)), 3) if hist_ms else None,
        "real_time_factor": round(per_window_ms / (window_us / 1e3), 4),
        "windows": windows,
        "warmup_windows": warmup,
        "window_us": window_us,
        "input": [channels, height, width],
        "recording": str(recording) if recording is not None else None,
        "params": int(sum(p.numel() for p in model.parameters())),
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "compile": compile,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evdet-bench detect`` (Hydra overrides of the model config follow them)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained checkpoint (default: random weights)")
    parser.add_argument("--recording", type=Path, default=None,
                        help="event file whose windows are the input (default: random histograms)")
    parser.add_argument("--windows", type=int_at_least(1, "a number of timed windows"), default=100,
                        help="timed windows (default 100)")
    parser.add_argument("--warmup", type=int_at_least(0, "a number of warm-up windows"), default=10,
                        help="untimed warm-up windows (default 10)")
    parser.add_argument("--confidence", type=float_above(0.0, "a confidence threshold"), default=0.1,
                        help="post-processing confidence threshold (default 0.1)")
    parser.add_argument("--compile", choices=STREAMING_COMPILE, default="none",
                        help="none | inductor | cuda_graphs (torch.compile mode='reduce-overhead', CUDA only)")


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Compose the config from ``overrides`` (unless ``--checkpoint``) and run :func:`benchmark_detect`.

    Raises:
        FileNotFoundError: ``--recording`` or ``--checkpoint`` does not exist (names the flag and path).
        ValueError: bad ``--device``; ``--cuda-graphs`` without CUDA.
    """
    device = check_device(args.device)
    for flag, path in (("--recording", args.recording), ("--checkpoint", args.checkpoint)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")
    if args.compile == "cuda_graphs" and not device.startswith("cuda"):
        raise ValueError(f"--compile cuda_graphs: CUDA graphs need a CUDA device, got --device {device}")
    config = to_container(compose_checked(overrides, for_training=False))
    return benchmark_detect(config, device=device, windows=args.windows, warmup=args.warmup,
                            recording=args.recording, checkpoint=args.checkpoint, compile=args.compile,
                            confidence=args.confidence)
