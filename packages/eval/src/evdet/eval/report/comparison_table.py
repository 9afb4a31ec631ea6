"""The table of ``evdet-report compare``: one row per run, the columns of the comparison report.

Columns, in order: ``experiment`` | ``params`` | ``GMAC/frame`` | ``AP`` | ``AP_50`` | ``AP_75`` | ``AP_S`` |
``AP_M`` | ``AP <class>`` per class | ``it/s`` | ``peak memory`` | ``GPU-hours`` | ``delta vs baseline``.

Where each value comes from (``docs/run-folder.md``):

- ``params``, ``GMAC/frame``: ``run.json`` ``model_summary`` (``params``: int; ``gmac_per_frame``: float,
  multiply-accumulates of one frame at the training resolution, in 10⁹);
- ``AP`` ... ``AP_M``: ``experiment_results.json`` ``metrics`` (the protocol's headline figures: class-agnostic for
  ``etram``, class-aware for ``rvt``), shown in % (COCO AP x 100);
- ``AP <class>``: ``metrics.per_class_AP`` (class-aware AP of each class, in %), class names from the results;
- ``it/s``: ``training_summary.it_s`` (optimizer steps per second over the run);
- ``peak memory``: ``training_summary.peak_gpu_memory_bytes`` (CUDA allocator peak) when recorded, else
  ``peak_rss_bytes`` (host resident memory peak), labelled ``GPU`` or ``host RSS``; GiB = 2³⁰ bytes, MiB = 2²⁰;
- ``GPU-hours``: ``training_summary.gpu_hours`` (wall time x GPUs / 3600);
- ``delta vs baseline``: ``AP`` and ``AP_S`` minus the baseline run's, in absolute percentage points, signed.

A value a run does not record (an older run without summaries, a class without ground truth) is ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evdet.eval.report.run_folder import RunRecord

__all__ = ["HEADLINE_KEYS", "DELTA_KEYS", "NOT_AVAILABLE", "ComparisonRow", "ComparisonTable",
           "build_comparison_table", "run_labels", "per_class_ap", "val_ap_series", "format_markdown_table"]

#: Headline figures of the table, keys of ``experiment_results.json`` ``metrics``.
HEADLINE_KEYS = ("AP", "AP_50", "AP_75", "AP_S", "AP_M")
#: Figures whose difference to the baseline the last column shows.
DELTA_KEYS = ("AP", "AP_S")
#: What a cell shows for a value the run does not record.
NOT_AVAILABLE = "n/a"
#: ``metrics.csv`` columns of the validation AP during training, in order of preference.
VAL_AP_COLUMNS = ("val/AP", "val_AP")

_GIB = 2 ** 30
_MIB = 2 ** 20


@dataclass(frozen=True)
class ComparisonRow:
    """One run's row.

    Attributes:
        experiment: the run's experiment name.
        run_id: the run's id.
        label: the run's name in figures and legends (:func:`run_labels`).
        cells: the formatted cells of every column after ``experiment`` (``len(ComparisonTable.columns) - 1``).
        is_baseline: this run is the baseline of the delta column.
    """

    experiment: str
    run_id: str
    label: str
    cells: tuple[str, ...]
    is_baseline: bool


@dataclass(frozen=True)
class ComparisonTable:
    """The comparison table.

    Attributes:
        columns: the column headers, ``experiment`` first (module docstring).
        rows: one row per run, in input order.
        class_names: the per-class AP columns' classes (union over the runs, first-seen order).
        notes: sentences a reader needs to read the table (units, sources, protocol mismatches).
    """

    columns: tuple[str, ...]
    rows: tuple[ComparisonRow, ...]
    class_names: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def _finite(value: Any) -> float | None:
    """``value`` as float when it is a finite int/float (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _metrics(run: RunRecord) -> Mapping[str, Any]:
    metrics = (run.results or {}).get("metrics")
    return metrics if isinstance(metrics, Mapping) else {}


def _summary(run: RunRecord, key: str) -> Mapping[str, Any]:
    value = run.run.get(key)
    return value if isinstance(value, Mapping) else {}


def _percent(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{100.0 * value:.2f}"


def _memory(summary: Mapping[str, Any]) -> str:
    for key, where in (("peak_gpu_memory_bytes", "GPU"), ("peak_rss_bytes", "host RSS")):
        value = _finite(summary.get(key))
        if value is not None:
            size = f"{value / _GIB:.2f} GiB" if value >= _GIB else f"{value / _MIB:.0f} MiB"
            return f"{size} ({where})"
    return NOT_AVAILABLE


def run_labels(runs: Sequence[RunRecord]) -> list[str]:
    """The name of each run in figures: its experiment, or ``<experiment> @ <run_id>`` when several of the runs
    share that experiment (runs of one experiment, e.g. two seeds, are told apart by run id).

    Returns:
        ``len(runs)`` strings.
    """
    count: dict[str, int] = {}
    for run in runs:
        count[run.experiment] = count.get(run.experiment, 0) + 1
    return [run.experiment if count[run.experiment] == 1 else f"{run.experiment} @ {run.run_id}" for run in runs]


def per_class_ap(run: RunRecord) -> dict[str, float | None]:
    """The class-aware AP of each class (fraction in [0, 1]; ``None`` for a class without ground truth), by class
    name in the results' order, from ``experiment_results.json`` ``metrics.per_class_AP``; ``{}`` when absent."""
    values = _metrics(run).get("per_class_AP")
    if not isinstance(values, Mapping):
        return {}
    return {str(name): _finite(value) for name, value in values.items()}


def val_ap_series(run: RunRecord) -> tuple[str | None, Any, Any]:
    """The validation AP during training from ``metrics.csv``: ``(column, steps, values)``.

    ``steps`` (global optimizer step) and ``values`` (AP fraction) are ``(N,)`` float64 arrays sorted by step, from
    the first of :data:`VAL_AP_COLUMNS` the run logged; ``(None, [], [])`` when it logged none.
    """
    for column in VAL_AP_COLUMNS:
        steps, values = run.series(column)
        if len(steps):
            return column, steps, values
    return None, [], []


def build_comparison_table(runs: Sequence[RunRecord], baseline: int = 0) -> ComparisonTable:
    """Build the table of ``runs`` (module docstring) with ``runs[baseline]`` as the baseline.

    Args:
        runs: the runs, each with ``results`` (``experiment_results.json``) loaded.
        baseline: index into ``runs`` of the baseline run.

    Returns:
        The :class:`ComparisonTable`.

    Raises:
        ValueError: ``runs`` is empty, ``baseline`` is out of range, or a run has no ``experiment_results.json``
            (names the run's folder).
    """
    if not runs:
        raise ValueError("no runs to compare; expected at least one run folder")
    if not 0 <= baseline < len(runs):
        raise ValueError(f"baseline index {baseline} out of range for {len(runs)} runs")
    for run in runs:
        if run.results is None:
            raise ValueError(f"run {run.location}: no experiment_results.json; run the evaluate step first")
    labels = run_labels(runs)
    class_names: dict[str, None] = {}
    for run in runs:
        class_names.update(dict.fromkeys(per_class_ap(run)))
    columns = ("experiment", "params", "GMAC/frame", *HEADLINE_KEYS, *(f"AP {name}" for name in class_names),
               "it/s", "peak memory", "GPU-hours", "delta vs baseline")
    base = _metrics(runs[baseline])
    rows = []
    for index, (run, label) in enumerate(zip(runs, labels)):
        metrics = _metrics(run)
        model = _summary(run, "model_summary")
        training = _summary(run, "training_summary")
        params = _finite(model.get("params"))
        gmac = _finite(model.get("gmac_per_frame"))
        it_s = _finite(training.get("it_s"))
        gpu_hours = _finite(training.get("gpu_hours"))
        classes = per_class_ap(run)
        if index == baseline:
            delta = "baseline"
        else:
            parts = []
            for key in DELTA_KEYS:
                value, reference = _finite(metrics.get(key)), _finite(base.get(key))
                parts.append(f"{key} " + (NOT_AVAILABLE if value is None or reference is None
                                          else f"{100.0 * (value - reference):+.2f} pt"))
            delta = ", ".join(parts)
        cells = (
            NOT_AVAILABLE if params is None else f"{params / 1e6:.2f} M",
            NOT_AVAILABLE if gmac is None else f"{gmac:.3g}",
            *(_percent(_finite(metrics.get(key))) for key in HEADLINE_KEYS),
            *(_percent(classes.get(name)) for name in class_names),
            NOT_AVAILABLE if it_s is None else f"{it_s:.2f}",
            _memory(training),
            NOT_AVAILABLE if gpu_hours is None else f"{gpu_hours:.3g}",
            delta,
        )
        rows.append(ComparisonRow(run.experiment, run.run_id, label, cells, index == baseline))
    notes = [
        "AP, AP_50, AP_75, AP_S, AP_M: COCO AP in % (x 100) with each run's protocol headline (etram: "
        "class-agnostic, rvt: class-aware), from experiment_results.json; AP <class>: class-aware AP of the class "
        "in %, n/a for a class without ground truth in the evaluated split.",
        "params: all model parameters (trainable or not) in millions (M = 10^6); GMAC/frame: 10^9 multiply-accumulates of "
        "one frame at the training resolution; it/s: optimizer steps per second over the training run; peak memory: "
        "CUDA allocator peak (GPU) when recorded, else host resident memory peak (host RSS), GiB = 2^30 bytes; "
        "GPU-hours: training wall time x GPUs / 3600 (n/a without CUDA).",
        f"delta vs baseline: AP and AP_S minus those of the baseline run {labels[baseline]}, in percentage points.",
    ]
    protocols = {(_metrics(r).get("protocol") or {}).get("name") if isinstance(_metrics(r).get("protocol"), Mapping)
                 else None for r in runs}
    if len(protocols) > 1:
        named = ", ".join(sorted(str(p) for p in protocols))
        notes.append(f"Warning: the runs were evaluated with different protocols ({named}); their AP are not "
                     "directly comparable.")
    missing = [label for run, label in zip(runs, labels) if not _summary(run, "training_summary")]
    if missing:
        notes.append(f"n/a in params ... GPU-hours: run.json of {', '.join(missing)} has no model_summary / "
                     "training_summary (runs trained before they were recorded).")
    return ComparisonTable(columns=columns, rows=tuple(rows), class_names=tuple(class_names), notes=tuple(notes))


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_markdown_table(table: ComparisonTable) -> str:
    """The table as a GitHub-flavoured markdown table (``|`` in values escaped); the experiment cell is
    ``<experiment> (<run_id>)``.

    Returns:
        The table's lines joined by newlines, ending with a newline.
    """
    lines = ["| " + " | ".join(_markdown_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.columns))) + "|"]
    for row in table.rows:
        name = f"{row.experiment} ({row.run_id}{', baseline' if row.is_baseline else ''})"
        lines.append("| " + " | ".join(_markdown_cell(c) for c in (name, *row.cells)) + " |")
    return "\n".join(lines) + "\n"
