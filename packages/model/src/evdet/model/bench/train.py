"""``evdet-bench train``: training throughput of any experiment config on synthetic input.

Runs real training steps (the same recurrent forward, YOLOX loss, backward and AdamW update as ``evdet-train``) on
random stacked histograms of the configured resolution with random boxes in every window, and prints ONE JSON line:
``it_per_s``, ``samples_per_s`` (sequences/s), ``frames_per_s`` (batch x sequence length per second),
``peak_memory_bytes`` (CUDA peak allocated on a GPU, process peak RSS on the CPU), ``params``, ``device``,
``precision``, ``batch``, ``seq_len``, ``steps``, ``warmup_steps``, ``experiment``, ``input``.

Example: ``evdet-bench train +experiment=plain_lstm_640x360_baseline --device cuda --batch-size 6 --steps 20``.
"""

from __future__ import annotations

import argparse
import resource
import time
from contextlib import nullcontext
from typing import Any

import torch

from evdet.model.nn.acceleration import apply_acceleration, build_adamw
from evdet.model.bench.flags import BENCH_PRECISIONS, int_at_least, precision
from evdet.model.config import compose_checked, to_container
from evdet.model.config import dataset_classes
from evdet.model.nn.detector import build_detector
from evdet.model.training.recurrence import detach_states, run_sequence

__all__ = ["ACCEPTS_OVERRIDES", "BENCH_PRECISIONS", "HELP", "add_arguments", "benchmark_training", "check_device",
           "run", "synthetic_batch"]

HELP = "training throughput of an experiment config"
ACCEPTS_OVERRIDES = True
PHASES = ("backbone", "head_loss", "backward", "optimizer")
"""Keys of ``phase_ms`` (``--profile``)."""


