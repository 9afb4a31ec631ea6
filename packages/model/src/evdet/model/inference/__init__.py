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

The public names below load their module on first use (``lazy_loader``, SPEC 1), so importing one module of this
package does not import the others.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "streaming": ["StreamingDetector"],
        "detect_engines": ["load_detector"],
        "detect": ["detect_recordings"],
        "predict": ["predict_shards"],
        "onnx_export": ["export_checkpoint"],
    },
)
