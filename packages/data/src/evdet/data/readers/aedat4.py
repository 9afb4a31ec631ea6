"""AEDAT 4 reader (``.aedat4``, iniVation DAVIS / DVXplorer recordings), decoded by the ``aedat`` package.

``aedat.Decoder(path)`` parses the AEDAT 4 container (iniVation, "AEDAT 4.0 file format",
docs.inivation.com); ``id_to_stream()`` maps stream ids to ``{'type': 'events' | 'frame' | 'imus' |
'triggers', 'width', 'height'}`` and iterating the decoder yields one packet dict per container packet:
``{'stream_id': int, 'events': structured array}`` for event packets, with fields ``t`` (``u8``, µs), ``x``,
``y`` (``u2``, px) and ``on`` (bool, titled ``p``).

Only the first (lowest id) ``events`` stream is read; frames, IMU samples and triggers are skipped. The format
has no time index usable here, so every read streams packets from the start of the file; :meth:`read_window`
skips packets that end before the window and stops at the first packet that starts at or after its end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import aedat
import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import DEFAULT_MAX_EVENTS, EventReader, RecordingError
from evdet.data.readers.validation import checked_events

__all__ = ["Aedat4Reader"]


class Aedat4Reader(EventReader):
    """Read the events stream of an AEDAT 4 file (``format = "aedat4"``).

    Timestamps are the file's absolute µs (DAVIS clocks count µs since the Unix epoch, ~1.6e15), kept as
    ``int64``.

    Args:
        path: the ``.aedat4`` file.
        on_bad_events: ``error`` or ``drop`` (:data:`~evdet.data.readers.base.BAD_EVENT_POLICIES`).

    Attributes:
        stream_id: id of the events stream read.

    Raises:
        RecordingError: naming the file if it does not exist, ``aedat`` cannot parse its header, it has no
            ``events`` stream, or the stream lacks a positive ``width``/``height``. Reading raises it too when
            a packet cannot be decoded (truncated or corrupt file) or events are out of range / out of order.
    """

    format = "aedat4"

    def __init__(self, path: str | os.PathLike[str], on_bad_events: str = "error") -> None:
        super().__init__(path, on_bad_events)
        try:
            streams = aedat.Decoder(str(self.path)).id_to_stream()
        except (RuntimeError, OSError, ValueError) as err:
            raise RecordingError(f"{self.path}: cannot decode the AEDAT 4 header ({err})") from err
        event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        if not event_ids:
            kinds = sorted({str(s.get("type")) for s in streams.values()})
            raise RecordingError(f"{self.path}: no 'events' stream, expected one (found streams: {kinds})")
        self.stream_id = event_ids[0]
        stream = streams[self.stream_id]
        for key in ("width", "height"):
            value = stream.get(key)
            if not isinstance(value, int) or value <= 0:
                raise RecordingError(
                    f"{self.path}: events stream {self.stream_id} has {key}={value!r}, expected a positive int (px)"
                )
        self.width, self.height = int(stream["width"]), int(stream["height"])

    def _packets(self) -> Iterator[np.ndarray]:
        """Yield the events stream's packets (structured arrays ``t, x, y, on``) from the start of the file."""
        try:
            decoder = aedat.Decoder(str(self.path))
        except (RuntimeError, OSError, ValueError) as err:
            raise RecordingError(f"{self.path}: cannot decode the AEDAT 4 header ({err})") from err
        packets = iter(decoder)
        index = 0
        while True:
            self._ensure_open()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (RuntimeError, OSError, ValueError) as err:
                raise RecordingError(
                    f"{self.path}: cannot decode AEDAT 4 packet {index} ({err}); file truncated or corrupt"
                ) from err
            index += 1
            if packet.get("stream_id") == self.stream_id and "events" in packet:
                yield packet["events"]

    def _event_packets(self) -> Iterator[Events]:
        """The non-empty event packets as checked :class:`Events`, in file order (timestamps checked across
        packets)."""
        seen = 0
        previous: int | None = None
        for records in self._packets():
            if len(records) == 0:
                continue
            packet = self._to_events(records, seen, previous)
            seen += len(records)
            if len(packet) == 0:
                continue
            previous = int(packet.t[-1])
            yield packet

    def _to_events(self, records: np.ndarray, first_index: int, previous_t_us: int | None) -> Events:
        """Checked :class:`Events` from a structured array of packet records."""
        return checked_events(
            self.path,
            x=records["x"],
            y=records["y"],
            t=records["t"].astype(np.int64),
            p=records["on"],
            width=self.width,
            height=self.height,
            first_index=first_index,
            previous_t_us=previous_t_us,
            bad_events=self.bad_events,
        )

    def read_window(self, t_start_us: int, t_end_us: int) -> Events:
        """Events with ``t_start_us <= t < t_end_us`` (µs), streaming packets from the start of the file.

        Stops decoding at the first packet whose first event is at or after ``t_end_us`` (packets are time
        ordered), so the cost grows with the window's end time. See :meth:`EventReader.read_window`.
        """
        self._ensure_open()
        start_us, end_us = self._check_window(t_start_us, t_end_us)
        parts: list[Events] = []
        for packet in self._event_packets():
            if packet.t[0] >= end_us:
                break
            if packet.t[-1] >= start_us:
                parts.append(packet.time_slice(start_us, end_us))
        return Events.concatenate(parts, self.width, self.height)

    def iter_chunks(self, max_events: int = DEFAULT_MAX_EVENTS) -> Iterator[Events]:
        """Regroup packets into chunks of exactly ``max_events`` events (the last may be shorter).

        Holds at most ``max_events`` events plus one packet in memory. See :meth:`EventReader.iter_chunks`.
        """
        self._ensure_open()
        return self._chunks(self._check_max_events(max_events))

    def _chunks(self, max_events: int) -> Iterator[Events]:
        pending: list[Events] = []
        pending_count = 0
        for packet in self._event_packets():
            pending.append(packet)
            pending_count += len(packet)
            if pending_count >= max_events:
                joined = Events.concatenate(pending, self.width, self.height)
                cut = 0
                while len(joined) - cut >= max_events:
                    yield _take(joined, cut, cut + max_events)
                    cut += max_events
                rest = _take(joined, cut, len(joined))
                pending = [rest] if len(rest) else []
                pending_count = len(rest)
        if pending_count:
            yield Events.concatenate(pending, self.width, self.height)


def _take(events: Events, start: int, stop: int) -> Events:
    """Events ``[start, stop)`` by index."""
    return Events(
        events.x[start:stop], events.y[start:stop], events.t[start:stop], events.p[start:stop],
        events.width, events.height,
    )
