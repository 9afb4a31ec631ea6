"""``evdet-detect``: run a trained detector over a raw event recording, streaming with its recurrent state.

Windows end every 50 ms on the grid of multiples of 50 ms (the first one holds the first event) and are turned into
the same stacked histograms the model was trained on (:mod:`evdet.data.representation`, the run's histogram
parameters: both window ends inclusive, time bins stretched over the events, nearest-exact downsampling). Any sensor
size is mapped to the model's input by an integer factor ``k`` chosen so the representation fits the trained input
size (1280x720 with a 640x360 model: k = 2); the detector pads to its required multiple, and boxes are scaled by
``k`` back to sensor pixels. Outputs, in ``--output``:

- ``<recording>_bbox.npy``: Prophesee box array (``t`` = window end in µs, x, y, w, h in sensor px,
  ``class_confidence`` = score as configured in ``dataset.evaluation.score``, ``class_id``, ``track_id`` 0);
- ``<recording>_XXXXXX.png``: detections drawn over event frames for evenly spaced windows;
- ``<recording>_detect.json``: counts and the latency per 50 ms window (representation + model), also printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from evdet.data.labels import BBOX_DTYPE, save_boxes
from evdet.data.readers import RecordingError, open_recording
from evdet.data.representation import HistogramConfig, stacked_histogram
from evdet.data.windows import grid_window_ends, iter_window_events
from evdet.model.checkpoint import load_module
from evdet.model.datamodule import dataset_classes
from evdet.model.detections import detections_to_boxes

__all__ = ["detect_recording", "input_scale_factor", "render_detections", "main"]

#: Distinct colours per class id for the PNG overlays (RGB).
_PALETTE = [(255, 200, 0), (0, 220, 120), (255, 80, 80), (80, 160, 255), (255, 0, 255), (0, 255, 255),
            (200, 200, 200), (255, 140, 0)]


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
    """Draw ``boxes`` (BBOX_DTYPE, sensor px) over an event frame and save a PNG.

    Args:
        histogram: ``(2 * bins, H, W)`` uint8 stacked histogram (polarity-major channels).
        boxes: detections of this window in sensor pixels.
        factor: representation-to-sensor scale (the frame is enlarged by it).
        class_names: names indexed by ``class_id``.
        path: output PNG path.
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
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


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
) -> dict:
    """Detect objects in every 50 ms window of ``recording`` and write the outputs described in the module doc.

    Args:
        checkpoint: Lightning checkpoint from ``evdet-train``.
        recording: ``.dat``, ``_td.h5`` / ``.h5`` or ``.aedat4`` file.
        output_dir: directory for the box array, PNGs and the JSON report (created).
        confidence_threshold: minimum objectness x class probability of a kept detection (the post-processing
            threshold; the written score is ``dataset.evaluation.score``).
        nms_threshold: IoU of class-aware NMS; default: the run's ``validation.nms_threshold``.
        max_images: number of PNG overlays (evenly spaced windows).
        max_windows: stop after this many windows (None: the whole recording).
        device: torch device.

    Returns:
        The report dict (also written as ``<recording>_detect.json``).

    Raises:
        RecordingError: unreadable recording (message names the file).
        FileNotFoundError / ValueError: missing or unreadable checkpoint.
    """
    module, config = load_module(checkpoint, device)
    model = module.model
    ds, val = config["dataset"], config["validation"]
    nms = float(val["nms_threshold"]) if nms_threshold is None else float(nms_threshold)
    class_names = list(dataset_classes(ds).class_names)
    score = str(ds.get("evaluation", {}).get("score", "class_conf"))

    with open_recording(recording) as reader:
        factor = input_scale_factor(reader.width, reader.height, int(ds["width"]), int(ds["height"]))
        hist = histogram_config(module.eval_info, factor)
        window_us = hist.window_us
        info = {"format": reader.format, "width": reader.width, "height": reader.height}
        first_t, n_windows = _first_time_and_windows(reader, window_us)
        if max_windows is not None:
            n_windows = min(n_windows, max_windows)
        image_at = set(np.linspace(0, max(n_windows - 1, 0), num=min(max_images, n_windows), dtype=int).tolist())
        stem = Path(recording).name.split(".")[0]
        all_boxes: list[np.ndarray] = []
        latencies_ms: list[float] = []
        states = None
        images: list[str] = []
        windows = iter_window_events(reader.iter_chunks(), grid_window_ends(first_t, window_us), window_us,
                                     reader.width, reader.height, stop_at_stream_end=True)
        for index, (t_end, events) in enumerate(windows):
            if max_windows is not None and index >= max_windows:
                break
            start = time.perf_counter()
            histogram = stacked_histogram(events, t_end, hist)
            frame = torch.from_numpy(histogram).to(device=device, dtype=torch.float32).unsqueeze(0)
            features, states = model.forward_backbone(frame, states)
            dets = model.detect(features, confidence_threshold, nms)[0]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            latencies_ms.append((time.perf_counter() - start) * 1e3)
            boxes = _clip_to_sensor(detections_to_boxes(dets, t_end, scale=factor, score=score), reader.width,
                                    reader.height)
            all_boxes.append(boxes)
            if index in image_at:
                png = Path(output_dir) / f"{stem}_{index:06d}.png"
                render_detections(histogram, boxes, factor, class_names, png)
                images.append(str(png))
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros(0, dtype=BBOX_DTYPE)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    box_path = save_boxes(out_dir / f"{stem}_bbox.npy", boxes)
    lat = np.asarray(latencies_ms) if latencies_ms else np.zeros(1)
    report = {
        "recording": str(recording),
        **info,
        "scale_factor": factor,
        "model_input": [int(ds["height"]), int(ds["width"])],
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
        "boxes": str(box_path),
        "images": images,
    }
    (out_dir / f"{stem}_detect.json").write_text(json.dumps(report, indent=2))
    return report


