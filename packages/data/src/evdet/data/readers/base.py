"""The reader interface shared by every event-file format, and the error they raise.

:class:`EventReader` fixes what ``docs/architecture.md`` ("Readers") promises: ``path``, ``format``, ``width``,
``height`` (sensor px), ``read()``, ``read_window(t_start_us, t_end_us)`` and ``iter_chunks(max_events)``,
plus context-manager support that closes the underlying file. :class:`RecordingError` is the single error type
for a file that is missing, unreadable, truncated or malformed.
"""

from __future__ import annotations

import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

from evdet.data.events import Events

__all__ = ["BAD_EVENT_POLICIES", "DEFAULT_MAX_EVENTS", "BadEventLog", "EventReader", "IndexedEventReader",
           "RecordingError"]

#: Default upper bound on the events per chunk yielded by :meth:`EventReader.iter_chunks` (1 M events, about
#: 13 MB as :class:`Events`: 2 + 2 + 8 + 1 bytes per event).
DEFAULT_MAX_EVENTS = 1_000_000


#: What a reader does with an event out of the sensor, with a polarity other than 0/1, or stamped before an earlier
#: event: ``error`` raises :class:`RecordingError` at the first one; ``drop`` removes them and counts them in
#: :attr:`EventReader.bad_events`. (Two eTraM training files hold events at y=33014; timestamps can go backwards.)
BAD_EVENT_POLICIES = ("error", "drop")


