"""The figures of ``evdet-report compare``, as PNG bytes (matplotlib, Agg; no pyplot state, so thread-safe).

- :func:`per_class_ap_png`: grouped bars, one group per class, one bar per run: class-aware AP (%) of each class;
- :func:`val_ap_png`: the validation AP (%) of each run during training against the global optimizer step.

Each run keeps one colour (matplotlib's ``tab10`` cycle by run index) in both figures.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["per_class_ap_png", "val_ap_png", "run_color"]

_DPI = 100


def run_color(index: int) -> str:
    """The colour of run ``index`` (``tab10``, cycling) as a matplotlib colour string ``C0`` ... ``C9``."""
    return f"C{index % 10}"


def _text(label: str) -> str:
    """A label drawn literally: ``$`` escaped so matplotlib does not read mathtext."""
    return label.replace("$", r"\$")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def per_class_ap_png(labels: Sequence[str], class_names: Sequence[str],
                     values: Sequence[Mapping[str, float | None]]) -> bytes | None:
    """Grouped bars of the class-aware AP of each class, one bar per run.

    Args:
        labels: the runs' names (legend), one per run.
        class_names: the classes (x axis), in table order.
        values: per run, class name -> AP fraction in [0, 1], or ``None`` / absent when the run has no AP for the
            class (no ground truth); such a bar is not drawn and ``n/a`` is written at its foot.

    Returns:
        The PNG bytes, or ``None`` when there are no classes or no run has any per-class AP.

    Raises:
        ValueError: ``labels`` and ``values`` differ in length.
    """
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels for {len(values)} runs of per-class AP")
    if not class_names or all(v.get(name) is None for v in values for name in class_names):
        return None
    runs = len(labels)
    width = 0.8 / runs
    x = np.arange(len(class_names), dtype=np.float64)
    figure = Figure(figsize=(max(6.0, 0.9 * len(class_names) * max(1.0, runs / 2) + 2.0), 4.2),
                    layout="constrained")
    ax = figure.subplots()
    for index, (label, run_values) in enumerate(zip(labels, values)):
        offsets = x - 0.4 + width * (index + 0.5)
        heights = np.array([np.nan if run_values.get(n) is None else 100.0 * run_values[n] for n in class_names])
        ax.bar(offsets, np.nan_to_num(heights, nan=0.0), width, label=_text(label), color=run_color(index),
               edgecolor="black", linewidth=0.4)
        for offset, height in zip(offsets, heights):
            if np.isnan(height):
                ax.text(offset, 0.0, "n/a", ha="center", va="bottom", rotation=90, fontsize=7, color="dimgray")
    ax.set_xticks(x, [_text(n) for n in class_names], rotation=30, ha="right")
    ax.set_xlabel("class")
    ax.set_ylabel("AP (%, class-aware)")
    top = max(1.0, float(np.nanmax([100.0 * (v.get(n) or 0.0) for v in values for n in class_names])))
    ax.set_ylim(0.0, top * 1.15)
    ax.set_title("Per-class AP on the evaluated split")
    ax.grid(axis="y", linewidth=0.4, alpha=0.6)
    ax.legend(fontsize=8, loc="upper right")
    return _png(figure)


def val_ap_png(labels: Sequence[str], series: Sequence[tuple[np.ndarray, np.ndarray]]) -> bytes | None:
    """Overlaid validation-AP curves, one per run.

    Args:
        labels: the runs' names (legend), one per run.
        series: per run, ``(steps, values)``: ``(N,)`` global optimizer steps and AP fractions in [0, 1]; an empty
            series (a run that logged no validation) is left out of the plot and named in the legend as
            ``<label> (no validation logged)``.

    Returns:
        The PNG bytes, or ``None`` when no run has a validation point.

    Raises:
        ValueError: ``labels`` and ``series`` differ in length.
    """
    if len(labels) != len(series):
        raise ValueError(f"{len(labels)} labels for {len(series)} validation-AP series")
    if all(len(steps) == 0 for steps, _ in series):
        return None
    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = figure.subplots()
    for index, (label, (steps, values)) in enumerate(zip(labels, series)):
        if len(steps) == 0:
            ax.plot([], [], color=run_color(index), label=_text(f"{label} (no validation logged)"))
            continue
        ax.plot(np.asarray(steps), 100.0 * np.asarray(values, dtype=np.float64), marker="o", markersize=3,
                linewidth=1.4, color=run_color(index), label=_text(label))
    ax.set_xlabel("global step (optimizer steps)")
    ax.set_ylabel("validation AP (%)")
    ax.set_title("Validation AP during training")
    ax.grid(linewidth=0.4, alpha=0.6)
    ax.legend(fontsize=8, loc="best")
    return _png(figure)
