"""Prophesee DAT v2 reader (``.dat``, e.g. Gen1 / Gen4 1Mpx / EVK4 recordings).

Layout (Prophesee, "DAT File Format", Metavision SDK docs, docs.prophesee.ai/stable/data/file_formats/dat.html):

1. ASCII header: lines ``% <Keyword> <value>\\n`` (e.g. ``% Version 2``, ``% Width 1280``, ``% Height 720``).
2. Two bytes: event type (0 = Event2d, 12 = EventCd) and event size in bytes (8).
3. Little-endian 8-byte records: ``uint32`` t (µs), then a ``uint32`` word with x in bits 0-13, y in bits
   14-27 and polarity in bits 28-31.

The record area is memory-mapped read-only (``np.memmap``), so window reads touch only the pages they need.

Timestamp overflow: ``t`` is 32 bits of µs and wraps after 2**32 µs (71.6 min). The reader unwraps one wrap, and
only where the data prove it: the last record's ``t`` is smaller than the first's, the first record below the first
timestamp (index ``w``, found by binary search) follows a record at or above it, and adding 2**32 µs to ``t[w]``
continues the time line: ``0 <= t[w] + 2**32 - t[w - 1] <= MAX_WRAP_GAP_US`` (1 s). Every record from ``w`` on then
gets 2**32 µs added. Anything else that ends below the first timestamp (a zero-padded tail, a tail that steps back)
is not a wrap: with ``on_bad_events="error"`` opening the file raises :class:`RecordingError` naming the file, the
first bad index and how many records lie before an earlier timestamp; with ``"drop"`` those records are dropped and
counted while streaming (:class:`~evdet.data.readers.base.BadEventLog`). Timestamps that go backwards elsewhere raise
the same error (file, first index, count) when read. A recording longer than 2**32 µs (two wraps) reads as one that
steps back.
"""

from __future__ import annotations

import os

import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import IndexedEventReader, RecordingError
from evdet.data.readers.time_search import first_index_at_or_after
from evdet.data.readers.validation import checked_events

__all__ = ["DatReader", "DAT_EVENT_TYPES", "DAT_RECORD_DTYPE", "MAX_WRAP_GAP_US"]

#: One DAT record: ``t`` (µs) and the packed ``x | y << 14 | p << 28`` word, both little-endian ``uint32``.
DAT_RECORD_DTYPE = np.dtype([("t", "<u4"), ("word", "<u4")])

#: Event types this reader decodes (Prophesee DAT docs, "Binary Event Type and Size").
DAT_EVENT_TYPES = {0: "Event2d", 12: "EventCd"}

_RECORD_SIZE = 8
_TIMESTAMP_PERIOD_US = 1 << 32
#: Largest step (µs) between the last record before a timestamp wrap and the first after it (after adding 2**32 µs)
#: for the wrap to count as proven (module docstring).
MAX_WRAP_GAP_US = 1_000_000
#: Records per block when the whole timestamp column is scanned (only for a file whose timestamps go backwards).
_SCAN_BLOCK = 1 << 20
_COORD_MASK = 0x3FFF  # 14 bits for x and for y


