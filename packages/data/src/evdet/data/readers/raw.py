"""Prophesee RAW reader (``.raw``: EVT 2.0 and EVT 3.0 recordings of Metavision / OpenEB, e.g. EVK4 IMX636).

Layout (Prophesee, "RAW File Format", docs.prophesee.ai/stable/data/file_formats/raw.html): a ``%`` text header
(:mod:`evdet.data.readers.raw_header`: encoding and sensor size) followed by the sensor's little-endian words, 32-bit
for EVT 2.0 and 16-bit for EVT 3.0, decoded by :mod:`evdet.data.readers.evt_decoding` (numba).

The word area is memory-mapped read-only. Opening the file runs one pass over all words
(:func:`~evdet.data.readers.evt_decoding.evt3_index`) that counts the events and saves, every
:data:`BLOCK_WORDS` words, the decoder state, the events before and the first/last timestamp; any event range is
then decoded from the nearest block start, so windows, chunks and the first/last timestamp read only the blocks they
need. The index pass runs at about the speed of decoding (see ``tests/data/test_raw_reader.py``).

Decoding choices (why not ``expelliarmus`` / ``faery``, module docstring of :mod:`evdet.data.readers.evt_decoding`
for the time-high wrap): ``expelliarmus`` 1.1.12 decodes EVT 3.0 timestamps wrongly: it counts every decrease of
``TIME_LOW`` as an overflow and adds that count to ``TIME_HIGH`` although the encoder already advanced ``TIME_HIGH``,
so each 4096 µs step is counted twice (``read_evt3`` in its ``src/evt3.c``; the gen4 recording of 10.77 s encoded as
EVT 3.0 decodes as 21.5 s). Its EVT 2.0 decoding is right. ``faery`` 0.7.1 decodes both formats correctly but only as a stream from the start
of the file, without random access; it is the independent decoder the tests compare against.

Timestamps: the file's own µs (no shift to zero), with time-high wraps counted from the first ``TIME_HIGH``; a
recording that starts after ``k`` wraps of the 24-bit (EVT 3.0) / 34-bit (EVT 2.0) counter reads ``k * 2**24`` /
``k * 2**34`` µs earlier than its camera clock, which the file cannot tell. A file whose word area is not a whole
number of words (truncated mid-word) is refused, as :mod:`evdet.data.readers.dat` refuses a cut-off record.
"""

from __future__ import annotations

import os

import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import IndexedEventReader, RecordingError
from evdet.data.readers.evt_decoding import (
    EVT2_STATE_SIZE,
    EVT3_STATE_SIZE,
    evt2_decode,
    evt2_index,
    evt3_decode,
    evt3_index,
)
from evdet.data.readers.raw_header import ENCODINGS, RawHeader, parse_raw_header
from evdet.data.readers.validation import checked_events

__all__ = ["BLOCK_WORDS", "RawReader"]

#: Words per index block (64 KiB of EVT 3.0 / 128 KiB of EVT 2.0 data): a window boundary decodes at most one block.
BLOCK_WORDS = 1 << 15

_KERNELS = {
    "evt2": (np.dtype("<u4"), EVT2_STATE_SIZE, evt2_index, evt2_decode),
    "evt3": (np.dtype("<u2"), EVT3_STATE_SIZE, evt3_index, evt3_decode),
}


