"""``evdet-data preprocess``: raw recordings + labels (eTraM layout) -> representation shards, as the reference does.

Input, per split folder ``<src>/<split>/``: recordings ``<name>_td.h5`` (eTraM; ``_td.hdf5``, Prophesee ``_td.dat``
and Prophesee RAW ``_td.raw`` (EVT 2.0 / EVT 3.0) are accepted too) each with its labels ``<name>_bbox.npy``.
Output: one shard ``<out>/<split>/<name>.h5`` per recording (:mod:`evdet.data.shards`, ``docs/architecture.md``).

Per recording, following eTraM's RVT preprocessing (``rvt_eTram/scripts/genx/preprocess_dataset.py``; RVT,
Gehrig & Scaramuzza, CVPR 2023, Sec. 4.1):

1. The labels decide everything about time (:mod:`evdet.data.label_selection`): the box filters, the ~10 Hz object
   frames out of 30/60 Hz labels, and the end times of the 50 ms event windows, each object frame ending one
   window. ``--windows grid`` keeps evdet's former fixed 50 ms grid instead (any label rate). A recording without
   usable labels is skipped, as the reference skips it, and listed in the report.
2. The events are streamed once (:func:`evdet.data.windows.iter_window_events`) and each window becomes a stacked
   histogram (:mod:`evdet.data.representation`: both window ends inclusive, time bins stretched over the events
   present, histogram at full resolution, clipped, nearest-exact downsampling by 2).
3. Events outside the sensor, with a polarity other than 0/1, or stamped before an earlier event: with
   ``on_bad_events="error"`` (default) the recording fails with one message naming the file, the field, the first
   index and the count; ``"drop"`` removes them, counts them in the shard attribute ``bad_events`` and logs one
   warning per file.

Before any window is made, the label times are checked against the recording's first and last event: labels more
than one window outside it (e.g. one label at t = 1 h in a 2 s recording), or squeezed into its first per cent where
x1000 would spread them over it, are one :class:`~evdet.data.labels.LabelError` naming the label file, both time
ranges and the likely unit mistake (labels in ns, ms or s instead of µs).

Inputs of a split folder that do not pair up (``<name>_bbox.npy`` without a recording, a recording without its
labels, a recording file not named ``<name>_td.h5|.hdf5|.dat|.raw``) are skipped and listed in one warning line (and in
the report under ``unpaired``); ``strict=True`` (``--strict``) makes them one error before anything is written.

Shards are written to ``<name>.h5.tmp`` and renamed when complete (Ctrl-C removes the ``.tmp``: ``should_stop`` is
polled per window, in every worker process with ``workers > 1``, which runs that many recordings at once with the
same shards as one process). Each shard records a ``fingerprint`` of what made it (:func:`sequence_fingerprint`: the
recording's name, size, mtime and a SHA-256 of its first and last MiB; the label file's name, size, mtime and SHA-256;
every option). On a rerun a finished shard is reused only when its fingerprint equals the current one. Otherwise:

* other options (histogram, windows, class names, bad-event policy, split): refused with one error naming the shard
  and the option (the folder holds shards of one kind; choose another output folder);
* a changed recording or label file (or a shard without a fingerprint, from an older evdet): the sequence is
  redone and the old shard replaced atomically (one warning line says why); when the redo fails or finds no usable
  labels, the old shard is deleted, so a stale shard is never left for training.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import signal
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evdet.data.classes import resolve_class_names
from evdet.data.label_selection import WINDOW_ALIGNMENTS, NoLabelsError, grid_selection, select_labels
from evdet.data.labels import LabelError, load_boxes
from evdet.data.readers import BAD_EVENT_POLICIES, DEFAULT_MAX_EVENTS, EventReader, open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.data.shards import Shard, ShardWriter, is_complete_shard, read_shard_attrs
from evdet.data.windows import iter_window_events

__all__ = [
    "FINGERPRINT_VERSION",
    "RECORDING_SUFFIXES",
    "PreprocessError",
    "PreprocessOptions",
    "check_label_times",
    "file_fingerprint",
    "find_sequences",
    "preprocess_dataset",
    "preprocess_sequence",
    "scan_split",
    "sequence_fingerprint",
]

log = logging.getLogger(__name__)

#: File-name endings of recordings picked up in a split folder; the part before is the sequence name.
RECORDING_SUFFIXES = ("_td.h5", "_td.hdf5", "_td.dat", "_td.raw")
_LABEL_SUFFIX = "_bbox.npy"
#: Suffixes of event files (any reader); one of them without a :data:`RECORDING_SUFFIXES` ending is misnamed.
_EVENT_FILE_SUFFIXES = (".h5", ".hdf5", ".dat", ".aedat4", ".raw")
#: Version of the ``fingerprint`` shard attribute (:func:`sequence_fingerprint`).
FINGERPRINT_VERSION = 1
#: Bytes hashed at the start and at the end of a recording for its fingerprint (the whole file when smaller).
_HASHED_BYTES = 1 << 20
#: Unit mistakes the label-time check names: factor to µs, unit.
_UNIT_FACTORS = ((1e-3, "nanoseconds"), (1e3, "milliseconds"), (1e6, "seconds"))


class PreprocessError(ValueError):
    """Preprocessing input or output is unusable; the message names the file or folder and what was expected."""


class PreprocessOptions:
    """Everything that decides a shard's content, validated once.

    Args:
        histogram: the stacked-histogram parameters (default: the reference's).
        windows: :data:`~evdet.data.label_selection.WINDOW_ALIGNMENTS` (``label``: reference; ``grid``: option).
        class_names: names of the raw label ids in id order: a dataset name of
            :data:`~evdet.data.classes.DATASET_CLASS_NAMES` (``etram``), a comma-separated list or a sequence.
        on_bad_events: :data:`~evdet.data.readers.BAD_EVENT_POLICIES`.
        max_events: events per streamed chunk.

    Raises:
        ValueError: an invalid value (the message names the option).
    """

    def __init__(self, histogram: HistogramConfig | None = None, windows: str = "label",
                 class_names: str | list[str] | tuple[str, ...] = "etram", on_bad_events: str = "error",
                 max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if windows not in WINDOW_ALIGNMENTS:
            raise ValueError(f"windows: expected one of {list(WINDOW_ALIGNMENTS)}, got {windows!r}")
        if on_bad_events not in BAD_EVENT_POLICIES:
            raise ValueError(f"on_bad_events: expected one of {list(BAD_EVENT_POLICIES)}, got {on_bad_events!r}")
        if int(max_events) < 1:
            raise ValueError(f"max_events: expected a positive number of events, got {max_events!r}")
        self.histogram = histogram if histogram is not None else HistogramConfig()
        self.windows = windows
        self.class_names = resolve_class_names(class_names)
        self.on_bad_events = on_bad_events
        self.max_events = int(max_events)

    def shard_attrs(self) -> dict:
        """The options as shard attributes (what a rerun compares)."""
        return {**self.histogram.as_attrs(), "windows": self.windows, "class_names": list(self.class_names),
                "on_bad_events": self.on_bad_events}


def scan_split(split_dir: str | Path) -> tuple[list[tuple[str, Path, Path]], dict[str, list[str]]]:
    """List the sequences of one split folder and the files that do not pair up.

    Returns:
        ``(sequences, unpaired)``: sorted ``(name, recording_path, label_path)`` tuples, and file names per kind:
        ``labels_without_recording`` (``<name>_bbox.npy`` with no ``<name>_td.*``), ``recordings_without_labels``
        and ``misnamed_recordings`` (an event file, e.g. ``<name>.h5``, not ending in :data:`RECORDING_SUFFIXES`).

    Raises:
        PreprocessError: ``split_dir`` is not a folder, or a sequence has more than one recording file.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise PreprocessError(f"{split_dir}: split folder not found")
    found = []
    unpaired: dict[str, list[str]] = {"labels_without_recording": [], "recordings_without_labels": [],
                                      "misnamed_recordings": []}
    recording_names = set()
    files = sorted(p for p in split_dir.iterdir() if p.is_file())
    for path in files:
        suffix = next((s for s in RECORDING_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None:
            if path.suffix.lower() in _EVENT_FILE_SUFFIXES:
                unpaired["misnamed_recordings"].append(path.name)
            continue
        name = path.name[: -len(suffix)]
        recording_names.add(name)
        label_path = split_dir / f"{name}{_LABEL_SUFFIX}"
        if label_path.is_file():
            found.append((name, path, label_path))
        else:
            unpaired["recordings_without_labels"].append(path.name)
    for path in files:
        if path.name.endswith(_LABEL_SUFFIX) and path.name[: -len(_LABEL_SUFFIX)] not in recording_names:
            unpaired["labels_without_recording"].append(path.name)
    names = [n for n, _, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PreprocessError(f"{split_dir}: sequences {duplicates} have more than one recording file")
    return found, unpaired


def find_sequences(split_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """The sequences of one split folder (:func:`scan_split` without the unpaired files).

    Returns:
        Sorted ``(name, recording_path, label_path)`` tuples.

    Raises:
        PreprocessError: ``split_dir`` is not a folder, holds no recording with labels (names what it found), or
            a sequence has more than one recording file.
    """
    found, unpaired = scan_split(split_dir)
    if not found:
        odd = [f for kind in unpaired.values() for f in kind]
        raise PreprocessError(f"{split_dir}: no recordings ending in {', '.join(RECORDING_SUFFIXES)} with their "
                              f"<name>{_LABEL_SUFFIX} labels" + (f" (found only {odd[:10]})" if odd else ""))
    return found


def file_fingerprint(path: str | Path, *, whole: bool) -> dict:
    """Name, size (bytes), mtime (ns) and SHA-256 of a file: of all of it (``whole``) or of its first and last
    MiB (recordings: their header and first events, and their tail).

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if whole or stat.st_size <= 2 * _HASHED_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f.read(_HASHED_BYTES))
            f.seek(stat.st_size - _HASHED_BYTES)
            digest.update(f.read(_HASHED_BYTES))
    return {"name": path.name, "bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns),
            "sha256": digest.hexdigest(), "hashed": "whole file" if whole else f"first and last {_HASHED_BYTES} bytes"}


def sequence_fingerprint(recording: str | Path, label_path: str | Path, split: str,
                         options: PreprocessOptions) -> dict:
    """What a shard is made from (stored as its ``fingerprint`` attribute, compared on a rerun).

    Returns:
        ``{"version", "source": file_fingerprint(recording), "labels": file_fingerprint(labels, whole), "options":
        every option and the split}``.

    Raises:
        OSError: a file cannot be read.
    """
    return {"version": FINGERPRINT_VERSION, "source": file_fingerprint(recording, whole=False),
            "labels": file_fingerprint(label_path, whole=True), "options": {**options.shard_attrs(), "split": split}}


def _stop_check(should_stop: Callable[[], bool] | None) -> None:
    """Raise ``KeyboardInterrupt`` when ``should_stop()`` says so (a signal was received)."""
    if should_stop is not None and should_stop():
        raise KeyboardInterrupt


def _event_time_span(reader: EventReader, max_events: int, should_stop: Callable[[], bool] | None = None
                     ) -> tuple[int, int] | None:
    """First and last time (µs) of the events a reader yields, streamed (``None`` for no event)."""
    first = last = None
    for chunk in reader.iter_chunks(max_events):
        _stop_check(should_stop)
        if len(chunk):
            first = int(chunk.t[0]) if first is None else first
            last = int(chunk.t[-1])
    return (first, last) if first is not None else None


def _label_time_problem(lo: int, hi: int, first: int, last: int, margin: int) -> str | None:
    """Why labels at ``lo..hi`` µs do not belong to events at ``first..last`` µs (None when they do)."""
    def inside(a: float, b: float) -> bool:
        return first - margin <= a and b <= last + margin

    if not inside(lo, hi):
        for factor, unit in _UNIT_FACTORS:
            if inside(lo * factor, hi * factor):
                return (f"they lie outside the events by more than one window ({margin} µs); the labels look like "
                        f"{unit} (x{factor:g} gives {lo * factor:.0f}..{hi * factor:.0f} µs), expected µs")
        return (f"they lie outside the events by more than one window ({margin} µs) and no unit mistake (ns, ms, s) "
                "explains it: labels of another recording, or another time origin?")
    span = max(last - first, 1)
    if hi - first < 0.01 * span:
        for factor, unit in _UNIT_FACTORS[1:]:
            scaled_lo, scaled_hi = lo * factor, hi * factor
            if inside(scaled_lo, scaled_hi) and scaled_hi - max(scaled_lo, first) >= 0.25 * span:
                return (f"they all fall into the first {100 * (hi - first) / span:.2g}% of the recording; the labels "
                        f"look like {unit} (x{factor:g} gives {scaled_lo:.0f}..{scaled_hi:.0f} µs), expected µs")
    return None


def check_label_times(boxes: np.ndarray, label_path: str | Path, recording: str | Path,
                      event_range: tuple[int, int] | None, window_us: int) -> None:
    """Check that the label times belong to the recording's events.

    Args:
        boxes: the label file's boxes (``t`` in µs).
        label_path, recording: the files, named in the error.
        event_range: first and last event time (µs), ``None`` when the recording has no event.
        window_us: the window length (µs): the allowed overhang on both sides.

    Raises:
        LabelError: the labels lie more than one window outside the events, or all fall into the first per cent of
            a recording that x1000 (x1e6) would fill: names the label file, both time ranges and the likely unit
            mistake (ns, ms, s instead of µs).
        PreprocessError: the recording holds no event but the labels hold boxes.
    """
    if not len(boxes):
        return
    lo, hi = int(boxes["t"].min()), int(boxes["t"].max())
    if event_range is None:
        raise PreprocessError(f"{recording}: the recording holds no events, but its labels {label_path} hold "
                              f"{len(boxes)} boxes at {lo}..{hi} µs")
    first, last = event_range
    problem = _label_time_problem(lo, hi, first, last, int(window_us))
    if problem:
        raise LabelError(f"{label_path}: label times {lo}..{hi} µs do not fit the events of {Path(recording).name} "
                         f"at {first}..{last} µs: {problem}")


def _bad_events_error(recording: Path, reader: EventReader) -> PreprocessError:
    assert reader.bad_events is not None
    return PreprocessError(f"{recording}: {reader.bad_events.describe(reader.width, reader.height)}; rerun with "
                           "--on-bad-events drop to remove them (counted in the shard)")


def _checked_label_times(boxes: np.ndarray, label_path: Path, recording: Path, opts: PreprocessOptions,
                         should_stop: Callable[[], bool] | None) -> tuple[int, int] | None:
    """:func:`check_label_times` against the recording's time range: first the two stored end timestamps; only when
    they disagree with the labels the events are streamed (the exact range of the kept events), so a recording
    whose own timestamps are broken is blamed instead of its labels. Returns the range used."""
    with open_recording(recording, on_bad_events="drop") as scan:
        event_range = scan.time_range()
    try:
        check_label_times(boxes, label_path, recording, event_range, opts.histogram.window_us)
        return event_range
    except (LabelError, PreprocessError):
        pass
    with open_recording(recording, on_bad_events="drop") as scan:
        event_range = _event_time_span(scan, opts.max_events, should_stop)
        if opts.on_bad_events == "error" and scan.bad_events.total:
            raise _bad_events_error(recording, scan)
    check_label_times(boxes, label_path, recording, event_range, opts.histogram.window_us)
    return event_range


def preprocess_sequence(
    recording: str | Path,
    label_path: str | Path,
    out_path: str | Path,
    split: str,
    options: PreprocessOptions | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Turn one recording and its labels into one shard (module docstring for the rules).

    Writes ``<out_path>.tmp`` and renames it to ``out_path`` when finished (replacing an existing shard
    atomically); on any error (or Ctrl-C) the ``.tmp`` file is removed and ``out_path`` is left as it was.

    Args:
        recording: event file readable by :func:`evdet.data.readers.open_recording`.
        label_path: its ``_bbox.npy`` (sensor px, µs).
        out_path: shard path ``<out>/<split>/<name>.h5``; the folder must exist.
        split: ``train`` applies the train-only box filter; any other name is treated as val/test.
        options: the :class:`PreprocessOptions` (default: the reference protocol).
        should_stop: polled once per window and per streamed chunk; when it returns True the sequence stops with
            ``KeyboardInterrupt`` (the CLI's signal handler sets it).

    Returns:
        ``{"name", "windows", "label_frames", "boxes", "dropped_boxes", "bad_events", "label_hz"}``.

    Raises:
        NoLabelsError: no box survives the filters or no label lies at or after 100 ms (nothing written).
        LabelError: malformed labels, label times that do not fit the recording (:func:`check_label_times`: names
            the file, both time ranges and the likely unit mistake), a label rate other than 30/60 Hz with
            ``label`` windows, a frame-selection abort of the reference (names the file), or a class id beyond
            ``class_names``.
        RecordingError: the recording is missing, corrupt or truncated (names the file).
        PreprocessError: bad events with ``on_bad_events="error"`` (names file, field, first index and count), or
            a recording without events whose labels hold boxes.
        KeyboardInterrupt: ``should_stop`` returned True.
    """
    recording, label_path, out_path = Path(recording), Path(label_path), Path(out_path)
    opts = options if options is not None else PreprocessOptions()
    hist = opts.histogram
    fingerprint = sequence_fingerprint(recording, label_path, split, opts)  # before reading: a later change shows
    boxes = load_boxes(label_path)
    if len(boxes) and int(boxes["class_id"].max()) >= len(opts.class_names):
        raise LabelError(f"{label_path}: field 'class_id' has id {int(boxes['class_id'].max())}, but the class names "
                         f"{list(opts.class_names)} cover ids 0..{len(opts.class_names) - 1} (--class-names)")
    _checked_label_times(boxes, label_path, recording, opts, should_stop)

    with open_recording(recording, on_bad_events="drop") as reader:
        sensor_w, sensor_h = int(reader.width), int(reader.height)
        rep_w, rep_h = hist.size(sensor_w, sensor_h)
        if opts.windows == "label":
            selection = select_labels(boxes, sensor_w, sensor_h, split, window_us=hist.window_us,
                                      source=str(label_path))
        else:
            with open_recording(recording, on_bad_events="drop") as scan:  # the kept events' span, as always
                first, last = _event_time_span(scan, opts.max_events, should_stop) or (0, 0)
            selection = grid_selection(boxes, sensor_w, sensor_h, split, first, last, window_us=hist.window_us,
                                       source=str(label_path))
        with ShardWriter(out_path, hist.channels, rep_w, rep_h) as writer:
            chunks = iter(reader.iter_chunks(opts.max_events))
            for end, events in iter_window_events(chunks, selection.window_end_us, hist.window_us, sensor_w,
                                                  sensor_h):
                _stop_check(should_stop)
                if opts.on_bad_events == "error" and reader.bad_events.total:
                    break
                writer.append(stacked_histogram(events, end, hist), end)
            for _ in chunks:  # read the rest of the file: every bad event is counted, whatever the label span
                _stop_check(should_stop)
            if opts.on_bad_events == "error" and reader.bad_events.total:
                raise _bad_events_error(recording, reader)
            bad = reader.bad_events.as_dict()
            if bad["total"]:
                log.warning("%s: dropped %s", recording, reader.bad_events.describe(sensor_w, sensor_h))
            _stop_check(should_stop)
            writer.finish(
                selection.labels,
                selection.frame_t_us,
                selection.frame_window_index,
                selection.frame_label_slice,
                {
                    **opts.shard_attrs(),
                    "width": rep_w,
                    "height": rep_h,
                    "sensor_width": sensor_w,
                    "sensor_height": sensor_h,
                    "split": split,
                    "label_hz": int(selection.label_hz),
                    "frame_step_us": int(selection.step_us),
                    "source": recording.name,
                    "source_bytes": int(fingerprint["source"]["bytes"]),
                    "labels_source": label_path.name,
                    "labels_bytes": int(fingerprint["labels"]["bytes"]),
                    "dropped_boxes": selection.dropped,
                    "bad_events": bad,
                    "fingerprint": fingerprint,
                },
            )
    return {
        "name": out_path.stem,
        "windows": int(len(selection.window_end_us)),
        "label_frames": int(len(selection.frame_t_us)),
        "boxes": int(len(selection.labels)),
        "dropped_boxes": selection.dropped,
        "bad_events": int(bad["total"]),
        "label_hz": int(selection.label_hz),
    }


_REPORT_KEYS = ("sequences_done", "sequences_skipped", "sequences_redone", "sequences_without_labels", "windows",
                "label_frames", "boxes", "bad_events_dropped")


def _fingerprint_change(recorded: dict | None, current: dict) -> str | None:
    """What differs between a shard's recorded fingerprint and the current one (``None``: identical inputs)."""
    if not isinstance(recorded, dict):
        return "the shard has no source fingerprint (made by an older evdet)"
    if recorded.get("version") != current["version"]:
        return f"fingerprint version {recorded.get('version')!r}, now {current['version']}"
    changes = []
    for part in ("source", "labels"):
        old, new = recorded.get(part) or {}, current[part]
        for key in ("name", "bytes", "mtime_ns", "sha256"):
            if old.get(key) != new[key]:
                was, now = old.get(key), new[key]
                if key == "sha256":
                    was, now = str(was)[:12], now[:12]
                changes.append(f"{part} {new['name']}: {key} {was} -> {now}")
                break
    return "; ".join(changes) or None


def _rerun_decision(path: Path, recording: Path, label_path: Path, split: str,
                    options: PreprocessOptions) -> tuple[str | None, dict]:
    """For a finished shard: ``(None, stats)`` to reuse it, ``(reason, {})`` to redo it; PreprocessError when it was
    made with other options."""
    attrs = read_shard_attrs(path)
    expected = {**options.shard_attrs(), "split": split}
    for key, value in expected.items():
        if attrs.get(key) != value:
            raise PreprocessError(f"{path}: finished shard has {key}={attrs.get(key)!r}, this run wants {value!r}; "
                                  "delete it or choose another output folder")
    change = _fingerprint_change(attrs.get("fingerprint"), sequence_fingerprint(recording, label_path, split, options))
    if change is not None:
        return change, {}
    shard = Shard(path)
    return None, {"windows": shard.num_windows, "label_frames": shard.num_frames, "boxes": int(len(shard.labels)),
                  "bad_events": int(attrs.get("bad_events", {}).get("total", 0))}


def _unpaired_message(src_dir: Path, unpaired: dict[str, dict[str, list[str]]], limit: int = 20) -> str | None:
    kinds = {"labels_without_recording": "labels without recording", "recordings_without_labels":
             "recording without labels", "misnamed_recordings": f"misnamed recording, expected <name>"
             f"{'|'.join(RECORDING_SUFFIXES)}"}
    items = [f"{split}/{name} ({kinds[kind]})" for split, per in unpaired.items() for kind, names in per.items()
             for name in names]
    if not items:
        return None
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{src_dir}: {len(items)} files do not pair up as <name>_td.* + <name>{_LABEL_SUFFIX} and are skipped: {shown}"


@dataclass(frozen=True)
class _Job:
    """A sequence to (re)do: names, paths, and ``redo`` (why a finished shard is redone; None for a new shard)."""

    split: str
    name: str
    recording: Path
    label_path: Path
    shard_path: Path
    redo: str | None


def _plan_sequence(split: str, name: str, recording: Path, label_path: Path, out_dir: Path,
                   options: PreprocessOptions, stats: dict) -> _Job | None:
    """None when the finished shard is reused (its figures are added to ``stats``), else the :class:`_Job`.

    Raises:
        PreprocessError: the finished shard was made with other options.
    """
    shard_path = out_dir / split / f"{name}.h5"
    redo = None
    if is_complete_shard(shard_path):
        redo, reused = _rerun_decision(shard_path, recording, label_path, split, options)
        if redo is None:
            stats["sequences_skipped"] += 1
            _add_figures(stats, reused)
            return None
        log.warning("redoing %s: %s", shard_path, redo)
    return _Job(split, name, recording, label_path, shard_path, redo)


def _run_job(job: _Job, options: PreprocessOptions, should_stop: Callable[[], bool] | None) -> tuple[str, Any]:
    """``("done", preprocess_sequence's dict)`` or ``("no_labels", NoLabelsError)``; other errors are raised."""
    try:
        return "done", preprocess_sequence(job.recording, job.label_path, job.shard_path, job.split, options,
                                           should_stop=should_stop)
    except NoLabelsError as exc:
        return "no_labels", exc


def _add_figures(stats: dict, done: dict) -> None:
    """Add a sequence's windows, label frames, boxes and dropped bad events to its split's ``stats``."""
    for key, figure in (("windows", "windows"), ("label_frames", "label_frames"), ("boxes", "boxes"),
                        ("bad_events_dropped", "bad_events")):
        stats[key] += done[figure]


def _count_outcome(stats: dict, job: _Job, outcome: tuple[str, Any]) -> None:
    """Add a finished job to its split's ``stats``; a recording without usable labels is logged as skipped and the
    stale shard of a redo is deleted."""
    kind, value = outcome
    if kind == "no_labels":
        log.warning("skipping %s: %s", job.recording, value)
        if job.redo is not None:
            job.shard_path.unlink(missing_ok=True)
            log.warning("removed the stale shard %s", job.shard_path)
        stats["sequences_without_labels"] += 1
        stats["without_labels"].append(job.name)
        return
    stats["sequences_redone" if job.redo is not None else "sequences_done"] += 1
    for key, count in value["dropped_boxes"].items():
        stats["boxes_dropped"][key] += count
    _add_figures(stats, value)


def _remove_stale_shard(job: _Job) -> None:
    """After a failed redo: delete the old shard, so a stale one is never left for training."""
    if job.redo is not None:
        job.shard_path.unlink(missing_ok=True)
        log.warning("removed the stale shard %s (its inputs changed and redoing it failed)", job.shard_path)


# State of a worker process of :func:`_run_jobs_in_processes` (set by :func:`_init_worker`).
_worker_stop_event: Any = None
_worker_signalled = False


def _init_worker(stop_event: Any, log_level: int) -> None:
    """Worker start: remember the parent's stop event; SIGINT/SIGTERM (Ctrl-C reaches the whole process group) only
    set a flag that the running sequence polls, so it stops between windows and removes its ``.tmp``."""
    global _worker_stop_event
    _worker_stop_event = stop_event
    logging.getLogger("evdet.data").setLevel(log_level)

    def on_signal(signum: int, frame: object) -> None:
        global _worker_signalled
        _worker_signalled = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def _worker_should_stop() -> bool:
    return _worker_signalled or (_worker_stop_event is not None and _worker_stop_event.is_set())


class _CollectedLog(logging.Handler):
    """The log records of one job in a worker, as ``(level, message)``, for the parent to log."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))


def _worker_job(job: _Job, options: PreprocessOptions) -> tuple[str, Any, list[tuple[int, str]]]:
    """Run one job in a worker: ``(kind, value, log messages)`` of :func:`_run_job`. An exception (also
    ``KeyboardInterrupt`` after a stop) goes to the parent with its traceback (``concurrent.futures``) and the
    messages logged before it in the attribute ``evdet_log_messages``."""
    logger = logging.getLogger("evdet.data")
    collected = _CollectedLog()
    logger.addHandler(collected)
    propagate, logger.propagate = logger.propagate, False
    try:
        if _worker_should_stop():
            raise KeyboardInterrupt
        return (*_run_job(job, options, _worker_should_stop), collected.messages)
    except BaseException as exc:
        exc.evdet_log_messages = collected.messages
        raise
    finally:
        logger.removeHandler(collected)
        logger.propagate = propagate


def _run_jobs_in_processes(jobs: list[_Job], options: PreprocessOptions, workers: int,
                           should_stop: Callable[[], bool] | None, bar: tqdm) -> list[tuple[str, Any]]:
    """Run ``jobs`` in up to ``workers`` processes; the outcomes of :func:`_run_job`, in job order.

    Raises:
        The first error (job order) of a job, after every running job stopped (their ``.tmp`` removed) and the
        stale shard of a failed redo was deleted; ``KeyboardInterrupt`` when ``should_stop`` turned True;
        PreprocessError when a worker process died (names the recording).
    """
    if not jobs:
        return []
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads (tqdm, numba)
    stop_event = context.Event()
    outcomes: list[tuple[str, Any] | None] = [None] * len(jobs)
    level = logging.getLogger("evdet.data").getEffectiveLevel()
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
                             initargs=(stop_event, level)) as pool:
        futures = {pool.submit(_worker_job, job, options): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in finished:
                i = futures[future]
                try:
                    kind, value, messages = future.result()
                except CancelledError:
                    continue
                except BrokenProcessPool as exc:
                    kind, value, messages = "error", PreprocessError(
                        f"{jobs[i].recording}: the worker process preprocessing it stopped unexpectedly ({exc}); "
                        "a rerun continues"), []
                except BaseException as exc:  # noqa: BLE001 (raised below, once every worker has stopped)
                    kind, value, messages = "error", exc, getattr(exc, "evdet_log_messages", [])
                for levelno, message in messages:
                    log.log(levelno, "%s", message)
                outcomes[i] = (kind, value)
                if kind != "error":
                    bar.set_postfix_str(f"{jobs[i].split}/{jobs[i].name}")
                    bar.update(1)
            failed = any(o is not None and o[0] == "error" for o in outcomes)
            if (failed or (should_stop is not None and should_stop())) and not stop_event.is_set():
                stop_event.set()
                for future in pending:
                    future.cancel()
    errors = [(jobs[i], o[1]) for i, o in enumerate(outcomes)
              if o is not None and o[0] == "error" and not isinstance(o[1], KeyboardInterrupt)]
    for job, _ in errors:
        _remove_stale_shard(job)
    if errors:
        raise errors[0][1]
    if stop_event.is_set():
        raise KeyboardInterrupt
    return outcomes


def preprocess_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: tuple[str, ...] | list[str] = ("train", "val", "test"),
    options: PreprocessOptions | None = None,
    progress: bool = True,
    strict: bool = False,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
) -> dict:
    """Preprocess every sequence of the given splits (eTraM layout) into shards; resumable.

    Sequences run in sorted order per split; an error stops the run, shards finished before it stay intact. A
    finished shard is reused only when its fingerprint (recording, labels, options) equals the current one; other
    options are an error, a changed recording or label file redoes the sequence (module docstring). A recording
    without usable labels (:class:`~evdet.data.label_selection.NoLabelsError`) is skipped as the reference skips
    it, logged, and listed under ``without_labels``. Files that do not pair up are listed in one warning (an error
    with ``strict``).

    Args:
        src_dir: dataset root holding one folder per split.
        out_dir: output root; ``<out_dir>/<split>/<name>.h5`` is written. Must not be ``src_dir`` or inside a split
            folder of it.
        splits: split folder names to process (all must exist).
        options: :class:`PreprocessOptions` (default: the reference protocol, eTraM class names).
        progress: show a tqdm progress bar (stderr) over the sequences.
        strict: unpaired files (labels without recording, recording without labels, misnamed recording) are an
            error instead of a warning.
        should_stop: polled per window; True stops the run with ``KeyboardInterrupt`` (the unfinished ``.tmp`` is
            removed, finished shards stay).
        workers: sequences preprocessed at once, each in its own process (``spawn``; one sequence per process at a
            time). With more than 1, every reuse decision (and its error) is made before any sequence starts; the
            sequences then run in sorted order, as many at a time as ``workers``; the first error (in sorted order
            among those that happened) stops the others, whose ``.tmp`` files are removed, and is raised; a
            ``should_stop`` signal is passed on to the workers. Warnings of a worker are logged by this process.
            The shards and the report are the same as with 1. As with any ``spawn`` process pool, a script that
            calls this must guard its top level with ``if __name__ == "__main__":``.

    Returns:
        Report dict: ``src_dir``, ``out_dir``, ``options``, ``splits`` -> per split ``sequences_done``,
        ``sequences_skipped`` (reused), ``sequences_redone`` (source or labels changed), ``sequences_without_labels``,
        ``windows``, ``label_frames``, ``boxes``, ``bad_events_dropped``, ``boxes_dropped`` (per filter),
        ``without_labels`` (names), ``unpaired`` (file names per kind, :func:`scan_split`); and ``totals``.

    Raises:
        PreprocessError: missing split folder, split without recordings, unpaired files with ``strict``, ``out_dir``
            equal to ``src_dir``, a finished shard made with other options, bad events with
            ``on_bad_events="error"`` (message names the file or folder).
        RecordingError: corrupt or truncated recording (message names the file).
        LabelError: malformed labels, label times that do not fit the recording, a class id beyond the class names,
            or a frame-selection abort (names the file).
        KeyboardInterrupt: ``should_stop`` returned True.
        ValueError: ``workers`` is not a positive integer.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers: expected a positive number of worker processes, got {workers!r}")
    if not src_dir.is_dir():
        raise PreprocessError(f"{src_dir}: dataset folder not found")
    if not splits:
        raise PreprocessError("preprocess: no splits given")
    opts = options if options is not None else PreprocessOptions()
    if out_dir.resolve() == src_dir.resolve() or any(out_dir.resolve().is_relative_to((src_dir / s).resolve())
                                                      for s in splits):
        raise PreprocessError(f"{out_dir}: the output folder must not be the dataset folder {src_dir} or inside one "
                              "of its split folders")
    plan, unpaired = {}, {}
    for split in splits:  # validates all inputs up front
        plan[split] = find_sequences(src_dir / split)
        unpaired[split] = scan_split(src_dir / split)[1]
    message = _unpaired_message(src_dir, unpaired)
    if message and strict:
        raise PreprocessError(f"{message} (--strict)")
    if message:
        log.warning("%s", message)
    total = sum(len(v) for v in plan.values())
    opts_report = {k: v for k, v in opts.shard_attrs().items()}
    report: dict = {"src_dir": str(src_dir), "out_dir": str(out_dir), "options": opts_report, "splits": {}}
    for split in plan:
        stats: dict = dict.fromkeys(_REPORT_KEYS, 0)
        stats["boxes_dropped"] = {"crop": 0, "min_side": 0, "max_width": 0}
        stats["without_labels"] = []
        stats["unpaired"] = unpaired[split]
        report["splits"][split] = stats
    with tqdm(total=total, desc="preprocess", unit="seq", disable=not progress, file=sys.stderr) as bar:
        if workers == 1:
            for split, sequences in plan.items():
                (out_dir / split).mkdir(parents=True, exist_ok=True)
                for name, recording, label_path in sequences:
                    _stop_check(should_stop)
                    bar.set_postfix_str(f"{split}/{name}")
                    job = _plan_sequence(split, name, recording, label_path, out_dir, opts, report["splits"][split])
                    if job is not None:
                        try:
                            outcome = _run_job(job, opts, should_stop)
                        except Exception:
                            _remove_stale_shard(job)
                            raise
                        _count_outcome(report["splits"][split], job, outcome)
                    bar.update(1)
        else:
            jobs = []
            for split, sequences in plan.items():  # every reuse decision (and its errors) before any work
                (out_dir / split).mkdir(parents=True, exist_ok=True)
                for name, recording, label_path in sequences:
                    _stop_check(should_stop)
                    job = _plan_sequence(split, name, recording, label_path, out_dir, opts, report["splits"][split])
                    if job is None:
                        bar.update(1)
                    else:
                        jobs.append(job)
            for job, outcome in zip(jobs, _run_jobs_in_processes(jobs, opts, workers, should_stop, bar)):
                _count_outcome(report["splits"][job.split], job, outcome)
    report["totals"] = {k: sum(s[k] for s in report["splits"].values()) for k in _REPORT_KEYS}
    return report
