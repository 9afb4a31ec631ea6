"""Flags the ``evdet.model`` tools share (docs/cli.md): ``--device`` (default ``auto``), checked before anything is
loaded or written.

``auto`` is ``cuda`` when the engine can use a GPU here (torch: CUDA available; onnxruntime: its CUDA provider),
else ``cpu``; an explicit device this machine lacks is an error (one line naming ``--device``), never a silent
fallback.
"""

from __future__ import annotations

import argparse

import torch
from evdet.model.inference.detect_engines import default_device
from evdet.model.inference.onnx_engine import onnx_providers

__all__ = ["AUTO_DEVICE", "DEVICE_HELP", "add_device_argument", "check_device", "resolve_device"]

#: The ``--device`` default of every tool.
AUTO_DEVICE = "auto"

DEVICE_HELP = "auto, cpu, cuda or cuda:N (default auto: cuda when available here, else cpu)"


def add_device_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Add ``--device`` (default ``auto``) to ``parser``."""
    return parser.add_argument("--device", default=AUTO_DEVICE, help=DEVICE_HELP)


def check_device(device: str, flag: str = "--device") -> str:
    """Check that ``device`` names a torch device this machine has, before anything is loaded.

    Accepted: ``cpu``; ``cuda`` / ``cuda:N`` when CUDA is available (and ``N`` < the number of GPUs); ``mps`` when
    available.

    Returns:
        ``device`` unchanged.

    Raises:
        ValueError: one line naming ``flag``, the value and what is expected (e.g. ``--device cuda: CUDA is not
            available on this machine ...; use --device cpu``).
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{flag}: expected cpu, cuda or cuda:N, got {device!r}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {device}: CUDA is not available on this machine (no GPU or driver visible to "
                             f"torch {torch.__version__}); use {flag} cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {device}: expected a GPU index below {torch.cuda.device_count()} (the GPUs "
                             "this machine has)")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{flag} {device}: MPS is not available on this machine; use {flag} cpu")
    elif parsed.type != "cpu":
        raise ValueError(f"{flag}: expected cpu, cuda or cuda:N, got {device!r}")
    return device


def resolve_device(device: str, engine: str = "torch", flag: str = "--device") -> str:
    """The device a tool runs on: ``auto`` resolved for ``engine``, an explicit one checked.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (``mps`` for torch).
        engine: ``torch`` or ``onnxruntime`` (:mod:`evdet.model.inference.detect_engines`).
        flag: the flag named in errors.

    Returns:
        A concrete device (``cpu``, ``cuda``, ``cuda:N``).

    Raises:
        ValueError: an unknown device, or one this machine (or the onnxruntime build) lacks (names ``flag``).
    """
    if device == AUTO_DEVICE:
        return default_device(engine)
    if engine == "onnxruntime":
        onnx_providers(device, flag)
        return device
    return check_device(device, flag)
