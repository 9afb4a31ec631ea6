"""A small SYNTHETIC event-camera traffic dataset in the eTraM file layout.

Scenes: a static camera over a textured background with a road band; objects of the 8
:data:`~evdet.data.labels.EXPERIMENT_CLASSES` move across it, each class with its own shape, size and speed
(large cars/trucks/buses on horizontal lanes, small motorcycles/bicycles, slow pedestrians walking in any
direction, flickering stationary "Static" objects, diamond-shaped "Other" objects moving diagonally).

Events come from the contrast-threshold model of event simulators such as ESIM (Rebecq, Gehrig & Scaramuzza,
"ESIM: an Open Event Camera Simulator", CoRL 2018): intensity frames are rendered every ``frame_dt_us``
(anti-aliased, so sub-pixel motion changes intensity smoothly); every pixel keeps a reference log intensity
``ref``; when ``|log I - ref| >= C`` (per-pixel threshold ``C`` ~ N(contrast_threshold, threshold_sigma), one map
per polarity) the pixel emits ``floor(|log I - ref| / C)`` events of polarity ``sign(log I - ref)``, with
timestamps linearly interpolated between the previous and the current frame at the times the log intensity
crosses ``ref + k * C``; then ``ref`` moves by the crossed thresholds. Background-activity noise events
(Poisson, ``noise_rate_hz`` per pixel) are added. Only the pixels an object covered in the previous or the
current frame are simulated (the background is static), which keeps generation fast.

Files (per sequence ``<name>``, exactly as eTraM): ``<split>/<name>_td.h5`` with datasets ``events/x``
(uint16), ``events/y`` (uint16), ``events/p`` (uint8), ``events/t`` (int64, µs), ``events/width``,
``events/height`` (scalars), Blosc-compressed via ``hdf5plugin``; ``<split>/<name>_bbox.npy`` with
:data:`~evdet.data.labels.BBOX_DTYPE` boxes (sensor px) at ``label_hz``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from evdet.data.labels import BBOX_DTYPE, EXPERIMENT_CLASSES, save_boxes

__all__ = ["CLASS_SPECS", "ObjectClassSpec", "generate_dataset", "simulate_sequence", "write_td_h5"]

# Sizes and speeds are given for a 360 px high frame and scale with the frame height.
_REFERENCE_HEIGHT = 360.0
_LOG_EPS = 1e-3  # log(I + eps), I in [0, 1] (ESIM's log-intensity offset)
_MIN_VISIBLE_FRACTION = 0.2  # a box is labelled while >= 20 % of the object's area is inside the frame


@dataclass(frozen=True)
class ObjectClassSpec:
    """Appearance and motion of one synthetic object class.

    Attributes:
        class_id: id in :data:`EXPERIMENT_CLASSES`.
        shape: ``rounded_rect``, ``rect``, ``ellipse``, ``two_wheels`` or ``diamond``.
        width_px, height_px: (min, max) object size (px at a 360 px high frame).
        speed_px_s: (min, max) speed (px/s at a 360 px high frame); 0 means stationary.
        motion: ``lane`` (horizontal, left or right, on the road band), ``any`` (any direction), ``diagonal``
            or ``static`` (stationary, intensity flickering at 2-5 Hz).
        stripe_period_px: period of the moving texture stripes inside the object (px), 0 for none.
        spawn_weight: relative frequency among the extra objects entering during a sequence.
    """

    class_id: int
    shape: str
    width_px: tuple[float, float]
    height_px: tuple[float, float]
    speed_px_s: tuple[float, float]
    motion: str
    stripe_period_px: float
    spawn_weight: float


#: One spec per experiment class, in class-id order.
CLASS_SPECS: tuple[ObjectClassSpec, ...] = (
    ObjectClassSpec(0, "rounded_rect", (50, 75), (24, 32), (70, 140), "lane", 0.0, 4.0),  # Car
    ObjectClassSpec(1, "rect", (95, 140), (38, 50), (45, 90), "lane", 14.0, 1.0),  # Truck
    ObjectClassSpec(2, "ellipse", (18, 24), (10, 14), (90, 160), "lane", 0.0, 1.5),  # Motorcycle
    ObjectClassSpec(3, "two_wheels", (18, 24), (12, 16), (35, 70), "lane", 0.0, 1.5),  # Bicycle
    ObjectClassSpec(4, "ellipse", (6, 9), (16, 24), (12, 30), "any", 0.0, 2.0),  # Pedestrian
    ObjectClassSpec(5, "rect", (120, 170), (45, 60), (35, 70), "lane", 22.0, 0.7),  # Bus
    ObjectClassSpec(6, "rect", (14, 24), (14, 24), (0, 0), "static", 0.0, 0.0),  # Static
    ObjectClassSpec(7, "diamond", (22, 34), (22, 34), (30, 80), "diagonal", 0.0, 1.0),  # Other
)


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
    flicker_hz: float
    flicker_phase: float
    stripe_phase: float

    def position(self, t_s: float) -> tuple[float, float]:
        dt = t_s - self.t0_s
        return self.x0 + self.vx * dt, self.y0 + self.vy * dt

    def alive(self, t_s: float) -> bool:
        return t_s >= self.t0_s


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
    for cell, amp in ((48, 0.5), (12, 0.3), (3, 0.2)):
        cell_px = max(1, int(round(cell * scale)))
        coarse = rng.standard_normal((height // cell_px + 2, width // cell_px + 2)).astype(np.float32)
        fine = np.repeat(np.repeat(coarse, cell_px, axis=0), cell_px, axis=1)[:height, :width]
        img += amp * _box_blur(fine, cell_px // 2)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    img = 0.3 + 0.3 * img
    y0, y1 = int(road[0] * height), int(road[1] * height)
    img[y0:y1] = 0.22 + 0.5 * (img[y0:y1] - 0.3)  # darker asphalt band keeping some texture
    # dashed lane markings
    mark_h = max(1, int(round(2 * scale)))
    dash, gap = max(2, int(round(20 * scale))), max(2, int(round(14 * scale)))
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
) -> _SceneObject:
    """Create an object of ``spec`` either inside the frame at ``t0_s`` or just outside an edge, moving in."""
    scale = height / _REFERENCE_HEIGHT
    w = float(rng.uniform(*spec.width_px)) * scale
    h = float(rng.uniform(*spec.height_px)) * scale
    speed = float(rng.uniform(*spec.speed_px_s)) * scale
    if spec.motion == "lane":
        direction = 1.0 if rng.random() < 0.5 else -1.0
        vx, vy = direction * speed, 0.0
        lane_lo, lane_hi = road[0] * height, road[1] * height - h
        y = float(rng.uniform(lane_lo, max(lane_lo, lane_hi)))
        if inside:
            x = float(rng.uniform(0.1 * width, max(0.1 * width, 0.9 * width - w)))
        else:
            x = -w if direction > 0 else float(width)
    elif spec.motion in ("any", "diagonal"):
        if spec.motion == "any":
            angle = float(rng.uniform(0.0, 2.0 * math.pi))
        else:
            angle = float(rng.choice([0.25, 0.75, 1.25, 1.75]) * math.pi + rng.uniform(-0.2, 0.2))
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        if inside:
            x = float(rng.uniform(0.1 * width, max(0.1 * width, 0.9 * width - w)))
            y = float(rng.uniform(0.1 * height, max(0.1 * height, 0.9 * height - h)))
        else:  # enter through the vertical edge the object moves away from
            x = -w if vx > 0 else float(width)
            y = float(rng.uniform(0.1 * height, max(0.1 * height, 0.9 * height - h)))
    else:  # static, above the road
        vx = vy = 0.0
        x = float(rng.uniform(0.05 * width, 0.95 * width - w))
        y = float(rng.uniform(0.03 * height, max(0.03 * height, road[0] * height - h)))
    # clearly brighter or darker than the background (log contrast >= ~0.5)
    if rng.random() < 0.5:
        intensity = float(rng.uniform(0.8, 1.0))
    else:
        intensity = float(rng.uniform(0.04, 0.12))
    return _SceneObject(
        spec=spec,
        track_id=track_id,
        x0=x,
        y0=y,
        vx=vx,
        vy=vy,
        t0_s=t0_s,
        w=w,
        h=h,
        intensity=intensity,
        flicker_hz=float(rng.uniform(2.0, 5.0)) if spec.motion == "static" else 0.0,
        flicker_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        stripe_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
    )


def _make_objects(
    rng: np.random.Generator,
    width: int,
    height: int,
    road: tuple[float, float],
    duration_s: float,
    spawn_rate_hz: float,
) -> list[_SceneObject]:
    """All objects of a sequence: one of every class inside the frame at t=0, then Poisson arrivals."""
    objects: list[_SceneObject] = []
    track_id = 1
    for spec in CLASS_SPECS:
        objects.append(_spawn_object(rng, spec, track_id, width, height, road, 0.0, True))
        track_id += 1
    movers = [s for s in CLASS_SPECS if s.spawn_weight > 0]
    weights = np.array([s.spawn_weight for s in movers])
    weights /= weights.sum()
    t = float(rng.exponential(1.0 / spawn_rate_hz)) if spawn_rate_hz > 0 else duration_s
    while t < duration_s:
        spec = movers[int(rng.choice(len(movers), p=weights))]
        objects.append(_spawn_object(rng, spec, track_id, width, height, road, t, False))
        track_id += 1
        t += float(rng.exponential(1.0 / spawn_rate_hz))
    order = rng.permutation(len(objects))  # painting order (depth)
    return [objects[i] for i in order]


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


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, w: float, h: float) -> np.ndarray:
    """Approximate signed distance (px, negative inside) of pixel centres ``(u, v)`` (object-local px)."""
    dx = u - w / 2.0
    dy = v - h / 2.0
    a, b = w / 2.0, h / 2.0
    if shape == "rect":
        return np.maximum(np.abs(dx) - a, np.abs(dy) - b)
    if shape == "rounded_rect":
        r = 0.3 * min(a, b)
        qx = np.abs(dx) - (a - r)
        qy = np.abs(dy) - (b - r)
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0) - r
    if shape == "ellipse":
        return (np.sqrt((dx / a) ** 2 + (dy / b) ** 2) - 1.0) * min(a, b)
    if shape == "diamond":
        return (np.abs(dx) / a + np.abs(dy) / b - 1.0) * (a * b / math.hypot(a, b))
    if shape == "two_wheels":
        r = min(b, a / 2.0)
        left = np.hypot(u - r, v - (h - r)) - r
        right = np.hypot(u - (w - r), v - (h - r)) - r
        frame = np.maximum(np.abs(dx) - (a - r), np.abs(v - (h - r) * 0.6) - max(1.0, 0.12 * h))
        return np.minimum(np.minimum(left, right), frame)
    raise ValueError(f"unknown shape '{shape}'")


def _paint(canvas: np.ndarray, obj: _SceneObject, t_s: float, rect: tuple[int, int, int, int]) -> None:
    """Alpha-composite the object at time ``t_s`` into ``canvas`` (linear intensity) inside ``rect``."""
    x0, y0, x1, y1 = rect
    ox, oy = obj.position(t_s)
    u = (np.arange(x0, x1, dtype=np.float32) + 0.5 - ox)[None, :]
    v = (np.arange(y0, y1, dtype=np.float32) + 0.5 - oy)[:, None]
    sd = _signed_distance(obj.spec.shape, u, v, obj.w, obj.h)
    alpha = np.clip(0.5 - sd, 0.0, 1.0)
    value = np.full(alpha.shape, obj.intensity, dtype=np.float32)
    if obj.spec.stripe_period_px > 0:
        period = obj.spec.stripe_period_px * obj.h / max(obj.spec.height_px[1], 1.0)
        value = value * (1.0 + 0.35 * np.sin(2.0 * math.pi * u / max(period, 2.0) + obj.stripe_phase))
    if obj.spec.class_id == 0:  # car windows: darker band in the upper half
        window = (np.abs(u - obj.w / 2) < 0.3 * obj.w) & (v > 0.15 * obj.h) & (v < 0.45 * obj.h)
        value = np.where(window, value * 0.45, value)
    if obj.flicker_hz > 0:
        value = value * (0.6 + 0.4 * math.sin(2.0 * math.pi * obj.flicker_hz * t_s + obj.flicker_phase))
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
    width: int = 640,
    height: int = 360,
    label_hz: float = 20.0,
    frame_dt_us: int = 2_000,
    contrast_threshold: float = 0.25,
    threshold_sigma: float = 0.03,
    noise_rate_hz: float = 0.05,
    spawn_rate_hz: float = 2.0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Simulate one synthetic traffic sequence (see the module docstring for the model).

    Args:
        seed: NumPy ``default_rng`` seed (int or list of ints); the output is a deterministic function of it
            and the other arguments.
        duration_s: length (s); events have ``0 <= t <= duration_s * 1e6`` µs.
        width, height: sensor size (px).
        label_hz: label rate; boxes at ``t = k / label_hz`` s, ``k = 1 .. floor(duration_s * label_hz)``.
        frame_dt_us: time between rendered frames (µs); event times are interpolated within it.
        contrast_threshold: mean contrast threshold ``C`` on log intensity (ESIM, Rebecq et al., CoRL 2018).
        threshold_sigma: per-pixel standard deviation of ``C`` (one map per polarity), clipped at >= 0.05.
        noise_rate_hz: background-activity noise events per pixel per second.
        spawn_rate_hz: Poisson rate of extra objects entering the frame.

    Returns:
        ``(events, boxes)``: ``events`` dict with ``x`` (uint16), ``y`` (uint16), ``p`` (uint8, 1 = ON),
        ``t`` (int64, µs, non-decreasing) arrays; ``boxes`` :data:`BBOX_DTYPE` array sorted by ``t`` then
        ``track_id`` (sensor px, cropped to the frame, ``class_confidence`` 1); an object is labelled while at
        least 20 % of its area is inside the frame.

    Raises:
        ValueError: if a size, duration, rate or ``frame_dt_us`` is not positive (message names it).
    """
    for name, value in (("duration_s", duration_s), ("width", width), ("height", height), ("label_hz", label_hz),
                        ("frame_dt_us", frame_dt_us), ("contrast_threshold", contrast_threshold)):
        if not value > 0:
            raise ValueError(f"simulate_sequence: {name} must be > 0, got {value}")
    if width > 65535 or height > 65535:
        raise ValueError(f"simulate_sequence: width/height must fit uint16, got {width}x{height}")
    rng = np.random.default_rng(seed)
    road = (float(rng.uniform(0.35, 0.45)), float(rng.uniform(0.85, 0.95)))
    background = _make_background(rng, width, height, road)
    objects = _make_objects(rng, width, height, road, duration_s, spawn_rate_hz)
    c_pos = np.maximum(rng.normal(contrast_threshold, threshold_sigma, width * height), 0.05).astype(np.float32)
    c_neg = np.maximum(rng.normal(contrast_threshold, threshold_sigma, width * height), 0.05).astype(np.float32)

    n_steps = int(math.ceil(duration_s * 1e6 / frame_dt_us))
    end_us = int(round(duration_s * 1e6))
    canvas = background.copy()
    for obj in objects:
        rect = _object_rect(obj, 0.0, width, height) if obj.alive(0.0) else None
        if rect is not None:
            _paint(canvas, obj, 0.0, rect)
    ref = np.log(canvas.ravel() + _LOG_EPS)  # reference log intensity, per pixel
    prev_log = ref.copy()  # log intensity at the previous frame
    dirty = np.zeros((height, width), dtype=bool)
    prev_rects: list[tuple[int, int, int, int]] = []
    for obj in objects:
        if obj.alive(0.0):
            rect = _object_rect(obj, 0.0, width, height)
            if rect is not None:
                prev_rects.append(rect)
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
        dirty.fill(False)
        for x0, y0, x1, y1 in prev_rects:
            canvas[y0:y1, x0:x1] = background[y0:y1, x0:x1]
            dirty[y0:y1, x0:x1] = True
        for obj, rect in cur_rects:
            _paint(canvas, obj, t_s, rect)
            x0, y0, x1, y1 = rect
            dirty[y0:y1, x0:x1] = True
        prev_rects = [rect for _, rect in cur_rects]

        idx = np.flatnonzero(dirty)
        log_now = np.log(canvas.ravel()[idx] + _LOG_EPS)
        log_before = prev_log[idx]
        ref_here = ref[idx]
        diff = log_now - ref_here
        positive = diff >= 0
        threshold = np.where(positive, c_pos[idx], c_neg[idx])
        n_cross = np.floor(np.abs(diff) / threshold).astype(np.int64)
        hit = n_cross > 0
        prev_log[idx] = log_now
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
            start = log_before[hit][owner]
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

    if pieces:
        events = {
            "x": np.concatenate([p[0] for p in pieces]),
            "y": np.concatenate([p[1] for p in pieces]),
            "t": np.concatenate([p[2] for p in pieces]),
            "p": np.concatenate([p[3] for p in pieces]),
        }
    else:
        events = {"x": np.zeros(0, np.uint16), "y": np.zeros(0, np.uint16), "t": np.zeros(0, np.int64),
                  "p": np.zeros(0, np.uint8)}

    rows = []
    n_labels = int(math.floor(duration_s * label_hz + 1e-9))
    for k in range(1, n_labels + 1):
        t_label_us = int(round(k * 1e6 / label_hz))
        for obj in sorted(objects, key=lambda o: o.track_id):
            box = _visible_box(obj, t_label_us * 1e-6, width, height)
            if box is not None:
                rows.append((t_label_us, *box, obj.spec.class_id, obj.track_id, 1.0))
    boxes = np.array(rows, dtype=BBOX_DTYPE) if rows else np.zeros(0, BBOX_DTYPE)
    return events, boxes


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
**synthetic**: no camera recorded it. It exists to exercise the evdet pipeline end to end quickly; detection
numbers measured on it say nothing about real event-camera data.

