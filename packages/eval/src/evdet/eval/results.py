"""The ``experiment_results.json`` file: metrics of one evaluation run with its config and software versions.

Layout (JSON object, ``schema_version`` 1)::

    {"schema_version": 1, "experiment": str, "created_utc": ISO 8601 str,
     "metrics": {...}, "config": {...}, "extra": {...},
     "versions": {"python": str, "torch": str|null, "numpy": str|null, "pycocotools": str|null,
                  "evdet-data": str|null, "evdet-eval": str|null, "evdet-model": str|null}}

``metrics`` of ``evdet-eval prophesee`` is the dict of :func:`evdet.eval.prophesee.evaluate_prophesee`; ``extra``
holds the inputs, recordings, timings and the confusion matrix.

Files are written atomically (:func:`evdet.data.output_folder.write_file_atomically`: temporary file in the same
folder, then link/rename), so a reader never sees a half-written file and an existing result is never replaced
unless asked to.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np

from evdet.data.output_folder import write_file_atomically

__all__ = [
    "RESULTS_FILE_NAME",
    "RESULTS_SCHEMA_VERSION",
    "VERSIONED_DISTRIBUTIONS",
    "load_experiment_results",
    "software_versions",
    "write_experiment_results",
    "write_text_atomic",
]

RESULTS_FILE_NAME = "experiment_results.json"
"""File name used when :func:`write_experiment_results` is given a directory."""

RESULTS_SCHEMA_VERSION = 1
"""Version of the JSON layout described in the module docstring."""

VERSIONED_DISTRIBUTIONS: tuple[str, ...] = (
    "torch", "numpy", "pycocotools", "evdet-data", "evdet-eval", "evdet-model",
)
"""Installed distributions whose versions every results file records (via ``importlib.metadata``)."""

_REQUIRED_KEYS = ("schema_version", "experiment", "created_utc", "metrics", "config", "versions")


def software_versions() -> dict[str, str | None]:
    """Versions of Python and of :data:`VERSIONED_DISTRIBUTIONS`; ``None`` for a distribution not installed.

    Uses ``importlib.metadata`` (no package is imported, so this is cheap even for torch).
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED_DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _to_json(value: object, where: str) -> object:
    """Convert ``value`` to plain JSON types (numpy scalars/arrays, tuples, paths included).

    Raises:
        ValueError: a float is NaN or inf, a mapping key is not a string, or a value has no JSON form; the
            message names the key path ``where``.
    """
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r} ({type(key).__name__})")
            out[key] = _to_json(item, f"{where}.{key}")
        return out
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number, got {value}")
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"{where}: value of type {type(value).__name__} cannot be written as JSON")


def write_experiment_results(
    path: str | os.PathLike,
    metrics: Mapping,
    *,
    experiment: str,
    config: Mapping,
    extra: Mapping | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``experiment_results.json`` atomically and return its path.

    Args:
        path: target file, or an existing directory (then ``<dir>/experiment_results.json``). Missing parent
            folders are created.
        metrics: the metrics, e.g. the dict returned by :func:`evdet.eval.prophesee.evaluate_prophesee` (layout
            in its docstring: headline figures at the top level, ``class_agnostic`` / ``class_aware`` passes,
            per-class figures, counts, ``protocol`` settings).
        experiment: non-empty experiment name.
        config: the run's configuration (e.g. the composed Hydra config as a dict).
        extra: anything else worth keeping (inputs, command line); stored as ``{}`` when ``None``.
        overwrite: replace an existing file; otherwise an existing file is left untouched.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (the message names the path).
        ValueError: ``experiment`` is empty, or ``metrics``/``config``/``extra`` hold NaN/inf, non-string keys or
            values without a JSON form (the message names the key path).
        OSError: the folder cannot be created or written.
    """
    target = Path(path)
    if target.is_dir():
        target = target / RESULTS_FILE_NAME
    if not isinstance(experiment, str) or not experiment.strip():
        raise ValueError(f"experiment: expected a non-empty name, got {experiment!r}")
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: results file already exists; pass overwrite=True (--overwrite) to replace it")
    document = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "experiment": experiment,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "metrics": _to_json(metrics, "metrics"),
        "config": _to_json(config, "config"),
        "extra": _to_json({} if extra is None else extra, "extra"),
        "versions": software_versions(),
    }
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    return write_text_atomic(target, text, overwrite=overwrite)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write a UTF-8 text file atomically (:func:`evdet.data.output_folder.write_file_atomically`: a temporary file
    in the same folder, flushed to disk, then linked or renamed to ``path``).

    Used for ``experiment_results.json`` and the files written beside it (e.g. ``confusion_matrix.csv``).

    Args:
        path: the target file; missing parent folders are created.
        text: the contents.
        overwrite: replace an existing file; otherwise an existing file is left untouched.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (the message names the path).
        OSError: the folder cannot be created or written.
    """
    target = Path(path)
    exists = f"{target}: file already exists; pass overwrite=True (--overwrite) to replace it"
    if not overwrite and target.exists():
        raise FileExistsError(exists)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    try:
        write_file_atomically(write, target, overwrite=overwrite)
    except FileExistsError:  # created by someone else while this one was written
        raise FileExistsError(exists) from None
    return target


def load_experiment_results(path: str | os.PathLike) -> dict:
    """Read an ``experiment_results.json`` written by :func:`write_experiment_results`.

    Args:
        path: the file, or a directory holding ``experiment_results.json``.

    Returns:
        The JSON object as a dict (keys as in the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON, not a JSON object, lacks a required key, or has an unknown
            ``schema_version`` (the message names the file and key).
    """
    source = Path(path)
    if source.is_dir():
        source = source / RESULTS_FILE_NAME
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(document).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in document]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; expected keys {list(_REQUIRED_KEYS)}")
    if document["schema_version"] != RESULTS_SCHEMA_VERSION:
        raise ValueError(
            f"{source}: key 'schema_version' is {document['schema_version']!r}, expected {RESULTS_SCHEMA_VERSION}"
        )
    return document
