"""The onnxruntime engine of ``evdet-detect`` / ``evdet-bench detect``: an exported streaming step
(:mod:`evdet.model.inference.onnx_export`) run window by window, with the same interface and post-processing as
:class:`evdet.model.inference.streaming.StreamingDetector`.

Per window (:meth:`OnnxStreamingDetector.step`): the uint8 ``(C, h, w)`` histogram is converted to float32,
zero-padded at the bottom and right to the graph's fixed ``H x W`` (as :func:`evdet.model.nn.detector.pad_to_multiple`
pads; only when ``h, w`` padded to the input multiple give exactly ``H, W``, so the attention partitions are the
torch path's), run with the 8 state arrays of the previous window (zeros after :meth:`reset`), and the decoded
predictions go through :func:`evdet.model.nn.postprocess.postprocess` as a torch tensor, the torch engine's code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evdet.model.inference.onnx_export import (
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    NUM_STATE_STAGES,
    OnnxMetadata,
    read_metadata,
)
from evdet.model.nn.postprocess import postprocess

__all__ = ["ONNX_DEVICES", "OnnxStreamingDetector", "load_onnx_session", "onnx_providers"]

#: ``--device`` values of the onnxruntime engine and the execution provider each needs.
ONNX_DEVICES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def onnx_providers(device: str, flag: str = "--device") -> list[str]:
    """onnxruntime execution providers for a ``--device`` value.

    Returns:
        ``["CPUExecutionProvider"]`` for ``cpu``; ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` for ``cuda``
        / ``cuda:N`` when the installed onnxruntime has the CUDA provider.

    Raises:
        ValueError: another device, or ``cuda`` without the CUDA provider (names ``flag``, the installed onnxruntime
            and its providers).
    """
    import onnxruntime as ort

    kind = device.split(":")[0]
    if kind not in ONNX_DEVICES:
        raise ValueError(f"{flag} {device}: the onnxruntime engine runs on {' or '.join(ONNX_DEVICES)}")
    available = ort.get_available_providers()
    if ONNX_DEVICES[kind] not in available:
        raise ValueError(f"{flag} {device}: onnxruntime {ort.__version__} has no {ONNX_DEVICES[kind]} (it has "
                         f"{', '.join(available)}); use {flag} cpu")
    return [ONNX_DEVICES[kind], "CPUExecutionProvider"] if kind == "cuda" else ["CPUExecutionProvider"]


def load_onnx_session(path: str | Path, device: str = "cpu", threads: int | None = None) -> tuple[Any, OnnxMetadata]:
    """Open an exported model with onnxruntime and read its evdet metadata.

    Args:
        path: ``.onnx`` file of ``evdet-model export``.
        device: ``cpu`` or ``cuda[:N]`` (:func:`onnx_providers`).
        threads: intra-op threads (default: ``torch.get_num_threads()``, the torch engine's, so the two engines are
            compared on the same cores).

    Returns:
        ``(onnxruntime.InferenceSession, OnnxMetadata)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an ONNX model onnxruntime loads, or not one of ``evdet-model export`` (names the file: wrong
            inputs / outputs or missing ``evdet.*`` metadata); a device onnxruntime lacks.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path}: no such file")
    providers = onnx_providers(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads if threads is not None else torch.get_num_threads())
    options.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail / InvalidGraph / RuntimeError types
        reason = " ".join(str(exc).split())[:200]
        raise ValueError(f"ONNX model {path}: onnxruntime cannot load it ({type(exc).__name__}: {reason})") from None
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    if names_in != [s.name for s in GRAPH_INPUTS] or names_out != [s.name for s in GRAPH_OUTPUTS]:
        raise ValueError(f"ONNX model {path}: inputs {names_in} / outputs {names_out} are not those of an evdet "
                         f"streaming step ({[s.name for s in GRAPH_INPUTS]} / {[s.name for s in GRAPH_OUTPUTS]})")
    return session, read_metadata(session.get_modelmeta().custom_metadata_map, path)


class OnnxStreamingDetector:
    """Run an exported streaming step over consecutive windows of one recording at batch size 1.

    Args:
        path: ``.onnx`` file of ``evdet-model export``.
        device: ``cpu`` or ``cuda[:N]`` (:func:`onnx_providers`).
        confidence_threshold: minimum ``objectness * class probability`` of a kept detection, in [0, 1].
        nms_threshold: IoU of the class-aware NMS, in [0, 1].
        threads: onnxruntime intra-op threads (default ``torch.get_num_threads()``).

    Attributes:
        metadata: the file's :class:`OnnxMetadata`.
        options: what the engine runs with (``engine``, ``providers``, ``threads``, and ``compile`` /
            ``fold_batch_norm`` / ``channels_last`` as the torch engine reports them, none applied by evdet here).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_onnx_session`.
    """

    def __init__(self, path: str | Path, device: str, confidence_threshold: float, nms_threshold: float,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        self.session, self.metadata = load_onnx_session(path, device, threads)
        self.confidence_threshold = float(confidence_threshold)
        self.nms_threshold = float(nms_threshold)
        self.input_size = (self.metadata.input_height, self.metadata.input_width)
        self._state_shapes = [tuple(i.shape[1:]) for i in self.session.get_inputs()[1:]]
        self.states: list[np.ndarray] | None = None
        self.options = {"engine": "onnxruntime", "compile": "none", "fold_batch_norm": False, "channels_last": False,
                        "providers": list(self.session.get_providers()),
                        "threads": int(self.session.get_session_options().intra_op_num_threads)}

    def reset(self) -> None:
        """Forget the LSTM states (start of a new recording): the next step feeds zeros."""
        self.states = None

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` of a histogram rounded up to the input multiple (px), as the detector pads it."""
        m = self.metadata.input_multiple
        return -(-height // m) * m, -(-width // m) * m

    def check_histogram_size(self, height: int, width: int, what: str = "the histogram") -> None:
        """Check that a ``height x width`` histogram pads to the graph's fixed input size.

        Raises:
            ValueError: it does not (names both sizes, ``what`` and the ``evdet-model export`` flags that fit).
        """
        padded = self.padded_size(height, width)
        if padded != self.input_size:
            h, w = self.input_size
            raise ValueError(
                f"ONNX model {self.path} takes a {h}x{w} (HxW) input, but {what} is {height}x{width} px, padded to "
                f"{padded[0]}x{padded[1]}; export the checkpoint for it with evdet-model export CKPT --format onnx "
                f"--height {padded[0]} --width {padded[1]}"
            )

    def run_graph(self, frame: np.ndarray) -> np.ndarray:
        """One graph step on a float32 ``(1, C_in, H, W)`` frame; updates the states.

        Returns:
            float32 ``(1, A, 5 + K)`` decoded predictions (graph output ``predictions``).
        """
        if self.states is None:
            self.states = [np.zeros((frame.shape[0], *shape), dtype=np.float32) for shape in self._state_shapes]
        feeds = {GRAPH_INPUTS[0].name: frame, **{spec.name: s for spec, s in zip(GRAPH_INPUTS[1:], self.states)}}
        outputs = self.session.run(None, feeds)
        self.states = list(outputs[1:1 + 2 * NUM_STATE_STAGES])
        return outputs[0]

    def step(self, histogram: np.ndarray) -> Tensor:
        """Detections of one window.

        Args:
            histogram: uint8 ``(C_in, h, w)`` stacked histogram of the window (``h, w`` pad to the graph's H x W).

        Returns:
            float32 ``(n, 7)`` CPU tensor, rows ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]`` in input px
            (:func:`evdet.model.nn.postprocess.postprocess`, as :meth:`StreamingDetector.step`).

        Raises:
            ValueError: a histogram of another channel count or size (names both).
        """
        channels, height, width = histogram.shape
        if channels != self.metadata.in_channels:
            raise ValueError(f"ONNX model {self.path} takes {self.metadata.in_channels} histogram channels, got "
                             f"{channels}")
        self.check_histogram_size(height, width)
        frame = np.zeros((1, channels, *self.input_size), dtype=np.float32)
        frame[0, :, :height, :width] = histogram
        predictions = self.run_graph(frame)
        return postprocess(torch.from_numpy(predictions), conf_threshold=self.confidence_threshold,
                           nms_threshold=self.nms_threshold)[0]
