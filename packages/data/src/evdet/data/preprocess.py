"""``evdet-data preprocess``: raw recordings + labels (eTraM layout) -> representation shards.

Input, per split folder ``<src>/<split>/``: recordings ``<name>_td.h5`` (eTraM; ``_td.hdf5`` and Prophesee
``_td.dat`` are accepted too) each with its labels ``<name>_bbox.npy``. Output: one shard
``<out>/<split>/<name>.h5`` per recording in the layout of :mod:`evdet.data.shards` / ``docs/architecture.md``.

Windows: a fixed grid of ``window_us`` windows aligned to multiples of ``window_us`` on the recording's time
axis. The first window is the one containing the earlier of the first event and the first label timestamp
(``origin = floor(min(t_first_event, t_first_label) / window_us) * window_us``); windows continue until both
the last event (``t < end``) and the last label timestamp (``t <= end``) are covered. Windows without events are
kept (all-zero histograms) so time passes regularly for the recurrent model. Events are streamed with the
reader's ``iter_chunks`` (memory bounded by one chunk plus one window), cut by
:func:`evdet.data.windows.iter_windows` and turned into stacked histograms
(:func:`evdet.data.representation.stacked_histogram`; RVT, Gehrig & Scaramuzza, CVPR 2023, Sec. 3.1/4).

Labels: class ids mapped with the chosen :class:`~evdet.data.labels.ClassMap`, scaled by the downsample factor,
cropped to the representation frame; a box whose cropped width or height is below ``min_box_side_px``
(default 1 px, in representation pixels) is degenerate: dropped and counted (attribute
``dropped_degenerate_boxes``). Label timestamps are those of the kept boxes; each is assigned to the first
window whose end is ``>= t`` (the window that ends at or just after the label).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evdet.data.labels import ClassMap, crop_boxes_to_frame, get_class_map, load_boxes
from evdet.data.readers import DEFAULT_MAX_EVENTS, RecordingError, open_recording
from evdet.data.representation import downsample_boxes, representation_size, stacked_histogram
from evdet.data.shards import ShardWriter, is_complete_shard
from evdet.data.windows import iter_windows

__all__ = ["RECORDING_SUFFIXES", "PreprocessError", "find_sequences", "preprocess_dataset", "preprocess_sequence"]

#: File-name endings of recordings picked up in a split folder; the part before is the sequence name.
RECORDING_SUFFIXES = ("_td.h5", "_td.hdf5", "_td.dat")
_LABEL_SUFFIX = "_bbox.npy"


class PreprocessError(ValueError):
    """Preprocessing input or output is unusable; the message names the file or folder and what was expected."""


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


def _check_histogram_params(window_us: int, bins: int, clip: int) -> None:
    """ValueError naming the parameter unless ``window_us > 0``, ``bins >= 1`` and ``0 <= clip <= 255``."""
    values = {"window_us": window_us, "bins": bins, "clip": clip}
    valid = {"window_us": window_us > 0, "bins": bins >= 1, "clip": 0 <= clip <= 255}
    for name, ok in valid.items():
        if not ok:
            raise ValueError(f"preprocess: {name}={values[name]} is out of range "
                             "(need window_us > 0, bins >= 1, 0 <= clip <= 255)")


def _label_index(boxes: np.ndarray, window_end_us: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(label_t_us, label_window_index, label_slice)`` for ``boxes`` sorted by ``t``."""
    label_t, starts, counts = np.unique(boxes["t"], return_index=True, return_counts=True)
    window_index = np.searchsorted(window_end_us, label_t, side="left").astype(np.int64)
    label_slice = np.stack([starts, starts + counts], axis=1).astype(np.int64).reshape(-1, 2)
    return label_t.astype(np.int64), window_index, label_slice


