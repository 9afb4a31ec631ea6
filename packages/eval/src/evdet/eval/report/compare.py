"""``evdet-report compare``: several evaluated runs side by side, as one markdown file and one self-contained HTML
file.

``evdet-report compare [RUN_OR_URI ...] [--store URI --experiments A,B,C] [--baseline RUN] --output DIR
[--title TEXT] [--overwrite]``

Inputs (at least one run in all, each evaluated: its folder holds ``experiment_results.json``):

* ``RUN_OR_URI``: a run's folder (``docs/run-folder.md``): a local folder, or a store URI
  ``s3://bucket/prefix/experiments/<experiment>/<run_id>`` (mirrored into the local cache first, without
  checkpoints and detections);
* ``--store URI --experiments A,B,C``: the newest run of each experiment in the store (the run whose files were
  written last, :func:`evdet.eval.report.run_folder.newest_run`), after the positional runs.

``--baseline``: the run the last column's deltas are taken against: one of the compared runs named by its location
as given, by its experiment (when only one compared run has it), by ``<experiment>/<run_id>`` or by run id; or
another run folder / store URI, which is then compared too, as the first row. Default: the first run.

Outputs in ``DIR`` (refused when ``DIR`` is not empty, unless ``--overwrite`` replaces an earlier
``evdet-report compare`` output there: :mod:`evdet.data.output_folder`):

* ``compare.md``: title, the comparison table (:mod:`evdet.eval.report.comparison_table`), its notes, links to
  the figures, the runs' sources;
* ``compare.html``: the same as one self-contained page (:mod:`evdet.eval.report.comparison_page`: inline CSS,
  images as data URIs, no script, nothing fetched);
* ``figures/per_class_ap.png`` (grouped bars of the class-aware AP of each class) and ``figures/val_ap.png``
  (overlaid validation-AP curves against the optimizer step), each only when some run has the data.

On success one JSON object on stdout: ``{"markdown", "html", "figures", "runs", "baseline"}`` (paths and
locations). Any input error prints one line ``evdet-report: error: ...`` on stderr and returns 2; nothing is written
then.

The console script's parser (:mod:`evdet.eval.report.cli`) calls :func:`configure_parser` and :func:`run`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evdet.data.output_folder import OutputFolder, check_output_folder
from evdet.eval.report.comparison_figures import per_class_ap_png, val_ap_png
from evdet.eval.report.comparison_page import PageFigure, RunSource, render_comparison_html
from evdet.eval.report.comparison_table import (
    ComparisonTable,
    build_comparison_table,
    format_markdown_table,
    per_class_ap,
    run_labels,
    val_ap_series,
)
from evdet.eval.report.run_folder import RunRecord, load_run, newest_run

__all__ = ["TOOL", "MARKDOWN_NAME", "HTML_NAME", "PER_CLASS_FIGURE", "VAL_AP_FIGURE", "CompareError",
           "configure_parser", "run", "resolve_locations", "compare_runs"]

#: The tool name recorded in the output folder's manifest (``--overwrite`` replaces only its files).
TOOL = "evdet-report compare"
MARKDOWN_NAME = "compare.md"
HTML_NAME = "compare.html"
#: Figure files, relative to the output folder.
PER_CLASS_FIGURE = "figures/per_class_ap.png"
VAL_AP_FIGURE = "figures/val_ap.png"


class CompareError(ValueError):
    """A comparison that cannot be made as asked; the message names the run, flag or value and what was expected."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``evdet-report compare`` (module docstring) to ``parser``."""
    parser.add_argument("runs", nargs="*", metavar="RUN_OR_URI",
                        help="run folders: local folders or s3://bucket/prefix/experiments/<experiment>/<run_id>")
    parser.add_argument("--store", default=None,
                        help="store (local folder or s3://bucket/prefix) holding experiments/<experiment>/<run_id>; "
                             "with --experiments")
    parser.add_argument("--experiments", default=None,
                        help="comma-separated experiment names: the newest run of each in --store")
    parser.add_argument("--baseline", default=None,
                        help="baseline run: a location, an experiment name among the runs, <experiment>/<run_id> "
                             "or a run id (default: the first run)")
    parser.add_argument("--output", required=True, type=Path,
                        help=f"output folder ({MARKDOWN_NAME}, {HTML_NAME}, figures/); must be missing or empty")
    parser.add_argument("--title", default=None, help="report title (default: 'Comparison of N runs')")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace the outputs of an earlier {TOOL} run in --output")


