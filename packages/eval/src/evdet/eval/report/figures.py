"""Training curves of one run, from its ``metrics.csv`` (``docs/run-folder.md``), as PNG files.

One figure per topic, each against the optimiser step: the loss parts (``train/loss*``), the validation AP
(``val/AP*``, ``val_AP``), the learning rate (``lr-*``, Lightning's ``LearningRateMonitor``), the training throughput
(``perf/it_s``, ``perf/samples_s``) and the memory (``perf/rss_bytes``, ``perf/peak_gpu_memory_bytes``). A figure
whose series were not recorded is not drawn: :func:`plot_training_curves` says which and why, and the run report
states it, so no empty-looking figure is ever written.

Figures are drawn with :class:`matplotlib.figure.Figure` (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from evdet.eval.report.run_folder import RunRecord

__all__ = ["CurvePlot", "PLOTS", "plot_training_curves", "FIGURE_DPI", "GIB"]

#: Resolution of the PNG files (dots per inch); figures are 9 x 4.5 in, i.e. 1080 x 540 px.
FIGURE_DPI = 120
#: Bytes per GiB (2**30), the unit of the memory figure.
GIB = float(2**30)
#: Headline AP keys logged by the validation, in table order.
_AP_KEYS = ("val/AP", "val/AP_50", "val/AP_75", "val/AP_S", "val/AP_M", "val/AP_L")


@dataclass(frozen=True)
class CurvePlot:
    """One training-curve figure.

    Attributes:
        name: file stem (``plots/<name>.png``).
        title: what the figure shows (the README's caption as well).
        columns: ``metrics.csv`` columns it draws, given the run's columns.
        needs: the columns, as said in the README when none was recorded.
    """

    name: str
    title: str
    columns: Callable[[Sequence[str]], list[str]]
    needs: str


def _loss_columns(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c.startswith("train/loss")]


def _ap_columns(columns: Sequence[str]) -> list[str]:
    present = [c for c in _AP_KEYS if c in columns]
    return present or (["val_AP"] if "val_AP" in columns else [])


def _lr_columns(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c.startswith("lr-")]


def _pick(*names: str) -> Callable[[Sequence[str]], list[str]]:
    return lambda columns: [n for n in names if n in columns]


#: The figures of ``plots/`` in README order.
PLOTS: tuple[CurvePlot, ...] = (
    CurvePlot("losses", "Training loss parts", _loss_columns, "train/loss*"),
    CurvePlot("val_ap", "Validation AP (COCO, Prophesee protocol)", _ap_columns, "val/AP* or val_AP"),
    CurvePlot("learning_rate", "Learning rate", _lr_columns, "lr-* (LearningRateMonitor)"),
    CurvePlot("throughput", "Training throughput", _pick("perf/it_s", "perf/samples_s"), "perf/it_s, perf/samples_s"),
    CurvePlot("memory", "Memory", _pick("perf/peak_gpu_memory_bytes", "perf/rss_bytes"),
              "perf/peak_gpu_memory_bytes, perf/rss_bytes"),
)


def _new_figure(title: str, record: RunRecord) -> tuple[Figure, object]:
    fig = Figure(figsize=(9, 4.5), dpi=FIGURE_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(f"{title}\n{record.experiment} / {record.run_id}", fontsize=11)
    ax.set_xlabel("optimiser step")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _draw(plot: CurvePlot, record: RunRecord, columns: list[str]) -> Figure:
    fig, ax = _new_figure(plot.title, record)
    series = {c: record.series(c) for c in columns}
    if plot.name == "losses":
        for column, (steps, values) in series.items():
            ax.plot(steps, values, label=column.removeprefix("train/"), linewidth=2.0 if column == "train/loss"
                    else 1.2)
        ax.set_ylabel("loss (dimensionless)")
    elif plot.name == "val_ap":
        for column, (steps, values) in series.items():
            ax.plot(steps, values, marker="o", label=column.removeprefix("val/"))
        ax.set_ylabel("AP (fraction, 0-1)")
        ax.set_ylim(bottom=0.0)
    elif plot.name == "learning_rate":
        for column, (steps, values) in series.items():
            ax.plot(steps, values, label=column)
        ax.set_ylabel("learning rate (per optimiser step)")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    elif plot.name == "throughput":
        labels = {"perf/it_s": ("it/s", "optimiser steps per second", "tab:blue"),
                  "perf/samples_s": ("samples/s", "sequence samples per second, all ranks", "tab:orange")}
        axes = [ax]
        if len(series) == 2:  # one panel each: samples/s is it/s x batch, on one axis the two lines would overlap
            fig.clear()
            axes = list(fig.subplots(2, 1, sharex=True))
            axes[0].set_title(f"{plot.title} (between validations)\n{record.experiment} / {record.run_id}",
                              fontsize=11)
            axes[1].set_xlabel("optimiser step")
        for axis, (column, (steps, values)) in zip(axes, series.items()):
            unit, meaning, color = labels[column]
            axis.plot(steps, values, color=color, marker=".", label=f"{unit} ({meaning})")
            axis.set_ylabel(unit)
            axis.set_ylim(bottom=0.0)
            axis.grid(True, alpha=0.3)
            axis.legend(loc="lower right")
        return fig
    elif plot.name == "memory":
        labels = {"perf/peak_gpu_memory_bytes": "peak GPU memory allocated (CUDA)",
                  "perf/rss_bytes": "host resident memory (RSS)"}
        for column, (steps, values) in series.items():
            ax.plot(steps, values / GIB, label=labels[column])
        ax.set_ylabel("memory (GiB)")
        ax.set_ylim(bottom=0.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the axes: never on a line
    return fig


def plot_training_curves(record: RunRecord, folder: str | Path) -> tuple[list[Path], dict[str, str]]:
    """Draw every figure of :data:`PLOTS` whose series the run recorded into ``folder/<name>.png``.

    Args:
        record: the run (:func:`evdet.eval.report.run_folder.load_run`).
        folder: where the PNG files go (created when missing).

    Returns:
        ``(written, skipped)``: the PNG paths written, in :data:`PLOTS` order, and ``{name: reason}`` of the
        figures not drawn (e.g. ``"not recorded: no perf/it_s, perf/samples_s column in metrics.csv"``).

    Raises:
        OSError: a file cannot be written.
    """
    folder = Path(folder)
    columns = record.columns
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for plot in PLOTS:
        present = [c for c in plot.columns(columns) if record.series(c)[0].size]
        if not present:
            source = "metrics.csv" if record.metrics_rows else "metrics.csv (the run has none)"
            skipped[plot.name] = f"not recorded: no {plot.needs} values in {source}"
            continue
        fig = _draw(plot, record, present)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{plot.name}.png"
        fig.savefig(path)
        written.append(path)
    return written, skipped
