"""``evdet-report run``: the report of one run, written beside its results (``docs/run-folder.md``).

Output folder ``OUT``:

* ``OUT/README.md``: experiment name and description, run facts (status, steps, store), the headline AP table
  (AP, AP_50, AP_75, AP_S, AP_M, AP_L of the class-agnostic and the class-aware pass, the protocol's headline
  marked), per-class AP, the small-object classes' AP (``model.head.small_classes``, else
  ``dataset.small_classes`` of the run's config), training speed and memory (``run.json``'s ``training_summary``),
  model size (``model_summary``), the config diff against the defaults (``config_diff``, recorded at training time by
  :mod:`evdet.model.mlops.run_records`, so this report needs neither torch nor Hydra), the checkpoints, the validation AP
  per validation, and every figure below, embedded with relative links;
* ``OUT/confusion_matrices/confusion_matrix_eEEE_sSSSSSSS.png`` per validation during training,
  ``confusion_matrix_latest.png`` (the latest validation) and, when the run has the evaluate step's
  ``confusion_matrix.csv``, ``confusion_matrix_<split>.png`` (:mod:`evdet.eval.report.confusion_figures`);
* ``OUT/plots/{losses,val_ap,learning_rate,throughput,memory}.png`` (:mod:`evdet.eval.report.figures`); a figure
  whose series the run did not record is not drawn and the README says so.

``OUT`` must be missing or empty unless ``overwrite`` is set, and then it may only hold an earlier report
(:class:`evdet.data.output_folder.OutputFolder`: staged, then moved in; an error leaves ``OUT`` as it was).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

from evdet.data.output_folder import OutputFolder
from evdet.eval.report.confusion_figures import plot_confusion_matrix
from evdet.eval.report.figures import PLOTS, plot_training_curves
from evdet.eval.report.run_folder import RunRecord

__all__ = ["TOOL", "AP_KEYS", "check_results", "render_readme", "small_classes", "write_run_report"]

#: The tool name recorded in the output folder's manifest.
TOOL = "evdet-report run"
#: The headline COCO figures, in table order.
AP_KEYS = ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L")
_PASSES = ("class_agnostic", "class_aware")


def check_results(results: dict[str, Any] | None, where: str) -> None:
    """Check that an ``experiment_results.json`` holds what the report reads (``evdet-eval prophesee``'s layout).

    Args:
        results: the parsed file, or None (not evaluated: nothing to check).
        where: the file, for the message.

    Raises:
        ValueError: ``metrics`` is missing or lacks ``headline``, a pass (``class_agnostic`` / ``class_aware``) or
            a headline figure of the wrong type (names the file and the key).
    """
    if results is None:
        return
    metrics = results.get("metrics")
    expected = "expected the experiment_results.json of evdet-eval prophesee"
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: no 'metrics' object; {expected}")
    if metrics.get("headline") not in _PASSES:
        raise ValueError(f"{where}: metrics.headline is {metrics.get('headline')!r}, not class_agnostic or "
                         f"class_aware; {expected}")
    for kind in _PASSES:
        if not isinstance(metrics.get(kind), dict):
            raise ValueError(f"{where}: no metrics.{kind} object; {expected}")
        for key in AP_KEYS:
            value = metrics[kind].get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{where}: metrics.{kind}.{key} is {value!r}; expected a number or null")


def small_classes(config: dict[str, Any]) -> list[str]:
    """The run's small-object classes: ``model.head.small_classes`` (the ABC head's), else
    ``dataset.small_classes``; ``[]`` when the config names none."""
    head = ((config.get("model") or {}).get("head") or {})
    names = head.get("small_classes") or (config.get("dataset") or {}).get("small_classes") or []
    return [str(n) for n in names]


# ------------------------------------------------------------------------------------------------ formatting
def _ap(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"


def _number(value: Any, fmt: str, unit: str = "") -> str:
    return "not recorded" if value is None else f"{format(float(value), fmt)}{unit}"


def _gib(value: Any) -> str:
    return "not recorded" if value is None else f"{float(value) / 2**30:.2f} GiB"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "not recorded"
    whole = int(round(float(seconds)))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d} (h:mm:ss; {float(seconds):.1f} s)"


def _value(value: Any) -> str:
    """A config value as a table cell (YAML-like flow: lists in brackets, null)."""
    text = "null" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return f"`{text}`".replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    return ["| " + " | ".join(header) + " |", align, *("| " + " | ".join(r) + " |" for r in rows)]


# ------------------------------------------------------------------------------------------------ sections
def _section_results(record: RunRecord, small: list[str]) -> list[str]:
    results = record.results
    if results is None:
        return ["## Results", "", "Not evaluated: the run has no `experiment_results.json` (the evaluate step writes "
                "it; `--results` names one).", ""]
    metrics = results["metrics"]
    protocol = metrics.get("protocol") or {}
    headline = metrics["headline"]
    lines = ["## Results", ""]
    split = (results.get("extra") or {}).get("split")
    lines.append(
        f"COCO AP with the Prophesee protocol `{protocol.get('name', '?')}` (`evdet-eval prophesee`"
        f"{f', split {split}' if split else ''}): {metrics.get('num_recordings', '?')} recordings, "
        f"{metrics.get('num_images', '?')} images, {metrics.get('num_gt', '?')} ground-truth boxes, "
        f"{metrics.get('num_detections', '?')} detections; headline **{headline.replace('_', '-')}** (marked *). "
        f"Frame {protocol.get('width', '?')}x{protocol.get('height', '?')} px, boxes >= "
        f"{protocol.get('min_box_diag_px', '?')} px diagonal and >= {protocol.get('min_box_side_px', '?')} px side, "
        f"+-{int(protocol.get('time_tolerance_us', 0)) // 1000} ms matching; AP_S/M/L: box area < 32², 32²-96², "
        "> 96² px².")
    lines.append("")
    rows = [[kind.replace("_", "-") + (" *" if kind == headline else ""),
             *[_ap(metrics[kind].get(k)) for k in AP_KEYS]] for kind in _PASSES]
    lines += _table(["pass", *AP_KEYS], rows)
    lines.append("")
    per_class = (metrics.get("class_aware") or {}).get("per_class") or {}
    per_class_ap = metrics.get("per_class_AP") or {name: row.get("AP") for name, row in per_class.items()}
    if per_class_ap:
        lines += ["### Per-class AP (class-aware pass)", ""]
        rows = []
        for name, ap in per_class_ap.items():
            row = per_class.get(name, {})
            rows.append([name + (" (small)" if name in small else ""), _ap(ap), _ap(row.get("AP_50")),
                         _ap(row.get("AP_S")), str(row.get("num_gt", (metrics.get("per_class_num_gt") or {})
                                                               .get(name, "?")))])
        lines += _table(["class", "AP", "AP_50", "AP_S", "ground-truth boxes"], rows)
        lines.append("")
    lines += ["### Small-object classes", ""]
    if not small:
        lines += ["The run's config names no small-object classes (`dataset.small_classes`).", ""]
    else:
        values = [per_class_ap.get(n) for n in small]
        known = [float(v) for v in values if v is not None]
        lines.append(f"Small classes (config `{'model.head' if _head_small(record.config) else 'dataset'}"
                     f".small_classes`): {', '.join(small)}.")
        lines.append("")
        rows = [[n, _ap(v)] for n, v in zip(small, values)]
        rows.append(["**mean of the small classes**", _ap(sum(known) / len(known)) if known else "n/a"])
        lines += _table(["class", "AP (class-aware)"], rows)
        missing = [n for n in small if n not in per_class_ap]
        if missing:
            lines += ["", f"Not among the evaluated classes: {', '.join(missing)}."]
        lines.append("")
    return lines


def _head_small(config: dict[str, Any]) -> bool:
    return bool(((config.get("model") or {}).get("head") or {}).get("small_classes"))


def _section_training(record: RunRecord) -> list[str]:
    training = record.run.get("training_summary") or {}
    model = record.run.get("model_summary") or {}
    lines = ["## Training", ""]
    if not training and not model:
        return lines + ["Not recorded: `run.json` has no `training_summary` / `model_summary` (a run trained "
                        "before evdet recorded them, or still running).", ""]
    rows = [
        ["steps (global, optimiser)", _number(training.get("steps"), ".0f")],
        ["steps trained by this process", _number(training.get("steps_trained"), ".0f")],
        ["wall time", _duration(training.get("wall_time_s"))],
        ["throughput", _number(training.get("it_s"), ".3f", " it/s (optimiser steps per second)")],
        ["samples", _number(training.get("samples_s"), ".2f", " samples/s (sequences, all ranks)")],
        ["peak GPU memory", _gib(training.get("peak_gpu_memory_bytes")) + (
            " (no CUDA device)" if training.get("device") not in (None, "cuda") else "")],
        ["peak host memory (RSS)", _gib(training.get("peak_rss_bytes"))],
        ["device x world size", f"{training.get('device', '?')} x {training.get('world_size', '?')}"],
        ["GPU hours", _number(training.get("gpu_hours"), ".3f", " h")],
        ["parameters", "not recorded" if model.get("params") is None else f"{int(model['params']):,}"],
        ["multiply-accumulates per frame", _number(model.get("gmac_per_frame"), ".2f", " GMAC") + (
            f" at {model['input_width']}x{model['input_height']} px" if model.get("input_width") else "")],
    ]
    lines += _table(["", "value"], rows, align="|---|---|")
    lines += ["", "it/s and samples/s are over the whole training of this process, validations included "
              "(`plots/throughput.png` shows them between validations).", ""]
    return lines


def _section_config(record: RunRecord) -> list[str]:
    diff = record.run.get("config_diff")
    lines = ["## Configuration", ""]
    if not diff:
        return lines + ["The config diff was not recorded (`run.json` has no `config_diff`); the run's config is "
                        "`config.yaml`.", ""]
    changes = diff.get("changes") or []
    lines += [f"Against the {diff.get('against', 'defaults')}. `set by`: `experiment` = the experiment overlay "
              f"`{diff.get('experiment')}`, `override` = the command line or a profile.", ""]
    if not changes:
        return lines + ["No key differs from the defaults.", ""]
    rows = [[f"`{c['key']}`", _value(c.get("default")), _value(c.get("value")), str(c.get("set_by", "?"))]
            for c in changes]
    return lines + _table(["key", "default", "this run", "set by"], rows, align="|---|---|---|---|") + [""]


def _checkpoints(record: RunRecord) -> list[str]:
    # The folder's own checkpoints/ and run.json's best and last (run.json's "uploaded" also names top-k files the
    # run deleted again when a better one came, so it is not a listing).
    names = {p.name for p in (record.local_dir / "checkpoints").glob("*.ckpt")}
    run = record.run
    for key in ("best_checkpoint", "last_checkpoint"):
        if run.get(key):
            names.add(Path(str(run[key])).name)
    return sorted(names)


def _section_checkpoints(record: RunRecord) -> list[str]:
    names = _checkpoints(record)
    lines = ["## Checkpoints", ""]
    if not names:
        return lines + ["None recorded (no `checkpoints/*.ckpt` in the run folder or in `run.json`).", ""]
    best = Path(str(record.run.get("best_checkpoint") or "")).name
    last = Path(str(record.run.get("last_checkpoint") or "")).name
    for name in names:
        notes = [n for n, hit in (("best by val_AP", name == best and name != last), ("latest state", name == last))
                 if hit]
        lines.append(f"- `checkpoints/{name}`" + (f" ({', '.join(notes)})" if notes else ""))
    store = record.run.get("store_uri")
    if store:
        lines += ["", f"Store: `{store}`."]
    return lines + [""]


def _section_validations(record: RunRecord, confusion_files: dict[tuple[int, int], str]) -> list[str]:
    lines = ["## Validation during training", ""]
    steps, values = record.series("val_AP")
    if not steps.size and not confusion_files:
        return lines + ["No validation was recorded (no `val_AP` in `metrics.csv`, no `confusion/*.csv`).", ""]
    if steps.size:
        rows = [[f"{int(s)}", _ap(v)] for s, v in zip(steps, values)]
        lines += _table(["logged at step", "val_AP"], rows) + [""]
    if confusion_files:
        lines += ["Class confusion matrices (IoU >= 0.5, score >= 0.3, the AP images; rows normalised, counts "
                  "in the cells):", ""]
        for (epoch, step), rel in sorted(confusion_files.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            lines.append(f"- epoch {epoch}, step {step}: [{Path(rel).name}]({rel})")
        lines.append("")
    return lines


def render_readme(record: RunRecord, *, confusion_files: dict[tuple[int, int], str], latest: str | None,
                  split_figure: tuple[str, str] | None, plots: list[Path], skipped: dict[str, str]) -> str:
    """The README.md text of one run.

    Args:
        record: the run.
        confusion_files: ``{(epoch, step): relative PNG path}`` of the validations' confusion matrices.
        latest: relative path of ``confusion_matrix_latest.png``, or None.
        split_figure: ``(split, relative PNG path)`` of the evaluated split's confusion matrix, or None.
        plots: the training-curve PNGs written (``plots/<name>.png``).
        skipped: ``{plot name: reason}`` of the figures not drawn.

    Returns:
        Markdown text (GitHub flavour), ending with a newline.
    """
    small = small_classes(record.config)
    description = record.run.get("description") or record.config.get("description")
    lines = [f"# {record.experiment} — run {record.run_id}", ""]
    lines += [description if description else "_No description: the experiment config sets no `description`._", ""]
    facts = [f"status **{record.run.get('status', 'unknown')}**"]
    if record.run.get("global_step") is not None:
        facts.append(f"global step {record.run['global_step']}")
    if record.run.get("best_val_AP") is not None:
        facts.append(f"best val_AP {_ap(record.run['best_val_AP'])}")
    if record.results is not None and record.results.get("created_utc"):
        facts.append(f"evaluated {record.results['created_utc']}")
    lines += ["Run: " + ", ".join(facts) + ".", ""]
    lines += _section_results(record, small)
    if split_figure is not None:
        lines += [f"![confusion matrix on the {split_figure[0]} split]({split_figure[1]})", ""]
    lines += _section_training(record)
    lines += _section_validations(record, confusion_files)
    if latest is not None:
        lines += ["Latest validation's confusion matrix:", "", f"![latest validation confusion matrix]({latest})",
                  ""]
    lines += ["## Training curves", ""]
    by_name = {p.stem: p for p in plots}
    for plot in PLOTS:
        if plot.name in by_name:
            lines += [f"### {plot.title}", "", f"![{plot.title}](plots/{plot.name}.png)", ""]
        else:
            lines += [f"### {plot.title}", "", f"Not drawn — {skipped.get(plot.name, 'not recorded')}.", ""]
    lines += _section_config(record)
    lines += _section_checkpoints(record)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines += ["---", "", f"Written by `evdet-report run` at {generated} from `{record.location}`"
              f" ({', '.join(_sources(record))}).", ""]
    return "\n".join(lines)


def _sources(record: RunRecord) -> list[str]:
    found = [name for name, present in (("run.json", bool(record.run)), ("config.yaml", bool(record.config)),
                                         ("metrics.csv", bool(record.metrics_rows)),
                                         ("experiment_results.json", record.results is not None),
                                         (f"{len(record.validation_confusion)} confusion/*.csv",
                                          bool(record.validation_confusion)))
             if present]
    return found or ["no run files"]


# ------------------------------------------------------------------------------------------------ the report
def write_run_report(record: RunRecord, output: str | Path, *, split: str = "test",
                     overwrite: bool = False) -> dict[str, Any]:
    """Write the report of ``record`` into ``output`` (module docstring).

    Args:
        record: the run (:func:`evdet.eval.report.run_folder.load_run`); its results are checked with
            :func:`check_results` first.
        output: the report folder (missing or empty, or an earlier report with ``overwrite``).
        split: the evaluated split's name, for ``confusion_matrix_<split>.png``.
        overwrite: replace an earlier ``evdet-report run`` output in ``output``.

    Returns:
        ``{"output", "readme", "confusion_matrices": [relative paths], "plots": [relative paths],
        "plots_not_drawn": {name: reason}, "experiment", "run_id"}``.

    Raises:
        ValueError: the results file lacks what the report reads (:func:`check_results`), a bad ``split`` name.
        evdet.data.output_folder.OutputFolderError: ``output`` is not empty (without ``overwrite``) or holds files
            the tool did not write.
        OSError: a file cannot be written.
    """
    check_results(record.results, f"{record.location}: experiment_results.json")
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"--split {split!r}: expected a split name such as test or val")
    with OutputFolder(output, TOOL, overwrite=overwrite) as out:
        stage = out.staging
        confusion_files: dict[tuple[int, int], str] = {}
        for item in record.validation_confusion:
            rel = f"confusion_matrices/confusion_matrix_e{item.epoch:03d}_s{item.step:07d}.png"
            plot_confusion_matrix(item.matrix, item.class_names, f"{record.experiment} / {record.run_id}\n"
                                  f"validation at epoch {item.epoch}, step {item.step}", stage / rel)
            confusion_files[(item.epoch, item.step)] = rel
        latest = None
        if record.validation_confusion:
            item = record.validation_confusion[-1]
            latest = "confusion_matrices/confusion_matrix_latest.png"
            plot_confusion_matrix(item.matrix, item.class_names, f"{record.experiment} / {record.run_id}\n"
                                  f"latest validation: epoch {item.epoch}, step {item.step}", stage / latest)
        split_figure = None
        if record.test_confusion is not None:
            matrix, names = record.test_confusion
            rel = f"confusion_matrices/confusion_matrix_{split}.png"
            plot_confusion_matrix(matrix, names, f"{record.experiment} / {record.run_id}\nevaluated split: {split}",
                                  stage / rel)
            split_figure = (split, rel)
        plots, skipped = plot_training_curves(record, stage / "plots")
        text = render_readme(record, confusion_files=confusion_files, latest=latest, split_figure=split_figure,
                             plots=plots, skipped=skipped)
        (stage / "README.md").write_text(text, encoding="utf-8")
        figures = sorted(p.relative_to(stage).as_posix() for p in (stage / "confusion_matrices").glob("*.png")) \
            if (stage / "confusion_matrices").is_dir() else []
    return {"output": str(Path(output)), "readme": str(Path(output) / "README.md"), "experiment": record.experiment,
            "run_id": record.run_id, "confusion_matrices": figures,
            "plots": [f"plots/{p.name}" for p in plots], "plots_not_drawn": skipped}
