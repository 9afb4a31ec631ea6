"""Loading a trained detector from a Lightning checkpoint written by ``evdet-train``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evdet.model.module import DetectionModule

__all__ = ["load_module"]


def load_module(path: str | Path, device: str = "cpu") -> tuple[DetectionModule, dict[str, Any]]:
    """Rebuild the detector from ``path`` in eval mode.

    Returns:
        The module (on ``device``) and its training config (the checkpoint's hyper-parameters).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not an evdet checkpoint (no ``config`` hyper-parameter); the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        module = DetectionModule.load_from_checkpoint(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch.load and Lightning raise many types for a bad file
        raise ValueError(f"checkpoint {path}: not a readable evdet checkpoint ({type(exc).__name__}: {exc})") from exc
    module.eval()
    return module.to(device), module.config
