"""Stacked histograms of a recording for chosen window end times (``evdet-data histogram``).

The same representation the preprocessing stores in a shard (:mod:`evdet.data.representation`), for any window
ends: a user can check one window of a recording against the reference, or build inputs for a model outside the
shard pipeline. Events are streamed once (:func:`evdet.data.windows.iter_window_events`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evdet.data.readers import open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.data.windows import iter_window_events

__all__ = ["recording_histograms", "write_histograms"]


def recording_histograms(recording: str | Path, end_us: Sequence[int], config: HistogramConfig | None = None, *,
                         on_bad_events: str = "error") -> tuple[np.ndarray, dict]:
    """Histograms of the windows ending at ``end_us``.

    Args:
        recording: a recording readable by :func:`evdet.data.readers.open_recording`.
        end_us: window end times (µs), in any order (the output keeps it); each window is
            ``[end - window_us, end]``.
        config: histogram parameters (default: the reference's).
        on_bad_events: ``error`` or ``drop`` (:data:`evdet.data.readers.BAD_EVENT_POLICIES`).

    Returns:
        ``(histograms (N, 2*bins, H', W') uint8, info)`` with ``info`` = sensor size, representation size,
        window count, dropped bad events.

    Raises:
        RecordingError: unreadable recording, or a bad event with ``on_bad_events="error"`` (names file and field).
        ValueError: no end time given.
    """
    cfg = config if config is not None else HistogramConfig()
    ends = np.asarray(end_us, dtype=np.int64).reshape(-1)
    if len(ends) == 0:
        raise ValueError("histogram: expected at least one window end time (µs)")
    unique_ends, position = np.unique(ends, return_inverse=True)
    with open_recording(recording, on_bad_events=on_bad_events) as reader:
        width, height = cfg.size(reader.width, reader.height)
        unique = np.zeros((len(unique_ends), cfg.channels, height, width), dtype=np.uint8)
        windows = iter_window_events(reader.iter_chunks(), unique_ends.tolist(), cfg.window_us, reader.width,
                                     reader.height)
        for i, (end, events) in enumerate(windows):
            unique[i] = stacked_histogram(events, end, cfg)
        out = unique[position]
        info = {"recording": str(recording), "sensor_width": reader.width, "sensor_height": reader.height,
                "width": width, "height": height, "windows": len(end_us), **cfg.as_attrs(),
                "bad_events_dropped": reader.bad_events.total if reader.bad_events is not None else 0}
    return out, info


def write_histograms(recording: str | Path, end_us: Sequence[int], output: Path, config: HistogramConfig | None = None,
                     *, on_bad_events: str = "error", overwrite: bool = False) -> dict:
    """Compute :func:`recording_histograms` and save them as one ``.npy`` file (atomic: temporary file, rename).

    Returns:
        The ``info`` of :func:`recording_histograms` plus ``output`` and ``shape``.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False (the file is left untouched).
        RecordingError, ValueError: see :func:`recording_histograms`.
    """
    output = Path(output)
    if output.suffix != ".npy":
        raise ValueError(f"--output {output}: expected a .npy file name")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: already exists; pass --overwrite to replace it")
    histograms, info = recording_histograms(recording, end_us, config, on_bad_events=on_bad_events)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, histograms, allow_pickle=False)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {**info, "output": str(output), "shape": list(histograms.shape)}