def resolve_locations(runs: Sequence[str], store: str | None, experiments: str | None) -> list[str]:
    """The run locations to compare: ``runs``, then the newest run of each of ``experiments`` in ``store``.

    Args:
        runs: run folders / store URIs, as given.
        store: the store of ``--experiments`` (``None``: no store).
        experiments: comma-separated experiment names (``None``: none).

    Returns:
        The locations in order (at least one).

    Raises:
        CompareError: ``--experiments`` without ``--store`` or the reverse, an empty experiment name, no run at all.
        LookupError: the store holds no run of an experiment (names the store and what it holds).
        evdet.data.storage.StoreError: the store cannot be read.
    """
    locations = [str(r) for r in runs]
    if experiments is not None and not store:
        raise CompareError(f"--experiments {experiments!r} needs --store URI (the store holding the experiments)")
    if store and experiments is None:
        raise CompareError(f"--store {store} needs --experiments A,B,C (the experiments whose newest runs to compare)")
    if experiments is not None:
        names = [name.strip() for name in experiments.split(",")]
        if not names or any(not name for name in names):
            raise CompareError(f"--experiments {experiments!r}: expected comma-separated non-empty experiment names")
        locations += [newest_run(store, name) for name in names]
    if not locations:
        raise CompareError("no runs to compare; expected at least one RUN_OR_URI, or --store URI --experiments A,B")
    return locations


