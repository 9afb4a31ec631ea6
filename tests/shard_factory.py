"""Hand-made format-2 shards for tests: pixels and boxes chosen by the test, attributes filled with valid values.

Used by the data tests that check sampling and class handling without running the preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evdet.data.labels import BBOX_DTYPE
from evdet.data.shards import ShardWriter

CLASS_NAMES = ["pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair"]


def write_test_shard(path: Path, frames: np.ndarray, window_end_us, labelled: dict[int, list[tuple]], *,
                     sensor_wh: tuple[int, int] | None = None, downsample_factor: int = 1,
                     class_names=CLASS_NAMES, finish: bool = True) -> Path:
    """Write ``path`` with ``frames`` (N, C, H, W) uint8 and the boxes of the labelled windows.

    ``labelled`` maps a window index to its boxes ``(x, y, w, h, class_id)`` in SENSOR px (the shard stores sensor
    px; the reader divides by ``downsample_factor``); the frame time is the window end minus 10 ms. With ``finish``
    False the ``.tmp`` file is left unfinished and returned.
    """
    n, channels, height, width = frames.shape
    sensor_w, sensor_h = sensor_wh or (width * downsample_factor, height * downsample_factor)
    ends = np.asarray(window_end_us, dtype=np.int64)
    writer = ShardWriter(path, channels, width, height)
    for i in range(n):
        writer.append(np.ascontiguousarray(frames[i], dtype=np.uint8), int(ends[i]))
    if not finish:
        writer._file.close()
        return writer.tmp_path
    rows, frame_t, slices, windows = [], [], [], []
    for window in sorted(labelled):
        t = int(ends[window]) - 10_000
        start = len(rows)
        for j, (x, y, w, h, c) in enumerate(labelled[window]):
            rows.append((t, x, y, w, h, c, 100 * window + j, 1.0))
        frame_t.append(t)
        slices.append((start, len(rows)))
        windows.append(window)
    writer.finish(np.array(rows, dtype=BBOX_DTYPE), np.asarray(frame_t, np.int64), np.asarray(windows, np.int64),
                  np.asarray(slices, np.int64).reshape(-1, 2),
                  {"width": width, "height": height, "sensor_width": sensor_w, "sensor_height": sensor_h,
                   "downsample_factor": downsample_factor, "downsample": "nearest_exact", "window_us": 50_000,
                   "bins": channels // 2, "clip": 10, "time_bins": "stretched", "windows": "label", "split": "train",
                   "class_names": list(class_names), "source": f"{path.stem}_td.h5", "label_hz": 30,
                   "frame_step_us": 99_999, "dropped_boxes": {}, "bad_events": {"total": 0},
                   "on_bad_events": "error"})
    return path
