"""Prophesee DAT v2 reader (``.dat``, e.g. Gen1 / Gen4 1Mpx / EVK4 recordings).

Layout (Prophesee, "DAT File Format", Metavision SDK docs, docs.prophesee.ai/stable/data/file_formats/dat.html):

1. ASCII header: lines ``% <Keyword> <value>\\n`` (e.g. ``% Version 2``, ``% Width 1280``, ``% Height 720``).
2. Two bytes: event type (0 = Event2d, 12 = EventCd) and event size in bytes (8).
3. Little-endian 8-byte records: ``uint32`` t (µs), then a ``uint32`` word with x in bits 0-13, y in bits
   14-27 and polarity in bits 28-31.

The record area is memory-mapped read-only (``np.memmap``), so window reads touch only the pages they need.

Timestamp overflow: ``t`` is 32 bits of µs and wraps after 2**32 µs (71.6 min). The reader handles one wrap
under the assumption that the recording spans less than 2**32 µs: then a wrap happened exactly when the last
record's ``t`` is smaller than the first's, and every record after the wrap point (found by binary search) gets
2**32 µs added. A recording that breaks the assumption shows up as decreasing timestamps and raises
:class:`RecordingError` when streamed.
"""

from __future__ import annotations

import os

import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import IndexedEventReader, RecordingError
from evdet.data.readers.time_search import first_index_at_or_after
from evdet.data.readers.validation import checked_events

__all__ = ["DatReader", "DAT_EVENT_TYPES", "DAT_RECORD_DTYPE"]

#: One DAT record: ``t`` (µs) and the packed ``x | y << 14 | p << 28`` word, both little-endian ``uint32``.
DAT_RECORD_DTYPE = np.dtype([("t", "<u4"), ("word", "<u4")])

#: Event types this reader decodes (Prophesee DAT docs, "Binary Event Type and Size").
DAT_EVENT_TYPES = {0: "Event2d", 12: "EventCd"}

_RECORD_SIZE = 8
_TIMESTAMP_PERIOD_US = 1 << 32
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
            the event size is not 8, or the record area is not a multiple of 8 bytes (truncated file).
            Decoding raises it for pixels outside the sensor, polarity not 0/1 or decreasing timestamps.
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
        """Index of the first record after a uint32 timestamp wrap, or ``num_events`` if none (see module doc)."""
        n = self.num_events
        raw_t = self._records["t"]
        if n == 0 or int(raw_t[-1]) >= int(raw_t[0]):
            return n
        first = int(raw_t[0])
        # Before the wrap raw t >= first, after it raw t < first (span < 2**32 µs): bisect on that predicate.
        return first_index_at_or_after(lambda a, b: (raw_t[a:b] < first).astype(np.int64), 1, 0, n)

    def _read_t(self, start: int, stop: int) -> np.ndarray:
        """Unwrapped timestamps ``t[start:stop]`` as ``int64`` µs (reads only those records)."""
        t = self._records["t"][start:stop].astype(np.int64)
        if self._wrap_index < stop:
            t[max(self._wrap_index - start, 0) :] += _TIMESTAMP_PERIOD_US
        return t

    def _decode(self, start: int, stop: int, previous_t_us: int | None) -> Events:
        """Decode records ``[start, stop)`` into checked :class:`Events`."""
        word = np.array(self._records["word"][start:stop])
        return checked_events(
            self.path,
            x=word & _COORD_MASK,
            y=(word >> 14) & _COORD_MASK,
            t=self._read_t(start, stop),
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
