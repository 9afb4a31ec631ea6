"""A small SYNTHETIC event-camera traffic dataset in the eTraM file layout.

Scenes: a static traffic camera (eTraM's sensor by default: 1280 x 720 px, Prophesee EVK4) over a textured
background with a road band; objects of the 8 eTraM classes (:data:`~evdet.data.labels.ETRAM_CLASSES`: 0
pedestrian, 1 car, 2 bicycle, 3 bus, 4 motorbike, 5 truck, 6 tram, 7 wheelchair) move across it, each class with
its own shape, size and speed (:data:`CLASS_SPECS`): cars, trucks, buses and trams on horizontal lanes of the road
band (buses and trams long), small fast motorbikes and bicycles on the lanes, tall narrow slow pedestrians and
small slow wheelchairs moving in any direction.

Events come from the contrast-threshold model of event simulators such as ESIM (Rebecq, Gehrig & Scaramuzza,
"ESIM: an Open Event Camera Simulator", CoRL 2018): intensity frames are rendered every ``frame_dt_us``
(anti-aliased, so sub-pixel motion changes intensity smoothly); every pixel keeps a reference log intensity
``ref``; when ``|log I - ref| >= C`` (per-pixel threshold ``C`` ~ N(contrast_threshold, threshold_sigma), one map
per polarity) the pixel emits ``floor(|log I - ref| / C)`` events of polarity ``sign(log I - ref)``, with
timestamps linearly interpolated between the previous and the current frame at the times the log intensity
crosses ``ref + k * C``; then ``ref`` moves by the crossed thresholds. Background-activity noise events
(Poisson, ``noise_rate_hz`` per pixel) are added. Only the pixels an object covered in the previous or the
current frame are simulated (the background is static), and of those only the ones whose intensity changed,
which keeps generation fast at 1280 x 720.

Labels follow the timing of real eTraM label files, the input of the RVT / eTraM preprocessing: ``label_hz``
(30 or 60 Hz) boxes per second, starting at a random offset that lies on no 1 ms (so no 50 ms) grid, each
timestamp jittered by a uniform integer in ``[-label_jitter_us, +label_jitter_us]`` (default 900 us, at most
:data:`MAX_LABEL_JITTER_US`). The jitter is bounded, and redrawn (deterministically from the seed) until the median
label spacing is within ``100 / m`` us of ``1e6 / label_hz`` (``m = 3`` at 30 Hz, ``6`` at 60 Hz), so that the
reference's ~10 Hz object-frame selection (step ``int(m * median spacing)``, tolerance 2000 us, abort when two kept
frames are <= 98000 us apart or the median spacing does not round to 30/60 Hz) never aborts and keeps every
``m``-th label from the first one >= 100 ms. Every label time has at least one box that survives the reference's
box filters (an extra car is sent through the frame where none would).

A few SPECIAL boxes per sequence reproduce faults of real eTraM files (:data:`SPECIAL_BOX_KINDS`; track ids
``SPECIAL_TRACK_ID_BASE + i``, see :func:`special_box_kind`): a box with a side < 5 px, a zero-width box, a box
partly out of the frame horizontally and one vertically (their visible part is >= 5 px), a box fully out of the
frame and an over-wide box (``w > 9 * width // 10``, 1152 px at 1280). They lie on object frames (every ``m``-th
label from the first one >= 100 ms) and are listed in the dataset README.

Files (per sequence ``<name>``, exactly as eTraM): ``<split>/<name>_td.h5`` with datasets ``events/x``
(uint16), ``events/y`` (uint16), ``events/p`` (uint8), ``events/t`` (int64, µs), ``events/width``,
``events/height`` (scalars), Blosc-compressed via ``hdf5plugin``; ``<split>/<name>_bbox.npy`` with
:data:`~evdet.data.labels.BBOX_DTYPE` boxes (sensor px).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from evdet.data.labels import BBOX_DTYPE, ETRAM_CLASSES, save_boxes

__all__ = [
    "CLASS_SPECS",
    "DEFAULT_HEIGHT",
    "DEFAULT_LABEL_HZ",
    "DEFAULT_LABEL_JITTER_US",
    "DEFAULT_WIDTH",
    "LABEL_HZ_CHOICES",
    "MAX_LABEL_JITTER_US",
    "SPECIAL_BOX_KINDS",
    "SPECIAL_TRACK_ID_BASE",
    "ObjectClassSpec",
    "generate_dataset",
    "simulate_sequence",
    "special_box_kind",
    "write_td_h5",
]

#: eTraM's sensor (Prophesee EVK4, Sony IMX636): width x height in px.
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720
#: Label rates of eTraM label files that the reference preprocessing accepts (Hz).
LABEL_HZ_CHOICES: tuple[int, ...] = (30, 60)
DEFAULT_LABEL_HZ = 30
#: Default and largest per-label timestamp jitter (us): uniform integer in ``[-j, +j]``. 900 us keeps every
#: candidate gap within 2 * 900 + 1 + 101 = 1902 <= 2000 us of the reference's ~100 ms step (so no frame is
#: dropped) and above 99 999 - 1800 = 98 199 > 98 000 us (so the reference never aborts).
DEFAULT_LABEL_JITTER_US = 900
MAX_LABEL_JITTER_US = 900
#: Kinds of special (faulty) boxes, one of each per sequence; the box of kind ``i`` has track id
#: ``SPECIAL_TRACK_ID_BASE + i``.
SPECIAL_BOX_KINDS: tuple[str, ...] = (
    "side_lt_5px",  # one side in [1, 4.5] px, inside the frame
    "zero_width",  # w == 0, inside the frame
    "partly_out_x",  # crosses the left or right edge; >= 5 px of it inside
    "partly_out_y",  # crosses the top or bottom edge; >= 5 px of it inside
    "fully_out_of_frame",  # entirely beyond one edge (nothing left after cropping)
    "over_wide",  # w > 9 * width // 10 (1152 px at 1280) even after cropping
)
SPECIAL_TRACK_ID_BASE = 1_000_000

# Sizes and speeds of CLASS_SPECS are given for a 720 px high frame and scale with the frame height.
_REFERENCE_HEIGHT = 720.0
_LOG_EPS = 1e-3  # log(I + eps), I in [0, 1] (ESIM's log-intensity offset)
_MIN_VISIBLE_FRACTION = 0.2  # a box is labelled while >= 20 % of the object's area is inside the frame
_FRAME_STEP_US = 100_000  # the reference's ~10 Hz object-frame step: 3 labels at 30 Hz, 6 at 60 Hz
_FIRST_FRAME_US = 100_000  # the reference's first object frame: first label time >= 100 ms
_STEP_TOLERANCE_US = 100  # accepted |m * median spacing - 100 000| (us)
_MAX_JITTER_DRAWS = 10_000
_MIN_BOX_SIDE_PX = 5.0  # the reference drops boxes with a side < 5 px (after cropping)


@dataclass(frozen=True)
class ObjectClassSpec:
    """Appearance and motion of one synthetic object class.

    Attributes:
        class_id: id in :data:`~evdet.data.labels.ETRAM_CLASSES`.
        shape: ``person``, ``wheelchair``, ``rounded_rect``, ``rect``, ``ellipse`` or ``two_wheels``.
        width_px, height_px: (min, max) object (= box) size, px at a 720 px high frame (scaled with the height).
        speed_px_s: (min, max) speed, px/s at a 720 px high frame.
        motion: ``lane`` (horizontal, left or right, on the road band) or ``any`` (any direction).
        stripe_period_px: period of the texture stripes moving with the object (px at the object's largest
            size; scaled with the object), 0 for none.
        spawn_weight: relative frequency among the extra objects entering during a sequence.
        windows: draw a darker window band in the upper half (cars).
    """

    class_id: int
    shape: str
    width_px: tuple[float, float]
    height_px: tuple[float, float]
    speed_px_s: tuple[float, float]
    motion: str
    stripe_period_px: float
    spawn_weight: float
    windows: bool = False


#: One spec per eTraM class, in class-id order (sizes px and speeds px/s at 1280 x 720). Most boxes pass the
#: Prophesee gen4 evaluation filter at full resolution (both sides >= 20 px, diagonal >= 60 px); the smallest
#: pedestrians, wheelchairs, bicycles and motorbikes do not.
CLASS_SPECS: tuple[ObjectClassSpec, ...] = (
    ObjectClassSpec(0, "person", (16, 34), (44, 96), (20, 60), "any", 0.0, 2.5),  # pedestrian
    ObjectClassSpec(1, "rounded_rect", (110, 190), (52, 88), (140, 300), "lane", 0.0, 4.0, True),  # car
    ObjectClassSpec(2, "two_wheels", (44, 66), (30, 46), (80, 160), "lane", 0.0, 1.2),  # bicycle
    ObjectClassSpec(3, "rect", (330, 450), (100, 135), (80, 170), "lane", 90.0, 0.6),  # bus
    ObjectClassSpec(4, "ellipse", (46, 72), (28, 42), (200, 380), "lane", 0.0, 1.2),  # motorbike
    ObjectClassSpec(5, "rect", (220, 320), (90, 125), (90, 190), "lane", 70.0, 0.8),  # truck
    ObjectClassSpec(6, "rect", (540, 760), (110, 150), (70, 150), "lane", 110.0, 0.25),  # tram
    ObjectClassSpec(7, "wheelchair", (32, 52), (40, 62), (12, 35), "any", 0.0, 0.4),  # wheelchair
)
assert [s.class_id for s in CLASS_SPECS] == list(range(len(ETRAM_CLASSES)))
_ANCHOR_CLASS_ID = 1  # car: the class sent through the frame where a label time would have no valid box
_LONG_VEHICLE_CLASS_IDS = (3, 5, 6)  # bus, truck, tram: the classes of over-wide special boxes


@dataclass
class _SceneObject:
    """One object of a scene: state in sensor px (top-left ``x0, y0`` at time ``t0_s``)."""

    spec: ObjectClassSpec
    track_id: int
    x0: float
    y0: float
    vx: float
    vy: float
    t0_s: float
    w: float
    h: float
    intensity: float
    stripe_phase: float

    def position(self, t_s: float) -> tuple[float, float]:
        dt = t_s - self.t0_s
        return self.x0 + self.vx * dt, self.y0 + self.vy * dt

    def alive(self, t_s: float) -> bool:
        return t_s >= self.t0_s


# --------------------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------------------


def _check_int(func: str, name: str, value, lo: int, hi: int | None = None) -> int:
    """``value`` as int if it is an integer in ``[lo, hi]``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{func}: {name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{func}: {name} must be {bound}, got {value}")
    return int(value)


def _check_float(func: str, name: str, value, *, positive: bool) -> float:
    """``value`` as float if finite and > 0 (``positive``) or >= 0, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{func}: {name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{func}: {name} must be > 0, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{func}: {name} must be >= 0, got {value}")
    return float(value)


def _check_label_hz(func: str, label_hz) -> int:
    """``label_hz`` as int if it is 30 or 60 (the rates the reference accepts), else ValueError."""
    if isinstance(label_hz, bool) or not isinstance(label_hz, numbers.Real) or label_hz not in LABEL_HZ_CHOICES:
        raise ValueError(f"{func}: label_hz must be one of {LABEL_HZ_CHOICES} (Hz), got {label_hz!r}")
    return int(label_hz)


def _check_seed(func: str, seed) -> int | list[int]:
    """``seed`` (a non-negative int or a non-empty list of them), else ValueError naming ``seed``."""
    items = list(seed) if isinstance(seed, (list, tuple)) else [seed]
    ok = bool(items) and all(not isinstance(s, bool) and isinstance(s, numbers.Integral) and s >= 0 for s in items)
    if not ok:
        raise ValueError(f"{func}: seed must be a non-negative integer or a non-empty list of them, got {seed!r}")
    return [int(s) for s in items] if isinstance(seed, (list, tuple)) else int(seed)


# --------------------------------------------------------------------------------------------------------------
# Label timing
# --------------------------------------------------------------------------------------------------------------


def _label_times(rng: np.random.Generator, end_us: int, label_hz: int, jitter_us: int) -> np.ndarray:
    """Jittered label timestamps, ``(N,)`` int64 us, strictly increasing, in ``[1, end_us]``.

    ``t_k = offset + rint(k * 1e6 / label_hz) + j_k`` with an integer ``offset`` in ``[jitter_us + 1000,
    jitter_us + 1000 + period)`` that is not a multiple of 1000 us and ``j_k`` uniform integers in
    ``[-jitter_us, jitter_us]``, redrawn until ``|m * median(diff(t)) - 100000| <= 100`` us (``m`` labels per
    100 ms); if no draw of :data:`_MAX_JITTER_DRAWS` passes (only possible with very few labels) the jitter is 0.
    If the first time falls on a 1 ms grid, all times move by +1 us.
    """
    period = 1e6 / label_hz
    per_step = int(round(_FRAME_STEP_US / period))  # 3 at 30 Hz, 6 at 60 Hz
    lo = jitter_us + 1000
    while True:
        offset = int(rng.integers(lo, lo + int(period)))
        if offset % 1000:
            break
    n = 0
    if end_us - jitter_us - 1 >= offset:
        n = int(math.floor((end_us - jitter_us - 1 - offset) / period)) + 1
    nominal = offset + np.rint(np.arange(n) * period).astype(np.int64)
    times = nominal
    if jitter_us > 0 and n > 0:
        times = nominal  # fallback: no jitter
        for _ in range(_MAX_JITTER_DRAWS):
            candidate = nominal + rng.integers(-jitter_us, jitter_us + 1, n)
            if n < 2 or abs(per_step * float(np.median(np.diff(candidate))) - _FRAME_STEP_US) <= _STEP_TOLERANCE_US:
                times = candidate
                break
    if n and times[0] % 1000 == 0:
        times = times + 1
    return times.astype(np.int64)


def _object_frame_indices(label_times_us: np.ndarray, label_hz: int) -> np.ndarray:
    """Indices of the labels on the reference's ~10 Hz object frames (every ``m``-th from the first >= 100 ms);
    all labels if none is >= 100 ms."""
    per_step = int(round(_FRAME_STEP_US * label_hz / 1e6))
    first = int(np.searchsorted(label_times_us, _FIRST_FRAME_US, side="left"))
    if first >= len(label_times_us):
        return np.arange(len(label_times_us))
    return np.arange(first, len(label_times_us), per_step)


def _passes_reference_filters(box: tuple[float, float, float, float], width: int, height: int) -> bool:
    """Whether box ``(x, y, w, h)`` (px) survives the reference's filters in every split: crop (x, x+w to
    [0, width-1], y, y+h to [0, height-1]), both sides >= 5 px, width <= 9 * width // 10."""
    x, y, w, h = box
    cw = min(max(x + w, 0.0), width - 1.0) - min(max(x, 0.0), width - 1.0)
    ch = min(max(y + h, 0.0), height - 1.0) - min(max(y, 0.0), height - 1.0)
    return cw >= _MIN_BOX_SIDE_PX and ch >= _MIN_BOX_SIDE_PX and cw <= 9 * width // 10


