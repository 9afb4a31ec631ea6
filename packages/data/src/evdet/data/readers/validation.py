"""Turn decoded event columns into checked :class:`~evdet.data.events.Events`.

Every reader decodes its format into integer columns and hands them to :func:`checked_events`, which enforces
the :class:`Events` contract (``docs/architecture.md``, "Events") against the file's sensor size, so that a
corrupt file fails with a :class:`RecordingError` naming the file instead of yielding out-of-range pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import BadEventLog, RecordingError

__all__ = ["checked_events", "drop_bad_events"]


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
    bad_events: BadEventLog | None = None,
) -> Events:
    """Validate decoded columns and return them as :class:`Events`.

    Args:
        path: the recording, for error messages.
        x, y: ``(N,)`` integer arrays, pixel column / row (px); any integer dtype.
        t: ``(N,)`` integer array, timestamps (µs).
        p: ``(N,)`` integer or bool array, polarity already mapped to 0 (OFF) / 1 (ON).
        width, height: sensor size (px).
        first_index: index in the file of the first event, for error messages.
        previous_t_us: timestamp (µs) of the last (kept) event before this chunk, or ``None`` for the first
            chunk; the chunk must not start before it.
        bad_events: ``None`` to raise on the first bad event; a :class:`BadEventLog` to drop bad events instead
            and count them there (see :func:`drop_bad_events`).

    Returns:
        :class:`Events` with ``x, y`` ``uint16``, ``t`` ``int64``, ``p`` ``uint8``; a column that already has
        its target dtype is used without a copy, so callers pass arrays they own (not memory-mapped views).

    Raises:
        RecordingError: (without ``bad_events``) naming ``path``, the field and the first offending event index if
            ``x`` is outside ``[0, width)``, ``y`` outside ``[0, height)``, ``p`` not in {0, 1}, or ``t``
            decreases (within the chunk or relative to ``previous_t_us``).
    """
    n = len(t)
    if n == 0:
        return Events.empty(width, height)
    if bad_events is not None:
        return drop_bad_events(x, y, t, p, width, height, first_index, previous_t_us, bad_events)
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


def drop_bad_events(
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    width: int,
    height: int,
    first_index: int,
    previous_t_us: int | None,
    log: BadEventLog,
) -> Events:
    """Keep the good events of a chunk and count the others in ``log``.

    An event is bad when ``x``, ``y`` or ``p`` is out of range (counted under that field, checked in that order), or
    when its ``t`` lies before the latest timestamp of the good events before it (``previous_t_us`` included:
    counted under ``t``). The kept events are therefore in range and time-ordered.

    Args:
        x, y, t, p, width, height, first_index, previous_t_us: as :func:`checked_events`.
        log: receives the counts, the first file index and value of each kind.

    Returns:
        The kept events as :class:`Events` (possibly empty).
    """
    x64, y64, p64 = (np.asarray(c).astype(np.int64, copy=False) for c in (x, y, p))
    t64 = np.asarray(t).astype(np.int64, copy=False)
    good = np.ones(len(t64), dtype=bool)
    for name, column, limit in (("x", x64, width), ("y", y64, height), ("p", p64, 2)):
        bad = good & ((column < 0) | (column >= limit))
        if bad.any():
            i = int(np.argmax(bad))
            log.add(name, int(bad.sum()), first_index + i, int(column[i]))
            good &= ~bad
    if good.any():
        t_good = t64[good]
        start = np.iinfo(np.int64).min if previous_t_us is None else int(previous_t_us)
        latest_before = np.maximum.accumulate(np.concatenate([[start], t_good[:-1]]))
        backwards = t_good < latest_before
        if backwards.any():
            positions = np.flatnonzero(good)
            i = int(np.argmax(backwards))
            log.add("t", int(backwards.sum()), first_index + int(positions[i]), int(t_good[i]))
            good[positions[backwards]] = False
    return Events(
        x=x64[good].astype(np.uint16),
        y=y64[good].astype(np.uint16),
        t=t64[good],
        p=p64[good].astype(np.uint8),
        width=int(width),
        height=int(height),
    )
