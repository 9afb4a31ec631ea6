"""Event readers: open a raw recording and read its events ``(x, y, t, p)`` as :class:`~evdet.data.events.Events`.

:func:`open_recording` picks the reader by file suffix (``docs/architecture.md``, "Readers"):

==================  ======================  ======================================
suffix              ``format``              reader
==================  ======================  ======================================
``.dat``            ``prophesee-dat``       :class:`~evdet.data.readers.dat.DatReader`
``.h5``, ``.hdf5``  ``etram-hdf5``          :class:`~evdet.data.readers.hdf5.Hdf5Reader`
``.aedat4``         ``aedat4``              :class:`~evdet.data.readers.aedat4.Aedat4Reader`
``.raw``            ``prophesee-raw-evt2``, :class:`~evdet.data.readers.raw.RawReader` (Prophesee RAW)
                    ``prophesee-raw-evt3``
==================  ======================  ======================================
"""

from __future__ import annotations

import os
from pathlib import Path

from evdet.data.readers.aedat4 import Aedat4Reader
from evdet.data.readers.base import BAD_EVENT_POLICIES, DEFAULT_MAX_EVENTS, BadEventLog, EventReader, RecordingError
from evdet.data.readers.dat import DatReader
from evdet.data.readers.hdf5 import Hdf5Reader
from evdet.data.readers.raw import RawReader

__all__ = [
    "BAD_EVENT_POLICIES",
    "DEFAULT_MAX_EVENTS",
    "BadEventLog",
    "READERS_BY_SUFFIX",
    "Aedat4Reader",
    "DatReader",
    "EventReader",
    "Hdf5Reader",
    "RawReader",
    "RecordingError",
    "open_recording",
]

#: Reader class for each supported (lower-case) file suffix.
READERS_BY_SUFFIX: dict[str, type[EventReader]] = {
    ".dat": DatReader,
    ".h5": Hdf5Reader,
    ".hdf5": Hdf5Reader,
    ".aedat4": Aedat4Reader,
    ".raw": RawReader,
}


def open_recording(path: str | os.PathLike[str], on_bad_events: str = "error") -> EventReader:
    """Open an event recording read-only with the reader for its suffix (matched case-insensitively).

    Args:
        path: a ``.dat`` (Prophesee DAT v2), ``.h5``/``.hdf5`` (eTraM ``_td.h5``), ``.aedat4`` or ``.raw``
            (Prophesee EVT 2.0 / EVT 3.0) file.
        on_bad_events: ``error`` (raise at the first event out of range or out of time order) or ``drop``
            (remove them; counted in ``reader.bad_events``), see :data:`BAD_EVENT_POLICIES`.

    Returns:
        An open :class:`EventReader`; use it as a context manager to close the file.

    Raises:
        RecordingError: if the suffix is not one of :data:`READERS_BY_SUFFIX` (the message names the file and
            the supported suffixes), or the reader rejects the file (missing, truncated, malformed).
        ValueError: an unknown ``on_bad_events``.
    """
    path = Path(path)
    reader = READERS_BY_SUFFIX.get(path.suffix.lower())
    if reader is None:
        raise RecordingError(
            f"{path}: unknown recording suffix {path.suffix!r}, expected one of "
            + ", ".join(READERS_BY_SUFFIX)
        )
    return reader(path, on_bad_events)
