"""``evdet-bench detect``: batch-1 streaming inference latency per 50 ms window, as ``evdet-detect`` runs it.

Runs :class:`evdet.model.inference.streaming.StreamingDetector` (the network step of ``evdet-detect``) over consecutive
windows, synchronising the device after each, and prints ONE JSON line with ``latency_ms_p50``,
``latency_ms_p95``, ``latency_ms_mean`` (model step: host-to-device copy, backbone with states, PAFPN, head,
decoding, NMS), ``histogram_ms_p50`` (stacked histogram of the window on the host, when ``--recording`` is given),
``real_time_factor`` = (histogram + model time) / covered stream time (< 1: faster than the events arrive),
``windows``, ``window_us``, ``params``, ``embed_dim``, ``device``, ``compile``, ``fold_batch_norm``,
``channels_last``, ``input``, ``torch``, ``engine``.

Engines (``--engine``, :mod:`evdet.model.inference.detect_engines`): ``torch`` (default) runs the model eagerly or compiled;
``onnxruntime`` runs an exported streaming step (:mod:`evdet.model.inference.onnx_engine`): the ``--checkpoint`` when it is an
``.onnx`` file, else the config's or checkpoint's model exported first to a temporary file at its input size
(:func:`evdet.model.inference.onnx_export.export_model`, not timed; ``onnx_export_s`` gives its time). Both time the same
per-window work: histogram to the engine's input, network step, the same post-processing. The onnxruntime session
uses ``torch.get_num_threads()`` intra-op threads, as torch does. ``--compile``, ``--fold-batch-norm`` and
``--channels-last`` are torch options (an error with onnxruntime).

The model is the experiment config's (Hydra overrides, random weights: latency does not depend on the weights except
through the number of boxes NMS sees) or a checkpoint's (``--checkpoint``). Inputs are the windows of
``--recording`` (histograms as ``evdet-detect`` builds them) or, without it, sparse random histograms of the model's
input size.

Example: ``evdet-bench detect model=rvt_tiny --device cpu --recording data/real/gen4.dat --windows 100``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.model.bench.flags import float_above, int_at_least
from evdet.model.config import compose_checked, to_container
from evdet.model.config import dataset_classes
from evdet.model.cli.flags import add_device_argument, resolve_device
from evdet.model.inference.detect import check_run_flags
from evdet.model.inference.detect_engines import ENGINES, is_onnx_file, resolve_engine
from evdet.model.nn.detector import build_detector
from evdet.model.inference.streaming import STREAMING_COMPILE, StreamingDetector

__all__ = ["ACCEPTS_OVERRIDES", "HELP", "add_arguments", "benchmark_detect", "run"]

HELP = "batch-1 streaming detect latency and real-time factor"
ACCEPTS_OVERRIDES = True
WINDOW_US = 50_000
"""Window length of the random-input mode, µs (RVT's 50 ms)."""


def _recording_windows(recording: Path, width: int, height: int, windows: int) -> tuple[list, HistogramConfig]:
    """The events of the first ``windows`` 50 ms windows of ``recording`` (``(t_end_us, Events)`` pairs,
    :func:`evdet.model.bench.representation.read_windows`) and the histogram settings for a ``width x height``
    model input (those of ``evdet-detect``)."""
    from evdet.data.readers import open_recording
    from evdet.model.bench.representation import read_windows
    from evdet.model.inference.detect import histogram_config, input_scale_factor

    with open_recording(recording) as reader:
        config = histogram_config(None, input_scale_factor(reader.width, reader.height, width, height))
    found, _, _ = read_windows(recording, windows, config.window_us)
    if not found:
        raise ValueError(f"--recording {recording}: no 50 ms window with events")
    return found, config


def benchmark_detect(config: dict[str, Any], *, device: str, windows: int, warmup: int, recording: Path | None,
                     checkpoint: Path | None, compile: str, confidence: float,  # noqa: A002
                     fold_batch_norm: bool = False, channels_last: bool = False,
                     engine: str = "torch", nms: float | None = None) -> dict[str, Any]:
    """Time :meth:`StreamingDetector.step` (or :meth:`OnnxStreamingDetector.step`) over ``windows`` windows after
    ``warmup`` untimed ones.

    Args:
        config: resolved config (model, dataset, validation) when ``checkpoint`` is None.
        device: ``cpu`` or ``cuda[:i]``.
        windows: timed windows (recording windows are reused cyclically when it has fewer).
        warmup: untimed windows first (compilation, cuDNN autotuning, allocator).
        recording: event file whose windows are the input, or None for random histograms.
        checkpoint: trained checkpoint to load instead of random weights; with ``engine="onnxruntime"`` also an
            ``.onnx`` file of ``evdet-model export``.
        compile: ``none``, ``inductor`` or ``cuda_graphs`` (:class:`StreamingDetector`).
        fold_batch_norm: fold BatchNorms into convolutions (:class:`StreamingDetector`).
        channels_last: NHWC model (:class:`StreamingDetector`).
        confidence: post-processing confidence threshold.
        nms: NMS IoU threshold in [0, 1] (default: the model's ``validation.nms_threshold``).
        engine: ``torch`` or ``onnxruntime`` (module docstring).

    Raises:
        ValueError: ``cuda_graphs`` without CUDA; a recording without events (names the flag); an engine that does
            not fit ``checkpoint``, or torch-only options with onnxruntime.
    """
    if engine == "onnxruntime":
        return _benchmark_onnx(config, device=device, windows=windows, warmup=warmup, recording=recording,
                               checkpoint=checkpoint, confidence=confidence, nms=nms)
    if checkpoint is not None:
        from evdet.model.training.checkpoint import load_module

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
    detector = StreamingDetector(model, device, confidence,
                                 float(config["validation"]["nms_threshold"]) if nms is None else nms,
                                 compile=compile, fold_batch_norm=fold_batch_norm, channels_last=channels_last)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    result = _time_windows(detector, sync, windows=windows, warmup=warmup, recording=recording, channels=channels,
                           height=height, width=width, seed=int(config["seed"]))
    return {
        "embed_dim": int(config["model"]["backbone"]["embed_dim"]),
        **result,
        "params": int(sum(p.numel() for p in model.parameters())),
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "engine": "torch",
        **detector.options,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _benchmark_onnx(config: dict[str, Any], *, device: str, windows: int, warmup: int, recording: Path | None,
                    checkpoint: Path | None, confidence: float, nms: float | None = None) -> dict[str, Any]:
    """:func:`benchmark_detect` with the onnxruntime engine (an ``.onnx`` checkpoint, or the model exported first)."""
    import onnx
    import onnxruntime as ort

    from evdet.model.inference.onnx_engine import OnnxStreamingDetector, onnx_providers
    from evdet.model.inference.onnx_export import default_input_size, export_model

    onnx_providers(device)
    with tempfile.TemporaryDirectory(prefix="evdet-bench-onnx-") as tmp:
        export_s = None
        if checkpoint is not None and is_onnx_file(checkpoint):
            onnx_path = checkpoint
        else:
            if checkpoint is not None:
                from evdet.model.training.checkpoint import load_module

                module, config = load_module(checkpoint, "cpu")
                model, eval_info, source = module.model, module.eval_info, checkpoint.name
            else:
                ds = config["dataset"]
                torch.manual_seed(int(config["seed"]))
                model = build_detector(config["model"], num_classes=int(ds["num_classes"]),
                                       in_channels=int(ds["in_channels"]), include_aux=False,
                                       class_names=list(dataset_classes(ds).class_names))
                eval_info, source = None, "random weights"
            height, width = default_input_size(model, int(config["dataset"]["height"]),
                                               int(config["dataset"]["width"]))
            onnx_path = Path(tmp) / "model.onnx"
            started = time.perf_counter()
            export_model(model, onnx_path, height=height, width=width, config=config, eval_info=eval_info,
                         source=source)
            export_s = round(time.perf_counter() - started, 2)
        detector = OnnxStreamingDetector(onnx_path, device, confidence, 0.0)
        meta = detector.metadata
        detector.nms_threshold = float(meta.nms_threshold) if nms is None else nms
        channels, height, width = meta.in_channels, meta.model_height, meta.model_width
        result = _time_windows(detector, lambda: None, windows=windows, warmup=warmup, recording=recording,
                               channels=channels, height=height, width=width, seed=int(config["seed"]))
        params = int(sum(int(np.prod(init.dims)) for init in onnx.load(str(onnx_path)).graph.initializer))
    return {
        "embed_dim": int(meta.model["backbone"]["embed_dim"]),
        **result,
        "params": params,
        "device": device,
        "engine": "onnxruntime",
        **detector.options,
        "onnx_model": str(checkpoint) if export_s is None else "exported from the model (temporary file)",
        "onnx_export_s": export_s,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
    }


def _time_windows(detector: Any, sync: Any, *, windows: int, warmup: int, recording: Path | None, channels: int,
                  height: int, width: int, seed: int) -> dict[str, Any]:
    """Time ``detector.step`` per window (see :func:`benchmark_detect`); the engine-independent JSON keys."""
    if recording is not None:
        windows_found, hist_config = _recording_windows(recording, width, height, windows + warmup)
        window_us = hist_config.window_us
        if hasattr(detector, "check_histogram_size"):  # an ONNX graph has a fixed input size
            t_end, events = windows_found[0]
            shape = stacked_histogram(events, t_end, hist_config).shape
            detector.check_histogram_size(shape[1], shape[2], f"the histogram of --recording {recording}")
    else:
        gen = np.random.default_rng(seed)
        randoms = [(gen.integers(1, 11, (channels, height, width)) * (gen.random((channels, height, width)) < 0.05))
                   .astype(np.uint8) for _ in range(min(windows + warmup, 16))]
        window_us = WINDOW_US
    latencies, hist_ms = [], []
    for index in range(warmup + windows):
        start = time.perf_counter()
        if recording is not None:  # the histogram of the window, on the host, as evdet-detect computes it
            t_end, events = windows_found[index % len(windows_found)]
            histogram = stacked_histogram(events, t_end, hist_config)
        else:
            histogram = randoms[index % len(randoms)]
        built = time.perf_counter()
        sync()
        detector.step(histogram)
        sync()
        if index >= warmup:
            latencies.append((time.perf_counter() - built) * 1e3)
            hist_ms.append((built - start) * 1e3)
    lat = np.asarray(latencies)
    hist = np.asarray(hist_ms)
    per_window_ms = float(lat.mean()) + (float(hist.mean()) if recording is not None else 0.0)
    return {
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 3),
        "latency_ms_mean": round(float(lat.mean()), 3),
        "histogram_ms_p50": round(float(np.percentile(hist, 50)), 3) if recording is not None else None,
        "real_time_factor": round(per_window_ms / (window_us / 1e3), 4),
        "windows": windows,
        "warmup_windows": warmup,
        "window_us": window_us,
        "input": [channels, height, width],
        "recording": str(recording) if recording is not None else None,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evdet-bench detect`` (Hydra overrides of the model config follow them)."""
    add_device_argument(parser)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="trained checkpoint, or an .onnx file with --engine onnxruntime (default: random weights)")
    parser.add_argument("--engine", choices=ENGINES, default="torch",
                        help="torch (default) or onnxruntime (an .onnx --checkpoint, or the model exported first)")
    parser.add_argument("--recording", type=Path, default=None,
                        help="event file whose windows are the input (default: random histograms)")
    parser.add_argument("--windows", type=int_at_least(1, "a number of timed windows"), default=100,
                        help="timed windows (default 100)")
    parser.add_argument("--warmup", type=int_at_least(0, "a number of warm-up windows"), default=10,
                        help="untimed warm-up windows (default 10)")
    parser.add_argument("--confidence", type=float_above(0.0, "a confidence threshold"), default=0.1,
                        help="post-processing confidence threshold (default 0.1)")
    parser.add_argument("--nms", type=float, default=None,
                        help="NMS IoU threshold in [0, 1] (default: the model's validation.nms_threshold)")
    parser.add_argument("--compile", choices=STREAMING_COMPILE, default="none",
                        help="none | inductor | cuda_graphs (torch.compile mode='reduce-overhead', CUDA only)")
    parser.add_argument("--fold-batch-norm", action="store_true", help="fold BatchNorms into the convolutions")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format for the model")


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Compose the config from ``overrides`` (unless ``--checkpoint``) and run :func:`benchmark_detect`.

    Raises:
        FileNotFoundError: ``--recording`` or ``--checkpoint`` does not exist (names the flag and path).
        ValueError: bad ``--device`` (for onnxruntime: a device its providers lack); ``--cuda-graphs`` without CUDA;
            ``--engine torch`` with an ``.onnx`` checkpoint; torch-only flags with ``--engine onnxruntime``.
    """
    device = resolve_device(args.device, args.engine)
    check_run_flags(nms=args.nms)
    for flag, path in (("--recording", args.recording), ("--checkpoint", args.checkpoint)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")
    if args.compile == "cuda_graphs" and not device.startswith("cuda"):
        raise ValueError(f"--compile cuda_graphs: CUDA graphs need a CUDA device, got --device {device}")
    if args.engine == "torch" and args.checkpoint is not None:
        resolve_engine(args.checkpoint, "torch")
    if args.engine == "onnxruntime":
        torch_only = [flag for flag, on in (("--compile", args.compile != "none"),
                                            ("--fold-batch-norm", args.fold_batch_norm),
                                            ("--channels-last", args.channels_last)) if on]
        if torch_only:
            raise ValueError(f"{', '.join(torch_only)}: torch engine options; --engine onnxruntime runs the exported "
                             "graph as onnxruntime optimises it")
    config = to_container(compose_checked(overrides, for_training=False))
    return benchmark_detect(config, device=device, windows=args.windows, warmup=args.warmup,
                            recording=args.recording, checkpoint=args.checkpoint, compile=args.compile,
                            confidence=args.confidence, fold_batch_norm=args.fold_batch_norm,
                            channels_last=args.channels_last, engine=args.engine, nms=args.nms)