class DatReader(IndexedEventReader):
    """Read a Prophesee DAT v2 file (``format = "prophesee-dat"``).

    The header must contain ``% Version 2``, ``% Width <px>`` and ``% Height <px>``; there is no default
    sensor size (old Gen1 files without ``Width``/``Height`` are rejected rather than guessed as 304x240).

    Args:
        path: the ``.dat`` file.
        on_bad_events: ``error`` or ``drop`` (:data:`~evdet.data.readers.base.BAD_EVENT_POLICIES`).

    Attributes:
        header: the header's ``{keyword: value}`` pairs as text (keywords as written).
        num_events: number of records ``N``.
        event_type: the type byte (0 Event2d or 12 EventCd).

    Raises:
        RecordingError: naming the file and the problem if it does not exist, does not start with ``%``
            header lines, a header line is cut off, the binary part (type and size bytes) is missing,
            ``Version``/``Width``/``Height`` is missing or not a valid integer, the event type is not 0/12,
            the event size is not 8, or the record area is not a multiple of 8 bytes (truncated file); with
            ``on_bad_events="error"`` also when the file ends below its first timestamp without a proven wrap
            (zeroed or backwards tail: names the first bad index and the count). Decoding raises it for pixels
            outside the sensor, polarity not 0/1 or decreasing timestamps (names the first index and the count).
    """

    format = "prophesee-dat"

    def __init__(self, path: str | os.PathLike[str], on_bad_events: str = "error") -> None:
        super().__init__(path, on_bad_events)
        self.header, data_offset = self._parse_header()
        self.width = self._header_int("Width", 1, _COORD_MASK + 1)
        self.height = self._header_int("Height", 1, _COORD_MASK + 1)
        record_bytes = self.path.stat().st_size - data_offset
        if record_bytes % _RECORD_SIZE:
            raise RecordingError(
                f"{self.path}: record area is {record_bytes} bytes, expected a multiple of {_RECORD_SIZE} "
                f"(file truncated mid-record; {record_bytes % _RECORD_SIZE} trailing bytes)"
            )
        self.num_events = record_bytes // _RECORD_SIZE
        if self.num_events:
            self._records: np.ndarray | None = np.memmap(
                self.path, dtype=DAT_RECORD_DTYPE, mode="r", offset=data_offset, shape=(self.num_events,)
            )
        else:
            self._records = np.zeros(0, DAT_RECORD_DTYPE)
        self._wrap_index = self._find_wrap_index()

    # -- header ----------------------------------------------------------------------------------------------

    def _parse_header(self) -> tuple[dict[str, str], int]:
        """Read the ``%`` header and the type/size bytes; return ``(header, offset of the first record)``."""
        header: dict[str, str] = {}
        with open(self.path, "rb") as f:
            while True:
                line_start = f.tell()
                if f.read(1) != b"%":
                    f.seek(line_start)
                    break
                line = f.readline()
                if not line.endswith(b"\n"):
                    raise RecordingError(
                        f"{self.path}: header line at byte {line_start} is cut off (no newline); "
                        "expected '% <Keyword> <value>' lines followed by the binary event data"
                    )
                parts = line.decode("latin-1").strip().split(None, 1)
                if len(parts) == 2:
                    header.setdefault(parts[0], parts[1].strip())
            type_size = f.read(2)
        if len(type_size) < 2:
            raise RecordingError(
                f"{self.path}: no binary part after the header (byte {line_start}); expected the event type "
                "and event size bytes followed by 8-byte records (file truncated?)"
            )
        if line_start == 0:
            raise RecordingError(
                f"{self.path}: does not start with a '% <Keyword> <value>' text header (not a Prophesee DAT file?)"
            )
        self.header = header
        version = self._header_int("Version", 0, None)
        if version != 2:
            raise RecordingError(f"{self.path}: header 'Version' is {version}, expected 2 (Prophesee DAT v2)")
        self.event_type, event_size = type_size[0], type_size[1]
        if self.event_type not in DAT_EVENT_TYPES:
            raise RecordingError(
                f"{self.path}: event type byte is {self.event_type}, expected one of "
                + ", ".join(f"{k} ({v})" for k, v in DAT_EVENT_TYPES.items())
            )
        if event_size != _RECORD_SIZE:
            raise RecordingError(f"{self.path}: event size byte is {event_size}, expected {_RECORD_SIZE}")
        return header, line_start + 2

    def _header_int(self, key: str, minimum: int, limit: int | None) -> int:
        """Header value ``key`` (matched case-insensitively) as an int in ``[minimum, limit)``."""
        matches = [v for k, v in self.header.items() if k.lower() == key.lower()]
        if not matches:
            raise RecordingError(f"{self.path}: missing header key '{key}' (expected a line '% {key} <integer>')")
        try:
            value = int(matches[0])
        except ValueError:
            raise RecordingError(
                f"{self.path}: header key '{key}' is {matches[0]!r}, expected an integer"
            ) from None
        if value < minimum or (limit is not None and value >= limit):
            bound = f"< {limit}" if limit is not None else ""
            raise RecordingError(f"{self.path}: header key '{key}' is {value}, expected >= {minimum} {bound}")
        return value

    # -- time base -------------------------------------------------------------------------------------------

    def _find_wrap_index(self) -> int:
        """Index of the first record after a proven uint32 timestamp wrap, or ``num_events`` if none (module doc).

        Raises:
            RecordingError: (policy ``error``) the file ends below its first timestamp without a proven wrap.
        """
        n = self.num_events
        self._backwards: tuple[int, int, int, int, int] | None = None
        raw_t = self._records["t"]
        if n == 0 or int(raw_t[-1]) >= int(raw_t[0]):
            return n
        first = int(raw_t[0])
        # Before a wrap raw t >= first, after it raw t < first (span < 2**32 µs): bisect on that predicate.
        w = first_index_at_or_after(lambda a, b: (raw_t[a:b] < first).astype(np.int64), 1, 0, n)
        if 0 < w < n and int(raw_t[w - 1]) >= first > int(raw_t[w]):
            step = int(raw_t[w]) + _TIMESTAMP_PERIOD_US - int(raw_t[w - 1])
            if 0 <= step <= MAX_WRAP_GAP_US:
                return w
        self._wrap_index = n
        self._backwards = self._scan_backwards()
        if self.bad_events is None:
            raise self._backwards_error(wrap_checked=True)
        return n

    def _scan_backwards(self) -> tuple[int, int, int, int, int] | None:
        """Scan the whole timestamp column: ``(first index, count, t there, latest t before it, largest t)`` of the
        records stamped before an earlier record, or ``None`` when the timestamps never go back."""
        latest = np.iinfo(np.int64).min
        first: tuple[int, int, int] | None = None
        count = 0
        for start in range(0, self.num_events, _SCAN_BLOCK):
            t = self._read_t(start, min(start + _SCAN_BLOCK, self.num_events))
            before = np.maximum.accumulate(np.concatenate([[latest], t[:-1]]))
            bad = t < before
            if bad.any():
                if first is None:
                    i = int(np.argmax(bad))
                    first = (start + i, int(t[i]), int(before[i]))
                count += int(bad.sum())
            latest = max(latest, int(t.max()))
        if first is None:
            return None
        return first[0], count, first[1], first[2], latest

    def _backwards_error(self, wrap_checked: bool = False) -> RecordingError:
        """The error for timestamps that go backwards, from :meth:`_scan_backwards` (scanned here if needed)."""
        if self._backwards is None:
            self._backwards = self._scan_backwards()
        assert self._backwards is not None
        index, count, value, latest, _ = self._backwards
        why = (f"the file ends below its first timestamp ({int(self._records['t'][-1])} < "
               f"{int(self._records['t'][0])} µs) but is no 2**32 µs wrap (t does not continue after adding 2**32): "
               "a zeroed or corrupt tail? " if wrap_checked else "")
        return RecordingError(
            f"{self.path}: timestamps decrease at event {index} ({latest} -> {value} µs) and {count} of the "
            f"{self.num_events - index} events from there on lie before an earlier event; {why}expected time-ordered "
            "events (--on-bad-events drop / on_bad_events='drop' drops and counts them)"
        )

    def time_range(self) -> tuple[int, int] | None:
        """First and last timestamp (µs) of the events the reader yields, read without streaming; the last one is
        the largest timestamp when a backwards tail is dropped (``None`` for an empty file)."""
        self._ensure_open()
        if self.num_events == 0:
            return None
        if self._backwards is not None:
            return int(self._read_t(0, 1)[0]), self._backwards[4]
        return super().time_range()

    def _read_t(self, start: int, stop: int) -> np.ndarray:
        """Unwrapped timestamps ``t[start:stop]`` as ``int64`` µs (reads only those records)."""
        t = self._records["t"][start:stop].astype(np.int64)
        if self._wrap_index < stop:
            t[max(self._wrap_index - start, 0) :] += _TIMESTAMP_PERIOD_US
        return t

    def _decode(self, start: int, stop: int, previous_t_us: int | None) -> Events:
        """Decode records ``[start, stop)`` into checked :class:`Events`.

        Raises:
            RecordingError: (policy ``error``) an event out of range, or timestamps that decrease (names the first
                index in the file and how many events are stamped before an earlier one).
        """
        word = np.array(self._records["word"][start:stop])
        t = self._read_t(start, stop)
        if self.bad_events is None and len(t):
            backwards = (previous_t_us is not None and int(t[0]) < previous_t_us) or bool((np.diff(t) < 0).any())
            if backwards:
                raise self._backwards_error()
        return checked_events(
            self.path,
            x=word & _COORD_MASK,
            y=(word >> 14) & _COORD_MASK,
            t=t,
            p=word >> 28,
            width=self.width,
            height=self.height,
            first_index=start,
            previous_t_us=previous_t_us,
            bad_events=self.bad_events,
        )

    # -- EventReader API -------------------------------------------------------------------------------------

    def _index_at_or_after(self, t_us: int, lo: int = 0) -> int:
        """First record index ``>= lo`` with ``t >= t_us``: ``O(log N)`` single timestamps of the memory map."""
        return first_index_at_or_after(self._read_t, t_us, lo, self.num_events)

    def close(self) -> None:
        """Drop the memory map (the file is unmapped once no chunk being decoded still refers to it)."""
        self._records = None
        super().close()