# --------------------------------------------------------------------------------------------------------------
# Scene construction
# --------------------------------------------------------------------------------------------------------------


def _box_blur(img: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur of a 2-D float array (edge-padded), radius in px."""
    if radius < 1:
        return img
    k = 2 * radius + 1
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis, dtype=np.float64)
        if axis == 0:
            img = (c[k:] - c[:-k]) / k
        else:
            img = (c[:, k:] - c[:, :-k]) / k
    return img.astype(np.float32)


def _make_background(rng: np.random.Generator, width: int, height: int, road: tuple[float, float]) -> np.ndarray:
    """Static textured background, ``(height, width)`` float32 linear intensity in about [0.22, 0.65]."""
    scale = height / _REFERENCE_HEIGHT
    img = np.zeros((height, width), np.float32)
    for cell, amp in ((96, 0.5), (24, 0.3), (6, 0.2)):
        cell_px = max(1, int(round(cell * scale)))
        coarse = rng.standard_normal((height // cell_px + 2, width // cell_px + 2)).astype(np.float32)
        fine = np.repeat(np.repeat(coarse, cell_px, axis=0), cell_px, axis=1)[:height, :width]
        img += amp * _box_blur(fine, cell_px // 2)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    img = 0.3 + 0.3 * img
    y0, y1 = int(road[0] * height), int(road[1] * height)
    img[y0:y1] = 0.22 + 0.5 * (img[y0:y1] - 0.3)  # darker asphalt band keeping some texture
    # dashed lane markings
    mark_h = max(1, int(round(4 * scale)))
    dash, gap = max(2, int(round(40 * scale))), max(2, int(round(28 * scale)))
    xs = np.arange(width)
    dashed = (xs % (dash + gap)) < dash
    for frac in (1 / 3, 2 / 3):
        ym = y0 + int(frac * (y1 - y0))
        img[ym : ym + mark_h, dashed] = 0.65
    return np.clip(img, 0.05, 1.0)


def _spawn_object(
    rng: np.random.Generator,
    spec: ObjectClassSpec,
    track_id: int,
    width: int,
    height: int,
    road: tuple[float, float],
    t0_s: float,
    inside: bool,
    target: tuple[float, float] | None = None,
) -> _SceneObject:
    """Create an object of ``spec`` inside the frame at ``t0_s`` or just outside an edge, moving in.

    ``target = (t_s, x)`` (lane motion only) instead places it so that its left edge is at ``x`` px at ``t_s``,
    entering from the edge it moves away from (or already in view at t = 0 if it would have entered earlier).
    """
    scale = height / _REFERENCE_HEIGHT
    w = float(rng.uniform(*spec.width_px)) * scale
    h = float(rng.uniform(*spec.height_px)) * scale
    speed = float(rng.uniform(*spec.speed_px_s)) * scale
    if spec.motion == "lane":
        direction = 1.0 if rng.random() < 0.5 else -1.0
        vx, vy = direction * speed, 0.0
        lane_lo, lane_hi = road[0] * height, road[1] * height - h
        y = float(rng.uniform(lane_lo, max(lane_lo, lane_hi)))
        if target is not None:
            t_target, x_target = target
            x_target = min(x_target, max(0.0, width - w - 1.0))
            entry = (x_target + w) if direction > 0 else (width - x_target)  # px from entering to x_target
            t0_s = max(0.0, t_target - entry / speed)
            x = x_target - vx * (t_target - t0_s)
        elif inside:
            x = float(rng.uniform(0.1 * width, max(0.1 * width, 0.9 * width - w)))
        else:
            x = -w if direction > 0 else float(width)
    else:  # any direction
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        if inside:
            x = float(rng.uniform(0.1 * width, max(0.1 * width, 0.9 * width - w)))
            y = float(rng.uniform(0.1 * height, max(0.1 * height, 0.9 * height - h)))
        else:  # enter through the vertical edge the object moves away from
            x = -w if vx > 0 else float(width)
            y = float(rng.uniform(0.1 * height, max(0.1 * height, 0.9 * height - h)))
    # clearly brighter or darker than the background (log contrast >= ~0.5)
    if rng.random() < 0.5:
        intensity = float(rng.uniform(0.8, 1.0))
    else:
        intensity = float(rng.uniform(0.04, 0.12))
    return _SceneObject(
        spec=spec, track_id=track_id, x0=x, y0=y, vx=vx, vy=vy, t0_s=t0_s, w=w, h=h, intensity=intensity,
        stripe_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
    )


def _covered(obj: _SceneObject, label_times_us: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(N,)`` bool: the object's label box at each label time survives the reference's box filters."""
    out = np.zeros(len(label_times_us), dtype=bool)
    for i, t_us in enumerate(label_times_us):
        box = _visible_box(obj, int(t_us) * 1e-6, width, height)
        out[i] = box is not None and _passes_reference_filters(box, width, height)
    return out


def _make_objects(
    rng: np.random.Generator,
    width: int,
    height: int,
    road: tuple[float, float],
    duration_s: float,
    spawn_rate_hz: float,
    label_times_us: np.ndarray,
) -> list[_SceneObject]:
    """All objects of a sequence: one of every class inside the frame at t=0, then Poisson arrivals, then a car
    through the frame for each label time where no box would survive the reference's box filters."""
    objects: list[_SceneObject] = []
    track_id = 1
    for spec in CLASS_SPECS:
        objects.append(_spawn_object(rng, spec, track_id, width, height, road, 0.0, True))
        track_id += 1
    weights = np.array([s.spawn_weight for s in CLASS_SPECS])
    weights /= weights.sum()
    t = float(rng.exponential(1.0 / spawn_rate_hz)) if spawn_rate_hz > 0 else duration_s
    while t < duration_s:
        spec = CLASS_SPECS[int(rng.choice(len(CLASS_SPECS), p=weights))]
        objects.append(_spawn_object(rng, spec, track_id, width, height, road, t, False))
        track_id += 1
        t += float(rng.exponential(1.0 / spawn_rate_hz))
    covered = np.zeros(len(label_times_us), dtype=bool)
    for obj in objects:
        covered |= _covered(obj, label_times_us, width, height)
    k = 0
    while True:
        missing = np.flatnonzero(~covered[k:])
        if not len(missing):
            break
        k += int(missing[0])
        x_target = float(rng.uniform(0.2 * width, 0.6 * width))
        anchor = _spawn_object(rng, CLASS_SPECS[_ANCHOR_CLASS_ID], track_id, width, height, road, 0.0, False,
                               target=(int(label_times_us[k]) * 1e-6, x_target))
        objects.append(anchor)
        track_id += 1
        covered |= _covered(anchor, label_times_us, width, height)
        k += 1  # move on even if the sensor is too small for the anchor to count
    order = rng.permutation(len(objects))  # painting order (depth)
    return [objects[i] for i in order]


def _special_boxes(
    rng: np.random.Generator, width: int, height: int, label_times_us: np.ndarray, label_hz: int
) -> list[tuple]:
    """One box of every :data:`SPECIAL_BOX_KINDS` kind as :data:`BBOX_DTYPE` row tuples, each at a random
    object-frame label time; empty if there is no label time."""
    if not len(label_times_us):
        return []
    frames = label_times_us[_object_frame_indices(label_times_us, label_hz)]
    scale = height / _REFERENCE_HEIGHT
    rows = []
    for i, kind in enumerate(SPECIAL_BOX_KINDS):
        t_us = int(frames[int(rng.integers(0, len(frames)))])
        class_id = int(rng.integers(0, len(ETRAM_CLASSES)))
        w = min(float(rng.uniform(60, 160)) * scale, 0.45 * width)
        h = min(float(rng.uniform(40, 100)) * scale, 0.45 * height)
        w, h = max(w, 2 * _MIN_BOX_SIDE_PX + 2), max(h, 2 * _MIN_BOX_SIDE_PX + 2)
        if kind == "side_lt_5px":
            thin = float(rng.uniform(1.0, 4.5))
            if rng.random() < 0.5:
                w = thin
            else:
                h = thin
            x, y = float(rng.uniform(0, width - 1 - w)), float(rng.uniform(0, height - 1 - h))
        elif kind == "zero_width":
            w = 0.0
            x, y = float(rng.uniform(0, width - 1)), float(rng.uniform(0, height - 1 - h))
        elif kind == "partly_out_x":
            inside = max(float(rng.uniform(0.3, 0.7)) * w, _MIN_BOX_SIDE_PX + 1)  # px inside the frame
            x = inside - w if rng.random() < 0.5 else width - 1 - inside
            y = float(rng.uniform(0, height - 1 - h))
        elif kind == "partly_out_y":
            inside = max(float(rng.uniform(0.3, 0.7)) * h, _MIN_BOX_SIDE_PX + 1)
            y = inside - h if rng.random() < 0.5 else height - 1 - inside
            x = float(rng.uniform(0, width - 1 - w))
        elif kind == "fully_out_of_frame":
            gap = float(rng.uniform(1.0, 50.0)) * max(scale, 0.1)
            side = int(rng.integers(0, 4))
            x, y = float(rng.uniform(0, width - 1 - w)), float(rng.uniform(0, height - 1 - h))
            if side == 0:
                x = -w - gap
            elif side == 1:
                x = width + gap
            elif side == 2:
                y = -h - gap
            else:
                y = height + gap
        else:  # over_wide: wider than 9 * width // 10 even after cropping to [0, width - 1]
            class_id = int(rng.choice(_LONG_VEHICLE_CLASS_IDS))
            lo = 9 * width // 10 + 1.0
            w = float(rng.uniform(lo + 0.2 * (width - 1 - lo), width - 1.0))
            h = min(float(rng.uniform(120, 300)) * scale, 0.8 * height)
            x, y = float(rng.uniform(0, width - 1 - w)), float(rng.uniform(0, height - 1 - h))
        rows.append((t_us, x, y, w, h, class_id, SPECIAL_TRACK_ID_BASE + i, 1.0))
    return rows


def special_box_kind(track_id: int) -> str | None:
    """The :data:`SPECIAL_BOX_KINDS` kind of a box of this generator from its ``track_id``, or None for a box of a
    regular object (track ids below :data:`SPECIAL_TRACK_ID_BASE`).

    Args:
        track_id: the box's ``track_id`` (int).

    Raises:
        ValueError: if ``track_id`` is in the special range but names no kind.
    """
    i = int(track_id) - SPECIAL_TRACK_ID_BASE
    if i < 0:
        return None
    if i >= len(SPECIAL_BOX_KINDS):
        raise ValueError(f"special_box_kind: track_id {track_id} is not a special box id of this generator")
    return SPECIAL_BOX_KINDS[i]


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------


def _object_rect(obj: _SceneObject, t_s: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer pixel rectangle ``(x0, y0, x1, y1)`` (exclusive end) covering the object, or None if outside."""
    x, y = obj.position(t_s)
    x0 = max(0, int(math.floor(x)) - 1)
    y0 = max(0, int(math.floor(y)) - 1)
    x1 = min(width, int(math.ceil(x + obj.w)) + 1)
    y1 = min(height, int(math.ceil(y + obj.h)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _ellipse_sd(dx: np.ndarray, dy: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance (px) to an axis-aligned ellipse with half-axes ``a, b`` centred at 0."""
    return (np.sqrt((dx / a) ** 2 + (dy / b) ** 2) - 1.0) * min(a, b)


def _box_sd(dx: np.ndarray, dy: np.ndarray, a: float, b: float) -> np.ndarray:
    """Signed distance (px, Chebyshev-style) to an axis-aligned box with half-sizes ``a, b`` centred at 0."""
    return np.maximum(np.abs(dx) - a, np.abs(dy) - b)


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, w: float, h: float) -> np.ndarray:
    """Approximate signed distance (px, negative inside) of pixel centres ``(u, v)`` (object-local px; u ``(1, nx)``,
    v ``(ny, 1)``) to a shape filling the ``w x h`` box."""
    dx = u - w / 2.0
    dy = v - h / 2.0
    a, b = w / 2.0, h / 2.0
    if shape == "rect":
        return _box_sd(dx, dy, a, b)
    if shape == "rounded_rect":
        r = 0.3 * min(a, b)
        qx = np.abs(dx) - (a - r)
        qy = np.abs(dy) - (b - r)
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0) - r
    if shape == "ellipse":
        return _ellipse_sd(dx, dy, a, b)
    if shape == "two_wheels":
        r = min(b, a / 2.0)
        left = np.hypot(u - r, v - (h - r)) - r
        right = np.hypot(u - (w - r), v - (h - r)) - r
        frame = np.maximum(np.abs(dx) - (a - r), np.abs(v - (h - r) * 0.6) - max(1.0, 0.12 * h))
        return np.minimum(np.minimum(left, right), frame)
    if shape == "person":  # head disc on top of an upright body ellipse spanning the width
        r = min(0.5 * w, 0.12 * h)
        head = np.hypot(dx, v - r) - r
        top = 1.6 * r
        bb = max((h - top) / 2.0, 0.5)
        return np.minimum(head, _ellipse_sd(dx, v - (top + bb), a, bb))
    if shape == "wheelchair":  # seated person (box), large wheel at the back, small caster at the front
        r = min(0.4 * w, 0.3 * h)
        wheel = np.hypot(u - (w - r), v - (h - r)) - r
        seat_h = h - 0.6 * r
        person = _box_sd(u - 0.375 * w, v - seat_h / 2.0, 0.375 * w, seat_h / 2.0)
        rc = 0.12 * min(w, h)
        caster = np.hypot(u - rc, v - (h - rc)) - rc
        return np.minimum(np.minimum(wheel, person), caster)
    raise ValueError(f"unknown shape '{shape}'")