def _same_location(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _load(location: str, option: str = "") -> RunRecord:
    record = load_run(location)
    if record.results is None:
        raise CompareError(f"{option}run {location}: no experiment_results.json; run the evaluate step first "
                           "(evdet-model predict, then evdet-eval prophesee --output <run folder>)")
    return record


def _baseline(baseline: str | None, locations: list[str], runs: list[RunRecord]) -> int:
    """Index of the baseline in ``runs``; loads and prepends a baseline location that is not among them."""
    if baseline is None:
        return 0
    for index, location in enumerate(locations):
        if _same_location(baseline, location):
            return index
    for key, what in ((lambda r: r.experiment, "experiment"), (lambda r: f"{r.experiment}/{r.run_id}",
                                                                "<experiment>/<run_id>"), (lambda r: r.run_id, "run id")):
        matches = [i for i, r in enumerate(runs) if key(r) == baseline]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise CompareError(f"--baseline {baseline!r}: the {what} of {len(matches)} compared runs ("
                               f"{', '.join(locations[i] for i in matches)}); name one by its location or "
                               "<experiment>/<run_id>")
    if "://" in baseline or Path(baseline).expanduser().is_dir():
        runs.insert(0, _load(baseline, "--baseline "))
        locations.insert(0, baseline)
        return 0
    known = ", ".join(f"{r.experiment}/{r.run_id}" for r in runs)
    raise CompareError(f"--baseline {baseline!r}: not a run folder, nor the experiment, <experiment>/<run_id> or run "
                       f"id of a compared run ({known})")


def _sources(runs: Sequence[RunRecord], labels: Sequence[str]) -> list[RunSource]:
    sources = []
    for run, label in zip(runs, labels):
        results = run.results or {}
        metrics = results.get("metrics") if isinstance(results.get("metrics"), dict) else {}
        protocol = metrics.get("protocol") if isinstance(metrics.get("protocol"), dict) else {}
        name = protocol.get("name")
        headline = metrics.get("headline")
        described = f"{name} ({headline})" if name and headline else str(name or headline or "")
        sources.append(RunSource(label=label, run_id=run.run_id, location=run.location,
                                 evaluated_utc=str(results.get("created_utc") or ""), protocol=described))
    return sources


def _markdown(title: str, generated: str, table: ComparisonTable, figures: Sequence[tuple[str, str, str, str]],
              missing: Sequence[str], sources: Sequence[RunSource]) -> str:
    baseline = next(row.label for row in table.rows if row.is_baseline)
    lines = [f"# {title}", "", f"{len(table.rows)} runs; generated {generated} by {TOOL}; baseline: {baseline}.", "",
             "## Comparison", "", format_markdown_table(table).rstrip("\n"), ""]
    lines += [f"- {note}" for note in table.notes]
    for heading, path, alt, caption in figures:
        lines += ["", f"## {heading}", "", f"![{alt}]({path})", "", caption]
    if missing:
        lines += ["", "## Figures not drawn", "", *(f"- {m}" for m in missing)]
    lines += ["", "## Runs", "", "| run | run id | location | evaluated (UTC) | protocol |", "|---|---|---|---|---|"]
    for s in sources:
        cells = (s.label, s.run_id, f"`{s.location}`", s.evaluated_utc or "n/a", s.protocol or "n/a")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def compare_runs(locations: Sequence[str], output: str | Path, *, baseline: str | None = None,
                 title: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the comparison report of the runs at ``locations`` into ``output`` (module docstring).

    Args:
        locations: run folders / store URIs (at least one), in table order.
        output: the output folder (missing or empty; or an earlier output of this tool with ``overwrite``).
        baseline: the baseline run (``--baseline``, module docstring); ``None``: the first run.
        title: the report title; ``None``: ``Comparison of N runs``.
        overwrite: replace an earlier ``evdet-report compare`` output in ``output``.

    Returns:
        ``{"markdown": path, "html": path, "figures": [paths], "runs": [locations], "baseline": location}``.

    Raises:
        CompareError: no runs, a run given twice, a run without ``experiment_results.json``, an unknown baseline.
        evdet.data.output_folder.OutputFolderError: ``output`` not empty without ``overwrite`` (checked before any
            run is read).
        FileNotFoundError / ValueError / evdet.data.storage.StoreError: a run folder that is missing or does not
            parse (from :func:`evdet.eval.report.run_folder.load_run`).
    """
    output = Path(output)
    check_output_folder(output, TOOL, overwrite)
    locations = [str(location) for location in locations]
    if not locations:
        raise CompareError("no runs to compare; expected at least one run folder")
    runs = [_load(location) for location in locations]
    index = _baseline(baseline, locations, runs)
    seen: dict[Path, str] = {}
    for location, record in zip(locations, runs):
        key = record.local_dir.resolve()
        if key in seen:
            raise CompareError(f"run {location}: given twice (also as {seen[key]}); expected each run once")
        seen[key] = location

    table = build_comparison_table(runs, index)
    labels = run_labels(runs)
    sources = _sources(runs, labels)
    title = title or f"Comparison of {len(runs)} runs"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    per_class = per_class_ap_png(labels, table.class_names, [per_class_ap(r) for r in runs])
    series = [val_ap_series(r) for r in runs]
    val_ap = val_ap_png(labels, [(steps, values) for _, steps, values in series])
    figures: list[tuple[str, str, str, str, bytes]] = []
    missing: list[str] = []
    if per_class is not None:
        figures.append(("Per-class AP", PER_CLASS_FIGURE, "Per-class AP of each run, grouped by class",
                        "Class-aware COCO AP (%) of each class on the evaluated split, one bar per run "
                        "(experiment_results.json metrics.per_class_AP); n/a: no ground truth of the class.",
                        per_class))
    else:
        missing.append("Per-class AP: no run has per-class AP in its experiment_results.json.")
    if val_ap is not None:
        columns = sorted({column for column, _, _ in series if column})
        figures.append(("Validation AP during training", VAL_AP_FIGURE,
                        "Validation AP of each run against the training step",
                        f"Validation AP (%) logged during training (metrics.csv {', '.join(columns)}) against the "
                        "global optimizer step, one curve per run.", val_ap))
    else:
        missing.append("Validation AP during training: no run logged val/AP or val_AP in metrics.csv.")

    markdown = _markdown(title, generated, table, [f[:4] for f in figures], missing, sources)
    page = render_comparison_html(title, generated, table,
                                  [PageFigure(title=h, png=png, alt=alt, caption=caption)
                                   for h, _, alt, caption, png in figures], sources, missing)
    with OutputFolder(output, TOOL, overwrite=overwrite) as folder:
        for _, path, _, _, png in figures:
            target = folder.staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)
        (folder.staging / MARKDOWN_NAME).write_text(markdown, encoding="utf-8")
        (folder.staging / HTML_NAME).write_text(page, encoding="utf-8")
    return {"markdown": str(output / MARKDOWN_NAME), "html": str(output / HTML_NAME),
            "figures": [str(output / f[1]) for f in figures], "runs": locations, "baseline": locations[index]}


def run(args: argparse.Namespace) -> int:
    """Run ``evdet-report compare`` with parsed ``args`` (from :func:`configure_parser`).

    Prints the JSON of :func:`compare_runs` on stdout on success.

    Returns:
        0 on success, 2 on any input error (one line ``evdet-report: error: ...`` on stderr, nothing written).
    """
    try:
        locations = resolve_locations(args.runs, args.store, args.experiments)
        result = compare_runs(locations, args.output, baseline=args.baseline, title=args.title,
                              overwrite=args.overwrite)
    except (ValueError, OSError, LookupError) as err:
        message = " ".join(str(err).split())
        print(f"evdet-report: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
