"""Detection over raw event recordings, streaming with the recurrent state (``evdet-detect``; its command line is
:mod:`evdet.model.cli.detect`).

Windows end every 50 ms on the grid of multiples of 50 ms (the first one holds the first event) and are turned into
the same stacked histograms the model was trained on (:mod:`evdet.data.representation`, the run's histogram
parameters: both window ends inclusive, time bins stretched over the events, nearest-exact downsampling). Any sensor
size is mapped to the model's input by an integer factor ``k`` chosen so the representation fits the trained input
size (1280x720 with a 640x360 model: k = 2); the detector pads to its required multiple, and boxes are scaled by
``k`` back to sensor pixels. Outputs, in ``--output``, per recording with output name ``NAME``:

- ``NAME_bbox.npy``: Prophesee box array (``t`` = window end in µs, x, y, w, h in sensor px,
  ``class_confidence`` = score as configured in ``dataset.evaluation.score``, ``class_id``, ``track_id`` 0);
- ``NAME_XXXXXX.png``: detections drawn over event frames for evenly spaced windows (``XXXXXX`` = window index);
- ``NAME_detections.mp4`` (``--video``): the same overlay for every window, with a time stamp, at real-time speed
  (1 frame per window: 20 fps); H.264, else MPEG-4 Part 2, else an animated ``NAME_detections.gif``
  (:mod:`evdet.model.inference.detection_video`; ``--video-format`` picks mp4 or gif);
- ``NAME_detect.json``: counts and the latency per 50 ms window (representation + model), also printed;
- ``.evdet-manifest.json``: the files this run wrote (:mod:`evdet.data.output_folder`).

Output names (:func:`output_names`): ``NAME`` is the recording's file name up to its first dot (``gen4.dat`` ->
``gen4``). When two recordings of one run would get the same name, each of them gets its suffixes appended
(``rec.dat`` -> ``rec-dat``, ``rec.aedat4`` -> ``rec-aedat4``); if that still collides, its folder's name
(``a/rec.dat`` -> ``rec-dat-a``); if even that collides (the same file twice), a running number (``rec-dat-a-1``,
``rec-dat-a-2``). So two recordings never write the same file.

The output folder must be missing or empty; ``--overwrite`` replaces the outputs of an earlier ``evdet-detect`` run
there (exactly the files of its manifest, so no PNG of the earlier run is left beside the new ones), and is refused
when the folder holds files that run did not write. Outputs appear only when every recording was processed (a
staging folder is moved into place); an error or Ctrl-C leaves the folder as it was. Flags are checked before
anything is loaded or written: ``--device cuda`` without CUDA, ``--max-windows`` / ``--max-images`` out of range,
``--confidence`` / ``--nms`` outside [0, 1] are one line naming the flag, exit 2 (:mod:`evdet.model.cli.detect`).

Engines (``--engine``, :mod:`evdet.model.inference.detect_engines`): ``torch`` runs a checkpoint, ``onnxruntime`` an ``.onnx``
file of ``evdet-model export`` (docs/onnx.md); without the flag the engine follows the file, and a flag that does
not fit the file is one error. Both write the same files through the same post-processing; the report's ``engine``
says which ran. An ONNX model has a fixed input size: a recording whose histogram does not pad to it is one error
naming both sizes.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from evdet.data.boxes import clip_boxes
from evdet.data.labels import BBOX_DTYPE, save_boxes
from evdet.data.output_folder import OutputFolder, check_output_folder
from evdet.data.readers import open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.data.windows import grid_window_ends, iter_window_events
from evdet.model.inference.detection_video import DetectionVideoWriter, VideoChoice, video_file_name
from evdet.model.training.detections import detections_to_boxes
from evdet.model.inference.detect_engines import load_detector

__all__ = ["check_run_flags", "detect_recording", "detect_recordings", "detection_overlay", "input_scale_factor",
           "output_names", "render_detections"]

#: Tool name recorded in the output folder's manifest.
TOOL = "evdet-detect"

#: Distinct colours per class id for the PNG overlays (RGB).
_PALETTE = [(255, 200, 0), (0, 220, 120), (255, 80, 80), (80, 160, 255), (255, 0, 255), (0, 255, 255),
            (200, 200, 200), (255, 140, 0)]


def check_run_flags(**flags) -> None:
    """Check count and threshold flags (CLI spelling ``--max-windows`` as keyword ``max_windows``).

    Counts ``max_windows`` and ``streams`` (old name ``batch``) must be integers >= 1, ``max_images`` >= 0; thresholds ``confidence``,
    ``nms`` must lie in [0, 1]; ``None`` means "not given" and passes.

    Raises:
        ValueError: one line ``--flag: expected ..., got VALUE`` for the first flag out of range.
    """
    minimum = {"max_windows": 1, "streams": 1, "batch": 1, "max_images": 0}
    for key, value in flags.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key in minimum:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum[key]:
                what = "a positive number" if minimum[key] == 1 else "a number >= 0 (0: none)"
                unit = {"max_windows": "of 50 ms windows", "batch": "of recordings streamed in parallel",
                        "streams": "of recordings streamed in parallel",
                        "max_images": "of PNG overlays per recording"}[key]
                raise ValueError(f"{flag}: expected {what} {unit}, got {value!r}")
        elif not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"{flag}: expected a threshold in [0, 1], got {value!r}")


def output_names(recordings: list[str | Path]) -> list[str]:
    """The output name of each recording of one run, unique within the run (module docstring for the rule).

    Args:
        recordings: recording paths in command-line order.

    Returns:
        One name per recording, in the same order.
    """
    paths = [Path(r) for r in recordings]

    def with_suffixes(path: Path) -> str:
        parts = path.name.split(".")
        return "-".join([parts[0], *[p for p in parts[1:] if p]])

    def with_folder(path: Path) -> str:
        return f"{with_suffixes(path)}-{path.resolve().parent.name or 'root'}"

    names = [p.name.split(".")[0] for p in paths]
    for refine in (with_suffixes, with_folder):
        counts = Counter(names)
        names = [refine(p) if counts[n] > 1 else n for p, n in zip(paths, names)]
    counts, seen, unique = Counter(names), Counter(), []
    for name in names:
        if counts[name] > 1:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        unique.append(name)
    if len(set(unique)) != len(unique):  # a numbered name met an existing one: number them all
        unique = [f"{n}-{i + 1}" for i, n in enumerate(unique)]
    return unique


def input_scale_factor(sensor_width: int, sensor_height: int, input_width: int, input_height: int) -> int:
    """Smallest integer ``k >= 1`` with ``ceil(W / k) <= input_width`` and ``ceil(H / k) <= input_height``.

    Raises:
        ValueError: a size is not positive (message names it).
    """
    for name, value in (("sensor width", sensor_width), ("sensor height", sensor_height),
                        ("model input width", input_width), ("model input height", input_height)):
        if value <= 0:
            raise ValueError(f"{name}: expected a positive size in px, got {value}")
    return max(1, math.ceil(sensor_width / input_width), math.ceil(sensor_height / input_height))


def histogram_config(eval_info: dict | None, factor: int) -> HistogramConfig:
    """The run's stacked-histogram parameters (recorded from its shards in ``eval_info["histogram"]``; the
    reference's when absent) with the downsample factor ``factor`` of this recording.

    Raises:
        ValueError: invalid recorded parameters (names the parameter).
    """
    recorded = dict((eval_info or {}).get("histogram") or {})
    recorded.pop("downsample_factor", None)
    return HistogramConfig(**recorded, downsample_factor=factor)


def render_detections(
    histogram: np.ndarray, boxes: np.ndarray, factor: int, class_names: list[str], path: Path
) -> None:
    """Save the overlay of one window (:func:`detection_overlay`) as a PNG at ``path`` (folder created).

    Args:
        histogram, boxes, factor, class_names: as :func:`detection_overlay`.
        path: output PNG path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    detection_overlay(histogram, boxes, factor, class_names).save(path)


