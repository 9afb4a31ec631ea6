"""Representation shards: one HDF5 file per recording, written by ``evdet-data preprocess``, read by :class:`Shard`.

Layout (format 2; ``docs/architecture.md``, "Shard"), ``N`` windows, ``K`` object frames, ``M`` boxes:

========================  ==========================  ==========================================================
dataset                   shape, dtype                meaning
========================  ==========================  ==========================================================
``representation``        (N, 2*bins, H, W) uint8     stacked histogram per window, Blosc via hdf5plugin,
                                                      one HDF5 chunk per window
``window_end_us``         (N,) int64                  window ``i`` holds the events with
                                                      ``end - window_us <= t <= end`` (µs, both inclusive)
``labels``                (M,) BBOX_DTYPE             boxes of the object frames in SENSOR px, cropped and
                                                      filtered as the reference stores them (``labels.npz``)
``label_t_us``            (K,) int64                  object-frame timestamps (µs), increasing
``label_window_index``    (K,) int64                  the window of each frame (``label``: ending exactly at it)
``label_slice``           (K, 2) int64                ``[start, stop)`` rows of ``labels`` per frame
========================  ==========================  ==========================================================

Attributes: ``format_version`` (2), ``width``, ``height`` (representation px), ``sensor_width``,
``sensor_height``, the histogram parameters (``window_us``, ``bins``, ``clip``, ``downsample_factor``,
``downsample``, ``time_bins``), ``windows`` (``label`` | ``grid``), ``split``, ``label_hz``, ``frame_step_us``,
``class_names`` (JSON list: names of the raw label ids, in id order), ``source`` (recording file name),
``source_bytes``, ``labels_source``, ``dropped_boxes`` (JSON: boxes removed per filter), ``bad_events`` (JSON:
events dropped by ``--on-bad-events drop``), ``on_bad_events``, ``fingerprint`` (JSON: what the shard was made
from, compared on a rerun of ``evdet-data preprocess``: ``version``, ``source`` and ``labels`` with ``name``,
``bytes``, ``mtime_ns``, ``sha256`` (recording: of its first and last MiB; labels: whole file), ``options`` (every
option and the split); :func:`evdet.data.preprocess.sequence_fingerprint`), and ``complete`` (True once finished).

:class:`ShardWriter` writes ``<name>.h5.tmp`` and renames it to ``<name>.h5`` only when finished, so an
interrupted run never leaves a file that looks complete. :class:`Shard` is the one way to read a shard (training,
prediction and evaluation all use it): it converts the stored boxes to the representation size exactly as the
reference's loader does (:func:`evdet.data.label_selection.loader_boxes`) and maps their classes by name
(:func:`evdet.data.classes.class_lookup`). The HDF5 file is opened on first use in the process that reads the
histograms, so a :class:`Shard` can be handed to DataLoader workers. A split folder is opened with
:func:`load_shards` (every shard, checked to agree on size and classes; :func:`check_shards_agree` for further
attributes such as :data:`HISTOGRAM_ATTRS`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from evdet.data.classes import ClassLookup, ClassMap, class_lookup
from evdet.data.label_selection import loader_boxes
from evdet.data.labels import BBOX_DTYPE

__all__ = [
    "HISTOGRAM_ATTRS",
    "JSON_ATTRS",
    "read_shard_attrs",
    "REQUIRED_ATTRS",
    "REQUIRED_DATASETS",
    "SHARD_ATTRS",
    "SHARD_DATASETS",
    "SHARD_FORMAT_VERSION",
    "Shard",
    "ShardError",
    "ShardWriter",
    "check_shards_agree",
    "is_complete_shard",
    "list_shards",
    "load_shards",
]

SHARD_FORMAT_VERSION = 2
"""Version of the layout above. Format 1 (before the reference protocol) stored boxes at representation size with
a fixed 50 ms grid and is refused."""
#: The datasets of a shard as :class:`ShardWriter` writes them: name -> (shape, dtype, meaning); ``N`` windows,
#: ``K`` object frames, ``M`` boxes. ``docs/architecture.md`` ("Shard") is generated from it
#: (``python docs/generate_architecture.py``); tests/ci/test_architecture_doc.py checks a written shard against it.
SHARD_DATASETS: dict[str, tuple[str, str, str]] = {
    "representation": ("(N, 2*bins, H, W)", "uint8, Blosc", "one stacked histogram per window (one chunk each)"),
    "window_end_us": ("(N,)", "int64", "end time of each window (µs); window i holds `end - window_us <= t <= end`"),
    "labels": ("(M,)", "BBOX_DTYPE", "boxes of the object frames in SENSOR px, cropped and filtered (raw class ids)"),
    "label_t_us": ("(K,)", "int64", "object-frame timestamps (µs), increasing, ~10 Hz"),
    "label_window_index": ("(K,)", "int64", "window of each frame (with `windows=label`: ending exactly at it)"),
    "label_slice": ("(K, 2)", "int64", "`[start, stop)` rows of `labels` for each frame"),
}
#: The attributes a shard may hold: name -> meaning. :meth:`ShardWriter.finish` refuses any other key, so this
#: table (and the documentation generated from it) lists every attribute a shard can carry.
SHARD_ATTRS: dict[str, str] = {
    "format_version": "layout version (2), set by the writer",
    "complete": "True once finished, set by the writer (False while `<name>.h5.tmp` is written)",
    "width": "representation width (px)",
    "height": "representation height (px)",
    "sensor_width": "sensor width (px)",
    "sensor_height": "sensor height (px)",
    "window_us": "window length (µs)",
    "bins": "time bins per polarity (channels = 2 * bins)",
    "clip": "count clip per cell",
    "downsample_factor": "sensor px per representation px",
    "downsample": "`nearest_exact` | `sum`",
    "time_bins": "`stretched` | `fixed`",
    "windows": "`label` (windows end at object frames) | `grid`",
    "split": "split name (`train` applies the train-only box filter)",
    "label_hz": "label rate of the source labels (Hz)",
    "frame_step_us": "step between object frames (µs)",
    "class_names": "JSON list: names of the raw label ids, in id order",
    "source": "recording file name",
    "source_bytes": "recording size (bytes)",
    "labels_source": "label file name",
    "labels_bytes": "label file size (bytes)",
    "dropped_boxes": "JSON: boxes removed per filter",
    "bad_events": "JSON: events dropped per field (`--on-bad-events drop`)",
    "on_bad_events": "`error` | `drop`",
    "fingerprint": "JSON: what made the shard (recording and label name, bytes, mtime, SHA-256; every option and the "
                   "split), compared on a rerun of `evdet-data preprocess`",
}
#: Datasets every shard holds.
REQUIRED_DATASETS = tuple(SHARD_DATASETS)
#: Attributes every finished shard holds.
REQUIRED_ATTRS = (
    "format_version", "width", "height", "sensor_width", "sensor_height", "downsample_factor", "downsample",
    "window_us", "bins", "clip", "time_bins", "windows", "split", "class_names", "source", "complete",
)
#: Attributes stored as JSON text (lists and dicts).
JSON_ATTRS = ("class_names", "dropped_boxes", "bad_events", "fingerprint")
#: Attributes of the stacked-histogram parameters (``evdet-detect`` rebuilds the same representation from them).
HISTOGRAM_ATTRS = ("window_us", "bins", "clip", "downsample_factor", "downsample", "time_bins")


class ShardError(ValueError):
    """A shard file is missing, unfinished or malformed; the message names the file and the key."""


def _blosc_filters():
    """Register the Blosc HDF5 filter (importing :mod:`hdf5plugin` does) and return the module.

    Imported when a shard's histograms are written or read, not with this module: code that only needs shard
    attributes, labels or the class lookup (e.g. building a model from a config) runs where hdf5plugin is absent.
    """
    import hdf5plugin

    return hdf5plugin


def _representation_compression() -> dict:
    """HDF5 filter arguments for the histograms: Blosc LZ4 without shuffle.

    Measured with ``evdet-bench loader`` (one 640x360x20 window, 3 % non-zero cells; and 320x180x20 windows of
    ``evdet-data synth`` at 0.2 %): decoding without shuffle takes 1.1 ms instead of 2.4 ms (0.09 instead of 0.5 ms)
    for 15 % (13 %) more bytes than with Blosc's bit shuffle, which shards written before used. The reader does not
    depend on it (HDF5 stores the filter settings per dataset), so older shards read as before, only slower.
    """
    blosc = _blosc_filters().Blosc
    return dict(blosc(cname="lz4", clevel=5, shuffle=blosc.NOSHUFFLE))


def is_complete_shard(path: str | Path) -> bool:
    """True if ``path`` is a readable HDF5 file whose attribute ``complete`` is True; never raises."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except (OSError, ValueError, KeyError):
        return False


