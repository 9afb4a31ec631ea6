"""Load one run's folder (``docs/run-folder.md``) from a local folder or a store, for the reports.

A run's files come in two layouts, and both load the same way:

- the store layout, ``experiments/<experiment>/<run_id>/`` in ``output.store`` (``metrics.csv`` at the top);
- the training output folder (``output.dir``: ``logs/metrics.csv``, the evaluate step's ``experiment_results.json``
  given separately).

A location that is not a local folder (``s3://bucket/prefix/experiments/<experiment>/<run_id>``) is mirrored into
the local cache (:func:`evdet.data.storage.cache_dir`) first, without checkpoints and detections; files of an earlier
mirror that the store no longer holds are removed, so a deleted file is never read stale.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from evdet.data.storage import Store, StoreError, cache_dir, open_store, run_prefix

__all__ = ["RunRecord", "ValidationConfusion", "load_run", "newest_run", "parse_confusion_csv",
           "CONFUSION_NAME", "REPORT_SKIPPED_PREFIXES"]

#: Per-validation confusion matrix files: ``confusion/confusion_matrix_e<epoch:03d>_s<step:07d>.csv``.
CONFUSION_NAME = re.compile(r"^confusion_matrix_e(\d+)_s(\d+)\.csv$")
#: Parts of a run folder the reports never read (not downloaded from a remote store).
REPORT_SKIPPED_PREFIXES = ("checkpoints/", "detections/", "detect/", "confusion_matrices/", "plots/")


@dataclass(frozen=True)
class ValidationConfusion:
    """The class confusion matrix of one validation during training.

    Attributes:
        epoch: the epoch (0-based, as Lightning counts).
        step: the global step of the validation.
        matrix: ``(C + 1, C + 1)`` int64 counts, rows true class, columns predicted, last = background.
        class_names: the C class names.
        path: the CSV it was read from.
    """

    epoch: int
    step: int
    matrix: np.ndarray
    class_names: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class RunRecord:
    """Everything the reports read of one run.

    Attributes:
        location: what was asked for (a local folder or a store URI).
        local_dir: the local folder the files were read from (the cache copy for a remote store).
        experiment: experiment name (``run.json``, else ``config.yaml``'s ``experiment_name``, else the folder's
            parent name).
        run_id: run id (``run.json``, else ``config.yaml``, else the folder name).
        config: ``config.yaml`` as plain data (``{}`` when absent).
        run: ``run.json`` (``{}`` when absent).
        metrics_rows: rows of ``metrics.csv`` in file order, numbers as float, empty cells left out.
        results: ``experiment_results.json``, or ``None`` when the run was not evaluated.
        validation_confusion: per-validation confusion matrices, sorted by step.
        test_confusion: the evaluate step's ``confusion_matrix.csv`` as ``(matrix, class_names)``, or ``None``.
    """

    location: str
    local_dir: Path
    experiment: str
    run_id: str
    config: dict[str, Any]
    run: dict[str, Any]
    metrics_rows: list[dict[str, float]]
    results: dict[str, Any] | None
    validation_confusion: list[ValidationConfusion] = field(default_factory=list)
    test_confusion: tuple[np.ndarray, tuple[str, ...]] | None = None

    def series(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` float64 of one ``metrics.csv`` column, rows where it and ``step`` are set, by step.

        A step logged twice (a resumed run trains it again) keeps its last value.
        """
        by_step: dict[float, float] = {}
        for row in self.metrics_rows:
            if column in row and "step" in row:
                by_step[row["step"]] = row[column]
        steps = np.array(sorted(by_step), dtype=np.float64)
        return steps, np.array([by_step[s] for s in steps], dtype=np.float64)

    @property
    def columns(self) -> list[str]:
        """Every column name that has at least one value, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.metrics_rows:
            seen.update(dict.fromkeys(row))
        return list(seen)


def parse_confusion_csv(path: str | Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read a confusion matrix written by :func:`evdet.eval.confusion.format_confusion_csv`.

    Returns:
        ``(matrix, class_names)``: ``(C + 1, C + 1)`` int64 counts and the C class names (``background`` dropped).

    Raises:
        ValueError: the file is not such a CSV (names the file and what was expected).
    """
    path = Path(path)
    rows = list(csv.reader(path.read_text().splitlines()))
    expected = "expected the header 'true\\predicted,<classes>,background' and one row per class plus background"
    if not rows or rows[0][:1] != ["true\\predicted"] or rows[0][-1:] != ["background"]:
        raise ValueError(f"{path}: not a confusion matrix CSV; {expected}")
    names = rows[0][1:]
    body = rows[1:]
    if len(body) != len(names) or any(len(r) != len(names) + 1 or r[0] != n for r, n in zip(body, names)):
        raise ValueError(f"{path}: {len(body)} rows for {len(names)} columns; {expected}")
    try:
        matrix = np.array([[int(v) for v in r[1:]] for r in body], dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"{path}: a count is not an integer ({exc}); {expected}") from None
    return matrix, tuple(names[:-1])


def _number(text: str) -> float | None:
    """A CSV cell as float; ``None`` for an empty or non-numeric cell."""
    try:
        return float(text) if text != "" else None
    except ValueError:
        return None


