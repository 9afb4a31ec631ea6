"""Generate the team's Grafana dashboards as code (grafana-foundation-sdk) from the training metrics' names.

Usage (``make dashboards``)::

    python k8s/grafana/dashboards.py --out k8s/grafana/dashboards

writes one JSON file per dashboard (``<uid without the evdet- prefix>.json``); Grafana loads them through the
file provider in ``provisioning/dashboards/evdet.yaml``, with the Prometheus datasource of
``provisioning/datasources/prometheus.yaml`` (uid :data:`DATASOURCE_UID`). The metrics are those exported by
``evdet.model.mlops.prometheus_metrics`` (prefix ``evdet_train_``, labels ``experiment``, ``run_id``, ``rank``).

Dashboards:
    * "evdet / Training throughput": it/s (mean over ranks), samples/s and frames/s (sum over ranks) per run;
      step time p50 / p95 (``histogram_quantile`` over the step-duration histogram); data-wait share
      (data-loading wait / (wait + step time)).
    * "evdet / Memory": GPU memory allocated / reserved / peak per device and rank; process RSS per rank.

Both have the query variables ``experiment`` and ``run`` (``label_values`` on ``evdet_train_steps_total``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

__all__ = ["DATASOURCE_UID", "SELECTOR", "build_dashboards", "render", "write_dashboards", "main"]

#: uid of the provisioned Prometheus datasource (provisioning/datasources/prometheus.yaml).
DATASOURCE_UID = "evdet-prometheus"
#: Label selector of every panel query: the runs picked by the template variables.
SELECTOR = 'experiment=~"$experiment",run_id=~"$run"'
_DS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
_RUN = "{{experiment}} / {{run_id}}"
_RANK = "{{run_id}} rank {{rank}}"


def _variables() -> list[dash.QueryVariable]:
    experiment = (
        dash.QueryVariable("experiment").label("Experiment").datasource(_DS)
        .query("label_values(evdet_train_steps_total, experiment)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*")
    )
    run = (
        dash.QueryVariable("run").label("Run").datasource(_DS)
        .query('label_values(evdet_train_steps_total{experiment=~"$experiment"}, run_id)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_DESC)
        .multi(True).include_all(True).all_value(".*")
    )
    return [experiment, run]


def _panel(title: str, description: str, unit: str, targets: list[tuple[str, str]], width: int = 12,
           height: int = 8) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).description(description).datasource(_DS).unit(unit).min(0)
        .span(width).height(height).line_width(1).fill_opacity(10)
        .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
    )
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)))
    return panel


def _base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title).uid(uid).description(description).tags(["evdet", "training"]).editable()
        .time("now-6h", "now").refresh("30s").timezone("browser").variables(_variables())
    )


def _per_rank(expr: str, extra: str = "") -> str:
    """``max by (experiment, run_id, rank[, extra])``: one series per rank, merging a run's live exporter series
    with the copy its final push left in the Pushgateway (same labels, other job)."""
    return f"max by (experiment, run_id, rank{', ' + extra if extra else ''}) ({expr})"


def throughput_dashboard() -> dash.Dashboard:
    """"evdet / Training throughput": it/s, samples/s, frames/s per run, step time p50/p95, data-wait share."""
    by_run = "experiment, run_id"

    def per_run(agg: str, metric: str) -> str:
        return f"{agg} by ({by_run}) ({_per_rank(f'{metric}{{{SELECTOR}}}')})"

    def rate_sum(metric: str) -> str:
        return f"sum by ({by_run}) ({_per_rank(f'rate({metric}{{{SELECTOR}}}[$__rate_interval])')})"

    def quantile(q: float) -> str:
        buckets = _per_rank(f"rate(evdet_train_step_duration_seconds_bucket{{{SELECTOR}}}[$__rate_interval])", "le")
        return f"histogram_quantile({q}, sum by ({by_run}, le) ({buckets}))"

    wait, step = rate_sum("evdet_train_data_wait_seconds_sum"), rate_sum("evdet_train_step_duration_seconds_sum")
    return (
        _base("evdet-training-throughput", "evdet / Training throughput",
              "Training speed of evdet runs (evdet.model.mlops.prometheus_metrics).")
        .with_panel(_panel("Iterations per second", "Training steps per second, mean over ranks.", "none",
                           [(per_run("avg", "evdet_train_iterations_per_second"), _RUN)]))
        .with_panel(_panel("Samples per second", "Sequences per second, summed over ranks.", "none",
                           [(per_run("sum", "evdet_train_samples_per_second"), _RUN)]))
        .with_panel(_panel("Frames per second", "Stacked histograms (batch x sequence length) per second, summed "
                           "over ranks.", "none", [(per_run("sum", "evdet_train_frames_per_second"), _RUN)]))
        .with_panel(_panel("Step time p50 / p95", "Quantiles of the training-step duration over all ranks.", "s",
                           [(quantile(0.5), f"p50 {_RUN}"), (quantile(0.95), f"p95 {_RUN}")]))
        .with_panel(_panel("Data-wait share", "Share of wall time the training loop waits for the next batch: "
                           "data wait / (data wait + step time).", "percentunit",
                           [(f"{wait} / ({wait} + {step})", _RUN)], width=24))
    )


def memory_dashboard() -> dash.Dashboard:
    """"evdet / Memory": GPU allocated / reserved / peak per device and rank, process RSS per rank."""
    gpu = "{{run_id}} rank {{rank}} {{device}}"

    def per_device(metric: str) -> str:
        return _per_rank(f"{metric}{{{SELECTOR}}}", "device")

    return (
        _base("evdet-memory", "evdet / Memory", "Memory of evdet training processes "
              "(evdet.model.mlops.prometheus_metrics; device=\"none\" when training without CUDA).")
        .with_panel(_panel("GPU memory allocated", "torch.cuda.memory_allocated per device and rank.", "bytes",
                           [(per_device("evdet_train_gpu_memory_allocated_bytes"), gpu)], width=8))
        .with_panel(_panel("GPU memory reserved", "torch.cuda.memory_reserved (caching allocator) per device and "
                           "rank.", "bytes", [(per_device("evdet_train_gpu_memory_reserved_bytes"), gpu)], width=8))
        .with_panel(_panel("GPU memory peak", "torch.cuda.max_memory_allocated per device and rank.", "bytes",
                           [(per_device("evdet_train_gpu_memory_peak_bytes"), gpu)], width=8))
        .with_panel(_panel("Process resident memory", "Resident set size of each training process.", "bytes",
                           [(_per_rank(f"evdet_train_process_resident_memory_bytes{{{SELECTOR}}}"), _RANK)],
                           width=24))
    )


def build_dashboards() -> dict[str, dash.Dashboard]:
    """Every dashboard builder keyed by its output file name (``training-throughput.json``, ``memory.json``)."""
    return {"training-throughput.json": throughput_dashboard(), "memory.json": memory_dashboard()}


def render(board: dash.Dashboard) -> str:
    """The dashboard's JSON as committed: keys sorted, 2-space indent, trailing newline (stable diffs)."""
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def write_dashboards(out: Path) -> list[Path]:
    """Write every dashboard into directory ``out`` (created); returns the written paths.

    Raises:
        NotADirectoryError: ``out`` exists and is not a directory.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: expected a directory for the dashboard JSON files")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, board in build_dashboards().items():
        path = out / name
        path.write_text(render(board))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--out DIR`` (default: ``dashboards/`` beside this file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "dashboards",
                        help="directory receiving the dashboard JSON files")
    args = parser.parse_args(argv)
    for path in write_dashboards(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