- seed: {seed}
- sensor: {width} x {height} px, {duration_s} s per sequence, labels at {label_hz} Hz
- splits: {splits}
- classes (id: name): {classes}
- total events: {events}, total boxes: {boxes}

How it is made: a static camera looks at a static textured background with a road band and dashed lane
markings. Objects of the 8 classes move over it with per-class shapes, sizes and speeds (cars: rounded
rectangles with windows; trucks and buses: long striped rectangles; motorcycles: small fast ellipses; bicycles:
two wheels and a frame; pedestrians: small slow upright ellipses in any direction; Static: stationary squares
above the road whose brightness flickers at 2-5 Hz; Other: diamonds moving diagonally). One object of every
class is in view at t = 0; more enter from the frame edges as a Poisson process. Intensity frames are rendered
every {frame_dt_us} us with anti-aliased edges and converted to events with the contrast-threshold model of ESIM
(Rebecq et al., CoRL 2018): per-pixel reference log intensity, threshold C ~ N({contrast_threshold}, 0.03) per
pixel and polarity, one event per crossed threshold, timestamps interpolated linearly between frames;
background-activity noise at {noise_rate_hz} Hz per pixel is added. Boxes are the exact object boxes at the label
times, clipped to the frame (dropped while < 20 % of the object is visible), one track id per object.

