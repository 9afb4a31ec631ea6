"""Collecting detections and labels per recording as Prophesee box arrays.

The Prophesee evaluation protocol (Perot et al., NeurIPS 2020; used by RVT, Sec. 4) compares detections with
labels at label timestamps, per recording. :class:`DetectionCollector` gathers both, from the labelled frames of
streamed batches, into :data:`evdet.data.labels.BBOX_DTYPE` arrays keyed by recording name.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from evdet.data.labels import BBOX_DTYPE, save_boxes
from evdet.model.nn.postprocess import detection_score

__all__ = ["DetectionCollector", "detections_to_boxes"]


def detections_to_boxes(dets: torch.Tensor, t_us: int, scale: float = 1.0, score: str = "class_conf") -> np.ndarray:
    """Convert detections ``(n, 7)`` ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]`` (px) to a BBOX_DTYPE array.

    Args:
        dets: float tensor ``(n, 7)`` in input pixels (:func:`evdet.model.nn.postprocess.postprocess`).
        t_us: timestamp given to every box (µs).
        scale: factor applied to coordinates (e.g. the downsample factor to go back to sensor pixels).
        score: what ``class_confidence`` holds: ``class_conf`` (the class probability, as RVT's ``to_prophesee``
            writes it and its evaluation ranks by) or ``obj_x_class`` (objectness x class probability).

    Returns:
        ``(n,)`` BBOX_DTYPE with ``class_confidence`` = score and ``track_id`` 0; ``w = x2 - x1`` and
        ``h = y2 - y1`` computed in float32 as the reference does.

    Raises:
        ValueError: ``dets`` is not ``(n, 7)`` or ``score`` is unknown.
    """
    scores = detection_score(dets.detach().float(), score).cpu().numpy()
    d = dets.detach().float().cpu().numpy()
    out = np.zeros(len(d), dtype=BBOX_DTYPE)
    out["t"] = t_us
    out["x"] = d[:, 0] * scale
    out["y"] = d[:, 1] * scale
    out["w"] = (d[:, 2] - d[:, 0]) * scale
    out["h"] = (d[:, 3] - d[:, 1]) * scale
    out["class_confidence"] = scores
    out["class_id"] = d[:, 6].astype(np.uint32)
    return out


def _targets_to_boxes(targets: torch.Tensor, t_us: int) -> np.ndarray:
    tg = targets.detach().float().cpu().numpy().reshape(-1, 5)
    out = np.zeros(len(tg), dtype=BBOX_DTYPE)
    out["t"] = t_us
    out["class_id"] = tg[:, 0].astype(np.uint32)
    out["x"], out["y"], out["w"], out["h"] = tg[:, 1], tg[:, 2], tg[:, 3], tg[:, 4]
    out["class_confidence"] = 1.0
    return out


class DetectionCollector:
    """Accumulates labels and detections per recording over a streamed evaluation pass."""

    def __init__(self, score: str = "class_conf") -> None:
        self.score = score
        self._labels: dict[str, list[np.ndarray]] = defaultdict(list)
        self._detections: dict[str, list[np.ndarray]] = defaultdict(list)

    def add(
        self,
        sequences: list[str],
        batch_index: torch.Tensor,
        label_t_us: torch.Tensor,
        targets: list[torch.Tensor],
        detections: list[torch.Tensor],
    ) -> None:
        """Add N labelled frames.

        Args:
            sequences: recording name per batch slot (length B).
            batch_index: long ``(N,)`` batch slot of each frame.
            label_t_us: int64 ``(N,)`` label timestamp of each frame (µs).
            targets: N tensors ``(n_i, 5)`` ``[class_id, x, y, w, h]``.
            detections: N tensors ``(m_i, 7)`` ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]``.
        """
        for i, b in enumerate(batch_index.tolist()):
            name = sequences[b]
            t = int(label_t_us[i])
            self._labels[name].append(_targets_to_boxes(targets[i], t))
            self._detections[name].append(detections_to_boxes(detections[i], t, score=self.score))

    def state(self) -> tuple[dict, dict]:
        """Picklable contents (labels and detections per recording), for gathering across ranks."""
        return dict(self._labels), dict(self._detections)

    def merge(self, state: tuple[dict, dict]) -> None:
        """Add the contents another collector returned from :meth:`state` (another rank's recordings)."""
        labels, detections = state
        for name, parts in labels.items():
            self._labels[name].extend(parts)
        for name, parts in detections.items():
            self._detections[name].extend(parts)

    @property
    def sequences(self) -> list[str]:
        """Recording names seen so far, sorted."""
        return sorted(self._labels)

    def labels(self, name: str) -> np.ndarray:
        """All labels of recording ``name`` (BBOX_DTYPE, time-ordered)."""
        return _concat(self._labels[name])

    def detections(self, name: str) -> np.ndarray:
        """All detections of recording ``name`` (BBOX_DTYPE, time-ordered)."""
        return _concat(self._detections[name])

    def save(self, out_dir: Path, names: list[str] | None = None) -> list[Path]:
        """Write ``<out_dir>/<name>.npy`` detections per recording; returns the paths written.

        Args:
            out_dir: destination directory (created).
            names: recordings to write (default: those seen); a recording without labelled frames gets an empty
                array, so the evaluator finds a file for every shard.
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in sorted(names) if names is not None else self.sequences:
            path = out_dir / f"{name}.npy"
            save_boxes(path, self.detections(name))
            paths.append(path)
        return paths


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=BBOX_DTYPE)
    arr = np.concatenate(parts)
    return arr[np.argsort(arr["t"], kind="stable")]