def preprocess_sequence(
    recording: str | Path,
    label_path: str | Path,
    out_path: str | Path,
    *,
    downsample: bool = True,
    window_us: int = 50_000,
    bins: int = 10,
    clip: int = 10,
    class_map: ClassMap | str = "experiment8",
    min_box_side_px: float = 1.0,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> dict:
    """Turn one recording and its labels into one shard (see the module docstring for windows and labels).

    Writes ``<out_path>.tmp`` and renames it to ``out_path`` when finished; on any error the ``.tmp`` file is
    removed and nothing is left at ``out_path``.

    Args:
        recording: event file readable by :func:`evdet.data.readers.open_recording`.
        label_path: its ``_bbox.npy`` (sensor px).
        out_path: shard path ``<out>/<split>/<name>.h5``; the folder must exist.
        downsample: halve the resolution (factor 2) of histograms and boxes.
        window_us, bins, clip: stacked-histogram parameters (RVT: 50 ms, 10, 10).
        class_map: a :class:`ClassMap` or its name in :data:`~evdet.data.labels.CLASS_MAPS`.
        min_box_side_px: smallest kept box side after scaling and cropping (representation px).
        max_events: events per streamed chunk.

    Returns:
        ``{"name", "windows", "boxes", "label_timestamps", "dropped_degenerate_boxes", "events"}``.

    Raises:
        RecordingError: if the recording is missing, corrupt or truncated (message names the file).
        LabelError: if the labels are malformed or hold a class unknown to ``class_map`` (names the file).
        PreprocessError: if the events are not time-ordered across chunks (names the file).
        ValueError: if ``window_us``, ``bins``, ``clip`` or ``class_map`` is invalid.
    """
    recording, label_path, out_path = Path(recording), Path(label_path), Path(out_path)
    _check_histogram_params(window_us, bins, clip)
    cmap = get_class_map(class_map) if isinstance(class_map, str) else class_map
    factor = 2 if downsample else 1

    boxes = cmap.remap(load_boxes(label_path), source=str(label_path))
    boxes = boxes[np.argsort(boxes["t"], kind="stable")]

    with open_recording(recording) as reader:
        sensor_w, sensor_h = int(reader.width), int(reader.height)
        rep_w, rep_h = representation_size(sensor_w, sensor_h, downsample)
        boxes = downsample_boxes(boxes, factor)
        boxes, dropped = crop_boxes_to_frame(boxes, rep_w, rep_h, min_side_px=min_box_side_px)

        chunks = reader.iter_chunks(max_events)
        first_chunk = next((c for c in chunks if len(c) > 0), None)
        starts = []
        if first_chunk is not None:
            starts.append(int(first_chunk.t[0]))
        if len(boxes):
            starts.append(int(boxes["t"][0]))
        origin = (min(starts) // window_us) * window_us if starts else 0
        last_label = int(boxes["t"][-1]) if len(boxes) else None

        n_events = 0
        with ShardWriter(out_path, 2 * bins, rep_w, rep_h) as writer:
            if first_chunk is not None:
                stream = itertools.chain([first_chunk], chunks)
                try:
                    for start, events in iter_windows(stream, sensor_w, sensor_h, window_us, t_start_us=origin):
                        n_events += len(events)
                        writer.append(stacked_histogram(events, start, window_us, bins, clip, downsample),
                                      start + window_us)
                except RecordingError:
                    raise
                except ValueError as exc:
                    raise PreprocessError(f"{recording}: {exc}") from None
            if last_label is not None:  # empty windows until a window end is >= the last label timestamp
                empty = np.zeros((2 * bins, rep_h, rep_w), np.uint8)
                while writer.num_windows == 0 or origin + writer.num_windows * window_us < last_label:
                    writer.append(empty, origin + (writer.num_windows + 1) * window_us)
            label_t, window_index, label_slice = _label_index(boxes, writer.window_end_us)
            writer.finish(
                boxes,
                label_t,
                window_index,
                label_slice,
                {
                    "width": rep_w,
                    "height": rep_h,
                    "sensor_width": sensor_w,
                    "sensor_height": sensor_h,
                    "downsample_factor": factor,
                    "window_us": int(window_us),
                    "bins": int(bins),
                    "clip": int(clip),
                    "source": recording.name,
                    "dropped_degenerate_boxes": int(dropped),
                    "class_map": cmap.name,
                    "class_names": list(cmap.class_names),
                },
            )
            n_windows = writer.num_windows
    return {
        "name": out_path.stem,
        "windows": int(n_windows),
        "boxes": int(len(boxes)),
        "label_timestamps": int(len(label_t)),
        "dropped_degenerate_boxes": int(dropped),
        "events": int(n_events),
    }


def _existing_shard_stats(path: Path, expected: dict) -> dict:
    """Stats of a finished shard; PreprocessError if it was made with other parameters."""
    import h5py  # local: only needed for skipped shards

    with h5py.File(path, "r") as f:
        for key, value in expected.items():
            stored = f.attrs.get(key)
            stored = stored.item() if isinstance(stored, np.generic) else stored
            if stored != value:
                raise PreprocessError(f"{path}: finished shard has {key}={stored!r}, this run wants {value!r}; "
                                      "delete it or choose another output folder")
        return {
            "windows": int(f["representation"].shape[0]),
            "boxes": int(f["labels"].shape[0]),
            "label_timestamps": int(f["label_t_us"].shape[0]),
            "dropped_degenerate_boxes": int(f.attrs["dropped_degenerate_boxes"]),
        }


def preprocess_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    downsample: bool = True,
    window_us: int = 50_000,
    bins: int = 10,
    clip: int = 10,
    splits: tuple[str, ...] | list[str] = ("train", "val", "test"),
    class_map: str = "experiment8",
    progress: bool = True,
    min_box_side_px: float = 1.0,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> dict:
    """Preprocess every sequence of the given splits (eTraM layout) into shards; resumable.

    Finished shards (attribute ``complete`` True, same ``window_us``/``bins``/``clip``/``downsample_factor``/
    ``class_map``) are skipped; a leftover ``<name>.h5.tmp`` from an interrupted run is redone. Sequences run
    in sorted order per split; an error stops the run, shards finished before it stay intact.

    Args:
        src_dir: dataset root holding one folder per split.
        out_dir: output root; ``<out_dir>/<split>/<name>.h5`` is written.
        downsample, window_us, bins, clip, class_map, min_box_side_px, max_events: see
            :func:`preprocess_sequence`.
        splits: split folder names to process (all must exist).
        progress: show a tqdm progress bar (stderr) over the sequences.

    Returns:
        Report dict: ``src_dir``, ``out_dir``, ``splits`` -> per split ``sequences_done``,
        ``sequences_skipped``, ``windows``, ``boxes_kept``, ``label_timestamps``, ``degenerate_dropped``
        (windows/boxes/dropped count every shard of the split, done now or skipped), and ``totals`` (same keys
        summed over splits).

    Raises:
        PreprocessError: missing split folder, split without recordings, recording without labels, a finished
            shard made with other parameters, or unordered events (message names the file or folder).
        RecordingError: corrupt or truncated recording (message names the file).
        LabelError: malformed labels or unknown class id (message names the file).
        ValueError: invalid ``window_us``, ``bins``, ``clip`` or ``class_map``.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise PreprocessError(f"{src_dir}: dataset folder not found")
    _check_histogram_params(window_us, bins, clip)
    if not splits:
        raise PreprocessError("preprocess: no splits given")
    cmap = get_class_map(class_map)
    expected_attrs = {"window_us": int(window_us), "bins": int(bins), "clip": int(clip),
                      "downsample_factor": 2 if downsample else 1, "class_map": cmap.name}
    plan = {split: find_sequences(src_dir / split) for split in splits}  # validates all inputs up front
    total = sum(len(v) for v in plan.values())

    keys = ("sequences_done", "sequences_skipped", "windows", "boxes_kept", "label_timestamps", "degenerate_dropped")
    report: dict = {"src_dir": str(src_dir), "out_dir": str(out_dir), "splits": {}}
    with tqdm(total=total, desc="preprocess", unit="seq", disable=not progress, file=sys.stderr) as bar:
        for split, sequences in plan.items():
            stats = dict.fromkeys(keys, 0)
            split_out = out_dir / split
            split_out.mkdir(parents=True, exist_ok=True)
            for name, recording, label_path in sequences:
                bar.set_postfix_str(f"{split}/{name}")
                shard_path = split_out / f"{name}.h5"
                if is_complete_shard(shard_path):
                    done = _existing_shard_stats(shard_path, expected_attrs)
                    stats["sequences_skipped"] += 1
                else:
                    done = preprocess_sequence(
                        recording, label_path, shard_path, downsample=downsample, window_us=window_us,
                        bins=bins, clip=clip, class_map=cmap, min_box_side_px=min_box_side_px,
                        max_events=max_events,
                    )
                    stats["sequences_done"] += 1
                stats["windows"] += done["windows"]
                stats["boxes_kept"] += done["boxes"]
                stats["label_timestamps"] += done["label_timestamps"]
                stats["degenerate_dropped"] += done["dropped_degenerate_boxes"]
                bar.update(1)
            report["splits"][split] = stats
    report["totals"] = {k: sum(s[k] for s in report["splits"].values()) for k in keys}
    return report