def read_shard_attrs(path: str | Path) -> dict:
    """The attributes of a shard as plain Python values (:data:`JSON_ATTRS` decoded).

    Raises:
        ShardError: the file is missing or not readable HDF5, or a JSON attribute does not parse (names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file not found")
    try:
        with h5py.File(path, "r") as f:
            raw = dict(f.attrs.items())
    except OSError as exc:
        raise ShardError(f"{path}: cannot read shard ({exc})") from None
    attrs = {}
    for key, value in raw.items():
        value = value.item() if isinstance(value, np.generic) else value
        if key in JSON_ATTRS and isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ShardError(f"{path}: attribute '{key}' is not valid JSON: {value!r}") from None
        attrs[key] = value
    return attrs


class ShardWriter:
    """Write one shard to ``<path>.tmp``, renamed to ``path`` by :meth:`finish`.

    Usage: create, :meth:`append` every window in time order, then :meth:`finish` with the labels. Used as a
    context manager, leaving the block without :meth:`finish` (an error, Ctrl-C) closes and deletes the ``.tmp``.

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
        """Write the labels, their index and the attributes, mark complete, close and rename to the final path.

        Args:
            labels: ``(M,)`` BBOX_DTYPE boxes (sensor px) of the object frames, frame by frame.
            label_t_us: ``(K,)`` int64 object-frame timestamps (µs), increasing.
            label_window_index: ``(K,)`` int64 window of each frame, increasing.
            label_slice: ``(K, 2)`` int64 ``[start, stop)`` into ``labels``.
            attrs: shard attributes, keys of :data:`SHARD_ATTRS` (``complete`` and ``format_version`` are set
                here; values of :data:`JSON_ATTRS` are stored as JSON text).

        Returns:
            The final shard path.

        Raises:
            ValueError: if the arrays are inconsistent (message names the dataset), or an attribute is not in
                :data:`SHARD_ATTRS` (names it).
        """
        if self._file is None:
            raise ValueError(f"{self.tmp_path}: writer already finished or closed")
        if labels.dtype != BBOX_DTYPE:
            raise ValueError(f"{self.tmp_path}: 'labels' must have BBOX_DTYPE, got {labels.dtype}")
        k = len(label_t_us)
        label_window_index = np.asarray(label_window_index, dtype=np.int64)
        label_slice = np.asarray(label_slice, dtype=np.int64).reshape(-1, 2)
        if len(label_window_index) != k or len(label_slice) != k:
            raise ValueError(f"{self.tmp_path}: 'label_window_index'/'label_slice' must have {k} rows")
        if k and (label_window_index.min() < 0 or label_window_index.max() >= len(self._ends)
                  or np.any(np.diff(label_window_index) <= 0)):
            raise ValueError(f"{self.tmp_path}: 'label_window_index' must increase within 0..{len(self._ends) - 1}")
        if k and (label_slice.min() < 0 or label_slice.max() > len(labels)):
            raise ValueError(f"{self.tmp_path}: 'label_slice' outside the {len(labels)} rows of 'labels'")
        unknown = sorted(set(attrs) - set(SHARD_ATTRS))
        if unknown:
            raise ValueError(f"{self.tmp_path}: attributes {unknown} are not in SHARD_ATTRS (evdet.data.shards); "
                             f"add them there with their meaning")
        f = self._file
        f.create_dataset("window_end_us", data=np.asarray(self._ends, dtype=np.int64))
        f.create_dataset("labels", data=labels)
        f.create_dataset("label_t_us", data=np.asarray(label_t_us, dtype=np.int64))
        f.create_dataset("label_window_index", data=label_window_index)
        f.create_dataset("label_slice", data=label_slice)
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if key in JSON_ATTRS else value
        f.attrs["format_version"] = SHARD_FORMAT_VERSION
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
    """Read access to one finished shard: histograms, windows and the labels as the model sees them.

    The small arrays are read once at construction; the ``representation`` is read window by window on demand
    through an HDF5 handle opened on first use in the current process (not pickled).

    Args:
        path: a ``.h5`` shard written by :class:`ShardWriter`.
        class_map: classes of the labels the shard returns: ``None`` keeps the shard's own classes
            (``class_names``), a :class:`~evdet.data.classes.ClassMap` or its registered name maps them by name
            (boxes of dropped classes disappear).
        expected_class_names: when given, the shard's ``class_names`` must equal it (the dataset config's list).

    Attributes:
        path, name (file stem), attrs (dict, :func:`read_shard_attrs`), num_windows ``N``, channels, width,
        height (representation px), sensor_width, sensor_height, downsample_factor, window_us,
        window_end_us ``(N,)`` int64, labels ``(M,)`` BBOX_DTYPE (sensor px, raw class ids), label_t_us ``(K,)``,
        label_window_index ``(K,)``, label_slice ``(K, 2)``, source_class_names, lookup
        (:class:`~evdet.data.classes.ClassLookup`), class_names (the classes returned), window_frame ``(N,)``
        int64 (frame index of each window, -1 when none).

    Raises:
        ShardError: naming the file and key if the file is missing or unreadable, unfinished, of another format
            version, lacks a dataset of :data:`REQUIRED_DATASETS` or attribute of :data:`REQUIRED_ATTRS`, its
            label index is inconsistent, or its ``class_names`` differ from ``expected_class_names``.
        LabelError: a class of the shard unknown to ``class_map`` (names the file, the class and the map).
        ValueError: an unknown ``class_map`` name.
    """

    def __init__(self, path: str | Path, class_map: str | ClassMap | None = None,
                 expected_class_names: list[str] | tuple[str, ...] | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.attrs = read_shard_attrs(self.path)
        if not bool(self.attrs.get("complete", False)):
            raise ShardError(f"{self.path}: attribute 'complete' is missing or False (unfinished shard; rerun "
                             "evdet-data preprocess)")
        version = self.attrs.get("format_version", 1)
        if version != SHARD_FORMAT_VERSION:
            raise ShardError(f"{self.path}: shard format {version}, expected {SHARD_FORMAT_VERSION} (written by an "
                             "older evdet whose windows and labels differ from the reference protocol); rerun "
                             "evdet-data preprocess into a new folder")
        for key in REQUIRED_ATTRS:
            if key not in self.attrs:
                raise ShardError(f"{self.path}: missing attribute '{key}' (expected {REQUIRED_ATTRS})")
        try:
            with h5py.File(self.path, "r") as f:
                for key in REQUIRED_DATASETS:
                    if key not in f:
                        raise ShardError(f"{self.path}: missing dataset '{key}' (expected {REQUIRED_DATASETS})")
                rep = f["representation"]
                self.num_windows, self.channels, self.height, self.width = (int(s) for s in rep.shape)
                self.window_end_us = np.asarray(f["window_end_us"][:], dtype=np.int64)
                self.labels = np.asarray(f["labels"][:])
                self.label_t_us = np.asarray(f["label_t_us"][:], dtype=np.int64)
                self.label_window_index = np.asarray(f["label_window_index"][:], dtype=np.int64)
                self.label_slice = np.asarray(f["label_slice"][:], dtype=np.int64).reshape(-1, 2)
        except OSError as exc:
            raise ShardError(f"{self.path}: cannot read shard ({exc})") from None
        self.sensor_width = int(self.attrs["sensor_width"])
        self.sensor_height = int(self.attrs["sensor_height"])
        self.downsample_factor = int(self.attrs["downsample_factor"])
        self.window_us = int(self.attrs["window_us"])
        self._check_index()
        names = self.attrs["class_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ShardError(f"{self.path}: attribute 'class_names' must be a non-empty JSON list of names, got "
                             f"{names!r}")
        self.source_class_names = tuple(names)
        if expected_class_names is not None and tuple(expected_class_names) != self.source_class_names:
            raise ShardError(f"{self.path}: attribute 'class_names' is {list(self.source_class_names)}, the dataset "
                             f"config declares {list(expected_class_names)} (dataset.class_names); preprocess with "
                             "the matching --class-names or choose the dataset config of this data")
        self.lookup: ClassLookup = class_lookup(self.source_class_names, class_map, source=str(self.path))
        self.class_names = self.lookup.class_names
        self.window_frame = np.full(self.num_windows, -1, dtype=np.int64)
        self.window_frame[self.label_window_index] = np.arange(len(self.label_t_us), dtype=np.int64)
        self._frame_rows: list[np.ndarray] | None = None
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _check_index(self) -> None:
        if len(self.window_end_us) != self.num_windows:
            raise ShardError(f"{self.path}: 'window_end_us' has {len(self.window_end_us)} entries, expected "
                             f"{self.num_windows} (as 'representation')")
        if self.labels.dtype != BBOX_DTYPE:
            raise ShardError(f"{self.path}: 'labels' has dtype {self.labels.dtype}, expected BBOX_DTYPE")
        k = len(self.label_t_us)
        if len(self.label_window_index) != k or len(self.label_slice) != k:
            raise ShardError(f"{self.path}: 'label_window_index'/'label_slice' must have {k} rows as 'label_t_us'")
        if k and (self.label_window_index.min() < 0 or self.label_window_index.max() >= self.num_windows
                  or np.any(np.diff(self.label_window_index) <= 0)):
            raise ShardError(f"{self.path}: 'label_window_index' must increase within 0..{self.num_windows - 1}")
        if k and (self.label_slice.min() < 0 or self.label_slice.max() > len(self.labels)):
            raise ShardError(f"{self.path}: 'label_slice' points outside the {len(self.labels)} rows of 'labels'")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    @property
    def num_frames(self) -> int:
        """Object frames ``K``."""
        return len(self.label_t_us)

    @property
    def histogram(self) -> dict:
        """The stacked-histogram parameters the shard was made with: ``{key: attrs[key]}`` for
        :data:`HISTOGRAM_ATTRS` (``window_us`` µs, ``bins``, ``clip``, ``downsample_factor``, ``downsample``,
        ``time_bins``)."""
        return {key: self.attrs[key] for key in HISTOGRAM_ATTRS}

    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            _blosc_filters()
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["representation"]

    def read_representation(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Histograms of windows ``[start, stop)``: ``(stop - start, channels, height, width)`` uint8.

        One HDF5 read for the whole range (each window is one chunk, decoded once).

        Args:
            start, stop: window range.
            out: optional C-contiguous uint8 array of that shape to decode into (no intermediate copy).

        Returns:
            ``out`` when given, else a new array.

        Raises:
            IndexError: if the range is outside ``0..num_windows``.
            ValueError: ``out`` of another shape or dtype, or not C-contiguous.
            ShardError: if the HDF5 data cannot be read (message names the file).
        """
        if not 0 <= start <= stop <= self.num_windows:
            raise IndexError(f"{self.path}: window range [{start}, {stop}) outside 0..{self.num_windows}")
        shape = (stop - start, self.channels, self.height, self.width)
        if out is not None and (out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous):
            raise ValueError(f"{self.path}: read_representation out= must be a C-contiguous uint8 array {shape}, "
                             f"got {out.dtype} {out.shape}")
        try:
            if out is None:
                return self._dataset()[start:stop]
            if stop > start:
                self._dataset().read_direct(out, np.s_[start:stop])
            return out
        except OSError as exc:
            raise ShardError(f"{self.path}: cannot read 'representation' [{start}, {stop}) ({exc})") from None

    def frame_boxes(self, frame: int) -> np.ndarray:
        """The boxes of object frame ``frame`` as the model sees them.

        Returns:
            ``(n, 5)`` float32 ``[class_id, x, y, w, h]``: representation px, top-left corner, converted from the
            stored sensor-px boxes like the reference's loader (:func:`~evdet.data.label_selection.loader_boxes`),
            class ids through :attr:`lookup` (boxes of dropped classes removed).

        Raises:
            IndexError: ``frame`` outside ``0..num_frames - 1``.
            LabelError: a stored class id outside the shard's ``class_names`` (names the file).
        """
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"{self.path}: frame {frame} outside 0..{self.num_frames - 1}")
        if self._frame_rows is None:
            self._frame_rows = [self._convert(a, b) for a, b in self.label_slice]
        return self._frame_rows[frame]

    def _convert(self, start: int, stop: int) -> np.ndarray:
        rows = loader_boxes(self.labels[start:stop], self.sensor_width, self.sensor_height, self.downsample_factor)
        target = self.lookup(rows[:, 5].astype(np.int64), source=str(self.path))
        keep = target >= 0
        out = np.empty((int(keep.sum()), 5), dtype=np.float32)
        out[:, 0] = target[keep]
        out[:, 1:] = rows[keep, 1:5]
        return out

    def window_labels(self, window: int) -> tuple[int, np.ndarray]:
        """Label of one window: ``(label_t_us, boxes)``.

        Returns:
            the object-frame time of the window (µs, -1 when the window has none) and its boxes
            (:meth:`frame_boxes`; ``(0, 5)`` when none).
        """
        frame = int(self.window_frame[window])
        if frame < 0:
            return -1, np.zeros((0, 5), np.float32)
        return int(self.label_t_us[frame]), self.frame_boxes(frame)

    def ground_truth(self) -> np.ndarray:
        """Every object frame's boxes as a Prophesee box array (what evaluation compares detections with).

        Returns:
            ``(M',)`` BBOX_DTYPE in representation px, ``t`` = frame time (µs), classes as :meth:`frame_boxes`,
            ``track_id`` 0, ``class_confidence`` 1.
        """
        parts = []
        for k in range(self.num_frames):
            rows = self.frame_boxes(k)
            part = np.zeros(len(rows), dtype=BBOX_DTYPE)
            part["t"] = self.label_t_us[k]
            part["class_id"] = rows[:, 0].astype(np.uint32)
            part["x"], part["y"], part["w"], part["h"] = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
            part["class_confidence"] = 1.0
            parts.append(part)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=BBOX_DTYPE)

    def close(self) -> None:
        """Close the HDF5 handle if open; idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"Shard({str(self.path)!r}, windows={self.num_windows}, frames={self.num_frames}, " \
               f"{self.width}x{self.height})"


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


def load_shards(shard_dir: str | Path, class_map: ClassMap | str | None = None,
                class_names: list[str] | tuple[str, ...] | None = None) -> list[Shard]:
    """Open every shard of a split folder (index arrays only) and check they agree on shape and classes.

    Args:
        shard_dir: ``<out>/<split>``.
        class_map: map the labels' classes by name (:class:`Shard`); ``None`` keeps the shard's classes.
        class_names: the class names the shards must record (the dataset config's ``class_names``); ``None``
            accepts any, as long as every shard of the folder records the same.

    Returns:
        :class:`Shard` objects sorted by file name.

    Raises:
        ShardError: if the folder is missing or empty, a shard is unfinished or malformed, or two shards differ in
            ``(channels, height, width)`` or in their class names (message names the file).
        LabelError: a class unknown to ``class_map`` (message names the file).
    """
    paths = list_shards(shard_dir)
    shards = [Shard(p, class_map, expected_class_names=class_names) for p in paths]
    ref = shards[0]
    for shard in shards[1:]:
        if (shard.channels, shard.height, shard.width) != (ref.channels, ref.height, ref.width):
            raise ShardError(f"{shard.path}: representation is {shard.channels}x{shard.height}x{shard.width}, "
                             f"expected {ref.channels}x{ref.height}x{ref.width} as {ref.path.name}")
        if shard.source_class_names != ref.source_class_names:
            raise ShardError(f"{shard.path}: class_names {list(shard.source_class_names)} differ from "
                             f"{ref.path.name}'s {list(ref.source_class_names)}")
    return shards


def check_shards_agree(shards: list[Shard], keys: tuple[str, ...]) -> None:
    """Check that every shard has the first shard's value of each attribute in ``keys``.

    Args:
        shards: at least one :class:`Shard` (e.g. from :func:`load_shards`).
        keys: attribute names, e.g. ``("sensor_width", "sensor_height", *HISTOGRAM_ATTRS, "windows")``.

    Raises:
        ShardError: a shard whose attribute differs (names the file, the key and both values).
    """
    first = shards[0]
    for shard in shards[1:]:
        for key in keys:
            if shard.attrs[key] != first.attrs[key]:
                raise ShardError(f"{shard.path}: attribute '{key}' {shard.attrs[key]!r} differs from "
                                 f"{first.path.name}'s {first.attrs[key]!r}")
