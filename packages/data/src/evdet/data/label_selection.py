"""Which labels and which event windows the preprocessing keeps: the reference's ~10 Hz object frames.

eTraM's RVT preprocessing (eTraM ``rvt_eTram/scripts/genx/preprocess_dataset.py``: ``apply_filters``,
``get_base_delta_ts_for_labels_us``, ``labels_and_ev_repr_timestamps``, ``save_labels``; RVT Sec. 4.1) turns a
30 or 60 Hz label file into ~10 Hz "object frames" and places the 50 ms event windows so that every object frame
is exactly the end of a window. It never reads events for this. The rules, reproduced here:

1. **Box filters**, in this order, at the sensor resolution (``filter_gen4.yaml``: Prophesee size filter off,
   faulty-box filter on): crop to the frame (``x`` and ``x + w`` clipped to ``[0, W - 1]``, ``y`` and ``y + h`` to
   ``[0, H - 1]``, then ``w``, ``h`` recomputed; boxes with ``w`` or ``h`` = 0 removed); keep ``w >= 5`` and
   ``h >= 5``; train split only: remove ``w > 9 * W // 10`` (1152 px at 1280). No class filter. float32 arithmetic.
2. **Label step**: the median spacing of the unique timestamps left must round to 30 or 60 Hz; the ~100 ms step
   is ``int(3 * median)`` (30 Hz) or ``int(6 * median)`` (60 Hz).
3. **Object frames**: the first is the first unique timestamp ``>= 100 000`` µs; walking forward, a timestamp is
   kept when its distance ``d`` to the last kept frame is within 2000 µs (inclusive) of ``n * step`` with
   ``n = round(d / step) >= 1``; the reference aborts when ``n = 0`` within the tolerance or when two kept frames
   are 98 000 µs or less apart (:class:`LabelSelectionError` here).
4. **Window end times**: before the first frame ``f0`` the times ``f0 - 50 000 k > 0`` in increasing order without
   the smallest one; between consecutive frames ``a``, ``b`` with multiple ``n``: ``linspace(a, b, 2n + 1)``
   truncated to int64, without its last point except for the last pair. Each frame ends one window.
5. **Loader labels** (what training and evaluation see at ``W / k x H / k``, RVT ``data/genx_utils/labels.py``):
   clamp to the sensor frame, scale by ``1 / k``, clamp to ``[0, int(W / k) - 1]``, drop boxes with ``w`` or
   ``h <= 0`` (:func:`loader_boxes`).

The ``grid`` option (``docs/protocol.md``) keeps evdet's earlier windows instead: ends on a fixed 50 ms grid and,
per window, the last label timestamp in ``(end - 50 ms, end]`` as its object frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evdet.data.boxes import clip_boxes, clip_xywh
from evdet.data.labels import BBOX_DTYPE, LabelError

__all__ = [
    "FIRST_FRAME_AT_US",
    "FRAME_JITTER_TOLERANCE_US",
    "LABEL_RATES_HZ",
    "MIN_BOX_SIDE_PX",
    "MIN_FRAME_DISTANCE_US",
    "WINDOW_ALIGNMENTS",
    "WINDOWS_PER_FRAME_STEP",
    "LabelSelection",
    "LabelSelectionError",
    "NoLabelsError",
    "filter_boxes",
    "grid_selection",
    "label_step_us",
    "loader_boxes",
    "select_labels",
    "select_object_frames",
    "window_end_times",
]

LABEL_RATES_HZ = {30: 3, 60: 6}
"""Label rates the reference accepts (gen4 / eTraM) and how many label intervals make the ~100 ms step."""
FIRST_FRAME_AT_US = 100_000
"""The first object frame is the first label timestamp at or after this time (``align_t_ms = 100``)."""
FRAME_JITTER_TOLERANCE_US = 2_000
"""A label timestamp within this distance (inclusive) of a multiple of the step becomes the next object frame."""
MIN_FRAME_DISTANCE_US = 98_000
"""Two object frames this close or closer make the reference abort (its consistency assertion)."""
MIN_BOX_SIDE_PX = 5.0
"""``conservative_bbox_filter``: smallest kept box side after cropping (sensor px)."""
WINDOWS_PER_FRAME_STEP = 2
"""Event windows per ~100 ms frame step (``ts_step_frame_ms / ts_step_ev_repr_ms = 100 / 50``)."""
WINDOW_ALIGNMENTS = ("label", "grid")
"""``label``: the reference's label-aligned windows; ``grid``: evdet's former fixed 50 ms grid."""


class LabelSelectionError(LabelError):
    """The label file breaks a rule of the reference's frame selection; the message names the file and times."""


