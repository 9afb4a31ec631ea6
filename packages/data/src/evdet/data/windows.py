"""Cutting a streamed event recording into the windows that end at given times.

RVT's windows end at chosen times and reach back ``window_us`` (50 ms), both ends inclusive
(:mod:`evdet.data.representation`). The preprocessing ends them at the object-frame times of
:mod:`evdet.data.label_selection`; ``evdet-detect`` on a raw recording ends them every 50 ms. Both stream the
recording chunk by chunk through :func:`iter_window_events`, so memory stays bounded by one chunk plus one window
whatever the recording's length.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np

from evdet.data.events import Events

__all__ = ["grid_window_ends", "iter_window_events"]


def grid_window_ends(first_t_us: int, window_us: int = 50_000) -> Iterator[int]:
    """Endless window ends on the grid of multiples of ``window_us`` after ``first_t_us``.

    The first end is the smallest multiple of ``window_us`` that is ``>= first_t_us`` (so the first window holds the
    first event), then every ``window_us``.

    Raises:
        ValueError: ``window_us`` is not positive.
    """
    if window_us <= 0:
        raise ValueError(f"window_us: expected a positive duration in µs, got {window_us}")
    first_end = -(-int(first_t_us) // window_us) * window_us
    return itertools.count(first_end, window_us)


def iter_window_events(
    chunks: Iterable[Events],
    window_end_us: Iterable[int],
    window_us: int,
    width: int,
    height: int,
    *,
    stop_at_stream_end: bool = False,
) -> Iterator[tuple[int, Events]]:
    """Yield ``(t_end_us, events)`` for each window end, with every event of ``[t_end - window_us, t_end]``.

    The events yielded may include earlier or later events too (they are a slice of the buffered stream that covers
    the window); :func:`evdet.data.representation.stacked_histogram` selects the window itself by binary search.

    Args:
        chunks: time-ordered event chunks, e.g. ``reader.iter_chunks()``. The iterator is consumed only as far as
            needed for the last window, so a caller can go on reading the rest of it.
        window_end_us: increasing window ends (µs); may be endless with ``stop_at_stream_end``.
        window_us: window length (µs), > 0.
        width, height: sensor size (px).
        stop_at_stream_end: stop at the first window that starts after the last event of an exhausted stream
            (otherwise every given end is yielded, empty windows included).

    Raises:
        ValueError: ``window_us`` is not positive, the ends do not increase, or chunk timestamps go backwards
            (names both times).
    """
    if window_us <= 0:
        raise ValueError(f"window_us: expected a positive duration in µs, got {window_us}")
    chunks = iter(chunks)
    buffer = Events.empty(width, height)
    exhausted = False
    previous_end: int | None = None
    for end in window_end_us:
        end = int(end)
        if previous_end is not None and end <= previous_end:
            raise ValueError(f"window ends must increase, got {end} µs after {previous_end} µs")
        previous_end = end
        while not exhausted and (len(buffer) == 0 or int(buffer.t[-1]) <= end):
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
                break
            if len(chunk) == 0:
                continue
            if len(buffer) and int(chunk.t[0]) < int(buffer.t[-1]):
                raise ValueError(f"event stream: timestamps go backwards ({int(chunk.t[0])} µs after "
                                 f"{int(buffer.t[-1])} µs)")
            buffer = Events.concatenate([buffer, chunk], width, height) if len(buffer) else chunk
        start = end - window_us
        if exhausted and stop_at_stream_end and (len(buffer) == 0 or int(buffer.t[-1]) < start):
            return
        cut = int(np.searchsorted(buffer.t, start, side="left"))
        if cut:
            buffer = Events(buffer.x[cut:], buffer.y[cut:], buffer.t[cut:], buffer.p[cut:], width, height)
        yield end, buffer