class BadEventLog:
    """Counts of the events a reader dropped (policy ``drop``), per field: ``x``, ``y``, ``p`` (out of range) and
    ``t`` (before an earlier event).

    Attributes:
        counts: field -> number of dropped events.
        first_index: field -> index in the file of the first one.
        first_value: field -> its value (px, polarity or µs).
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first_index: dict[str, int] = {}
        self.first_value: dict[str, int] = {}

    def add(self, field: str, count: int, first_index: int, value: int) -> None:
        """Count ``count`` dropped events of ``field``; the first one seen is at ``first_index`` with ``value``."""
        if count <= 0:
            return
        if field not in self.counts:
            self.first_index[field] = int(first_index)
            self.first_value[field] = int(value)
        self.counts[field] = self.counts.get(field, 0) + int(count)

    @property
    def total(self) -> int:
        """Events dropped so far."""
        return sum(self.counts.values())

    def describe(self, width: int, height: int) -> str:
        """One sentence per field, e.g. ``2 events with field 'y' outside [0, 720) (first at index 17, y=33014)``."""
        limits = {"x": f"outside [0, {width})", "y": f"outside [0, {height})", "p": "not 0 or 1",
                  "t": "earlier than a preceding event (timestamps go backwards)"}
        return "; ".join(
            f"{n} events with field '{f}' {limits[f]} (first at index {self.first_index[f]}, {f}={self.first_value[f]})"
            for f, n in sorted(self.counts.items()))

    def as_dict(self) -> dict:
        """``{"total": n, "<field>": {"count", "first_index", "first_value"}, ...}`` (shard attributes, reports)."""
        out: dict = {"total": self.total}
        for f, n in sorted(self.counts.items()):
            out[f] = {"count": n, "first_index": self.first_index[f], "first_value": self.first_value[f]}
        return out


class RecordingError(ValueError):
    """A recording file is missing, unreadable, truncated or malformed.

    The message always names the file and says what was expected (header key, dataset, byte count, ...).
    """


class EventReader(ABC):
    """Read events ``(x, y, t, p)`` from one recording file.

    Subclasses set the class attribute :attr:`format` and, in ``__init__``, :attr:`width` and :attr:`height`
    after validating the file's header. Every method returns :class:`~evdet.data.events.Events` with ``x, y``
    ``uint16`` (px), ``t`` ``int64`` (µs, non-decreasing) and ``p`` ``uint8`` (0 = OFF, 1 = ON).

    Attributes:
        path: the recording file.
        format: format name, e.g. ``"prophesee-dat"``, ``"etram-hdf5"``, ``"aedat4"``.
        width: sensor width (px).
        height: sensor height (px).

    Use as a context manager (``with open_recording(p) as reader: ...``) or call :meth:`close`; any method
    called after :meth:`close` raises :class:`RecordingError`.

    Args:
        path: the recording.
        on_bad_events: :data:`BAD_EVENT_POLICIES`; with ``drop``, :attr:`bad_events` counts what was removed (the
            binary-search :meth:`read_window` of indexed formats assumes time order and is only approximate then).

    Attributes:
        bad_events: the :class:`BadEventLog` of policy ``drop``, else ``None``.

    Raises:
        RecordingError: from ``__init__`` if ``path`` is not an existing regular file.
        ValueError: an unknown ``on_bad_events``.
    """

    format: str = ""

    def __init__(self, path: str | os.PathLike[str], on_bad_events: str = "error") -> None:
        self.path = Path(path)
        self.width = 0
        self.height = 0
        self._closed = False
        if on_bad_events not in BAD_EVENT_POLICIES:
            raise ValueError(f"on_bad_events: expected one of {list(BAD_EVENT_POLICIES)}, got {on_bad_events!r}")
        self.bad_events: BadEventLog | None = BadEventLog() if on_bad_events == "drop" else None
        if not self.path.is_file():
            raise RecordingError(f"{self.path}: no such file (expected an existing {self.format} recording)")

    # -- public API ------------------------------------------------------------------------------------------

    def read(self) -> Events:
        """Return every event of the file as one :class:`Events` (all ``N`` events in memory).

        Raises:
            RecordingError: if the file is truncated or malformed, or the reader is closed.
        """
        return Events.concatenate(list(self.iter_chunks()), self.width, self.height)

    @abstractmethod
    def read_window(self, t_start_us: int, t_end_us: int) -> Events:
        """Return the events with ``t_start_us <= t < t_end_us`` (µs, the file's own time base).

        Raises:
            ValueError: if ``t_end_us < t_start_us``.
            RecordingError: if the file is truncated or malformed, or the reader is closed.
        """

    @abstractmethod
    def iter_chunks(self, max_events: int = DEFAULT_MAX_EVENTS) -> Iterator[Events]:
        """Yield the whole file, in time order, as consecutive chunks of at most ``max_events`` events.

        Memory stays bounded by one chunk (plus one source packet for formats read packet-wise); the
        concatenated chunks equal :meth:`read`. Each call starts again at the beginning of the file.

        Raises:
            ValueError: if ``max_events`` is not a positive integer.
            RecordingError: if the file is truncated or malformed, or the reader is closed.
        """

    def time_range(self) -> tuple[int, int] | None:
        """First and last timestamp (µs) of the recording, or ``None`` when it holds no event.

        The default streams the file once (:meth:`iter_chunks`); indexed formats read two timestamps. Used to check
        that labels belong to the recording before any window is made.

        Raises:
            RecordingError: if the file is truncated or malformed, or the reader is closed.
        """
        first = last = None
        for chunk in self.iter_chunks():
            if len(chunk):
                first = int(chunk.t[0]) if first is None else first
                last = int(chunk.t[-1])
        return None if first is None else (first, last)

    def close(self) -> None:
        """Release the open file; idempotent."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> "EventReader":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.width}x{self.height}"
        return f"{type(self).__name__}({str(self.path)!r}, format={self.format!r}, {state})"

    # -- helpers for subclasses ------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        """Raise :class:`RecordingError` if the reader was closed."""
        if self._closed:
            raise RecordingError(f"{self.path}: reader is closed")

    @staticmethod
    def _check_window(t_start_us: int, t_end_us: int) -> tuple[int, int]:
        """Return the window bounds as Python ints; ``ValueError`` if ``t_end_us < t_start_us``."""
        start, end = int(t_start_us), int(t_end_us)
        if end < start:
            raise ValueError(f"read_window: expected t_end_us >= t_start_us, got [{start}, {end}) µs")
        return start, end

    @staticmethod
    def _check_max_events(max_events: int) -> int:
        """Return ``max_events`` as an int; ``ValueError`` unless it is a positive integer."""
        if isinstance(max_events, bool) or not isinstance(max_events, numbers.Integral) or max_events <= 0:
            raise ValueError(f"iter_chunks: expected max_events to be a positive int, got {max_events!r}")
        return int(max_events)


class IndexedEventReader(EventReader):
    """An :class:`EventReader` over a format with random access by event index (DAT records, HDF5 datasets).

    Subclasses set ``num_events`` in ``__init__`` and implement :meth:`_decode` (events ``[start, stop)``, checked
    against the previous chunk's last timestamp) and :meth:`_index_at_or_after` (first index with
    ``t >= t_us``, by binary search); reading, window slicing and chunking are shared here.
    """

    num_events: int

    @abstractmethod
    def _decode(self, start: int, stop: int, previous_t_us: int | None) -> Events:
        """Events with index in ``[start, stop)``; ``previous_t_us`` is the last timestamp before ``start``."""

    @abstractmethod
    def _index_at_or_after(self, t_us: int, lo: int = 0) -> int:
        """Index of the first event at or after ``lo`` with ``t >= t_us`` (``num_events`` if none)."""

    @abstractmethod
    def _read_t(self, start: int, stop: int) -> np.ndarray:
        """Timestamps ``t[start:stop]`` (µs) as ``int64``, as stored (unchecked)."""

    def time_range(self) -> tuple[int, int] | None:
        """First and last stored timestamp (µs), two single reads (see :meth:`EventReader.time_range`); a file whose
        timestamps go backwards may end below its largest timestamp."""
        self._ensure_open()
        if self.num_events == 0:
            return None
        return int(self._read_t(0, 1)[0]), int(self._read_t(self.num_events - 1, self.num_events)[0])

    def read(self) -> Events:
        """Return all ``num_events`` events (see :meth:`EventReader.read`)."""
        self._ensure_open()
        return self._decode(0, self.num_events, None)

    def read_window(self, t_start_us: int, t_end_us: int) -> Events:
        """Events with ``t_start_us <= t < t_end_us`` (µs), located by binary search on ``t`` without reading the
        rest of the file (see :meth:`EventReader.read_window`)."""
        self._ensure_open()
        start_us, end_us = self._check_window(t_start_us, t_end_us)
        lo = self._index_at_or_after(start_us)
        hi = max(lo, self._index_at_or_after(end_us, lo))
        return self._decode(lo, hi, None)

    def iter_chunks(self, max_events: int = DEFAULT_MAX_EVENTS) -> Iterator[Events]:
        """Yield consecutive index ranges of at most ``max_events`` events (see :meth:`EventReader.iter_chunks`)."""
        self._ensure_open()
        return self._chunks(self._check_max_events(max_events))

    def _chunks(self, max_events: int) -> Iterator[Events]:
        previous: int | None = None
        for start in range(0, self.num_events, max_events):
            self._ensure_open()
            chunk = self._decode(start, min(start + max_events, self.num_events), previous)
            if len(chunk):
                previous = int(chunk.t[-1])
            yield chunk