class NoLabelsError(LabelSelectionError):
    """No box survives the filters, or no label lies at or after :data:`FIRST_FRAME_AT_US`: the reference skips
    such a recording (its ``NoLabelsException``)."""


@dataclass(frozen=True)
class LabelSelection:
    """What the preprocessing keeps of one label file (sensor px, µs).

    Attributes:
        filtered: ``(F,)`` BBOX_DTYPE, every box after the filters (cropped), time-sorted.
        dropped: boxes removed per filter: ``{"crop": n, "min_side": n, "max_width": n}``.
        step_us: the ~100 ms frame step (``grid``: the window length).
        label_hz: the label rate found (30 or 60; 0 for ``grid``).
        frame_t_us: ``(K,)`` int64 object-frame timestamps, increasing.
        labels: ``(M,)`` BBOX_DTYPE, the boxes of the object frames, frame by frame.
        frame_label_slice: ``(K, 2)`` int64 ``[start, stop)`` rows of ``labels`` per frame.
        window_end_us: ``(N,)`` int64 end times of the event windows, increasing.
        frame_window_index: ``(K,)`` int64 window ending at (``grid``: containing) each frame.
        alignment: ``label`` or ``grid``.
    """

    filtered: np.ndarray
    dropped: dict
    step_us: int
    label_hz: int
    frame_t_us: np.ndarray
    labels: np.ndarray
    frame_label_slice: np.ndarray
    window_end_us: np.ndarray
    frame_window_index: np.ndarray
    alignment: str


def _as_boxes(boxes: np.ndarray, source: str) -> np.ndarray:
    if not isinstance(boxes, np.ndarray) or boxes.dtype != BBOX_DTYPE:
        raise LabelError(f"{source}: expected a BBOX_DTYPE box array, got {getattr(boxes, 'dtype', type(boxes))}")
    return boxes