Layout (as eTraM): `<split>/<name>_td.h5` with `events/x, events/y` (uint16 px), `events/p` (uint8, 1 = ON),
`events/t` (int64 us, sorted), `events/width`, `events/height`, Blosc-compressed (hdf5plugin); and
`<split>/<name>_bbox.npy`: Prophesee box array (t int64 us; x, y, w, h float32 px, top-left; class_id uint32;
track_id uint32; class_confidence float32).

Sequences:

| split | name | events | boxes | boxes per class |
|---|---|---|---|---|
{table}
"""


def generate_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    duration_s: float = 2.0,
    width: int = 640,
    height: int = 360,
    label_hz: float = 20.0,
    frame_dt_us: int = 2_000,
    contrast_threshold: float = 0.25,
    noise_rate_hz: float = 0.05,
    spawn_rate_hz: float = 2.0,
) -> dict:
    """Write a small SYNTHETIC dataset in the eTraM layout (see the module docstring).

    Writes ``out_dir/<split>/<name>_td.h5`` and ``<name>_bbox.npy`` for ``name = synth_<split>_<i:03d>`` and
    ``out_dir/README.md`` (states that the data are synthetic, how they are made, the seed, per-sequence
    counts). Sequence ``i`` of split ``s`` is simulated with seed
    ``[seed, index of s in splits, i]``, so the output is a deterministic function of the arguments.

    Args:
        out_dir: destination folder (created; existing sequence files are overwritten).
        seed: base random seed.
        splits: split name -> number of sequences; default ``{"train": 2, "val": 1, "test": 1}``.
        duration_s, width, height, label_hz, frame_dt_us, contrast_threshold, noise_rate_hz, spawn_rate_hz:
            passed to :func:`simulate_sequence`.

    Returns:
        Summary dict: ``out_dir``, ``seed``, ``width``, ``height``, ``duration_s``, ``label_hz``,
        ``class_names``, ``sequences`` (list of dicts with ``split``, ``name``, ``events``, ``boxes``,
        ``boxes_per_class``), ``total_events``, ``total_boxes``.

    Raises:
        ValueError: if ``splits`` is empty or has a negative count or an invalid split name, or a simulation
            argument is invalid.
    """
    splits = {"train": 2, "val": 1, "test": 1} if splits is None else dict(splits)
    if not splits:
        raise ValueError("generate_dataset: splits must name at least one split")
    for name, count in splits.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"generate_dataset: invalid split name '{name}'")
        if int(count) < 0:
            raise ValueError(f"generate_dataset: split '{name}' has negative count {count}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sequences = []
    for split_index, (split, count) in enumerate(splits.items()):
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        for i in range(int(count)):
            name = f"synth_{split}_{i:03d}"
            events, boxes = simulate_sequence(
                [int(seed), split_index, i],
                duration_s=duration_s,
                width=width,
                height=height,
                label_hz=label_hz,
                frame_dt_us=frame_dt_us,
                contrast_threshold=contrast_threshold,
                noise_rate_hz=noise_rate_hz,
                spawn_rate_hz=spawn_rate_hz,
            )
            write_td_h5(split_dir / f"{name}_td.h5", events, width, height)
            save_boxes(split_dir / f"{name}_bbox.npy", boxes)
            per_class = np.bincount(boxes["class_id"].astype(np.int64), minlength=len(EXPERIMENT_CLASSES))
            sequences.append({
                "split": split,
                "name": name,
                "events": int(len(events["t"])),
                "boxes": int(len(boxes)),
                "boxes_per_class": {EXPERIMENT_CLASSES[c]: int(n) for c, n in enumerate(per_class)},
            })
    summary = {
        "out_dir": str(out_dir),
        "synthetic": True,
        "seed": int(seed),
        "width": int(width),
        "height": int(height),
        "duration_s": float(duration_s),
        "label_hz": float(label_hz),
        "class_names": list(EXPERIMENT_CLASSES),
        "sequences": sequences,
        "total_events": int(sum(s["events"] for s in sequences)),
        "total_boxes": int(sum(s["boxes"] for s in sequences)),
    }
    table = "\n".join(
        f"| {s['split']} | {s['name']} | {s['events']} | {s['boxes']} | "
        + ", ".join(f"{k}: {v}" for k, v in s["boxes_per_class"].items()) + " |"
        for s in sequences
    )
    (out_dir / "README.md").write_text(_README.format(
        seed=seed, width=width, height=height, duration_s=duration_s, label_hz=label_hz,
        splits=", ".join(f"{k}: {v}" for k, v in splits.items()),
        classes=", ".join(f"{i}: {n}" for i, n in enumerate(EXPERIMENT_CLASSES)),
        events=summary["total_events"], boxes=summary["total_boxes"], frame_dt_us=frame_dt_us,
        contrast_threshold=contrast_threshold, noise_rate_hz=noise_rate_hz, table=table,
    ))
    return summary