def _paint(canvas: np.ndarray, obj: _SceneObject, t_s: float, rect: tuple[int, int, int, int]) -> None:
    """Alpha-composite the object at time ``t_s`` into ``canvas`` (linear intensity) inside ``rect``."""
    x0, y0, x1, y1 = rect
    ox, oy = obj.position(t_s)
    u = (np.arange(x0, x1, dtype=np.float32) + 0.5 - np.float32(ox))[None, :]
    v = (np.arange(y0, y1, dtype=np.float32) + 0.5 - np.float32(oy))[:, None]
    sd = _signed_distance(obj.spec.shape, u, v, obj.w, obj.h)
    alpha = np.clip(0.5 - sd, 0.0, 1.0)
    value: np.ndarray | float = obj.intensity
    if obj.spec.stripe_period_px > 0:
        period = obj.spec.stripe_period_px * obj.h / max(obj.spec.height_px[1], 1.0)
        stripes = 1.0 + 0.2 * np.sin(2.0 * math.pi * u / max(period, 2.0) + obj.stripe_phase)
        value = obj.intensity * np.broadcast_to(stripes, alpha.shape)
    if obj.spec.windows:  # darker band in the upper half
        window = (np.abs(u - obj.w / 2) < 0.3 * obj.w) & (v > 0.15 * obj.h) & (v < 0.45 * obj.h)
        value = np.where(window, value * 0.45, value)
    region = canvas[y0:y1, x0:x1]
    region += alpha * (np.clip(value, 0.01, 1.0) - region)


