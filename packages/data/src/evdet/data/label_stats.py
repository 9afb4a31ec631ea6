"""Per-class box statistics of label files (``evdet-data label-stats``).

Which naming fits a dataset is visible in its boxes: pedestrians are tall and narrow (w / h well below 1), buses
and trams long and large, bicycles and motorbikes small. ``label_stats`` prints, per class id, the box count and the
median width, height and aspect ratio (px), so a user can check that ``--class-names`` / ``dataset.class_names``
match the data before training on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evdet.data.classes import resolve_class_names
from evdet.data.labels import load_boxes

__all__ = ["label_stats"]


def label_stats(folder: str | Path, class_names: str | None = None) -> dict:
    """Statistics of every ``*_bbox.npy`` below ``folder`` (recursively).

    Args:
        folder: a dataset root or split folder.
        class_names: optional dataset name or comma-separated names, shown beside the ids.

    Returns:
        ``{"folder", "files", "boxes", "classes": [{"class_id", "name", "count", "median_w_px", "median_h_px",
        "median_aspect_w_over_h"}, ...]}`` sorted by class id.

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no ``*_bbox.npy``.
        LabelError: a malformed label file (names it).
        ValueError: bad ``class_names``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files = sorted(folder.rglob("*_bbox.npy"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *_bbox.npy label files")
    names = resolve_class_names(class_names) if class_names else None
    boxes = np.concatenate([load_boxes(p) for p in files])
    classes = []
    for class_id in np.unique(boxes["class_id"]).tolist():
        sel = boxes[boxes["class_id"] == class_id]
        w, h = sel["w"].astype(np.float64), sel["h"].astype(np.float64)
        aspect = w[h > 0] / h[h > 0]
        classes.append({
            "class_id": int(class_id),
            "name": names[class_id] if names is not None and class_id < len(names) else None,
            "count": int(len(sel)),
            "median_w_px": round(float(np.median(w)), 2),
            "median_h_px": round(float(np.median(h)), 2),
            "median_aspect_w_over_h": round(float(np.median(aspect)), 3) if len(aspect) else None,
        })
    return {"folder": str(folder), "files": len(files), "boxes": int(len(boxes)), "classes": classes}
