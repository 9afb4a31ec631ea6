"""Bounding-box labels: the Prophesee box array, its loading/saving, frame cropping and class maps.

A label file ``<name>_bbox.npy`` (Prophesee Gen1/Gen4 and eTraM convention) holds one structured NumPy array,
one row per box, sorted by time. :data:`BBOX_DTYPE` is the canonical form every evdet package uses; real files
may store ``t`` as ``uint64`` (older Gen1 files name it ``ts``) and ``class_id`` as ``uint8``; :func:`load_boxes`
accepts those and converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = [
    "BBOX_DTYPE",
    "CLASS_MAPS",
    "ETRAM_CLASSES",
    "EXPERIMENT_CLASSES",
    "GROUPED3_CLASSES",
    "SMALL_OBJECT_CLASS_IDS",
    "ClassMap",
    "LabelError",
    "as_bbox_array",
    "crop_boxes_to_frame",
    "get_class_map",
    "load_boxes",
    "save_boxes",
]

#: Canonical box record: ``t`` (int64, µs), top-left corner ``x, y`` and size ``w, h`` (float32, px),
#: ``class_id`` (uint32), ``track_id`` (uint32, one id per object and recording), ``class_confidence``
#: (float32, 1.0 for ground truth). Field names and meaning follow the Prophesee box array.
BBOX_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("x", np.float32),
        ("y", np.float32),
        ("w", np.float32),
        ("h", np.float32),
        ("class_id", np.uint32),
        ("track_id", np.uint32),
        ("class_confidence", np.float32),
    ]
)

#: Class names of the project's experiments; the index is the class id.
EXPERIMENT_CLASSES: tuple[str, ...] = ("Car", "Truck", "Motorcycle", "Bicycle", "Pedestrian", "Bus", "Static", "Other")

#: Ids (in :data:`EXPERIMENT_CLASSES`) of the small-object classes: Motorcycle, Bicycle, Pedestrian.
SMALL_OBJECT_CLASS_IDS: tuple[int, ...] = (2, 3, 4)

# Alternative field names found in real label files -> canonical name.
_FIELD_ALIASES = {"t": ("t", "ts")}
_FLOAT_FIELDS = ("x", "y", "w", "h")
_INT_FIELDS = ("class_id", "track_id")


class LabelError(ValueError):
    """A label file or box array is malformed; the message names the file (or array) and the field."""


def as_bbox_array(boxes: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert a structured box array with Prophesee fields to :data:`BBOX_DTYPE`.

    Args:
        boxes: ``(M,)`` structured array with fields ``t`` (or ``ts``), ``x``, ``y``, ``w``, ``h``, ``class_id``
            and optionally ``track_id`` (default 0) and ``class_confidence`` (default 1.0). Integer widths may
            differ (e.g. ``t`` uint64, ``class_id`` uint8); floats may be float64.
        source: name of the file or array, used in error messages.

    Returns:
        ``(M,)`` array of :data:`BBOX_DTYPE` (a new array; row order kept).

    Raises:
        LabelError: if ``boxes`` is not a 1-D structured array, a required field is missing, ``t`` or an id
            field is not integer or out of range (negative, ``t`` > int64 max, id > uint32 max), or a
            coordinate is not finite. The message names ``source`` and the field.
    """
    if not isinstance(boxes, np.ndarray) or boxes.dtype.names is None:
        raise LabelError(f"{source}: expected a structured box array with fields {BBOX_DTYPE.names}, "
                         f"got {type(boxes).__name__} of dtype {getattr(boxes, 'dtype', None)}")
    if boxes.ndim != 1:
        raise LabelError(f"{source}: expected a 1-D box array, got shape {boxes.shape}")
    names = set(boxes.dtype.names)
    out = np.zeros(len(boxes), dtype=BBOX_DTYPE)

    def _pick(canonical: str) -> str:
        for alias in _FIELD_ALIASES.get(canonical, (canonical,)):
            if alias in names:
                return alias
        raise LabelError(f"{source}: missing field '{canonical}' (fields present: {boxes.dtype.names})")

    t_name = _pick("t")
    t = boxes[t_name]
    if t.dtype.kind not in "iu":
        raise LabelError(f"{source}: field '{t_name}' must be an integer timestamp in µs, got dtype {t.dtype}")
    if len(t) and (t.dtype.kind == "i" and t.min() < 0):
        raise LabelError(f"{source}: field '{t_name}' has negative timestamps (min {t.min()})")
    if len(t) and t.dtype.kind == "u" and t.max() > np.iinfo(np.int64).max:
        raise LabelError(f"{source}: field '{t_name}' exceeds the int64 range (max {t.max()})")
    out["t"] = t.astype(np.int64)

    for name in _FLOAT_FIELDS:
        values = boxes[_pick(name)]
        if values.dtype.kind not in "fiu":
            raise LabelError(f"{source}: field '{name}' must be numeric (px), got dtype {values.dtype}")
        values = values.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise LabelError(f"{source}: field '{name}' has non-finite values")
        out[name] = values

    for name in _INT_FIELDS:
        if name not in names:
            if name == "track_id":
                continue  # optional, stays 0
            raise LabelError(f"{source}: missing field '{name}' (fields present: {boxes.dtype.names})")
        values = boxes[name]
        if values.dtype.kind not in "iu":
            raise LabelError(f"{source}: field '{name}' must be an integer id, got dtype {values.dtype}")
        if len(values) and (values.min() < 0 or values.max() > np.iinfo(np.uint32).max):
            raise LabelError(f"{source}: field '{name}' out of the uint32 range "
                             f"(min {values.min()}, max {values.max()})")
        out[name] = values.astype(np.uint32)

    if "class_confidence" in names:
        conf = boxes["class_confidence"]
        if conf.dtype.kind not in "fiu":
            raise LabelError(f"{source}: field 'class_confidence' must be numeric, got dtype {conf.dtype}")
        out["class_confidence"] = conf.astype(np.float32)
    else:
        out["class_confidence"] = 1.0
    return out


