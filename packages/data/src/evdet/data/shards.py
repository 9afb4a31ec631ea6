"""Representation shards: one HDF5 file per recording, written by ``evdet-data preprocess``.

Layout (``docs/architecture.md``, "Shard"), ``N`` windows, ``M`` boxes, ``K`` label timestamps:

========================  ==========================  ==========================================================
dataset                   shape, dtype                meaning
========================  ==========================  ==========================================================
``representation``        (N, 2*bins, H, W) uint8     stacked histogram per window, Blosc via hdf5plugin,
                                                      one HDF5 chunk per window
``window_end_us``         (N,) int64                  window ``i`` covers ``[end - window_us, end)`` (µs)
``labels``                (M,) BBOX_DTYPE             boxes in representation px (scaled, cropped, non-degenerate)
``label_t_us``            (K,) int64                  unique label timestamps (µs), increasing
``label_window_index``    (K,) int64                  first window whose end is ``>= label_t_us``
``label_slice``           (K, 2) int64                ``[start, stop)`` rows of ``labels`` per label timestamp
========================  ==========================  ==========================================================

Attributes: ``width``, ``height`` (representation px), ``sensor_width``, ``sensor_height``,
``downsample_factor``, ``window_us``, ``bins``, ``clip``, ``source`` (recording file name),
``dropped_degenerate_boxes``, ``class_map`` (name), ``class_names`` (target class names, index = class id)
and ``complete`` (True once the file is finished).

:class:`ShardWriter` writes ``<name>.h5.tmp`` and renames it to ``<name>.h5`` only when finished, so an
interrupted run never leaves a file that looks complete. :class:`Shard` reads one lazily (the HDF5 file is
opened on first use, in the process that uses it, so it can be handed to DataLoader workers).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import h5py
import hdf5plugin
import numpy as np

from evdet.data.labels import BBOX_DTYPE

__all__ = [
    "REQUIRED_ATTRS",
    "REQUIRED_DATASETS",
    "Shard",
    "ShardError",
    "ShardWriter",
    "is_complete_shard",
    "list_shards",
]

#: Datasets every shard holds.
REQUIRED_DATASETS = ("representation", "window_end_us", "labels", "label_t_us", "label_window_index", "label_slice")
#: Attributes every finished shard holds.
REQUIRED_ATTRS = (
    "width", "height", "sensor_width", "sensor_height", "downsample_factor", "window_us", "bins", "clip",
    "source", "dropped_degenerate_boxes", "complete",
)


class ShardError(ValueError):
    """A shard file is missing, unfinished or malformed; the message names the file and the key."""


def _representation_compression() -> dict:
    """HDF5 filter arguments for the histograms: Blosc LZ4 with bit shuffle (fast, mostly-zero uint8 counts)."""
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))


def is_complete_shard(path: str | Path) -> bool:
    """True if ``path`` is a readable HDF5 file whose attribute ``complete`` is True; never raises."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except (OSError, ValueError, KeyError):
        return False


