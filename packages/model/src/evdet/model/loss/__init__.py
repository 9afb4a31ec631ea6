"""The training losses: SimOTA assignment, the YOLOX loss and the size-aware weights.

Modules:

- :mod:`evdet.model.loss.simota`: SimOTA dynamic-k label assignment.
- :mod:`evdet.model.loss.yolox_loss`: IoU + BCE objectness/class (+ L1) loss.
- :mod:`evdet.model.loss.size_aware`: size-aware per-box weights.

The public names below are imported on first use (PEP 562), so importing one module of this package does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "simota_assign": "simota",
    "simota_assign_batch": "simota",
    "SizeAwareWeighting": "size_aware",
    "YOLOXLoss": "yolox_loss",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public name ``name`` from its module (PEP 562).

    Raises:
        AttributeError: ``name`` is not one of ``__all__``.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
