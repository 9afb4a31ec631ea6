"""Batch-1 streaming inference: one stacked histogram per 50 ms window in, detections out, LSTM states kept on the
device between windows (RVT Sec. 3: the recurrent state carries information across windows).

:class:`StreamingDetector` is what ``evdet-detect`` and ``evdet-bench detect`` run per window:

1. the uint8 histogram ``(C, H, W)`` is copied into a pinned host buffer and from there to the device without
   blocking the host (CUDA; on the CPU it is converted in place);
2. the network step (backbone with states, PAFPN, head, box decoding) runs eagerly (``compile="none"``), compiled
   by inductor with static shapes (``"inductor"``: fused elementwise kernels, on the CPU as C++/OpenMP), or as
   ``torch.compile(mode="reduce-overhead")`` (``"cuda_graphs"``, CUDA only): inductor kernels replayed as a CUDA
   graph, which removes the per-kernel launch cost that dominates batch-1 inference. Compiled steps have static
   shapes (one compile per input size, a second one for the first window without states); the states are inputs
   and outputs that stay on the device;
3. post-processing (confidence threshold, class-aware NMS; data-dependent shapes) runs eagerly on the decoded
   predictions (:func:`evdet.model.nn.postprocess.postprocess`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from evdet.model.nn.acceleration import fold_batch_norms
from evdet.model.nn.detector import RVT, LstmStates
from evdet.model.nn.postprocess import postprocess

__all__ = ["STREAMING_COMPILE", "StreamingDetector"]

STREAMING_COMPILE = ("none", "inductor", "cuda_graphs")
"""Allowed values of :class:`StreamingDetector`'s ``compile``."""


class StreamingDetector:
    """Run a detector over consecutive windows of one recording at batch size 1.

    Args:
        model: the detector (put in eval mode here).
        device: torch device string (``cpu``, ``cuda``, ``cuda:N``).
        confidence_threshold: minimum ``objectness * class probability`` of a kept detection, in [0, 1].
        nms_threshold: IoU of the class-aware NMS, in [0, 1].
        compile: one of :data:`STREAMING_COMPILE` (see the module docstring).
        fold_batch_norm: fold the BatchNorms into their convolutions (:func:`evdet.model.nn.acceleration.fold_batch_norms`;
            modifies ``model`` in place; outputs equal to float rounding).
        channels_last: convert the model to ``torch.channels_last`` (NHWC convolutions).

    Raises:
        ValueError: an unknown ``compile``, or ``cuda_graphs`` on a device that is not CUDA (names the option).
    """

    def __init__(self, model: RVT, device: str, confidence_threshold: float, nms_threshold: float,
                 compile: str = "none", fold_batch_norm: bool = False,  # noqa: A002 - the CLI option's name
                 channels_last: bool = False) -> None:
        self.device = torch.device(device)
        if compile not in STREAMING_COMPILE:
            raise ValueError(f"compile: expected one of {list(STREAMING_COMPILE)}, got {compile!r}")
        if compile == "cuda_graphs" and self.device.type != "cuda":
            raise ValueError(f"compile cuda_graphs: CUDA graphs need a CUDA device, got --device {device}")
        self.model = model.eval()
        if fold_batch_norm:
            fold_batch_norms(self.model)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.options = {"compile": compile, "fold_batch_norm": bool(fold_batch_norm),
                        "channels_last": bool(channels_last)}
        self.confidence_threshold = float(confidence_threshold)
        self.nms_threshold = float(nms_threshold)
        self.cuda_graphs = compile == "cuda_graphs"
        self.states: LstmStates | None = None
        self._host: Tensor | None = None
        network: Callable[[Tensor, LstmStates | None], tuple[Tensor, LstmStates]] = self._network
        if compile != "none":
            network = torch.compile(self._network, mode="reduce-overhead" if self.cuda_graphs else None, dynamic=False)
        self._run = network

    def _network(self, frame: Tensor, states: LstmStates | None) -> tuple[Tensor, LstmStates]:
        features, new_states = self.model.forward_backbone(frame, states)
        decoded = self.model.head.decode(self.model.forward_detect(features))
        return decoded, new_states

    def reset(self) -> None:
        """Forget the LSTM states (start of a new recording)."""
        self.states = None

    def _to_device(self, histogram: np.ndarray) -> Tensor:
        """uint8 ``(C, H, W)`` -> float32 ``(1, C, H, W)`` on the device (through a pinned buffer on CUDA)."""
        source = torch.from_numpy(np.ascontiguousarray(histogram))
        if self.device.type != "cuda":
            return source.to(dtype=torch.float32).unsqueeze(0)
        if self._host is None or self._host.shape != source.shape or self._host.dtype != source.dtype:
            self._host = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
        self._host.copy_(source)
        return self._host.to(self.device, non_blocking=True).to(torch.float32).unsqueeze(0)

    @torch.no_grad()
    def step(self, histogram: np.ndarray) -> Tensor:
        """Detections of one window.

        Args:
            histogram: uint8 ``(C, H, W)`` stacked histogram of the window (the model's input size before padding).

        Returns:
            float32 ``(n, 7)`` on the device, rows ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]`` in input px
            (:func:`evdet.model.nn.postprocess.postprocess`).
        """
        frame = self._to_device(histogram)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        decoded, states = self._run(frame, self.states)
        # CUDA-graph outputs live in memory the next replay overwrites: keep private copies of the states.
        self.states = [(h.clone(), c.clone()) for h, c in states] if self.cuda_graphs else states
        return postprocess(decoded.clone() if self.cuda_graphs else decoded, conf_threshold=self.confidence_threshold,
                           nms_threshold=self.nms_threshold)[0]
