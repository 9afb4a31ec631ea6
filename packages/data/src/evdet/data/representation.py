"""Stacked-histogram event representation (RVT, Gehrig & Scaramuzza, CVPR 2023, Sec. 3.1 and 4).

RVT feeds the network one tensor per 50 ms window: the events of the window are split by polarity and by time
into ``bins`` equal time bins, each (polarity, bin) pair becomes one image of per-pixel event counts, the counts
are clipped at 10 and stored as ``uint8``. With 2 polarities x 10 bins this gives 20 channels. Channel order is
polarity-major: ``c = polarity * bins + bin``.
"""

from __future__ import annotations

import numpy as np

from evdet.data.events import Events
from evdet.data.labels import BBOX_DTYPE, LabelError

__all__ = ["downsample_boxes", "representation_size", "stacked_histogram"]


def representation_size(width: int, height: int, downsample: bool) -> tuple[int, int]:
    """Size ``(width, height)`` (px) of the representation for a ``width`` x ``height`` sensor.

    With ``downsample`` a histogram cell covers 2x2 sensor pixels, so the size is ``ceil(width / 2)`` x
    ``ceil(height / 2)`` (1280x720 -> 640x360; an odd side keeps its last half-covered column/row).
    """
    if downsample:
        return (int(width) + 1) // 2, (int(height) + 1) // 2
    return int(width), int(height)


def stacked_histogram(
    events: Events,
    t_start_us: int,
    window_us: int = 50_000,
    bins: int = 10,
    clip: int = 10,
    downsample: bool = False,
) -> np.ndarray:
    """Stacked histogram of the events in ``[t_start_us, t_start_us + window_us)``.

    The window is split into ``bins`` equal time bins; the event at time ``t`` falls into
    ``bin = floor((t - t_start_us) * bins / window_us)`` (integer arithmetic, exact). Each event adds 1 to
    channel ``c = p * bins + bin`` (polarity-major) at its pixel; counts are clipped at ``clip``.
    With ``downsample`` the pixel is ``(x // 2, y // 2)`` — a cell aggregates 2x2 sensor pixels — and clipping
    is applied after aggregation. Defaults (2 polarities x 10 bins, 50 ms, clip 10, uint8) are RVT's
    (Gehrig & Scaramuzza, CVPR 2023, Sec. 3.1 and 4). Unlike RVT's reference code, which stretches the bins
    over the span of the events actually present, the bins here always cover ``window_us / bins`` µs each.

    Args:
        events: time-sorted events (``t`` in µs) of a ``width`` x ``height`` sensor; events outside the window
            are ignored (found by binary search on ``t``).
        t_start_us: window start (µs).
        window_us: window length (µs), > 0.
        bins: time bins per polarity, >= 1.
        clip: largest count stored, 0..255.
        downsample: halve the resolution (see :func:`representation_size`).

    Returns:
        ``(2 * bins, H, W)`` ``uint8`` array, ``(W, H) = representation_size(events.width, events.height,
        downsample)``.

    Raises:
        ValueError: if ``window_us``, ``bins`` or ``clip`` is out of range, or an event in the window lies
            outside the sensor or has polarity other than 0/1 (message names the field).
    """
    if window_us <= 0:
        raise ValueError(f"stacked_histogram: window_us must be > 0, got {window_us}")
    if bins < 1:
        raise ValueError(f"stacked_histogram: bins must be >= 1, got {bins}")
    if not 0 <= clip <= 255:
        raise ValueError(f"stacked_histogram: clip must be in 0..255 to fit uint8, got {clip}")
    width, height = representation_size(events.width, events.height, downsample)
    channels = 2 * bins
    window = events.time_slice(int(t_start_us), int(t_start_us) + int(window_us))
    if len(window) == 0:
        return np.zeros((channels, height, width), dtype=np.uint8)

    x = window.x.astype(np.int64)
    y = window.y.astype(np.int64)
    p = window.p.astype(np.int64)
    if x.max() >= events.width:
        raise ValueError(f"stacked_histogram: event field 'x' has {x.max()} >= sensor width {events.width}")
    if y.max() >= events.height:
        raise ValueError(f"stacked_histogram: event field 'y' has {y.max()} >= sensor height {events.height}")
    if p.max() > 1:
        raise ValueError(f"stacked_histogram: event field 'p' must be 0 or 1, got {p.max()}")
    if downsample:
        x >>= 1
        y >>= 1
    time_bin = ((window.t - int(t_start_us)) * bins) // int(window_us)
    index = ((p * bins + time_bin) * height + y) * width + x
    counts = np.bincount(index, minlength=channels * height * width)
    np.minimum(counts, clip, out=counts)
    return counts.astype(np.uint8).reshape(channels, height, width)


def downsample_boxes(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Scale boxes from sensor pixels to representation pixels.

    Args:
        boxes: ``(M,)`` :data:`~evdet.data.labels.BBOX_DTYPE` array (px, top-left corner).
        factor: downsample factor (2 for :func:`stacked_histogram` with ``downsample=True``), > 0.

    Returns:
        A new ``(M,)`` array with ``x, y, w, h`` divided by ``factor``; other fields unchanged.

    Raises:
        ValueError: if ``factor`` is not positive.
        LabelError: if ``boxes`` is not a :data:`BBOX_DTYPE` array.
    """
    if not factor > 0:
        raise ValueError(f"downsample_boxes: factor must be > 0, got {factor}")
    if not isinstance(boxes, np.ndarray) or boxes.dtype != BBOX_DTYPE:
        raise LabelError(f"downsample_boxes: expected a BBOX_DTYPE array, got {getattr(boxes, 'dtype', boxes)}")
    out = boxes.copy()
    for name in ("x", "y", "w", "h"):
        out[name] = (boxes[name] / np.float32(factor)).astype(np.float32)
    return out