class RawReader(IndexedEventReader):
    """Read a Prophesee RAW file in EVT 2.0 or EVT 3.0 (``format = "prophesee-raw-evt2"`` / ``"prophesee-raw-evt3"``).

    Args:
        path: the ``.raw`` file.
        on_bad_events: ``error`` or ``drop`` (:data:`~evdet.data.readers.base.BAD_EVENT_POLICIES`).

    Attributes:
        header: the parsed :class:`~evdet.data.readers.raw_header.RawHeader` (``fields``, ``encoding``,
            ``geometry_from``).
        encoding: ``"evt2"`` or ``"evt3"``.
        num_events: number of CD events ``N`` (counted at open).
        num_words: number of data words.

    ``time_range()`` decodes the first and the last event (two blocks); with ``on_bad_events="drop"`` and a tail that
    steps back in time it is the last stored, not the largest, timestamp.

    Raises:
        RecordingError: naming the file if it does not exist, its header is not a RAW header, names no supported
            encoding or no sensor size (:func:`~evdet.data.readers.raw_header.parse_raw_header`), or the word
            area is not a whole number of 4-byte (EVT 2.0) / 2-byte (EVT 3.0) words (file truncated mid-word).
            Decoding raises it for pixels outside the sensor or timestamps that go backwards (names the first event
            index), unless ``on_bad_events="drop"``.
    """

    format = "prophesee-raw"

    def __init__(self, path: str | os.PathLike[str], on_bad_events: str = "error") -> None:
        super().__init__(path, on_bad_events)
        self.header: RawHeader = parse_raw_header(self.path)
        self.encoding = self.header.encoding
        self.format = f"prophesee-raw-{self.encoding}"
        self.width, self.height = self.header.width, self.header.height
        dtype, state_size, index, self._decode_words = _KERNELS[self.encoding]
        word_bytes = ENCODINGS[self.encoding][2]
        data_bytes = self.path.stat().st_size - self.header.data_offset
        if data_bytes % word_bytes:
            raise RecordingError(
                f"{self.path}: the {ENCODINGS[self.encoding][1]} data after the header are {data_bytes} bytes, "
                f"expected a multiple of {word_bytes} (file truncated mid-word; {data_bytes % word_bytes} trailing "
                "bytes)"
            )
        self.num_words = data_bytes // word_bytes
        if self.num_words:
            self._words: np.ndarray | None = np.memmap(
                self.path, dtype=dtype, mode="r", offset=self.header.data_offset, shape=(self.num_words,))
        else:
            self._words = np.zeros(0, dtype)
        blocks = -(-self.num_words // BLOCK_WORDS)
        self._states = np.zeros((blocks, state_size), np.int64)
        self._block_events = np.zeros(blocks, np.int64)
        block_t_first = np.zeros(blocks, np.int64)
        block_t_last = np.zeros(blocks, np.int64)
        self.num_events = int(index(self._words, BLOCK_WORDS, self._states, self._block_events, block_t_first,
                                    block_t_last))
        self._block_event_start = np.concatenate([[0], np.cumsum(self._block_events)[:-1]]).astype(np.int64)
        # Latest timestamp up to each block (-1 before any event): non-decreasing, for the time search.
        self._block_t_max = np.maximum.accumulate(block_t_last) if blocks else block_t_last

    # -- decoding --------------------------------------------------------------------------------------------

    def _decode_columns(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Columns ``x, y`` (uint16 px), ``t`` (int64 µs), ``p`` (uint8) of events ``[start, stop)``, as decoded."""
        self._ensure_open()
        n = max(stop - start, 0)
        x, y = np.empty(n, np.uint16), np.empty(n, np.uint16)
        t, p = np.empty(n, np.int64), np.empty(n, np.uint8)
        if n == 0:
            return x, y, t, p
        block = int(np.searchsorted(self._block_event_start, start, side="right")) - 1
        got = self._decode_words(self._words, block * BLOCK_WORDS, self._states[block],
                                 start - int(self._block_event_start[block]), x, y, t, p)
        if got != n:
            raise RecordingError(
                f"{self.path}: decoded {got} of events [{start}, {stop}) but the index counted {self.num_events} "
                "events (file changed since it was opened?)"
            )
        return x, y, t, p

    def _decode(self, start: int, stop: int, previous_t_us: int | None) -> Events:
        """Decode events ``[start, stop)`` into checked :class:`Events` (see :func:`checked_events`)."""
        x, y, t, p = self._decode_columns(start, stop)
        return checked_events(self.path, x=x, y=y, t=t, p=p, width=self.width, height=self.height,
                              first_index=start, previous_t_us=previous_t_us, bad_events=self.bad_events)

    def _read_t(self, start: int, stop: int) -> np.ndarray:
        """Timestamps ``t[start:stop]`` (µs, ``int64``), decoded from the nearest block (unchecked)."""
        return self._decode_columns(start, stop)[2]

    def _index_at_or_after(self, t_us: int, lo: int = 0) -> int:
        """First event index ``>= lo`` with ``t >= t_us``: the block from the index, then one block decoded."""
        if self.num_events == 0:
            return 0
        block = int(np.searchsorted(self._block_t_max, t_us, side="left"))
        if block == len(self._block_t_max):
            return self.num_events
        start = int(self._block_event_start[block])
        stop = start + int(self._block_events[block])
        t = self._read_t(start, stop)
        return max(lo, start + int(np.searchsorted(t, t_us, side="left")))

    def close(self) -> None:
        """Drop the memory map (unmapped once no chunk being decoded refers to it)."""
        self._words = None
        super().close()
