"""Turn decoded event columns into checked :class:`~evdet.data.events.Events`.

Every reader decodes its format into integer columns and hands them to :func:`checked_events`, which enforces
the :class:`Events` contract (``docs/architecture.md``, "Events") against the file's sensor size, so that a
corrupt file fails with a :class:`RecordingError` naming the file instead of yielding out-of-range pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import RecordingError

__all__ = ["checked_events"]


def checked_events(
    path: Path,
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    width: int,
    height: int,
    first_index: int = 0,
    previous_t_us: int | None = None,
) -> Events:
    """Validate decoded columns and return them as :class:`Events`.

    Args:
        path: the recording, for error messages.
        x, y: ``(N,)`` integer arrays, pixel column / row (px); any integer dtype.
        t: ``(N,)`` integer array, timestamps (µs).
        p: ``(N,)`` integer or bool array, polarity already mapped to 0 (OFF) / 1 (ON).
        width, height: sensor size (px).
        first_index: index in the file of the first event, for error messages.
        previous_t_us: timestamp (µs) of the event just before this chunk, or ``None`` for the first chunk;
            the chunk must not start before it.

    Returns:
        :class:`Events` with ``x, y`` ``uint16``, ``t`` ``int64``, ``p`` ``uint8``; a column that already has
        its target dtype is used without a copy, so callers pass arrays they own (not memory-mapped views).

    Raises:
        RecordingError: naming ``path``, the field and the first offending event index if
            ``x`` is outside ``[0, width)``, ``y`` outside ``[0, height)``, ``p`` not in {0, 1}, or ``t``
            decreases (within the chunk or relative to ``previous_t_us``).
    """
    n = len(t)
    if n == 0:
        return Events.empty(width, height)
    for name, column, limit in (("x", x, width), ("y", y, height), ("p", p, 2)):
        bad = (column < 0) | (column >= limit)
        if bad.any():
            i = int(np.argmax(bad))
            raise RecordingError(
                f"{path}: event {first_index + i} has {name}={int(column[i])}, expected 0 <= {name} < {limit}"
                + (f" (sensor {width}x{height} px)" if name != "p" else "")
            )
    t64 = t.astype(np.int64, copy=False)
    if previous_t_us is not None and t64[0] < previous_t_us:
        raise RecordingError(
            f"{path}: timestamps decrease at event {first_index} ({previous_t_us} -> {int(t64[0])} µs), "
            "expected time-ordered events"
        )
    decreasing = np.diff(t64) < 0
    if decreasing.any():
        i = int(np.argmax(decreasing))
        raise RecordingError(
            f"{path}: timestamps decrease at event {first_index + i + 1} "
            f"({int(t64[i])} -> {int(t64[i + 1])} µs), expected time-ordered events"
        )
    return Events(
        x=x.astype(np.uint16, copy=False),
        y=y.astype(np.uint16, copy=False),
        t=t64,
        p=p.astype(np.uint8, copy=False),
        width=int(width),
        height=int(height),
    )
