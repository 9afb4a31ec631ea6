"""``evdet-data preprocess``: raw recordings + labels (eTraM layout) -> representation shards, as the reference does.

Input, per split folder ``<src>/<split>/``: recordings ``<name>_td.h5`` (eTraM; ``_td.hdf5`` and Prophesee
``_td.dat`` are accepted too) each with its labels ``<name>_bbox.npy``. Output: one shard ``<out>/<split>/<name>.h5``
per recording (:mod:`evdet.data.shards`, ``docs/architecture.md``).

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

Shards are written to ``<name>.h5.tmp`` and renamed when complete; a finished shard is skipped on a rerun when it
was made from the same source with the same options, and refused (one error) when the options differ.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tqdm import tqdm

from evdet.data.classes import resolve_class_names
from evdet.data.label_selection import WINDOW_ALIGNMENTS, NoLabelsError, grid_selection, select_labels
from evdet.data.labels import LabelError, load_boxes
from evdet.data.readers import BAD_EVENT_POLICIES, DEFAULT_MAX_EVENTS, EventReader, open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.data.shards import Shard, ShardWriter, is_complete_shard, read_shard_attrs
from evdet.data.windows import iter_window_events

__all__ = [
    "RECORDING_SUFFIXES",
    "PreprocessError",
    "PreprocessOptions",
    "find_sequences",
    "preprocess_dataset",
    "preprocess_sequence",
]

log = logging.getLogger(__name__)

#: File-name endings of recordings picked up in a split folder; the part before is the sequence name.
RECORDING_SUFFIXES = ("_td.h5", "_td.hdf5", "_td.dat")
_LABEL_SUFFIX = "_bbox.npy"


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


def find_sequences(split_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """List the sequences of one split folder.

    Returns:
        Sorted ``(name, recording_path, label_path)`` tuples.

    Raises:
        PreprocessError: if ``split_dir`` is not a folder, holds no recording ending in
            :data:`RECORDING_SUFFIXES`, or a recording has no ``<name>_bbox.npy`` (message names it).
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise PreprocessError(f"{split_dir}: split folder not found")
    found = []
    for path in sorted(split_dir.iterdir()):
        for suffix in RECORDING_SUFFIXES:
            if path.name.endswith(suffix) and path.is_file():
                name = path.name[: -len(suffix)]
                label_path = split_dir / f"{name}{_LABEL_SUFFIX}"
                if not label_path.is_file():
                    raise PreprocessError(f"{path}: labels {label_path} not found (expected <name>{_LABEL_SUFFIX} "
                                          "beside every <name>_td recording)")
                found.append((name, path, label_path))
    if not found:
        raise PreprocessError(f"{split_dir}: no recordings ending in {', '.join(RECORDING_SUFFIXES)}")
    names = [n for n, _, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PreprocessError(f"{split_dir}: sequences {duplicates} have more than one recording file")
    return found


def _event_time_span(reader: EventReader, max_events: int) -> tuple[int, int]:
    """First and last event time (µs) of a recording (``grid`` windows need them before the histograms)."""
    first = last = None
    for chunk in reader.iter_chunks(max_events):
        if len(chunk):
            first = int(chunk.t[0]) if first is None else first
            last = int(chunk.t[-1])
    return (first, last) if first is not None else (0, 0)


def _bad_events_error(recording: Path, reader: EventReader) -> PreprocessError:
    assert reader.bad_events is not None
    return PreprocessError(f"{recording}: {reader.bad_events.describe(reader.width, reader.height)}; rerun with "
                           "--on-bad-events drop to remove them (counted in the shard)")


def preprocess_sequence(
    recording: str | Path,
    label_path: str | Path,
    out_path: str | Path,
    split: str,
    options: PreprocessOptions | None = None,
) -> dict:
    """Turn one recording and its labels into one shard (module docstring for the rules).

    Writes ``<out_path>.tmp`` and renames it to ``out_path`` when finished; on any error (or Ctrl-C) the ``.tmp``
    file is removed and nothing is left at ``out_path``.

    Args:
        recording: event file readable by :func:`evdet.data.readers.open_recording`.
        label_path: its ``_bbox.npy`` (sensor px).
        out_path: shard path ``<out>/<split>/<name>.h5``; the folder must exist.
        split: ``train`` applies the train-only box filter; any other name is treated as val/test.
        options: the :class:`PreprocessOptions` (default: the reference protocol).

    Returns:
        ``{"name", "windows", "label_frames", "boxes", "dropped_boxes", "bad_events", "label_hz"}``.

    Raises:
        NoLabelsError: no box survives the filters or no label lies at or after 100 ms (nothing written).
        LabelError: malformed labels, a label rate other than 30/60 Hz with ``label`` windows, a frame-selection
            abort of the reference (names the file), or a class id beyond ``class_names``.
        RecordingError: the recording is missing, corrupt or truncated (names the file).
        PreprocessError: bad events with ``on_bad_events="error"`` (names file, field, first index and count).
    """
    recording, label_path, out_path = Path(recording), Path(label_path), Path(out_path)
    opts = options if options is not None else PreprocessOptions()
    hist = opts.histogram
    boxes = load_boxes(label_path)
    if len(boxes) and int(boxes["class_id"].max()) >= len(opts.class_names):
        raise LabelError(f"{label_path}: field 'class_id' has id {int(boxes['class_id'].max())}, but the class names "
                         f"{list(opts.class_names)} cover ids 0..{len(opts.class_names) - 1} (--class-names)")

    with open_recording(recording, on_bad_events="drop") as reader:
        sensor_w, sensor_h = int(reader.width), int(reader.height)
        rep_w, rep_h = hist.size(sensor_w, sensor_h)
        if opts.windows == "label":
            selection = select_labels(boxes, sensor_w, sensor_h, split, window_us=hist.window_us,
                                      source=str(label_path))
        else:
            with open_recording(recording, on_bad_events="drop") as scan:
                first, last = _event_time_span(scan, opts.max_events)
            selection = grid_selection(boxes, sensor_w, sensor_h, split, first, last, window_us=hist.window_us,
                                       source=str(label_path))
        with ShardWriter(out_path, hist.channels, rep_w, rep_h) as writer:
            chunks = iter(reader.iter_chunks(opts.max_events))
            for end, events in iter_window_events(chunks, selection.window_end_us, hist.window_us, sensor_w,
                                                  sensor_h):
                if opts.on_bad_events == "error" and reader.bad_events.total:
                    break
                writer.append(stacked_histogram(events, end, hist), end)
            for _ in chunks:  # read the rest of the file: every bad event is counted, whatever the label span
                pass
            if opts.on_bad_events == "error" and reader.bad_events.total:
                raise _bad_events_error(recording, reader)
            bad = reader.bad_events.as_dict()
            if bad["total"]:
                log.warning("%s: dropped %s", recording, reader.bad_events.describe(sensor_w, sensor_h))
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
                    "source_bytes": int(recording.stat().st_size),
                    "labels_source": label_path.name,
                    "labels_bytes": int(label_path.stat().st_size),
                    "dropped_boxes": selection.dropped,
                    "bad_events": bad,
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


_REPORT_KEYS = ("sequences_done", "sequences_skipped", "sequences_without_labels", "windows", "label_frames", "boxes",
                "bad_events_dropped")


def _existing_shard_stats(path: Path, recording: Path, label_path: Path, split: str, options: PreprocessOptions) -> dict:
    """Stats of a finished shard made from the same inputs with the same options; PreprocessError otherwise."""
    attrs = read_shard_attrs(path)
    expected = {**options.shard_attrs(), "split": split, "source": recording.name,
                "source_bytes": int(recording.stat().st_size), "labels_source": label_path.name,
                "labels_bytes": int(label_path.stat().st_size)}
    for key, value in expected.items():
        if attrs.get(key) != value:
            raise PreprocessError(f"{path}: finished shard has {key}={attrs.get(key)!r}, this run wants {value!r}; "
                                  "delete it or choose another output folder")
    shard = Shard(path)
    return {"windows": shard.num_windows, "label_frames": shard.num_frames, "boxes": int(len(shard.labels)),
            "bad_events": int(attrs.get("bad_events", {}).get("total", 0))}


def preprocess_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: tuple[str, ...] | list[str] = ("train", "val", "test"),
    options: PreprocessOptions | None = None,
    progress: bool = True,
) -> dict:
    """Preprocess every sequence of the given splits (eTraM layout) into shards; resumable.

    Sequences run in sorted order per split; an error stops the run, shards finished before it stay intact. A
    finished shard with the same inputs (file names and sizes) and options is skipped; one made otherwise is an
    error. A recording without usable labels (:class:`~evdet.data.label_selection.NoLabelsError`) is skipped as
    the reference skips it, logged, and listed under ``without_labels``.

    Args:
        src_dir: dataset root holding one folder per split.
        out_dir: output root; ``<out_dir>/<split>/<name>.h5`` is written. Must not be ``src_dir`` or inside a split
            folder of it.
        splits: split folder names to process (all must exist).
        options: :class:`PreprocessOptions` (default: the reference protocol, eTraM class names).
        progress: show a tqdm progress bar (stderr) over the sequences.

    Returns:
        Report dict: ``src_dir``, ``out_dir``, ``options``, ``splits`` -> per split ``sequences_done``,
        ``sequences_skipped``, ``sequences_without_labels``, ``windows``, ``label_frames``, ``boxes``,
        ``bad_events_dropped``, ``boxes_dropped`` (per filter), ``without_labels`` (names); and ``totals``.

    Raises:
        PreprocessError: missing split folder, split without recordings, recording without labels, ``out_dir``
            equal to ``src_dir``, a finished shard made with other options, bad events with
            ``on_bad_events="error"`` (message names the file or folder).
        RecordingError: corrupt or truncated recording (message names the file).
        LabelError: malformed labels, a class id beyond the class names, or a frame-selection abort (names the
            file).
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise PreprocessError(f"{src_dir}: dataset folder not found")
    if not splits:
        raise PreprocessError("preprocess: no splits given")
    opts = options if options is not None else PreprocessOptions()
    if out_dir.resolve() == src_dir.resolve() or any(out_dir.resolve().is_relative_to((src_dir / s).resolve())
                                                      for s in splits):
        raise PreprocessError(f"{out_dir}: the output folder must not be the dataset folder {src_dir} or inside one "
                              "of its split folders")
    plan = {split: find_sequences(src_dir / split) for split in splits}  # validates all inputs up front
    total = sum(len(v) for v in plan.values())
    opts_report = {k: v for k, v in opts.shard_attrs().items()}
    report: dict = {"src_dir": str(src_dir), "out_dir": str(out_dir), "options": opts_report, "splits": {}}
    with tqdm(total=total, desc="preprocess", unit="seq", disable=not progress, file=sys.stderr) as bar:
        for split, sequences in plan.items():
            stats: dict = dict.fromkeys(_REPORT_KEYS, 0)
            stats["boxes_dropped"] = {"crop": 0, "min_side": 0, "max_width": 0}
            stats["without_labels"] = []
            split_out = out_dir / split
            split_out.mkdir(parents=True, exist_ok=True)
            for name, recording, label_path in sequences:
                bar.set_postfix_str(f"{split}/{name}")
                shard_path = split_out / f"{name}.h5"
                if is_complete_shard(shard_path):
                    done = _existing_shard_stats(shard_path, recording, label_path, split, opts)
                    stats["sequences_skipped"] += 1
                else:
                    try:
                        done = preprocess_sequence(recording, label_path, shard_path, split, opts)
                    except NoLabelsError as exc:
                        log.warning("skipping %s: %s", recording, exc)
                        stats["sequences_without_labels"] += 1
                        stats["without_labels"].append(name)
                        bar.update(1)
                        continue
                    stats["sequences_done"] += 1
                    for key, value in done["dropped_boxes"].items():
                        stats["boxes_dropped"][key] += value
                stats["windows"] += done["windows"]
                stats["label_frames"] += done["label_frames"]
                stats["boxes"] += done["boxes"]
                stats["bad_events_dropped"] += done["bad_events"]
                bar.update(1)
            report["splits"][split] = stats
    report["totals"] = {k: sum(s[k] for s in report["splits"].values()) for k in _REPORT_KEYS}
    return report
