"""Summary statistics of one recording, computed by streaming (what ``evdet-data info FILE`` prints)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from evdet.data.readers import DEFAULT_MAX_EVENTS, open_recording

__all__ = ["recording_info"]


def recording_info(path: str | os.PathLike[str], max_events: int = DEFAULT_MAX_EVENTS) -> dict[str, Any]:
    """Count and time-bound the events of a recording, holding at most ``max_events`` events in memory.

    Streams :meth:`~evdet.data.readers.EventReader.iter_chunks` once, so a file of any length is summarised
    in bounded memory.

    Args:
        path: a recording :func:`~evdet.data.readers.open_recording` accepts.
        max_events: chunk size for streaming (events).

    Returns:
        A JSON-serialisable dict (plain ``int``/``str``/``None`` values):
        ``path`` (str), ``format`` (reader format name), ``width``, ``height`` (sensor px), ``events`` (count
        ``N``), ``t_first_us``, ``t_last_us`` (first and last timestamp, µs; ``None`` when ``N == 0``) and
        ``positive_events`` (events with polarity ``p == 1``, ON).

    Raises:
        RecordingError: if the file cannot be opened or read (see :func:`~evdet.data.readers.open_recording`).
        ValueError: if ``max_events`` is not a positive integer.
    """
    with open_recording(path) as reader:
        count = 0
        positive = 0
        t_first: int | None = None
        t_last: int | None = None
        for chunk in reader.iter_chunks(max_events):
            if len(chunk) == 0:
                continue
            if t_first is None:
                t_first = int(chunk.t[0])
            t_last = int(chunk.t[-1])
            count += len(chunk)
            positive += int(np.count_nonzero(chunk.p))
        return {
            "path": str(path),
            "format": reader.format,
            "width": int(reader.width),
            "height": int(reader.height),
            "events": count,
            "t_first_us": t_first,
            "t_last_us": t_last,
            "positive_events": positive,
        }