def synthetic_batch(
    batch: int, seq_len: int, channels: int, height: int, width: int, num_classes: int, generator: torch.Generator
) -> dict[str, Any]:
    """A batch dict in the :mod:`evdet.model.training.dataset` format with sparse random histograms and 1-4 boxes per window.

    ``representation`` is uint8 ``(B, L, C, H, W)`` with ~10% non-zero cells (counts 1-10); boxes are 16-96 px wide.
    """
    rep = torch.randint(1, 11, (batch, seq_len, channels, height, width), generator=generator, dtype=torch.uint8)
    rep *= (torch.rand(rep.shape, generator=generator) < 0.1).to(torch.uint8)
    labels = []
    for _ in range(seq_len):
        per_slot = []
        for _ in range(batch):
            n = int(torch.randint(1, 5, (1,), generator=generator))
            wh = torch.randint(16, 97, (n, 2), generator=generator).float()
            wh[:, 0].clamp_(max=width - 1)
            wh[:, 1].clamp_(max=height - 1)
            xy = torch.rand(n, 2, generator=generator) * (torch.tensor([width, height]) - wh)
            cls = torch.randint(0, num_classes, (n, 1), generator=generator).float()
            per_slot.append(torch.cat([cls, xy, wh], dim=1))
        labels.append(per_slot)
    return {
        "representation": rep,
        "labels": labels,
        "has_label": torch.ones(batch, seq_len, dtype=torch.bool),
        "label_t_us": torch.arange(seq_len).repeat(batch, 1) * 50_000,
        "window_end_us": torch.arange(1, seq_len + 1).repeat(batch, 1) * 50_000,
        "is_first_sample": torch.zeros(batch, dtype=torch.bool),
        "is_padded": torch.zeros(batch, dtype=torch.bool),
        "sequence": [f"bench{i}" for i in range(batch)],
    }


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def benchmark_training(
    config: dict[str, Any], *, device: str, batch: int, steps: int, warmup: int = 3, precision: str | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` untimed ones.

    Args:
        config: resolved training config.
        device: ``cpu`` or ``cuda[:i]``.
        batch: sequences per step (B).
        steps: timed steps.
        warmup: untimed steps first (allocator warm-up, cuDNN autotuning).
        precision: ``32-true``, ``16-mixed`` or ``bf16-mixed``; default the config's ``hardware.precision``.
        profile: after the timed steps, run ``steps`` more with a device synchronisation between phases and add
            ``phase_ms`` (mean ms per step of ``backbone``: the L recurrent backbone steps; ``head_loss``: PAFPN,
            head, SimOTA and loss over the labelled frames; ``backward``; ``optimizer``: unscale, gradient clipping,
            AdamW step, zero_grad). Kept out of ``it_per_s``, whose steps run without those synchronisations.

    Raises:
        ValueError: for an unknown precision or a CUDA device on a machine without one (message names it).
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    precision = str(precision or config["hardware"]["precision"])
    dtypes = {"32-true": None, "32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision: expected one of {sorted(dtypes)}, got {precision!r}")
    ds = config["dataset"]
    seq_len = int(ds["sequence_length"])
    torch.manual_seed(int(config["seed"]))
    model = build_detector(config["model"], num_classes=int(ds["num_classes"]), in_channels=int(ds["in_channels"]),
                           class_names=list(dataset_classes(ds).class_names))
    apply_acceleration(model, config["hardware"])
    model.to(device).train()
    optimizer = build_adamw(model.parameters(), lr=float(config["training"]["learning_rate"]),
                            weight_decay=float(config["training"]["weight_decay"]))
    amp_dtype = dtypes[precision]
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler(device_type, enabled=amp_dtype is torch.float16)
    gen = torch.Generator().manual_seed(int(config["seed"]))
    batch_data = synthetic_batch(
        batch, seq_len, int(ds["in_channels"]), int(ds["height"]), int(ds["width"]), int(ds["num_classes"]), gen
    )
    if device_type == "cuda":
        batch_data["representation"] = batch_data["representation"].to(device)
        torch.cuda.reset_peak_memory_stats(device)

    states = None
    phase_s = dict.fromkeys(PHASES, 0.0)

    def mark(phase: str | None, since: float, timed: bool) -> float:
        """Add the time since ``since`` to ``phase`` (after waiting for the device) when ``timed``; return now."""
        if not timed:
            return since
        if device_type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if phase is not None:
            phase_s[phase] += now - since
        return now

    def step(timed: bool = False) -> None:
        nonlocal states
        autocast = torch.autocast(device_type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        t = mark(None, 0.0, timed)
        with autocast:
            frames, new_states = run_sequence(model, batch_data, states)
            t = mark("backbone", t, timed)
            loss = model.loss(frames.features, frames.targets)["loss"]
            t = mark("head_loss", t, timed)
        scaler.scale(loss).backward()
        t = mark("backward", t, timed)
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(config["training"]["gradient_clip_val"]))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        mark("optimizer", t, timed)
        states = detach_states(new_states)

    for _ in range(warmup):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device_type == "cuda" else _peak_rss_bytes()
    extra: dict[str, Any] = {}
    if profile:
        for _ in range(steps):
            step(timed=True)
        extra["phase_ms"] = {k: round(v / steps * 1000.0, 2) for k, v in phase_s.items()}
    hw = config["hardware"]
    return {
        "experiment": config.get("experiment_name"),
        "it_per_s": round(steps / elapsed, 4),
        "samples_per_s": round(steps * batch / elapsed, 4),
        "frames_per_s": round(steps * batch * seq_len / elapsed, 4),
        "peak_memory_bytes": int(peak),
        "params": int(sum(p.numel() for p in model.parameters())),
        "device": torch.cuda.get_device_name(device) if device_type == "cuda" else "cpu",
        "precision": precision,
        "batch": batch,
        "seq_len": seq_len,
        "steps": steps,
        "warmup_steps": warmup,
        "input": [int(ds["in_channels"]), int(ds["height"]), int(ds["width"])],
        "channels_last": bool(hw.get("channels_last", False)),
        "compile": str(hw.get("compile", "none")),
        "checkpoint_stages": bool(config["model"]["backbone"].get("checkpoint_stages", False)),
        "torch": torch.__version__,
        **extra,
    }


def check_device(device: str) -> str:
    """Validate ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` with a CUDA device N on this machine.

    Raises:
        ValueError: another name, CUDA asked for without CUDA, or an index beyond the devices (names ``--device``
            and what is expected).
    """
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; expected --device cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: expected a CUDA device index below {torch.cuda.device_count()} "
                         f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return device




def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``evdet-bench train`` (Hydra overrides of the experiment config follow them)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: cuda when available)")
    parser.add_argument("--batch-size", type=int_at_least(1, "sequences per step"), default=None,
                        help="sequences per step (default: batch_size.train)")
    parser.add_argument("--batch", dest="batch_size", type=int_at_least(1, "sequences per step"),
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old spelling of --batch-size
    parser.add_argument("--steps", type=int_at_least(1, "a number of timed steps"), default=20,
                        help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int_at_least(0, "a number of warm-up steps"), default=3,
                        help="untimed warm-up steps (default 3)")
    parser.add_argument("--precision", type=precision, default=None,
                        help="32-true | 16-mixed | bf16-mixed (default: the config's)")
    parser.add_argument("--profile", action="store_true",
                        help="add phase_ms (backbone, head_loss, backward, optimizer) from extra synchronised steps")


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Compose the config from ``overrides`` and run :func:`benchmark_training` with the flags of ``args``.

    Raises:
        ValueError: bad ``--device`` or precision; :class:`evdet.model.config.ConfigError` for a config mistake.
    """
    device = check_device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    config = to_container(compose_checked(overrides, for_training=False))
    chosen = args.precision
    if chosen is None and not device.startswith("cuda") and str(config["hardware"]["precision"]).startswith("16"):
        chosen = "32-true"  # fp16 autocast is a GPU feature; on the CPU the benchmark reports fp32
    return benchmark_training(
        config, device=device, batch=args.batch_size or int(config["batch_size"]["train"]),
        steps=args.steps, warmup=args.warmup, precision=chosen, profile=args.profile,
    )
