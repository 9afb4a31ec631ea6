"""Cutting an event stream into consecutive fixed-length time windows (50 ms for RVT's stacked histograms)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from evdet.data.events import Events

__all__ = ["iter_windows"]


def iter_windows(
    chunks: Iterable[Events], width: int, height: int, window_us: int = 50_000, t_start_us: int | None = None
) -> Iterator[tuple[int, Events]]:
    """Yield ``(t_window_start_us, events)`` for consecutive windows ``[start, start + window_us)``.

    Streams: only the events of the current window and one chunk are held in memory, so a recording of any length
    can be processed. Windows without events are yielded too (empty :class:`Events`), so the recurrent model sees
    the real passage of time.

    Args:
        chunks: time-ordered event chunks, e.g. ``reader.iter_chunks()``.
        width, height: sensor size (px).
        window_us: window length (µs); RVT uses 50 ms (Sec. 4.1).
        t_start_us: start of the first window (µs); default: the first event's timestamp.

    Raises:
        ValueError: ``window_us`` is not positive, or chunk timestamps go backwards (names both times).
    """
    if window_us <= 0:
        raise ValueError(f"window_us: expected a positive duration in µs, got {window_us}")
    start = t_start_us
    pending: list[Events] = []
    last_t = None
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if last_t is not None and int(chunk.t[0]) < last_t:
            raise ValueError(f"event stream: timestamps go backwards ({int(chunk.t[0])} µs after {last_t} µs)")
        last_t = int(chunk.t[-1])
        if start is None:
            start = int(chunk.t[0])
        pending.append(chunk)
        while True:
            end = start + window_us
            if int(pending[-1].t[-1]) < end:
                break  # the current window may still receive events from the next chunk
            joined = Events.concatenate(pending, width, height)
            cut = int(np.searchsorted(joined.t, end, side="left"))
            head = Events(joined.x[:cut], joined.y[:cut], joined.t[:cut], joined.p[:cut], width, height)
            yield start, head.time_slice(start, end)
            rest = Events(joined.x[cut:], joined.y[cut:], joined.t[cut:], joined.p[cut:], width, height)
            pending = [rest]
            start = end
    if start is not None and pending and len(Events.concatenate(pending, width, height)) > 0:
        remaining = Events.concatenate(pending, width, height)
        while start <= int(remaining.t[-1]):
            yield start, remaining.time_slice(start, start + window_us)
            start += window_us
