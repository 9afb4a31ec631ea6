"""Training: sequence dataset and augmentation over representation shards, the Lightning data module and module,
recurrence over sequences, checkpoints, and the run itself (:func:`run_training`, used by ``evdet-train``).

Modules:

- :mod:`evdet.model.training.dataset`: random / streaming / mixed sequence sampling over shards.
- :mod:`evdet.model.training.augmentation`: RVT's flip / zoom training augmentation.
- :mod:`evdet.model.training.datamodule`: the Lightning data module.
- :mod:`evdet.model.training.recurrence`: the detector over B sequences x L windows.
- :mod:`evdet.model.training.module`: the Lightning module: loss, validation AP, optimiser.
- :mod:`evdet.model.training.detections`: detections and labels per recording as Prophesee arrays.
- :mod:`evdet.model.training.checkpoint`: reading, checking and loading checkpoints.
- :mod:`evdet.model.training.rvt_import`: weights of the reference RVT implementation as an evdet checkpoint.
- :mod:`evdet.model.training.train`: one training run: lifecycle, resume, upload.

The public names below are imported on first use (PEP 562), so importing one module of this package does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ShardDataModule": "datamodule",
    "DetectionModule": "module",
    "build_dataloader": "dataset",
    "load_module": "checkpoint",
    "run_training": "train",
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