def detection_overlay(histogram: np.ndarray, boxes: np.ndarray, factor: int, class_names: list[str]) -> Image.Image:
    """Draw ``boxes`` (BBOX_DTYPE, sensor px) over an event frame: the PNG overlays and the video frames.

    Pixels with an OFF event in the window are red, with only ON events blue, others white; each box is outlined
    in its class colour with ``<class name> <score>`` above it.

    Args:
        histogram: ``(2 * bins, H, W)`` uint8 stacked histogram (polarity-major channels).
        boxes: detections of this window in sensor pixels.
        factor: representation-to-sensor scale (the frame is enlarged by it).
        class_names: names indexed by ``class_id``.

    Returns:
        RGB image of ``W * factor`` x ``H * factor`` px.
    """
    bins = histogram.shape[0] // 2
    off = histogram[:bins].sum(0, dtype=np.int32)
    on = histogram[bins:].sum(0, dtype=np.int32)
    img = np.full(off.shape + (3,), 255, dtype=np.uint8)
    img[on > 0] = (40, 40, 220)   # ON events blue
    img[off > 0] = (220, 40, 40)  # OFF events red
    image = Image.fromarray(img).resize((img.shape[1] * factor, img.shape[0] * factor), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    for b in boxes:
        colour = _PALETTE[int(b["class_id"]) % len(_PALETTE)]
        x0, y0 = float(b["x"]), float(b["y"])
        draw.rectangle([x0, y0, x0 + float(b["w"]), y0 + float(b["h"])], outline=colour, width=2)
        cid = int(b["class_id"])
        name = class_names[cid] if cid < len(class_names) else str(cid)
        draw.text((x0 + 2, max(0.0, y0 - 11)), f"{name} {float(b['class_confidence']):.2f}", fill=colour)
    return image


@torch.no_grad()
def detect_recording(
    checkpoint: Path,
    recording: Path,
    output_dir: Path,
    *,
    confidence_threshold: float = 0.3,
    nms_threshold: float | None = None,
    max_images: int = 8,
    max_windows: int | None = None,
    device: str = "cpu",
    name: str | None = None,
    report_dir: Path | None = None,
    video: VideoChoice | None = None,
    engine: str | None = None,
) -> dict:
    """Detect objects in every 50 ms window of ``recording`` and write the outputs described in the module doc.

    This writes straight into ``output_dir`` (same-named files are replaced); :func:`detect_recordings` (and the
    CLI) add the output-folder protection and unique names.

    Args:
        checkpoint: Lightning checkpoint from ``evdet-train``, or an ``.onnx`` file of ``evdet-model export``.
        recording: ``.dat``, ``_td.h5`` / ``.h5`` or ``.aedat4`` file.
        output_dir: directory for the box array, PNGs and the JSON report (created).
        confidence_threshold: minimum objectness x class probability of a kept detection, in [0, 1] (the
            post-processing threshold; the written score is ``dataset.evaluation.score``).
        nms_threshold: IoU of class-aware NMS in [0, 1]; default: the run's ``validation.nms_threshold``.
        max_images: number of PNG overlays (evenly spaced windows), >= 0.
        max_windows: stop after this many windows, >= 1 (None: the whole recording).
        device: torch device.
        name: output name ``NAME`` of the files (default: the file name up to its first dot).
        report_dir: the folder the report's paths name (default ``output_dir``; :func:`detect_recordings` writes
            into a staging folder that is moved there afterwards).
        video: write the detection video ``NAME_detections.mp4`` / ``.gif`` in this format
            (:func:`evdet.model.inference.detection_video.choose_video_format`); ``None``: no video.
        engine: ``torch``, ``onnxruntime`` or None (from the model file: :mod:`evdet.model.inference.detect_engines`).

    Returns:
        The report dict (also written as ``NAME_detect.json``; ``video``: the video's file, frames, fps, codec and
        the time rendering and encoding took per window, or ``None``).

    Raises:
        RecordingError: unreadable recording (message names the file).
        FileNotFoundError / ValueError: missing or unreadable checkpoint or ONNX model; a count or threshold out of
            range (names the parameter); an engine that does not fit the model file; an ONNX model whose fixed input
            size does not fit the recording's histogram (names both sizes).
    """
    check_run_flags(max_windows=max_windows, max_images=max_images, confidence=confidence_threshold,
                    nms=nms_threshold)
    detector = load_detector(checkpoint, engine, device, confidence_threshold, nms_threshold)
    class_names, score = detector.class_names, detector.score

    with open_recording(recording) as reader, ExitStack() as cleanup:
        factor = input_scale_factor(reader.width, reader.height, detector.model_width, detector.model_height)
        hist = histogram_config(detector.eval_info, factor)
        hist_w, hist_h = hist.size(reader.width, reader.height)
        detector.check_histogram_size(hist_h, hist_w, f"the histogram of {recording} ({reader.width}x"
                                      f"{reader.height} sensor / {factor})")
        window_us = hist.window_us
        info = {"format": reader.format, "width": reader.width, "height": reader.height}
        first_t, n_windows = _first_time_and_windows(reader, window_us)
        if max_windows is not None:
            n_windows = min(n_windows, max_windows)
        image_at = set(np.linspace(0, max(n_windows - 1, 0), num=min(max_images, n_windows), dtype=int).tolist())
        stem = name if name is not None else Path(recording).name.split(".")[0]
        shown_dir = Path(report_dir) if report_dir is not None else Path(output_dir)
        all_boxes: list[np.ndarray] = []
        latencies_ms: list[float] = []
        streaming = detector.streaming
        images: list[str] = []
        video_writer = None if video is None else cleanup.enter_context(  # deletes its file on an error
            DetectionVideoWriter(Path(output_dir) / video_file_name(stem, video), video, window_us))
        video_ms: list[float] = []
        windows = iter_window_events(reader.iter_chunks(), grid_window_ends(first_t, window_us), window_us,
                                     reader.width, reader.height, stop_at_stream_end=True)
        for index, (t_end, events) in enumerate(windows):
            if max_windows is not None and index >= max_windows:
                break
            start = time.perf_counter()
            histogram = stacked_histogram(events, t_end, hist)
            dets = streaming.step(histogram)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            latencies_ms.append((time.perf_counter() - start) * 1e3)
            boxes = _clip_to_sensor(detections_to_boxes(dets, t_end, scale=factor, score=score), reader.width,
                                    reader.height)
            all_boxes.append(boxes)
            if video_writer is not None:
                drawn = time.perf_counter()
                overlay = detection_overlay(histogram, boxes, factor, class_names)
                video_writer.write(overlay, t_end, index)
                video_ms.append((time.perf_counter() - drawn) * 1e3)
            if index in image_at:
                png = Path(output_dir) / f"{stem}_{index:06d}.png"
                if video_writer is not None:
                    overlay.save(png)
                else:
                    render_detections(histogram, boxes, factor, class_names, png)
                images.append(str(shown_dir / png.name))
    video_entry = None if video_writer is None else {**video_writer.close(), "ms_per_window": round(
        float(np.mean(video_ms)) if video_ms else 0.0, 3)}
    if video_entry is not None and video_entry["path"] is not None:
        video_entry["path"] = str(shown_dir / Path(video_entry["path"]).name)
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros(0, dtype=BBOX_DTYPE)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    box_path = save_boxes(out_dir / f"{stem}_bbox.npy", boxes)
    lat = np.asarray(latencies_ms) if latencies_ms else np.zeros(1)
    report = {
        "recording": str(recording),
        "name": stem,
        **info,
        "scale_factor": factor,
        "model_input": [detector.model_height, detector.model_width],
        "windows": len(latencies_ms),
        "detections": int(len(boxes)),
        "confidence_threshold": confidence_threshold,
        "latency_ms_per_window": {
            "mean": round(float(lat.mean()), 3),
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p95": round(float(np.percentile(lat, 95)), 3),
            "max": round(float(lat.max()), 3),
        },
        "device": device,
        "engine": detector.engine,
        "boxes": str(shown_dir / box_path.name),
        "images": images,
        "video": video_entry,
    }
    (out_dir / f"{stem}_detect.json").write_text(json.dumps(report, indent=2))
    return report


def detect_recordings(
    checkpoint: Path,
    recordings: list[Path],
    output_dir: Path,
    *,
    overwrite: bool = False,
    **options,
) -> list[dict]:
    """Run :func:`detect_recording` over several recordings into one protected output folder.

    ``output_dir`` must be missing or empty, or hold only an earlier ``evdet-detect`` run's files with
    ``overwrite`` (:mod:`evdet.data.output_folder`); names come from :func:`output_names`. Outputs appear only when
    every recording succeeded.

    Args:
        checkpoint: Lightning checkpoint from ``evdet-train``.
        recordings: recordings, in order.
        output_dir: the output folder.
        overwrite: replace the outputs of an earlier ``evdet-detect`` run in ``output_dir``.
        **options: ``confidence_threshold``, ``nms_threshold``, ``max_images``, ``max_windows``, ``device``,
            ``video`` of :func:`detect_recording`.

    Returns:
        One report per recording (paths name ``output_dir``).

    Raises:
        OutputFolderError: ``output_dir`` is not empty without ``overwrite``, or holds files of no earlier
            ``evdet-detect`` run (nothing is loaded or written).
        RecordingError, FileNotFoundError, ValueError: as :func:`detect_recording` (the folder is left as it was).
    """
    check_output_folder(output_dir, TOOL, overwrite)
    names = output_names(recordings)
    with OutputFolder(output_dir, TOOL, overwrite=overwrite) as output:
        reports = [detect_recording(checkpoint, rec, output.staging, name=name, report_dir=Path(output_dir),
                                    **options) for rec, name in zip(recordings, names)]
    return reports


def _first_time_and_windows(reader, window_us: int) -> tuple[int, int]:
    """First event time (µs) and number of grid windows up to the last event (:meth:`EventReader.time_range`)."""
    span = reader.time_range()
    if span is None:
        return 0, 0
    first, last = span
    first_end = next(grid_window_ends(first, window_us))
    return first, (last - first_end) // window_us + 2  # windows whose start (end - window_us) is <= the last event


def _clip_to_sensor(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Detections clipped to the sensor ``[0, width] x [0, height]`` (px, :func:`evdet.data.boxes.clip_boxes`);
    boxes left without area removed."""
    out = clip_boxes(boxes, width, height)
    return out[(out["w"] > 0) & (out["h"] > 0)]