def load_boxes(path: str | Path) -> np.ndarray:
    """Load a Prophesee box file (``<name>_bbox.npy``) as :data:`BBOX_DTYPE`.

    Args:
        path: ``.npy`` file holding one structured array (no pickles).

    Returns:
        ``(M,)`` :data:`BBOX_DTYPE` array in file order (Prophesee files are sorted by ``t``).

    Raises:
        LabelError: if the file is missing, is not a readable ``.npy`` file, or its array is malformed (see
            :func:`as_bbox_array`); the message names the file and, where relevant, the field.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise LabelError(f"{path}: not a readable .npy box array ({exc})") from None
    return as_bbox_array(arr, source=str(path))


def save_boxes(path: str | Path, boxes: np.ndarray) -> Path:
    """Write boxes to ``path`` as a ``.npy`` file of :data:`BBOX_DTYPE`.

    Args:
        path: destination; ``.npy`` is appended by NumPy when missing.
        boxes: ``(M,)`` structured array accepted by :func:`as_bbox_array`.

    Returns:
        The path written.

    Raises:
        LabelError: if ``boxes`` is malformed.
    """
    path = Path(path)
    arr = as_bbox_array(boxes, source=str(path))
    np.save(path, arr, allow_pickle=False)
    return path if path.suffix == ".npy" else path.with_name(path.name + ".npy")


def crop_boxes_to_frame(
    boxes: np.ndarray, width: int, height: int, min_side_px: float = 1.0
) -> tuple[np.ndarray, int]:
    """Crop boxes to the frame ``[0, width] x [0, height]`` and drop degenerate ones.

    A box is degenerate when, after cropping, its width or height is below ``min_side_px`` (px) — this also
    removes boxes lying entirely outside the frame.

    Args:
        boxes: ``(M,)`` :data:`BBOX_DTYPE` array (px, top-left corner).
        width, height: frame size (px).
        min_side_px: smallest kept side length after cropping (px).

    Returns:
        ``(kept, n_dropped)``: the cropped non-degenerate boxes (new :data:`BBOX_DTYPE` array, row order kept)
        and how many boxes were dropped.

    Raises:
        LabelError: if ``boxes`` is not of :data:`BBOX_DTYPE` or the frame size is not positive.
    """
    if not isinstance(boxes, np.ndarray) or boxes.dtype != BBOX_DTYPE:
        raise LabelError(f"crop_boxes_to_frame: expected a BBOX_DTYPE array, got {getattr(boxes, 'dtype', boxes)}")
    if width <= 0 or height <= 0:
        raise LabelError(f"crop_boxes_to_frame: frame size must be positive, got {width}x{height}")
    x1 = np.clip(boxes["x"], 0.0, float(width))
    y1 = np.clip(boxes["y"], 0.0, float(height))
    x2 = np.clip(boxes["x"] + boxes["w"], 0.0, float(width))
    y2 = np.clip(boxes["y"] + boxes["h"], 0.0, float(height))
    out = boxes.copy()
    out["x"], out["y"] = x1, y1
    out["w"], out["h"] = x2 - x1, y2 - y1
    keep = (out["w"] >= min_side_px) & (out["h"] >= min_side_px)
    return out[keep], int(len(boxes) - keep.sum())


@dataclass(frozen=True)
class ClassMap:
    """A mapping from a label source's class ids to the experiment's class ids.

    Attributes:
        name: key in :data:`CLASS_MAPS`.
        class_names: target class names; the index is the target class id.
        mapping: source class id -> target class id, or ``None`` to drop boxes of that source class.

    Raises:
        ValueError: on construction, if a target id is outside ``range(len(class_names))``.
    """

    name: str
    class_names: tuple[str, ...]
    mapping: Mapping[int, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for src, dst in self.mapping.items():
            if dst is not None and not 0 <= dst < len(self.class_names):
                raise ValueError(f"ClassMap '{self.name}': source id {src} maps to {dst}, "
                                 f"expected 0..{len(self.class_names) - 1} or None")

    @property
    def num_classes(self) -> int:
        """Number of target classes."""
        return len(self.class_names)

    def target_ids(self, class_ids: np.ndarray, source: str = "<array>") -> np.ndarray:
        """Target id of each source class id, ``-1`` where the map drops the class.

        Args:
            class_ids: ``(M,)`` integer source class ids.
            source: file the ids came from, named in errors.

        Returns:
            ``(M,)`` int64 target ids in ``0..num_classes - 1`` or ``-1``.

        Raises:
            LabelError: if an id is unknown to the map (message names ``source``, the ids and the map).
        """
        ids = np.asarray(class_ids).astype(np.int64, copy=False).reshape(-1)
        present = np.unique(ids)
        unknown = [int(i) for i in present if int(i) not in self.mapping]
        if unknown:
            raise LabelError(f"{source}: field 'class_id' has ids {unknown} unknown to class map '{self.name}' "
                             f"(known source ids: {sorted(self.mapping)})")
        if not len(present):
            return np.zeros(0, dtype=np.int64)
        lut = np.full(int(present.max()) + 1, -1, dtype=np.int64)
        for src in present:
            dst = self.mapping[int(src)]
            lut[int(src)] = -1 if dst is None else dst
        return lut[ids]

    def remap(self, boxes: np.ndarray, source: str = "<array>") -> np.ndarray:
        """Return the boxes with ``class_id`` mapped to target ids; boxes of dropped classes are removed.

        Args:
            boxes: ``(M,)`` :data:`BBOX_DTYPE` array.
            source: file the boxes came from, named in errors.

        Returns:
            ``(M',)`` :data:`BBOX_DTYPE` array, ``M' <= M``, row order kept.

        Raises:
            LabelError: if a box has a class id the map does not know (message names ``source``, the id and
                the map).
        """
        boxes = as_bbox_array(boxes, source=source) if boxes.dtype != BBOX_DTYPE else boxes
        target = self.target_ids(boxes["class_id"], source=source)
        keep = target >= 0
        out = boxes[keep].copy()
        out["class_id"] = target[keep].astype(np.uint32)
        return out


#: Official eTraM classes (Verma et al., "eTraM: Event-based Traffic Monitoring Dataset", CVPR 2024); index =
#: class id.
ETRAM_CLASSES: tuple[str, ...] = ("pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair")

#: Three-class grouping of traffic participants; index = class id.
GROUPED3_CLASSES: tuple[str, ...] = ("pedestrian", "vehicle", "micromobility")

#: Registered class maps by name; every map reads :data:`EXPERIMENT_CLASSES` ids (the ids stored in the shards).
#:
#: * ``experiment8``: identity over :data:`EXPERIMENT_CLASSES` (0..7), e.g. the synthetic dataset of
#:   :mod:`evdet.data.synthetic`.
#: * ``etram8``: :data:`ETRAM_CLASSES`. Car -> car, Truck -> truck, Motorcycle -> motorbike, Bicycle -> bicycle,
#:   Pedestrian -> pedestrian, Bus -> bus. Static and Other have no eTraM counterpart and are dropped; tram and
#:   wheelchair have no source class, so with experiment8 shards they stay without labels (their AP is undefined).
#: * ``grouped3``: :data:`GROUPED3_CLASSES`. Pedestrian -> pedestrian; Car, Truck, Bus -> vehicle; Bicycle,
#:   Motorcycle -> micromobility (the two-wheelers: small, fast-turning road users, the small-object classes
#:   :data:`SMALL_OBJECT_CLASS_IDS` minus Pedestrian); Static and Other are dropped.
CLASS_MAPS: dict[str, ClassMap] = {
    "experiment8": ClassMap(
        name="experiment8",
        class_names=EXPERIMENT_CLASSES,
        mapping={i: i for i in range(len(EXPERIMENT_CLASSES))},
    ),
    "etram8": ClassMap(
        name="etram8",
        class_names=ETRAM_CLASSES,
        # experiment id -> eTraM id: Car 0->1, Truck 1->5, Motorcycle 2->4, Bicycle 3->2, Pedestrian 4->0,
        # Bus 5->3, Static 6 and Other 7 dropped
        mapping={0: 1, 1: 5, 2: 4, 3: 2, 4: 0, 5: 3, 6: None, 7: None},
    ),
    "grouped3": ClassMap(
        name="grouped3",
        class_names=GROUPED3_CLASSES,
        # experiment id -> group: Car, Truck, Bus -> vehicle 1; Motorcycle, Bicycle -> micromobility 2;
        # Pedestrian -> pedestrian 0; Static, Other dropped
        mapping={0: 1, 1: 1, 2: 2, 3: 2, 4: 0, 5: 1, 6: None, 7: None},
    ),
}


def get_class_map(name: str) -> ClassMap:
    """Return the registered :class:`ClassMap` called ``name``.

    Raises:
        ValueError: if ``name`` is not in :data:`CLASS_MAPS` (the message lists the known names).
    """
    if name not in CLASS_MAPS:
        raise ValueError(f"class_map '{name}' is unknown; known: {sorted(CLASS_MAPS)}")
    return CLASS_MAPS[name]
