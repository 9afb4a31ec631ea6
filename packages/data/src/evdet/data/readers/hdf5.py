"""eTraM / Gen4 HDF5 reader (``<name>_td.h5``).

Layout (eTraM, Verma et al., CVPR 2024, released in the RVT HDF5 layout of Gehrig & Scaramuzza, CVPR 2023):

=====================  ===============  ===============================================
dataset                shape            meaning
=====================  ===============  ===============================================
``events/x``           (N,) integer     pixel column (px)
``events/y``           (N,) integer     pixel row (px)
``events/p``           (N,) integer     polarity, 0/1 (-1/1 is accepted and mapped to 0/1)
``events/t``           (N,) integer     timestamp (µs), non-decreasing
``events/width``       scalar integer   sensor width (px)
``events/height``      scalar integer   sensor height (px)
``ms_to_idx``          (M,) integer     optional (also looked up as ``events/ms_to_idx``)
=====================  ===============  ===============================================

The columns are usually chunked and Blosc-compressed; importing :mod:`hdf5plugin` registers the filter.
Nothing is loaded whole: window boundaries are found by binary search with single-element reads of the chunked
``events/t`` (each read decompresses one chunk). If ``ms_to_idx`` exists it is used as a hint in the DSEC
convention (``ms_to_idx[k]`` = index of the first event with ``t >= 1000 * k`` µs) to narrow the search; the
hint is verified with two timestamp reads and ignored when it does not bracket the answer, so a file with a
different convention is still read correctly. ``events/divider`` and any other dataset are ignored: ``x``,
``y``, ``width`` and ``height`` are taken as stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import h5py
import numpy as np

from evdet.data.events import Events
from evdet.data.readers.base import IndexedEventReader, RecordingError
from evdet.data.readers.time_search import first_index_at_or_after
from evdet.data.readers.validation import checked_events

__all__ = ["ETRAM_COLUMNS", "ETRAM_SIZE_KEYS", "MS_TO_IDX_KEYS", "Hdf5Reader"]

#: The per-event datasets, in the order x, y, p, t.
ETRAM_COLUMNS = ("events/x", "events/y", "events/p", "events/t")
#: Scalar datasets holding the sensor size (px).
ETRAM_SIZE_KEYS = ("events/width", "events/height")
#: Where an optional millisecond index may be stored.
MS_TO_IDX_KEYS = ("ms_to_idx", "events/ms_to_idx")


class Hdf5Reader(IndexedEventReader):
    """Read an eTraM / Gen4 ``_td.h5`` event file (``format = "etram-hdf5"``), opened read-only.

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        on_bad_events: ``error`` or ``drop`` (:data:`~evdet.data.readers.base.BAD_EVENT_POLICIES`).

    Attributes:
        num_events: number of events ``N``.
        has_ms_index: True if a usable ``ms_to_idx`` dataset was found.

    Raises:
        RecordingError: naming the file and the key if the file does not exist, is not a readable HDF5 file
            (corrupt or truncated: h5py ``OSError``), a dataset of :data:`ETRAM_COLUMNS` /
            :data:`ETRAM_SIZE_KEYS` is missing, the columns are not 1-D integer arrays of equal length, or
            the sensor size is not a positive integer scalar. Reading later raises it too when the data turn
            out to be unreadable (e.g. a truncated file whose metadata survived) or out of range.
    """

    format = "etram-hdf5"

    def __init__(self, path: str | os.PathLike[str], on_bad_events: str = "error") -> None:
        super().__init__(path, on_bad_events)
        try:
            import hdf5plugin  # noqa: F401  (registers the Blosc / LZ4 / Zstd filters of eTraM files; imported on
            # use, so that .dat / .aedat4 readers and the rest of evdet run where hdf5plugin is not installed)

            self._file: h5py.File | None = h5py.File(self.path, "r")
        except OSError as err:
            raise RecordingError(
                f"{self.path}: cannot open as HDF5 ({err}); expected an eTraM _td.h5 file (corrupt or truncated?)"
            ) from err
        try:
            with self._h5_errors("reading the file layout"):
                self._open_layout()
        except BaseException:
            self._file.close()
            self._file = None
            raise

    @contextmanager
    def _h5_errors(self, doing: str) -> Iterator[None]:
        """Turn h5py / HDF5 library failures into :class:`RecordingError` naming the file."""
        try:
            yield
        except RecordingError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as err:
            raise RecordingError(f"{self.path}: HDF5 error while {doing}: {err} (corrupt or truncated file?)") from err

    def _dataset(self, key: str) -> h5py.Dataset:
        assert self._file is not None
        if key not in self._file:
            raise RecordingError(
                f"{self.path}: missing dataset '{key}'; expected the eTraM layout "
                f"{', '.join(ETRAM_COLUMNS + ETRAM_SIZE_KEYS)}"
            )
        obj = self._file[key]
        if not isinstance(obj, h5py.Dataset):
            raise RecordingError(f"{self.path}: '{key}' is a {type(obj).__name__}, expected a dataset")
        return obj

    def _size(self, key: str) -> int:
        ds = self._dataset(key)
        if ds.size != 1 or ds.dtype.kind not in "iu":
            raise RecordingError(
                f"{self.path}: '{key}' has shape {ds.shape} and dtype {ds.dtype}, expected a scalar integer (px)"
            )
        value = int(np.asarray(ds[()]).reshape(-1)[0])
        if value <= 0:
            raise RecordingError(f"{self.path}: '{key}' is {value}, expected a positive sensor size (px)")
        return value

    def _open_layout(self) -> None:
        self.width = self._size("events/width")
        self.height = self._size("events/height")
        columns = [self._dataset(key) for key in ETRAM_COLUMNS]
        n = None
        for key, ds in zip(ETRAM_COLUMNS, columns):
            kinds = "iub" if key == "events/p" else "iu"
            if ds.ndim != 1 or ds.dtype.kind not in kinds:
                raise RecordingError(
                    f"{self.path}: '{key}' has shape {ds.shape} and dtype {ds.dtype}, expected a 1-D integer array"
                )
            if n is None:
                n = len(ds)
            elif len(ds) != n:
                raise RecordingError(f"{self.path}: '{key}' has {len(ds)} entries, expected {n} (as events/x)")
        self._x, self._y, self._p, self._t = columns
        self.num_events = int(n or 0)
        self._ms_to_idx: h5py.Dataset | None = None
        assert self._file is not None
        for key in MS_TO_IDX_KEYS:
            obj = self._file.get(key)
            if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind in "iu" and len(obj) > 0:
                self._ms_to_idx = obj
                break
        self.has_ms_index = self._ms_to_idx is not None

    # -- reading ---------------------------------------------------------------------------------------------

    def _read_t(self, start: int, stop: int) -> np.ndarray:
        with self._h5_errors("reading 'events/t'"):
            return np.asarray(self._t[start:stop], dtype=np.int64)

    def _decode(self, start: int, stop: int, previous_t_us: int | None) -> Events:
        """Read events ``[start, stop)`` into checked :class:`Events`."""
        with self._h5_errors(f"reading events [{start}, {stop})"):
            x = self._x[start:stop]
            y = self._y[start:stop]
            p = self._p[start:stop]
        t = self._read_t(start, stop)
        if p.dtype.kind == "i":  # signed polarity: accept -1/0/1, map -1 -> 0
            bad = (p < -1) | (p > 1)
            if bad.any():
                i = int(np.argmax(bad))
                raise RecordingError(
                    f"{self.path}: event {start + i} has events/p={int(p[i])}, expected 0/1 (or -1/1)"
                )
            p = p > 0
        return checked_events(self.path, x, y, t, p, self.width, self.height, start, previous_t_us, self.bad_events)

    def _search_range(self, target_us: int) -> tuple[int, int]:
        """``(lo, hi)`` bracketing the first index with ``t >= target_us``, narrowed by ``ms_to_idx`` if valid."""
        n = self.num_events
        if self._ms_to_idx is None:
            return 0, n
        m = len(self._ms_to_idx)
        k = target_us // 1000
        with self._h5_errors("reading 'ms_to_idx'"):
            lo = int(self._ms_to_idx[k]) if 0 <= k < m else 0
            hi = int(self._ms_to_idx[k + 1]) if 0 <= k + 1 < m else n
        lo, hi = min(max(lo, 0), n), min(max(hi, 0), n)
        if lo > hi:
            return 0, n
        lo_ok = lo == 0 or int(self._read_t(lo - 1, lo)[0]) < target_us
        hi_ok = hi == n or int(self._read_t(hi, hi + 1)[0]) >= target_us
        return (lo, hi) if lo_ok and hi_ok else (0, n)

    def _index_at_or_after(self, t_us: int, lo: int = 0) -> int:
        """First index ``>= lo`` with ``t >= t_us``: bisection of the chunked ``events/t`` inside the range the
        millisecond index allows (the whole file without one)."""
        search_lo, search_hi = self._search_range(t_us)
        return max(lo, first_index_at_or_after(self._read_t, t_us, search_lo, search_hi))

    # -- EventReader API -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HDF5 file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()
