"""Readable training progress for logs that are not a terminal (``kubectl logs`` on a training pod).

A progress bar redraws its line with carriage returns, which a pod log turns into thousands of fragments. When
stdout is not a terminal, :class:`LogLineProgress` instead prints one self-contained line every N optimiser steps::

    step 1200/100000 (1.2%) | 3.41 it/s | 20.5 samples/s | loss 4.1823 | lr 3.50e-05 | gpu 5.21/7.80 GiB | ETA 8:02:11

On a terminal the trainer keeps its progress bar (:func:`use_progress_bar`).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, TextIO

import lightning as L
import torch

__all__ = ["LogLineProgress", "use_progress_bar", "format_progress_line"]


def use_progress_bar(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stdout) is an interactive terminal, so a progress bar renders properly."""
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def format_progress_line(
    step: int,
    max_steps: int,
    it_per_s: float,
    samples_per_s: float,
    loss: float | None,
    lr: float | None,
    gpu_bytes: tuple[int, int] | None,
) -> str:
    """One progress line (see the module docstring). ``gpu_bytes`` is (allocated, reserved) in bytes or None."""
    parts = [f"step {step}/{max_steps} ({100.0 * step / max(max_steps, 1):.1f}%)",
             f"{it_per_s:.2f} it/s", f"{samples_per_s:.1f} samples/s"]
    parts.append(f"loss {loss:.4f}" if loss is not None else "loss n/a")
    parts.append(f"lr {lr:.2e}" if lr is not None else "lr n/a")
    if gpu_bytes is not None:
        parts.append(f"gpu {gpu_bytes[0] / 2**30:.2f}/{gpu_bytes[1] / 2**30:.2f} GiB")
    remaining = max(max_steps - step, 0) / it_per_s if it_per_s > 0 else None
    parts.append(f"ETA {timedelta(seconds=int(remaining))}" if remaining is not None else "ETA n/a")
    return " | ".join(parts)


class LogLineProgress(L.Callback):
    """Print :func:`format_progress_line` every ``every_n_steps`` optimiser steps (rank 0 only).

    Args:
        every_n_steps: interval in optimiser steps (>= 1).
        stream: where to print (default stdout, flushed after each line).

    Raises:
        ValueError: ``every_n_steps`` < 1 (names the config key ``logging.every_n_steps``).
    """

    def __init__(self, every_n_steps: int = 50, stream: TextIO | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"logging.every_n_steps: expected an integer >= 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.stream = stream
        self._t0 = 0.0
        self._step0 = 0
        self._samples = 0
        self._last_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._step0 = trainer.global_step
        self._samples = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if isinstance(batch, dict) and "representation" in batch:
            self._samples += int(batch["representation"].shape[0])
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps != 0 or not trainer.is_global_zero:
            return
        self._last_step = step
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss")
        lr = None
        if trainer.optimizers:
            lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        gpu = None
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            gpu = (torch.cuda.memory_allocated(pl_module.device), torch.cuda.memory_reserved(pl_module.device))
        line = format_progress_line(
            step, int(trainer.max_steps), (step - self._step0) / elapsed, self._samples / elapsed,
            float(loss) if loss is not None else None, lr, gpu,
        )
        stream = self.stream or sys.stdout
        print(line, file=stream, flush=True)