def filter_boxes(boxes: np.ndarray, width: int, height: int, split: str, *, min_side_px: float = MIN_BOX_SIDE_PX,
                 source: str = "<labels>") -> tuple[np.ndarray, dict]:
    """Apply the reference's box filters (module docstring, rule 1).

    Args:
        boxes: ``(M,)`` BBOX_DTYPE (sensor px, top-left corner).
        width, height: sensor size ``W``, ``H`` (px).
        split: split name; ``train`` also removes boxes wider than ``9 * W // 10`` px.
        min_side_px: smallest kept side after cropping (px; reference 5).
        source: label file, named in errors.

    Returns:
        ``(kept, dropped)``: a new BBOX_DTYPE array (row order kept, coordinates cropped) and the number of boxes
        each filter removed (``crop``, ``min_side``, ``max_width``).

    Raises:
        LabelError: ``boxes`` is not a BBOX_DTYPE array or the frame size is not positive.
    """
    boxes = _as_boxes(boxes, source)
    if width <= 0 or height <= 0:
        raise LabelError(f"{source}: frame size must be positive, got {width}x{height}")
    out = clip_boxes(boxes, width - 1, height - 1)
    dropped = {}
    keep = (out["w"] > 0) & (out["h"] > 0)
    dropped["crop"], out = int((~keep).sum()), out[keep]
    keep = (out["w"] >= np.float32(min_side_px)) & (out["h"] >= np.float32(min_side_px))
    dropped["min_side"], out = int((~keep).sum()), out[keep]
    if split == "train":
        keep = out["w"] <= np.float32((9 * int(width)) // 10)
        dropped["max_width"], out = int((~keep).sum()), out[keep]
    else:
        dropped["max_width"] = 0
    return out, dropped


def label_step_us(unique_t_us: np.ndarray, source: str = "<labels>") -> tuple[int, int]:
    """The label rate and the ~100 ms object-frame step (module docstring, rule 2).

    Args:
        unique_t_us: ``(U,)`` int64 unique label timestamps (µs), increasing, ``U >= 2``.
        source: label file, named in errors.

    Returns:
        ``(rate_hz, step_us)``, e.g. ``(30, 99999)`` for a median spacing of 33 333 µs.

    Raises:
        NoLabelsError: fewer than 2 timestamps (no rate; the reference cannot process such a file either).
        LabelSelectionError: a median spacing that does not round to 30 or 60 Hz (the message gives the rate found
            and suggests ``--windows grid``).
    """
    if len(unique_t_us) < 2:
        raise NoLabelsError(f"{source}: {len(unique_t_us)} label timestamp(s) after filtering; the label "
                                  "rate needs at least 2")
    median = float(np.median(np.diff(unique_t_us)))
    rate = int(np.rint(1e6 / median)) if median > 0 else 0
    if rate not in LABEL_RATES_HZ:
        raise LabelSelectionError(
            f"{source}: median label spacing {median:g} µs is {rate} Hz; the reference protocol needs labels at "
            f"{' or '.join(str(r) for r in LABEL_RATES_HZ)} Hz (use --windows grid for other label rates)")
    return rate, int(LABEL_RATES_HZ[rate] * median)


def select_object_frames(unique_t_us: np.ndarray, step_us: int, *, first_frame_at_us: int = FIRST_FRAME_AT_US,
                         tolerance_us: int = FRAME_JITTER_TOLERANCE_US,
                         min_frame_distance_us: int = MIN_FRAME_DISTANCE_US,
                         source: str = "<labels>") -> tuple[np.ndarray, np.ndarray]:
    """The ~10 Hz object frames (module docstring, rule 3).

    Args:
        unique_t_us: ``(U,)`` int64 unique label timestamps (µs) that still have a box, increasing.
        step_us: the step of :func:`label_step_us`.
        first_frame_at_us: the first frame is the first timestamp at or after this (µs).
        tolerance_us: accepted distance to a multiple of the step (µs, inclusive).
        min_frame_distance_us: kept frames must be farther apart than this (µs).
        source: label file, named in errors.

    Returns:
        ``(frame_t_us (K,) int64, multiples (K - 1,) int64)``: the kept timestamps and, per consecutive pair, the
        number of steps ``n`` between them.

    Raises:
        NoLabelsError: no timestamp at or after ``first_frame_at_us``.
        LabelSelectionError: a timestamp within ``tolerance_us`` after the last kept frame (``n = 0``), or two kept
            frames ``min_frame_distance_us`` or less apart (the message names both timestamps).
    """
    start = int(np.searchsorted(unique_t_us, first_frame_at_us, side="left"))
    if start >= len(unique_t_us):
        raise NoLabelsError(f"{source}: no label timestamp at or after {first_frame_at_us} µs")
    frames = [int(unique_t_us[start])]
    multiples: list[int] = []
    for t in unique_t_us[start + 1:].tolist():
        distance = t - frames[-1]
        n = round(distance / step_us)
        if abs(distance - n * step_us) > tolerance_us:
            continue
        if n < 1:
            raise LabelSelectionError(f"{source}: label timestamp {t} µs is within {tolerance_us} µs after the object "
                                      f"frame {frames[-1]} µs (the reference aborts here)")
        if distance <= min_frame_distance_us:
            raise LabelSelectionError(f"{source}: object frames {frames[-1]} and {t} µs are only {distance} µs apart "
                                      f"(<= {min_frame_distance_us}; the reference aborts here)")
        frames.append(t)
        multiples.append(n)
    return np.asarray(frames, dtype=np.int64), np.asarray(multiples, dtype=np.int64)


def window_end_times(frame_t_us: np.ndarray, multiples: np.ndarray, *, window_step_us: int = 50_000,
                     windows_per_step: int = WINDOWS_PER_FRAME_STEP) -> tuple[np.ndarray, np.ndarray]:
    """End times of the event windows and the window of each frame (module docstring, rule 4).

    Args:
        frame_t_us: ``(K,)`` int64 object frames, ``K >= 1``.
        multiples: ``(K - 1,)`` int64 steps between consecutive frames.
        window_step_us: spacing of the windows before the first frame (µs; 50 ms).
        windows_per_step: windows per frame step (2).

    Returns:
        ``(window_end_us (N,) int64, frame_window_index (K,) int64)``.

    Raises:
        ValueError: ``frame_t_us`` is empty or ``multiples`` has the wrong length.
    """
    if len(frame_t_us) == 0 or len(multiples) != len(frame_t_us) - 1:
        raise ValueError(f"window_end_times: need K >= 1 frames and K - 1 multiples, got {len(frame_t_us)} and "
                         f"{len(multiples)}")
    first = int(frame_t_us[0])
    before = [first - window_step_us * k for k in range(1, first // window_step_us + 1)
              if first - window_step_us * k > 0]
    ends = sorted(before)[1:]
    frame_index = []
    for i, (a, b) in enumerate(zip(frame_t_us[:-1].tolist(), frame_t_us[1:].tolist())):
        points = np.linspace(a, b, windows_per_step * int(multiples[i]) + 1).astype(np.int64)
        frame_index.append(len(ends))
        last_pair = i == len(frame_t_us) - 2
        ends.extend(points.tolist() if last_pair else points[:-1].tolist())
    if len(frame_t_us) == 1:
        ends.append(first)
    frame_index.append(len(ends) - 1)
    return np.asarray(ends, dtype=np.int64), np.asarray(frame_index, dtype=np.int64)


def _frame_boxes(filtered: np.ndarray, frame_t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the frames (rows with ``t`` equal to a frame time, filter order) and their ``[start, stop)``."""
    t = filtered["t"]
    starts = np.searchsorted(t, frame_t_us, side="left")
    stops = np.searchsorted(t, frame_t_us, side="right")
    labels = np.concatenate([filtered[a:b] for a, b in zip(starts, stops)]) if len(frame_t_us) else filtered[:0]
    counts = stops - starts
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return labels.astype(BBOX_DTYPE), np.stack([offsets[:-1], offsets[1:]], axis=1).reshape(-1, 2)


def _sorted_filtered(boxes: np.ndarray, width: int, height: int, split: str, source: str) -> tuple[np.ndarray, dict]:
    boxes = _as_boxes(boxes, source)
    if len(boxes) and np.any(np.diff(boxes["t"]) < 0):
        boxes = boxes[np.argsort(boxes["t"], kind="stable")]
    filtered, dropped = filter_boxes(boxes, width, height, split, source=source)
    if len(filtered) == 0:
        raise NoLabelsError(f"{source}: no box left after the box filters ({len(boxes)} boxes before, dropped "
                            f"{dropped})")
    return filtered, dropped


def select_labels(boxes: np.ndarray, width: int, height: int, split: str, *, window_us: int = 50_000,
                  source: str = "<labels>") -> LabelSelection:
    """Run rules 1-4 of the module docstring on one label file (the reference protocol, ``label`` alignment).

    Args:
        boxes: ``(M,)`` BBOX_DTYPE label file (sensor px, µs); sorted by ``t`` here if it is not.
        width, height: sensor size (px).
        split: ``train``, ``val`` or ``test`` (only ``train`` applies the wide-box filter).
        window_us: spacing of the windows before the first frame (µs).
        source: label file, named in errors.

    Returns:
        The :class:`LabelSelection`.

    Raises:
        NoLabelsError: nothing left to label (the reference skips the recording).
        LabelSelectionError: a label rate other than 30/60 Hz or a frame-selection abort (see the functions).
        LabelError: ``boxes`` is not a BBOX_DTYPE array.
    """
    filtered, dropped = _sorted_filtered(boxes, width, height, split, source)
    unique_t = np.unique(filtered["t"])
    rate, step = label_step_us(unique_t, source)
    frames, multiples = select_object_frames(unique_t, step, source=source)
    ends, frame_window = window_end_times(frames, multiples, window_step_us=window_us)
    labels, label_slice = _frame_boxes(filtered, frames)
    return LabelSelection(filtered, dropped, step, rate, frames, labels, label_slice, ends, frame_window, "label")


def grid_selection(boxes: np.ndarray, width: int, height: int, split: str, t_first_us: int, t_last_us: int, *,
                   window_us: int = 50_000, source: str = "<labels>") -> LabelSelection:
    """The ``grid`` option: windows on a fixed grid, at most one label frame per window.

    Window ends are ``origin + k * window_us`` (``k >= 1``, ``origin = floor(min(t_first_us, first label) /
    window_us) * window_us``) until both ``t_last_us`` and the last label are covered; each window's object frame
    is its last label timestamp in ``(end - window_us, end]``. The box filters are the reference's (rule 1).

    Args:
        boxes: ``(M,)`` BBOX_DTYPE label file (sensor px, µs).
        width, height: sensor size (px).
        split: split name (``train`` applies the wide-box filter).
        t_first_us, t_last_us: first and last event time of the recording (µs).
        window_us: window length and grid spacing (µs).
        source: label file, named in errors.

    Returns:
        The :class:`LabelSelection` (``label_hz`` 0, ``step_us`` = ``window_us``).

    Raises:
        NoLabelsError: no box left after the filters.
        LabelError: ``boxes`` is not a BBOX_DTYPE array.
    """
    filtered, dropped = _sorted_filtered(boxes, width, height, split, source)
    unique_t = np.unique(filtered["t"])
    origin = (min(int(t_first_us), int(unique_t[0])) // window_us) * window_us
    last = max(int(t_last_us), int(unique_t[-1]))
    count = max(1, -(-(last - origin) // window_us))
    ends = origin + window_us * np.arange(1, count + 1, dtype=np.int64)
    window = np.searchsorted(ends, unique_t, side="left")
    last_in_window = np.r_[window[1:] != window[:-1], True]
    frames = unique_t[last_in_window]
    labels, label_slice = _frame_boxes(filtered, frames)
    return LabelSelection(filtered, dropped, int(window_us), 0, frames.astype(np.int64), labels, label_slice, ends,
                          window[last_in_window].astype(np.int64), "grid")


def loader_boxes(labels: np.ndarray, width: int, height: int, downsample_factor: int) -> np.ndarray:
    """Boxes as the training loader yields them at the representation size (module docstring, rule 5).

    Args:
        labels: ``(M,)`` BBOX_DTYPE boxes in sensor px (the stored labels of one or more frames).
        width, height: sensor size ``W``, ``H`` (px).
        downsample_factor: ``k >= 1``.

    Returns:
        ``(M', 7)`` float32 rows ``[t, x, y, w, h, class_id, class_confidence]`` in representation px (``t`` as
        float32, as the reference's loader holds it), ``M' <= M`` (boxes flattened by the clamp removed).

    Raises:
        LabelError: ``labels`` is not a BBOX_DTYPE array or ``downsample_factor < 1``.
    """
    labels = _as_boxes(labels, "loader_boxes")
    if downsample_factor < 1:
        raise LabelError(f"loader_boxes: downsample_factor must be >= 1, got {downsample_factor}")
    rows = np.stack([labels[k].astype(np.float32) for k in ("t", "x", "y", "w", "h", "class_id",
                                                            "class_confidence")], axis=1).reshape(-1, 7)
    rows = _clamp(rows, width, height)
    if downsample_factor != 1:
        rows[:, 1:5] *= np.float32(1.0 / downsample_factor)
        rows = _clamp(rows, int(width / downsample_factor), int(height / downsample_factor))
    return rows[(rows[:, 3] > 0) & (rows[:, 4] > 0)]


def _clamp(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clamp ``[.., x, y, w, h, ..]`` float32 rows to ``[0, W - 1] x [0, H - 1]`` (RVT ``clamp_to_frame_``)."""
    out = rows.copy()
    out[:, 1], out[:, 2], out[:, 3], out[:, 4] = clip_xywh(rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4],
                                                           width - 1, height - 1)
    return out