class ShardWriter:
    """Write one shard to ``<path>.tmp``, renamed to ``path`` by :meth:`finish`.

    Usage: create, :meth:`append` every window in time order, then :meth:`finish` with the labels. Used as a
    context manager, leaving the block without :meth:`finish` (an error) closes and deletes the ``.tmp`` file.

    Args:
        path: final shard path ``<out>/<split>/<name>.h5``; its folder must exist.
        channels: ``2 * bins``.
        width, height: representation size (px).

    Raises:
        OSError: if the temporary file cannot be created.
    """

    def __init__(self, path: str | Path, channels: int, width: int, height: int) -> None:
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.channels, self.width, self.height = int(channels), int(width), int(height)
        self._file: h5py.File | None = h5py.File(self.tmp_path, "w")
        self._file.attrs["complete"] = False
        self._repr = self._file.create_dataset(
            "representation",
            shape=(0, self.channels, self.height, self.width),
            maxshape=(None, self.channels, self.height, self.width),
            chunks=(1, self.channels, self.height, self.width),
            dtype=np.uint8,
            **_representation_compression(),
        )
        self._ends: list[int] = []

    @property
    def num_windows(self) -> int:
        """Windows appended so far."""
        return len(self._ends)

    @property
    def window_end_us(self) -> np.ndarray:
        """``(num_windows,)`` int64 end times (µs) of the windows appended so far."""
        return np.asarray(self._ends, dtype=np.int64)

    def append(self, histogram: np.ndarray, window_end_us: int) -> None:
        """Append one window.

        Args:
            histogram: ``(channels, height, width)`` uint8 stacked histogram.
            window_end_us: end of the window (µs), greater than the previous one.

        Raises:
            ValueError: if the shape/dtype is wrong or the end time does not increase.
        """
        if self._file is None:
            raise ValueError(f"{self.tmp_path}: writer already finished or closed")
        expected = (self.channels, self.height, self.width)
        if histogram.shape != expected or histogram.dtype != np.uint8:
            raise ValueError(f"{self.tmp_path}: histogram must be uint8 {expected}, got {histogram.dtype} "
                             f"{histogram.shape}")
        if self._ends and window_end_us <= self._ends[-1]:
            raise ValueError(f"{self.tmp_path}: window_end_us {window_end_us} does not increase "
                             f"(previous {self._ends[-1]})")
        n = len(self._ends)
        self._repr.resize(n + 1, axis=0)
        self._repr[n] = histogram
        self._ends.append(int(window_end_us))

    def finish(
        self,
        labels: np.ndarray,
        label_t_us: np.ndarray,
        label_window_index: np.ndarray,
        label_slice: np.ndarray,
        attrs: dict,
    ) -> Path:
        """Write the label index and attributes, mark complete, close and rename to the final path.

        Args:
            labels: ``(M,)`` BBOX_DTYPE boxes sorted by ``t``.
            label_t_us: ``(K,)`` int64 unique label timestamps (µs).
            label_window_index: ``(K,)`` int64 window index per timestamp.
            label_slice: ``(K, 2)`` int64 ``[start, stop)`` into ``labels``.
            attrs: shard attributes (``complete`` is set here).

        Returns:
            The final shard path.

        Raises:
            ValueError: if the arrays are inconsistent (message names the dataset).
        """
        if self._file is None:
            raise ValueError(f"{self.tmp_path}: writer already finished or closed")
        if labels.dtype != BBOX_DTYPE:
            raise ValueError(f"{self.tmp_path}: 'labels' must have BBOX_DTYPE, got {labels.dtype}")
        k = len(label_t_us)
        if len(label_window_index) != k or np.shape(label_slice) != (k, 2):
            raise ValueError(f"{self.tmp_path}: 'label_window_index'/'label_slice' must have {k} rows")
        if k and (label_window_index.min() < 0 or label_window_index.max() >= len(self._ends)):
            raise ValueError(f"{self.tmp_path}: 'label_window_index' outside 0..{len(self._ends) - 1}")
        f = self._file
        f.create_dataset("window_end_us", data=np.asarray(self._ends, dtype=np.int64))
        f.create_dataset("labels", data=labels)
        f.create_dataset("label_t_us", data=np.asarray(label_t_us, dtype=np.int64))
        f.create_dataset("label_window_index", data=np.asarray(label_window_index, dtype=np.int64))
        f.create_dataset("label_slice", data=np.asarray(label_slice, dtype=np.int64).reshape(k, 2))
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["complete"] = True
        f.close()
        self._file = None
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (nothing happens after :meth:`finish`)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class Shard:
    """Lazy read access to one finished shard.

    The small arrays (``window_end_us``, label index, ``labels``) are read once at construction; the
    ``representation`` is read window by window on demand through an HDF5 handle opened on first use in the
    current process (the handle is not pickled, so a :class:`Shard` can be sent to DataLoader workers).

    Args:
        path: a ``.h5`` shard written by :class:`ShardWriter`.

    Attributes:
        path, name (file stem), num_windows ``N``, width, height (representation px), channels,
        window_us, window_end_us ``(N,)`` int64, labels ``(M,)`` BBOX_DTYPE, label_t_us ``(K,)`` int64,
        label_window_index ``(K,)`` int64, label_slice ``(K, 2)`` int64, attrs (dict).

    Raises:
        ShardError: naming the file and key if the file is missing or unreadable, a dataset or attribute of
            :data:`REQUIRED_DATASETS` / :data:`REQUIRED_ATTRS` is missing, ``complete`` is not True, or the
            label index is inconsistent with the windows.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        if not self.path.is_file():
            raise ShardError(f"{self.path}: shard file not found")
        try:
            with h5py.File(self.path, "r") as f:
                if not bool(f.attrs.get("complete", False)):
                    raise ShardError(f"{self.path}: attribute 'complete' is missing or False (unfinished shard; "
                                     "rerun evdet-data preprocess)")
                for key in REQUIRED_DATASETS:
                    if key not in f:
                        raise ShardError(f"{self.path}: missing dataset '{key}' (expected {REQUIRED_DATASETS})")
                for key in REQUIRED_ATTRS:
                    if key not in f.attrs:
                        raise ShardError(f"{self.path}: missing attribute '{key}' (expected {REQUIRED_ATTRS})")
                self.attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
                rep = f["representation"]
                self.num_windows, self.channels, self.height, self.width = (int(s) for s in rep.shape)
                self.window_end_us = np.asarray(f["window_end_us"][:], dtype=np.int64)
                self.labels = np.asarray(f["labels"][:])
                self.label_t_us = np.asarray(f["label_t_us"][:], dtype=np.int64)
                self.label_window_index = np.asarray(f["label_window_index"][:], dtype=np.int64)
                self.label_slice = np.asarray(f["label_slice"][:], dtype=np.int64).reshape(-1, 2)
        except OSError as exc:
            raise ShardError(f"{self.path}: cannot read shard ({exc})") from None
        self.window_us = int(self.attrs["window_us"])
        if len(self.window_end_us) != self.num_windows:
            raise ShardError(f"{self.path}: 'window_end_us' has {len(self.window_end_us)} entries, expected "
                             f"{self.num_windows} (as 'representation')")
        if self.labels.dtype != BBOX_DTYPE:
            raise ShardError(f"{self.path}: 'labels' has dtype {self.labels.dtype}, expected BBOX_DTYPE")
        k = len(self.label_t_us)
        if len(self.label_window_index) != k or len(self.label_slice) != k:
            raise ShardError(f"{self.path}: 'label_window_index'/'label_slice' must have {k} rows as 'label_t_us'")
        if k and (self.label_window_index.min() < 0 or self.label_window_index.max() >= self.num_windows):
            raise ShardError(f"{self.path}: 'label_window_index' outside 0..{self.num_windows - 1}")
        # window -> label row (the LAST label timestamp assigned to the window), -1 when unlabelled
        self.window_label_row = np.full(self.num_windows, -1, dtype=np.int64)
        np.maximum.at(self.window_label_row, self.label_window_index, np.arange(k, dtype=np.int64))
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["representation"]

    def read_representation(self, start: int, stop: int) -> np.ndarray:
        """Histograms of windows ``[start, stop)``: ``(stop - start, channels, height, width)`` uint8.

        Raises:
            IndexError: if the range is outside ``0..num_windows``.
            ShardError: if the HDF5 data cannot be read (message names the file).
        """
        if not 0 <= start <= stop <= self.num_windows:
            raise IndexError(f"{self.path}: window range [{start}, {stop}) outside 0..{self.num_windows}")
        try:
            return self._dataset()[start:stop]
        except OSError as exc:
            raise ShardError(f"{self.path}: cannot read 'representation' [{start}, {stop}) ({exc})") from None

    def window_labels(self, window: int) -> tuple[int, np.ndarray]:
        """Label of one window: ``(label_t_us, boxes)``.

        Returns:
            ``label_t_us`` (µs, -1 when the window has no label timestamp) and a ``(n, 5)`` float32 array of
            ``[class_id, x, y, w, h]`` (representation px, top-left; ``(0, 5)`` when none). When several label
            timestamps fall into the window, the last one (closest to the window end) is used.
        """
        row = int(self.window_label_row[window])
        if row < 0:
            return -1, np.zeros((0, 5), np.float32)
        start, stop = self.label_slice[row]
        boxes = self.labels[start:stop]
        out = np.stack([boxes["class_id"].astype(np.float32), boxes["x"], boxes["y"], boxes["w"], boxes["h"]],
                       axis=1).astype(np.float32).reshape(-1, 5)
        return int(self.label_t_us[row]), out

    def close(self) -> None:
        """Close the HDF5 handle if open; idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"Shard({str(self.path)!r}, windows={self.num_windows}, {self.width}x{self.height})"


def list_shards(shard_dir: str | Path) -> list[Path]:
    """Sorted ``*.h5`` shard files of one split folder (``.tmp`` leftovers are ignored).

    Raises:
        ShardError: if ``shard_dir`` is not a folder or holds no ``.h5`` file.
    """
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise ShardError(f"{shard_dir}: shard folder not found")
    paths = sorted(p for p in shard_dir.glob("*.h5") if p.is_file())
    if not paths:
        raise ShardError(f"{shard_dir}: no .h5 shards (run evdet-data preprocess first)")
    return paths
