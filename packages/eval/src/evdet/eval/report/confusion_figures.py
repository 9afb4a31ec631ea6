"""Class confusion matrices (:mod:`evdet.eval.confusion`) drawn as row-normalised heat maps.

Each row (a true class, then ``background``: the false positives) is divided by its sum, so a cell is the fraction
of that row's boxes predicted as the column's class (the diagonal is the recall at IoU 0.5 among matched classes;
the ``background`` column the misses). Every cell is annotated with its count; a row without boxes stays 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["normalise_rows", "plot_confusion_matrix"]


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Row-normalised copy of a confusion matrix.

    Args:
        matrix: ``(K, K)`` counts (int or float), rows true class, columns predicted.

    Returns:
        ``(K, K)`` float64, each row divided by its sum (a row summing to 0 stays all 0).

    Raises:
        ValueError: ``matrix`` is not square 2-D, or holds a negative count.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix: expected a square (K, K) array, got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("confusion matrix: counts must be >= 0")
    sums = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(matrix.astype(np.float64), sums, out=np.zeros(matrix.shape, dtype=np.float64), where=sums > 0)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], title: str, path: str | Path) -> Path:
    """Write one confusion matrix as a PNG heat map: class names (and ``background``) on both axes, row-normalised
    colours with a colour bar, the count in every cell.

    Args:
        matrix: ``(C + 1, C + 1)`` int counts, rows true class, columns predicted, last row/column background
            (:func:`evdet.eval.confusion.confusion_matrix`).
        class_names: the C class names.
        title: the figure title (e.g. the run, epoch and step).
        path: the PNG to write (its folder is created).

    Returns:
        ``path``.

    Raises:
        ValueError: the matrix shape does not fit ``len(class_names) + 1`` or it holds negative counts.
        OSError: the file cannot be written.
    """
    names = [*class_names, "background"]
    matrix = np.asarray(matrix)
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not fit {len(class_names)} classes + background")
    fractions = normalise_rows(matrix)
    k = len(names)
    side = max(5.5, 0.62 * k + 2.5)
    fig = Figure(figsize=(side + 1.2, side), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("fraction of the row's boxes (row-normalised)")
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (background row: false positives)")
    ax.set_title(title, fontsize=11)
    fontsize = 9 if k <= 10 else 7
    for i in range(k):
        for j in range(k):
            count = int(matrix[i, j])
            ax.text(j, i, f"{count}", ha="center", va="center", fontsize=fontsize,
                    color="white" if fractions[i, j] > 0.5 else "black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