def _visible_box(obj: _SceneObject, t_s: float, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Frame-clipped box ``(x, y, w, h)`` (px) of the object, or None when < 20 % of its area is visible."""
    if not obj.alive(t_s):
        return None
    x, y = obj.position(t_s)
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + obj.w, float(width)), min(y + obj.h, float(height))
    if x2 - x1 < 1.0 or y2 - y1 < 1.0:
        return None
    if (x2 - x1) * (y2 - y1) < _MIN_VISIBLE_FRACTION * obj.w * obj.h:
        return None
    return x1, y1, x2 - x1, y2 - y1


# --------------------------------------------------------------------------------------------------------------
# Event simulation
# --------------------------------------------------------------------------------------------------------------


def simulate_sequence(
    seed: int | list[int],
    *,
    duration_s: float = 2.0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    label_hz: int = DEFAULT_LABEL_HZ,
    label_jitter_us: int = DEFAULT_LABEL_JITTER_US,
    frame_dt_us: int = 2_000,
    contrast_threshold: float = 0.25,
    threshold_sigma: float = 0.03,
    noise_rate_hz: float = 0.05,
    spawn_rate_hz: float = 2.0,
    special_boxes: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Simulate one SYNTHETIC traffic sequence: events (ESIM-like) and eTraM-style labels.

    Args:
        seed: non-negative int or list of them (a NumPy ``SeedSequence`` entropy); the output is a deterministic
            function of it and the other arguments.
        duration_s: length (s); events have ``0 <= t <= round(duration_s * 1e6)`` µs.
        width, height: sensor size (px, 1 .. 65535); default eTraM's 1280 x 720. Object sizes and speeds scale
            with ``height / 720``.
        label_hz: label rate, 30 or 60 (Hz), as in eTraM label files.
        label_jitter_us: per-label timestamp jitter bound (µs, integer in ``[0, MAX_LABEL_JITTER_US]``); see the
            module docstring for the timing rules (random offset on no 1 ms grid, median spacing kept within
            ``100 / m`` µs of ``1e6 / label_hz``).
        frame_dt_us: time between rendered frames (µs, integer > 0); event times are interpolated within it.
        contrast_threshold: mean contrast threshold ``C`` on log intensity (> 0; ESIM, Rebecq et al., CoRL 2018).
        threshold_sigma: per-pixel standard deviation of ``C`` (>= 0; one map per polarity), clipped at >= 0.05.
        noise_rate_hz: background-activity noise events per pixel per second (>= 0).
        spawn_rate_hz: Poisson rate of extra objects entering the frame (1/s, >= 0).
        special_boxes: add one box of every :data:`SPECIAL_BOX_KINDS` kind (track ids from
            :data:`SPECIAL_TRACK_ID_BASE`); False gives only the boxes of the simulated objects.

    Returns:
        ``(events, boxes)``: ``events`` dict with ``x`` (uint16, < width), ``y`` (uint16, < height), ``p``
        (uint8, 1 = ON), ``t`` (int64, µs, non-decreasing) arrays of equal length; ``boxes`` ``(M,)``
        :data:`BBOX_DTYPE` array sorted by ``t`` then ``track_id`` (px; ``class_id`` in
        :data:`~evdet.data.labels.ETRAM_CLASSES`; ``class_confidence`` 1). Boxes of objects are cropped to
        ``[0, width] x [0, height]`` and present while >= 20 % of the object's area is inside the frame; special
        boxes are as their kind says (not cropped).

    Raises:
        ValueError: if an argument is out of range or of the wrong type (the message names it).
    """
    func = "simulate_sequence"
    seed = _check_seed(func, seed)
    duration_s = _check_float(func, "duration_s", duration_s, positive=True)
    width = _check_int(func, "width", width, 1, 65535)
    height = _check_int(func, "height", height, 1, 65535)
    label_hz = _check_label_hz(func, label_hz)
    label_jitter_us = _check_int(func, "label_jitter_us", label_jitter_us, 0, MAX_LABEL_JITTER_US)
    frame_dt_us = _check_int(func, "frame_dt_us", frame_dt_us, 1)
    contrast_threshold = _check_float(func, "contrast_threshold", contrast_threshold, positive=True)
    threshold_sigma = _check_float(func, "threshold_sigma", threshold_sigma, positive=False)
    noise_rate_hz = _check_float(func, "noise_rate_hz", noise_rate_hz, positive=False)
    spawn_rate_hz = _check_float(func, "spawn_rate_hz", spawn_rate_hz, positive=False)

    scene_seq, label_seq, special_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(scene_seq)
    end_us = int(round(duration_s * 1e6))
    label_times = _label_times(np.random.default_rng(label_seq), end_us, label_hz, label_jitter_us)
    road = (float(rng.uniform(0.35, 0.45)), float(rng.uniform(0.85, 0.95)))
    background = _make_background(rng, width, height, road)
    objects = _make_objects(rng, width, height, road, duration_s, spawn_rate_hz, label_times)
    c_pos = np.maximum(rng.normal(contrast_threshold, threshold_sigma, width * height), 0.05).astype(np.float32)
    c_neg = np.maximum(rng.normal(contrast_threshold, threshold_sigma, width * height), 0.05).astype(np.float32)

    events = _simulate_events(rng, objects, background, c_pos, c_neg, end_us, frame_dt_us, noise_rate_hz)

    rows = []
    by_track = sorted(objects, key=lambda o: o.track_id)
    for t_label_us in label_times.tolist():
        for obj in by_track:
            box = _visible_box(obj, t_label_us * 1e-6, width, height)
            if box is not None:
                rows.append((t_label_us, *box, obj.spec.class_id, obj.track_id, 1.0))
    if special_boxes:
        rows += _special_boxes(np.random.default_rng(special_seq), width, height, label_times, label_hz)
    boxes = np.array(rows, dtype=BBOX_DTYPE) if rows else np.zeros(0, BBOX_DTYPE)
    boxes = boxes[np.lexsort((boxes["track_id"], boxes["t"]))]
    return events, boxes


def _simulate_events(
    rng: np.random.Generator,
    objects: list[_SceneObject],
    background: np.ndarray,
    c_pos: np.ndarray,
    c_neg: np.ndarray,
    end_us: int,
    frame_dt_us: int,
    noise_rate_hz: float,
) -> dict[str, np.ndarray]:
    """ESIM-style events of the scene over ``[0, end_us]`` (see the module docstring); sorted by ``t``."""
    height, width = background.shape
    n_steps = int(math.ceil(end_us / frame_dt_us))
    canvas = background.copy()
    flat_canvas = canvas.ravel()
    prev_rects: list[tuple[int, int, int, int]] = []
    for obj in objects:
        rect = _object_rect(obj, 0.0, width, height) if obj.alive(0.0) else None
        if rect is not None:
            _paint(canvas, obj, 0.0, rect)
            prev_rects.append(rect)
    ref = np.log(flat_canvas + _LOG_EPS)  # reference log intensity, per pixel
    prev_value = flat_canvas.copy()  # linear intensity at the previous frame
    dirty = np.zeros((height, width), dtype=bool)
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    n_pixels = width * height

    for step in range(1, n_steps + 1):
        t_prev_us = min((step - 1) * frame_dt_us, end_us)
        t_cur_us = min(step * frame_dt_us, end_us)
        t_s = t_cur_us * 1e-6
        cur_rects: list[tuple[_SceneObject, tuple[int, int, int, int]]] = []
        for obj in objects:
            if obj.alive(t_s):
                rect = _object_rect(obj, t_s, width, height)
                if rect is not None:
                    cur_rects.append((obj, rect))
        for x0, y0, x1, y1 in prev_rects:
            canvas[y0:y1, x0:x1] = background[y0:y1, x0:x1]
            dirty[y0:y1, x0:x1] = True
        for obj, rect in cur_rects:
            _paint(canvas, obj, t_s, rect)
            x0, y0, x1, y1 = rect
            dirty[y0:y1, x0:x1] = True
        idx = np.flatnonzero(dirty)
        for x0, y0, x1, y1 in prev_rects:
            dirty[y0:y1, x0:x1] = False
        for _, (x0, y0, x1, y1) in cur_rects:
            dirty[y0:y1, x0:x1] = False
        prev_rects = [rect for _, rect in cur_rects]

        value_now = flat_canvas[idx]
        changed = value_now != prev_value[idx]
        idx, value_now = idx[changed], value_now[changed]
        value_before = prev_value[idx]
        prev_value[idx] = value_now
        log_now = np.log(value_now + _LOG_EPS)
        ref_here = ref[idx]
        diff = log_now - ref_here
        positive = diff >= 0
        threshold = np.where(positive, c_pos[idx], c_neg[idx])
        n_cross = np.floor(np.abs(diff) / threshold).astype(np.int64)
        hit = n_cross > 0
        xs_parts, ys_parts, ts_parts, ps_parts = [], [], [], []
        if hit.any():
            h_idx = idx[hit]
            h_n = n_cross[hit]
            h_sign = np.where(positive[hit], 1.0, -1.0).astype(np.float32)
            h_thr = threshold[hit]
            h_ref = ref_here[hit]
            ref[h_idx] = h_ref + h_sign * h_n * h_thr
            owner = np.repeat(np.arange(len(h_idx)), h_n)
            k = np.arange(len(owner)) - np.repeat(np.cumsum(h_n) - h_n, h_n) + 1
            level = h_ref[owner] + h_sign[owner] * k * h_thr[owner]
            start = np.log(value_before[hit] + _LOG_EPS)[owner]
            span = log_now[hit][owner] - start
            safe = np.where(span == 0, 1.0, span)
            frac = np.where(span == 0, 1.0, (level - start) / safe)
            frac = np.clip(frac, 0.0, 1.0)
            ts_parts.append(t_prev_us + np.rint(frac * (t_cur_us - t_prev_us)).astype(np.int64))
            flat = h_idx[owner]
            xs_parts.append((flat % width).astype(np.uint16))
            ys_parts.append((flat // width).astype(np.uint16))
            ps_parts.append((h_sign[owner] > 0).astype(np.uint8))
        n_noise = int(rng.poisson(noise_rate_hz * n_pixels * (t_cur_us - t_prev_us) * 1e-6)) if noise_rate_hz > 0 else 0
        if n_noise:
            flat = rng.integers(0, n_pixels, n_noise)
            xs_parts.append((flat % width).astype(np.uint16))
            ys_parts.append((flat // width).astype(np.uint16))
            ts_parts.append(rng.integers(t_prev_us, max(t_cur_us, t_prev_us + 1), n_noise).astype(np.int64))
            ps_parts.append(rng.integers(0, 2, n_noise).astype(np.uint8))
        if ts_parts:
            t_step = np.concatenate(ts_parts)
            order = np.argsort(t_step, kind="stable")
            pieces.append((np.concatenate(xs_parts)[order], np.concatenate(ys_parts)[order], t_step[order],
                           np.concatenate(ps_parts)[order]))

    if not pieces:
        return {"x": np.zeros(0, np.uint16), "y": np.zeros(0, np.uint16), "t": np.zeros(0, np.int64),
                "p": np.zeros(0, np.uint8)}
    return {
        "x": np.concatenate([p[0] for p in pieces]),
        "y": np.concatenate([p[1] for p in pieces]),
        "t": np.concatenate([p[2] for p in pieces]),
        "p": np.concatenate([p[3] for p in pieces]),
    }


def write_td_h5(path: str | Path, events: dict[str, np.ndarray], width: int, height: int) -> Path:
    """Write events in the eTraM ``_td.h5`` layout.

    Datasets ``events/x`` (uint16), ``events/y`` (uint16), ``events/p`` (uint8), ``events/t`` (int64, µs),
    each Blosc(zstd, byte shuffle)-compressed via ``hdf5plugin`` in chunks of up to 2**18 events, plus scalar
    ``events/width`` and ``events/height`` (px).

    Args:
        path: destination ``.h5`` file (overwritten).
        events: dict with ``x, y, p, t`` arrays of equal length (converted to the dtypes above).
        width, height: sensor size (px).

    Returns:
        ``path``.

    Raises:
        ValueError: if a key is missing or the arrays differ in length (message names the key).
    """
    path = Path(path)
    n = None
    for key in ("x", "y", "p", "t"):
        if key not in events:
            raise ValueError(f"write_td_h5 {path}: events dict lacks key '{key}'")
        if n is None:
            n = len(events[key])
        elif len(events[key]) != n:
            raise ValueError(f"write_td_h5 {path}: events['{key}'] has length {len(events[key])}, expected {n}")
    chunk = (min(max(int(n or 0), 1), 1 << 18),)
    compression = hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    dtypes = {"x": np.uint16, "y": np.uint16, "p": np.uint8, "t": np.int64}
    with h5py.File(path, "w") as f:
        group = f.create_group("events")
        for key, dtype in dtypes.items():
            group.create_dataset(key, data=np.asarray(events[key], dtype=dtype), chunks=chunk, **compression)
        group.create_dataset("width", data=np.int64(width))
        group.create_dataset("height", data=np.int64(height))
    return path


_README = """# SYNTHETIC event-camera traffic dataset (not real data)

Everything in this folder was GENERATED by `evdet.data.synthetic.generate_dataset` (evdet-data synth). It is
**synthetic**: no camera recorded it. It exists to exercise the evdet pipeline end to end quickly, with the file
layout, sensor size, label timing, class ids and label faults of eTraM; detection numbers measured on it say
nothing about real event-camera data.

- seed: {seed}
- sensor: {width} x {height} px, {duration_s:g} s per sequence
- labels: {label_hz} Hz (spacing 1e6/{label_hz} us); the first label at a random offset on no 1 ms grid; per-label
  jitter: uniform integer in [-{label_jitter_us}, +{label_jitter_us}] us, redrawn until the median spacing is within
  {tolerance} us of 1e6/{label_hz} us. The RVT/eTraM ~10 Hz object-frame selection therefore never aborts on these
  files and keeps one label in {per_step} (every ~100 ms) from the first one >= 100 ms.
- splits: {splits}
- classes (id: name, eTraM): {classes}
- total events: {events}, total boxes: {boxes} (of which special: {special_total})

How it is made: a static camera looks at a static textured background with a road band and dashed lane
markings. Objects of the 8 eTraM classes move over it with per-class shapes, sizes and speeds (given at
1280 x 720 and scaled with the sensor height; at full resolution most boxes pass the gen4 evaluation filter,
sides >= 20 px and diagonal >= 60 px, the smallest pedestrians, wheelchairs and two-wheelers do not):

| id | class | shape | width (px) | height (px) | speed (px/s) | motion |
|---|---|---|---|---|---|---|
{class_table}

One object of every class is in view at t = 0; more enter from the frame edges as a Poisson process; where a
label time would have no box that survives the reference's box filters, a car is sent through the frame.
Intensity frames are rendered every {frame_dt_us} us with anti-aliased edges and converted to events with the
contrast-threshold model of ESIM (Rebecq et al., CoRL 2018): per-pixel reference log intensity, threshold
C ~ N({contrast_threshold}, 0.03) per pixel and polarity, one event per crossed threshold, timestamps interpolated
linearly between frames; background-activity noise at {noise_rate_hz} Hz per pixel is added. Object boxes are the
exact object boxes at the label times, clipped to [0, width] x [0, height] (dropped while < 20 % of the object is
visible), one track id per object (track ids < {special_base}).

Special boxes: faults that real eTraM label files have, one of each kind per sequence, on object frames, NOT
clipped, with track id {special_base} + kind index ({special_kinds}):
- side_lt_5px: one side in [1, 4.5] px, inside the frame;
- zero_width: w = 0;
- partly_out_x / partly_out_y: crossing the left or right / top or bottom edge, >= 5 px of it inside;
- fully_out_of_frame: entirely beyond an edge;
- over_wide: w > 9 * width // 10 px (1152 at 1280), inside the frame.
Every one of them is listed in the table "Special boxes" below.

Layout (as eTraM): `<split>/<name>_td.h5` with `events/x, events/y` (uint16 px), `events/p` (uint8, 1 = ON),
`events/t` (int64 us, sorted), `events/width`, `events/height`, Blosc-compressed (hdf5plugin); and
`<split>/<name>_bbox.npy`: Prophesee box array (t int64 us; x, y, w, h float32 px, top-left; class_id uint32;
track_id uint32; class_confidence float32).

Sequences:

| split | name | events | boxes | first label (us) | boxes per class |
|---|---|---|---|---|---|
{table}

Special boxes:

| split | name | kind | t (us) | track_id | class | x | y | w | h |
|---|---|---|---|---|---|---|---|---|---|
{special_table}
"""


def _class_table() -> str:
    """Markdown table rows for the README: id, name, shape, width, height (px), speed (px/s), motion."""
    return "\n".join(
        f"| {s.class_id} | {ETRAM_CLASSES[s.class_id]} | {s.shape} | {s.width_px[0]:g}-{s.width_px[1]:g} | "
        f"{s.height_px[0]:g}-{s.height_px[1]:g} | {s.speed_px_s[0]:g}-{s.speed_px_s[1]:g} | {s.motion} |"
        for s in CLASS_SPECS
    )


def generate_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    duration_s: float = 2.0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    label_hz: int = DEFAULT_LABEL_HZ,
    label_jitter_us: int = DEFAULT_LABEL_JITTER_US,
    frame_dt_us: int = 2_000,
    contrast_threshold: float = 0.25,
    noise_rate_hz: float = 0.05,
    spawn_rate_hz: float = 2.0,
    special_boxes: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write a small SYNTHETIC dataset in the eTraM layout (see the module docstring).

    Writes ``out_dir/<split>/<name>_td.h5`` and ``<name>_bbox.npy`` for ``name = synth_<split>_<i:03d>`` and
    ``out_dir/README.md`` (states that the data are synthetic, how they are made, the seed, the classes, the label
    timing, per-sequence counts and every special box). Sequence ``i`` of split ``s`` is simulated with seed
    ``[seed, index of s in splits, i]``, so the output is a deterministic function of the arguments.

    Args:
        out_dir: destination folder: missing or empty (created), or any folder with ``overwrite``.
        seed: base random seed (non-negative int).
        splits: split name -> number of sequences; default ``{"train": 2, "val": 1, "test": 1}``.
        duration_s, width, height, label_hz, label_jitter_us, frame_dt_us, contrast_threshold, noise_rate_hz,
            spawn_rate_hz, special_boxes: passed to :func:`simulate_sequence` (defaults: 1280 x 720 px, 30 Hz
            labels, 900 µs jitter).
        overwrite: write into a non-empty ``out_dir``, replacing same-named sequence files and ``README.md`` (other
            files stay). ``evdet-data synth --overwrite`` instead replaces exactly the files of its earlier run
            (:mod:`evdet.data.output_folder`).

    Returns:
        Summary dict (JSON-serialisable): ``out_dir``, ``synthetic`` (True), ``seed``, ``width``, ``height``,
        ``duration_s``, ``label_hz``, ``label_jitter_us``, ``class_names`` (:data:`ETRAM_CLASSES`), ``sequences``
        (list of dicts with ``split``, ``name``, ``events``, ``boxes``, ``first_label_us``, ``boxes_per_class``,
        ``special_boxes`` (list of dicts ``kind, t, track_id, class_id, x, y, w, h``)), ``total_events``,
        ``total_boxes``.

    Raises:
        ValueError: if ``seed`` is not a non-negative integer, ``splits`` is empty or has a negative or non-integer
            count or an invalid split name, or a simulation argument is invalid (the message names it).
        OutputFolderError: (a ``ValueError``) ``out_dir`` is a file, or not empty without ``overwrite`` (nothing is
            written).
    """
    func = "generate_dataset"
    seed = _check_seed(func, seed)
    if isinstance(seed, list):
        raise ValueError(f"generate_dataset: seed must be a non-negative integer, got {seed!r}")
    splits = {"train": 2, "val": 1, "test": 1} if splits is None else dict(splits)
    if not splits:
        raise ValueError("generate_dataset: splits must name at least one split")
    for name, count in splits.items():
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"generate_dataset: invalid split name '{name}'")
        if isinstance(count, bool) or not isinstance(count, numbers.Integral):
            raise ValueError(f"generate_dataset: split '{name}' has non-integer count {count!r}")
        if count < 0:
            raise ValueError(f"generate_dataset: split '{name}' has negative count {count}")
    sim_kwargs = dict(
        duration_s=duration_s, width=width, height=height, label_hz=label_hz, label_jitter_us=label_jitter_us,
        frame_dt_us=frame_dt_us, contrast_threshold=contrast_threshold, noise_rate_hz=noise_rate_hz,
        spawn_rate_hz=spawn_rate_hz, special_boxes=special_boxes,
    )
    # validate every argument before writing anything
    _check_float(func, "duration_s", duration_s, positive=True)
    width = _check_int(func, "width", width, 1, 65535)
    height = _check_int(func, "height", height, 1, 65535)
    label_hz = _check_label_hz(func, label_hz)
    label_jitter_us = _check_int(func, "label_jitter_us", label_jitter_us, 0, MAX_LABEL_JITTER_US)
    _check_int(func, "frame_dt_us", frame_dt_us, 1)
    _check_float(func, "contrast_threshold", contrast_threshold, positive=True)
    _check_float(func, "noise_rate_hz", noise_rate_hz, positive=False)
    _check_float(func, "spawn_rate_hz", spawn_rate_hz, positive=False)

    out_dir = Path(out_dir)
    if not overwrite:
        from evdet.data.output_folder import check_output_folder

        check_output_folder(out_dir, "evdet-data synth")
    out_dir.mkdir(parents=True, exist_ok=True)
    sequences = []
    for split_index, (split, count) in enumerate(splits.items()):
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        for i in range(int(count)):
            name = f"synth_{split}_{i:03d}"
            events, boxes = simulate_sequence([seed, split_index, i], **sim_kwargs)
            write_td_h5(split_dir / f"{name}_td.h5", events, width, height)
            save_boxes(split_dir / f"{name}_bbox.npy", boxes)
            per_class = np.bincount(boxes["class_id"].astype(np.int64), minlength=len(ETRAM_CLASSES))
            special = [
                {"kind": special_box_kind(int(b["track_id"])), "t": int(b["t"]), "track_id": int(b["track_id"]),
                 "class_id": int(b["class_id"]), "x": round(float(b["x"]), 2), "y": round(float(b["y"]), 2),
                 "w": round(float(b["w"]), 2), "h": round(float(b["h"]), 2)}
                for b in boxes[boxes["track_id"] >= SPECIAL_TRACK_ID_BASE]
            ]
            sequences.append({
                "split": split,
                "name": name,
                "events": len(events["t"]),
                "boxes": len(boxes),
                "first_label_us": int(boxes["t"].min()) if len(boxes) else None,
                "boxes_per_class": {ETRAM_CLASSES[c]: int(n) for c, n in enumerate(per_class)},
                "special_boxes": special,
            })
    summary = {
        "out_dir": str(out_dir),
        "synthetic": True,
        "seed": seed,
        "width": width,
        "height": height,
        "duration_s": float(duration_s),
        "label_hz": label_hz,
        "label_jitter_us": label_jitter_us,
        "class_names": list(ETRAM_CLASSES),
        "sequences": sequences,
        "total_events": int(sum(s["events"] for s in sequences)),
        "total_boxes": int(sum(s["boxes"] for s in sequences)),
    }
    table = "\n".join(
        f"| {s['split']} | {s['name']} | {s['events']} | {s['boxes']} | {s['first_label_us']} | "
        + ", ".join(f"{k}: {v}" for k, v in s["boxes_per_class"].items()) + " |"
        for s in sequences
    )
    special_table = "\n".join(
        f"| {s['split']} | {s['name']} | {b['kind']} | {b['t']} | {b['track_id']} | {ETRAM_CLASSES[b['class_id']]} | "
        f"{b['x']:g} | {b['y']:g} | {b['w']:g} | {b['h']:g} |"
        for s in sequences for b in s["special_boxes"]
    ) or "| (none) | | | | | | | | | |"
    per_step = int(round(_FRAME_STEP_US * label_hz / 1e6))
    (out_dir / "README.md").write_text(_README.format(
        seed=seed, width=width, height=height, duration_s=float(duration_s), label_hz=label_hz,
        label_jitter_us=label_jitter_us, tolerance=f"{_STEP_TOLERANCE_US / per_step:.3g}", per_step=per_step,
        splits=", ".join(f"{k}: {v}" for k, v in splits.items()),
        classes=", ".join(f"{i}: {n}" for i, n in enumerate(ETRAM_CLASSES)),
        events=summary["total_events"], boxes=summary["total_boxes"],
        special_total=sum(len(s["special_boxes"]) for s in sequences), class_table=_class_table(),
        frame_dt_us=frame_dt_us, contrast_threshold=contrast_threshold, noise_rate_hz=noise_rate_hz,
        special_base=SPECIAL_TRACK_ID_BASE, special_kinds=", ".join(f"{i}: {k}" for i, k in enumerate(SPECIAL_BOX_KINDS)), table=table,
        special_table=special_table,
    ))
    return summary
