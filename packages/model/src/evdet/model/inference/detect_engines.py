"""The inference engines of ``evdet-detect`` and ``evdet-bench detect``: ``torch`` (a checkpoint, run by
:class:`evdet.model.inference.streaming.StreamingDetector`) and ``onnxruntime`` (an ``.onnx`` file of ``evdet-model export``,
run by :class:`evdet.model.inference.onnx_engine.OnnxStreamingDetector`).

Both give detections in the same format through the same post-processing, and carry what ``evdet-detect`` needs
besides the network (trained input size, class names, thresholds, score kind, histogram parameters): from the
checkpoint's config for ``torch``, from the ONNX ``metadata_props`` for ``onnxruntime``.

Engine choice (:func:`resolve_engine`): a model file whose name ends in ``.onnx`` is an ONNX model, anything else a
checkpoint. Without ``--engine`` the engine follows the file (``torch`` for a checkpoint, ``onnxruntime`` for an
``.onnx`` file); an ``--engine`` that does not fit the file is one error naming the flag and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["ENGINES", "LoadedDetector", "default_device", "is_onnx_file", "load_detector", "resolve_engine"]

#: ``--engine`` values.
ENGINES = ("torch", "onnxruntime")


def is_onnx_file(path: str | Path) -> bool:
    """True when ``path``'s name ends in ``.onnx`` (any case): an ONNX model rather than a checkpoint."""
    return str(path).lower().endswith(".onnx")


def resolve_engine(model_path: str | Path, engine: str | None, flag: str = "--engine") -> str:
    """The engine for ``model_path``: ``engine`` when given and fitting, else the file's (see the module doc).

    Raises:
        ValueError: an unknown engine, ``torch`` with an ``.onnx`` file, or ``onnxruntime`` with a checkpoint (one
            line naming ``flag``, the file and what to do).
    """
    onnx_file = is_onnx_file(model_path)
    if engine is None:
        return "onnxruntime" if onnx_file else "torch"
    if engine not in ENGINES:
        raise ValueError(f"{flag}: expected one of {list(ENGINES)}, got {engine!r}")
    if engine == "torch" and onnx_file:
        raise ValueError(f"{flag} torch: {model_path} is an ONNX model; run it with {flag} onnxruntime (or give the "
                         "checkpoint it was exported from)")
    if engine == "onnxruntime" and not onnx_file:
        raise ValueError(f"{flag} onnxruntime: {model_path} is not an ONNX model (.onnx); export it first with "
                         f"evdet-model export {model_path} --format onnx --output model.onnx")
    return engine


def default_device(engine: str) -> str:
    """``cuda`` when the engine can use a GPU here (torch: CUDA available; onnxruntime: its CUDA provider), else
    ``cpu``."""
    if engine == "onnxruntime":
        import onnxruntime as ort

        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LoadedDetector:
    """A streaming detector and the settings ``evdet-detect`` needs around it.

    Attributes:
        streaming: object with ``step(histogram uint8 (C, h, w)) -> float32 (n, 7) tensor``, ``reset()`` and
            ``options`` (:class:`StreamingDetector` or :class:`OnnxStreamingDetector`).
        engine: ``torch`` or ``onnxruntime``.
        model_height, model_width: the trained representation size (px; sets the sensor downsample factor).
        class_names: names in class-id order.
        nms_threshold: the IoU the streaming detector runs with.
        score: ``class_conf`` or ``obj_x_class`` (what the written ``class_confidence`` is).
        eval_info: ``{"histogram": {...}}`` of the run, or None (reference histogram parameters).
        fixed_input: the ONNX graph's ``(H, W)`` (px), None for torch (any size).
    """

    streaming: Any
    engine: str
    model_height: int
    model_width: int
    class_names: list[str]
    nms_threshold: float
    score: str
    eval_info: dict[str, Any] | None = None
    fixed_input: tuple[int, int] | None = field(default=None)

    def check_histogram_size(self, height: int, width: int, what: str) -> None:
        """Check that the engine takes ``height x width`` histograms (always for torch).

        Raises:
            ValueError: the ONNX graph's fixed input does not fit (names both sizes and ``what``).
        """
        if self.engine == "onnxruntime":
            self.streaming.check_histogram_size(height, width, what)


def load_detector(model_path: str | Path, engine: str | None, device: str, confidence_threshold: float,
                  nms_threshold: float | None = None) -> LoadedDetector:
    """Load ``model_path`` for ``engine`` (:func:`resolve_engine`).

    Args:
        model_path: checkpoint (torch) or ``.onnx`` file (onnxruntime).
        engine: ``torch``, ``onnxruntime`` or None (from the file).
        device: torch device (torch) or ``cpu`` / ``cuda`` (onnxruntime).
        confidence_threshold: post-processing threshold in [0, 1].
        nms_threshold: NMS IoU in [0, 1]; None: the run's ``validation.nms_threshold`` (the ONNX metadata's).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an engine that does not fit the file; an unusable checkpoint or ONNX model (names the file).
    """
    engine = resolve_engine(model_path, engine)
    if engine == "onnxruntime":
        from evdet.model.inference.onnx_engine import OnnxStreamingDetector

        probe = OnnxStreamingDetector(model_path, device, confidence_threshold, 0.0)
        meta = probe.metadata
        probe.nms_threshold = float(meta.nms_threshold if nms_threshold is None else nms_threshold)
        histogram = {"histogram": meta.histogram} if meta.histogram else None
        return LoadedDetector(probe, engine, meta.model_height, meta.model_width, list(meta.class_names),
                              probe.nms_threshold, meta.score, histogram, (meta.input_height, meta.input_width))
    from evdet.model.training.checkpoint import load_module
    from evdet.model.config import dataset_classes
    from evdet.model.inference.streaming import StreamingDetector

    module, config = load_module(model_path, device)
    ds, val = config["dataset"], config["validation"]
    nms = float(val["nms_threshold"]) if nms_threshold is None else float(nms_threshold)
    streaming = StreamingDetector(module.model, device, confidence_threshold, nms)
    return LoadedDetector(streaming, engine, int(ds["height"]), int(ds["width"]),
                          list(dataset_classes(ds).class_names), nms,
                          str(ds.get("evaluation", {}).get("score", "class_conf")), module.eval_info)