def _first_time_and_windows(reader, window_us: int) -> tuple[int, int]:
    """First event time (µs) and number of grid windows up to the last event (streams timestamps once)."""
    first = last = None
    for chunk in reader.iter_chunks():
        if len(chunk):
            first = int(chunk.t[0]) if first is None else first
            last = int(chunk.t[-1])
    if first is None:
        return 0, 0
    first_end = next(grid_window_ends(first, window_us))
    return first, (last - first_end) // window_us + 2  # windows whose start (end - window_us) is <= the last event


def _clip_to_sensor(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    x1 = np.clip(boxes["x"], 0, width)
    y1 = np.clip(boxes["y"], 0, height)
    x2 = np.clip(boxes["x"] + boxes["w"], 0, width)
    y2 = np.clip(boxes["y"] + boxes["h"], 0, height)
    out = boxes.copy()
    out["x"], out["y"], out["w"], out["h"] = x1, y1, x2 - x1, y2 - y1
    return out[(out["w"] > 0) & (out["h"] > 0)]


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``evdet-detect CHECKPOINT RECORDING [RECORDING ...] --output DIR``."""
    parser = argparse.ArgumentParser(prog="evdet-detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="Lightning checkpoint written by evdet-train")
    parser.add_argument("recordings", type=Path, nargs="+", help=".dat, .h5 or .aedat4 event recordings")
    parser.add_argument("--output", type=Path, required=True, help="output directory")
    parser.add_argument("--confidence", type=float, default=0.3, help="minimum detection score (default 0.3)")
    parser.add_argument("--nms", type=float, default=None, help="NMS IoU threshold (default: the run's)")
    parser.add_argument("--max-images", type=int, default=8, help="PNG overlays per recording (default 8)")
    parser.add_argument("--max-windows", type=int, default=None, help="stop after N windows")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        reports = [
            detect_recording(args.checkpoint, rec, args.output, confidence_threshold=args.confidence,
                             nms_threshold=args.nms, max_images=args.max_images, max_windows=args.max_windows,
                             device=args.device)
            for rec in args.recordings
        ]
    except (RecordingError, FileNotFoundError, ValueError) as exc:
        print(f"evdet-detect: error: {exc}", file=sys.stderr)
        return 2
    for report in reports:
        print(json.dumps({k: v for k, v in report.items() if k != "images"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