def _read_metrics(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = []
        for raw in csv.DictReader(f):
            row = {k: v for k, v in ((k, _number(v or "")) for k, v in raw.items() if k) if v is not None}
            if row:
                rows.append(row)
    return rows


def _read_mapping(path: Path, parse: Callable[[str], Any], errors: tuple[type[Exception], ...],
                  expected: str) -> dict[str, Any] | None:
    """The mapping a JSON or YAML file holds; ``None`` when there is no file.

    Raises:
        ValueError: the file does not parse, or holds something else than a mapping (names the file).
    """
    if not path.is_file():
        return None
    try:
        value = parse(path.read_text())
    except errors as exc:
        raise ValueError(f"{path}: not valid {expected} ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a {expected} mapping, got {type(value).__name__}")
    return value


def _read_json(path: Path) -> dict[str, Any] | None:
    return _read_mapping(path, json.loads, (json.JSONDecodeError,), "JSON")


def _read_config(path: Path) -> dict[str, Any]:
    return _read_mapping(path, yaml.safe_load, (yaml.YAMLError,), "YAML") or {}


def _mirror(location: str, cache: Path | None) -> Path:
    store = open_store(location)
    keys = [k for k in store.list("") if not k.startswith(REPORT_SKIPPED_PREFIXES)]
    if not keys:
        raise StoreError(f"{location}: no run files there; expected a run folder experiments/<experiment>/<run_id> "
                         "holding run.json, config.yaml, metrics.csv")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", location.split("://", 1)[-1]).strip("_")
    local = Path(cache if cache is not None else cache_dir()) / "reports" / safe
    if local.is_dir():  # an earlier mirror: drop files the store no longer holds, so none is read stale
        wanted = set(keys)
        for path in sorted(local.rglob("*"), reverse=True):
            rel = path.relative_to(local).as_posix()
            if path.is_file() and rel not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for key in keys:
        store.get_file(key, local / key)
    return local


def load_run(location: str | Path, *, results: str | Path | None = None, cache: str | Path | None = None) -> RunRecord:
    """Load one run's folder.

    Args:
        location: a local folder (store layout or training output folder) or a store URI of the run's folder
            (``s3://bucket/prefix/experiments/<experiment>/<run_id>``).
        results: an ``experiment_results.json`` to use instead of the folder's own (the evaluate step's output
            beside a training output folder).
        cache: where a remote run is mirrored (default: ``<cache_dir()>/reports``).

    Returns:
        The run's :class:`RunRecord`.

    Raises:
        FileNotFoundError: a local folder that does not exist, or that holds none of ``run.json``, ``config.yaml``,
            ``metrics.csv`` / ``logs/metrics.csv``, ``experiment_results.json`` (names the folder).
        ValueError: a file that does not parse (names the file and what was expected).
        StoreError: a remote store cannot be read or holds nothing there.
    """
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        local_dir = _mirror(text, Path(cache) if cache is not None else None)
    else:
        local_dir = Path(text[len("file://"):] if text.startswith("file://") else text)
        if not local_dir.is_dir():
            raise FileNotFoundError(f"run folder {text}: no such folder")
    metrics_path = next((p for p in (local_dir / "metrics.csv", local_dir / "logs" / "metrics.csv") if p.is_file()),
                        local_dir / "metrics.csv")
    results_path = Path(results) if results is not None else local_dir / "experiment_results.json"
    if results is not None and not results_path.is_file():
        raise FileNotFoundError(f"results file {results_path}: no such file")
    present = [p for p in (local_dir / "run.json", local_dir / "config.yaml", metrics_path, results_path) if p.is_file()]
    if not present:
        raise FileNotFoundError(f"run folder {text}: none of run.json, config.yaml, metrics.csv, "
                                "experiment_results.json there; expected a run's folder (docs/run-folder.md)")
    config = _read_config(local_dir / "config.yaml")
    run = _read_json(local_dir / "run.json") or {}
    confusions = []
    for path in sorted((local_dir / "confusion").glob("confusion_matrix_e*_s*.csv")):
        match = CONFUSION_NAME.match(path.name)
        if match:
            matrix, names = parse_confusion_csv(path)
            confusions.append(ValidationConfusion(int(match[1]), int(match[2]), matrix, names, path))
    confusions.sort(key=lambda c: (c.step, c.epoch))
    test_path = (results_path.parent if results is not None else local_dir) / "confusion_matrix.csv"
    return RunRecord(
        location=text,
        local_dir=local_dir,
        experiment=str(run.get("experiment") or config.get("experiment_name") or local_dir.parent.name),
        run_id=str(run.get("run_id") or config.get("run_id") or local_dir.name),
        config=config,
        run=run,
        metrics_rows=_read_metrics(metrics_path),
        results=_read_json(results_path),
        validation_confusion=confusions,
        test_confusion=parse_confusion_csv(test_path) if test_path.is_file() else None,
    )


def _run_ids(store: Store, experiment: str) -> dict[str, float]:
    prefix = f"experiments/{experiment}/"
    newest: dict[str, float] = {}
    for info in store.objects(prefix):
        run_id = info.key[len(prefix):].split("/", 1)[0]
        newest[run_id] = max(newest.get(run_id, 0.0), info.modified)
    return newest


def newest_run(store_uri: str | Path, experiment: str) -> str:
    """The location of the newest run of ``experiment`` in a store: the run whose files were written last.

    Args:
        store_uri: the store (a local folder or ``s3://bucket/prefix``), as ``output.store``.
        experiment: the experiment name.

    Returns:
        ``<store_uri>/experiments/<experiment>/<run_id>``.

    Raises:
        LookupError: the store holds no run of ``experiment`` (names the store and the experiments it holds).
        StoreError: the store cannot be read.
    """
    store = open_store(store_uri)
    runs = _run_ids(store, experiment)
    if not runs:
        held = sorted({k.split("/")[1] for k in store.list("experiments/") if k.count("/") >= 2})
        raise LookupError(f"store {store_uri}: no run of experiment {experiment!r}; it holds "
                          f"{', '.join(held) if held else 'no experiments'}")
    run_id = max(runs, key=lambda r: (runs[r], r))
    return f"{str(store_uri).rstrip('/')}/{run_prefix(experiment, run_id)}"
