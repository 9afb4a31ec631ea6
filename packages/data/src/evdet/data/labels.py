"""Bounding-box labels: the Prophesee box array and its loading/saving.

A label file ``<name>_bbox.npy`` (Prophesee Gen1/Gen4 and eTraM convention) holds one structured NumPy array,
one row per box, sorted by time. :data:`BBOX_DTYPE` is the canonical form every evdet package uses; real files
may store ``t`` as ``uint64`` (older Gen1 files name it ``ts``) and ``class_id`` as ``uint8``; :func:`load_boxes`
accepts those and converts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "BBOX_DTYPE",
    "ETRAM_CLASSES",
    "LabelError",
    "as_bbox_array",
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

#: The official eTraM label ids 0..7 (Verma et al., "eTraM: Event-based Traffic Monitoring Dataset", CVPR 2024);
#: index = class id. Other namings and the class maps between them: :mod:`evdet.data.classes`.
ETRAM_CLASSES: tuple[str, ...] = ("pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair")

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
