"""Inference: streaming detection over event recordings, prediction over shards, ONNX export and the onnxruntime
engine.

Modules:

- :mod:`evdet.model.inference.streaming`: batch-1 streaming detector with LSTM state kept between windows.
- :mod:`evdet.model.inference.detect_engines`: torch / onnxruntime engines.
- :mod:`evdet.model.inference.detect`: windows of a recording -> detections, overlays, report.
- :mod:`evdet.model.inference.detection_video`: detection videos.
- :mod:`evdet.model.inference.predict`: detections over representation shards.
- :mod:`evdet.model.inference.onnx_export`: ONNX export of one streaming step.
- :mod:`evdet.model.inference.onnx_engine`: the onnxruntime streaming engine.

The public names below are imported on first use (PEP 562), so importing one module of this package does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StreamingDetector": "streaming",
    "load_detector": "detect_engines",
    "detect_recordings": "detect",
    "predict_shards": "predict",
    "export_checkpoint": "onnx_export",
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
