"""experiment_results.json: writer and reader (atomic, no silent overwrite, JSON-only values)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evdet.eval.results import load_experiment_results, write_experiment_results, write_text_atomic


def test_write_and_load_results_roundtrip(tmp_path):
    metrics = {"AP": np.float64(0.25), "per_class_AP": {"Car": 0.5, "Truck": None}, "num_images": np.int64(3)}
    path = write_experiment_results(tmp_path / "sub" / "res.json", metrics, experiment="e", config={"bins": (10,)},
                                    extra={"note": "x"})
    loaded = load_experiment_results(path)
    assert loaded["metrics"] == {"AP": 0.25, "per_class_AP": {"Car": 0.5, "Truck": None}, "num_images": 3}
    assert loaded["config"] == {"bins": [10]} and loaded["extra"] == {"note": "x"}
    assert loaded["versions"]["numpy"] == np.__version__


def test_write_results_never_overwrites_silently(tmp_path):
    path = tmp_path / "experiment_results.json"
    write_experiment_results(path, {"AP": 0.1}, experiment="first", config={})
    with pytest.raises(FileExistsError, match=str(path)):
        write_experiment_results(path, {"AP": 0.9}, experiment="second", config={})
    assert load_experiment_results(path)["experiment"] == "first"
    write_experiment_results(tmp_path, {"AP": 0.9}, experiment="second", config={}, overwrite=True)  # a folder
    assert load_experiment_results(tmp_path)["metrics"]["AP"] == 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["experiment_results.json"]


def test_write_results_rejects_nan_and_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\.per_class_AP\.Car: expected a finite number"):
        write_experiment_results(tmp_path / "r.json", {"per_class_AP": {"Car": math.nan}}, experiment="e", config={})
    assert not any(tmp_path.iterdir())


def test_load_results_rejects_foreign_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ValueError, match=r"r\.json: missing key\(s\) \['schema_version', 'experiment'"):
        load_experiment_results(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"r\.json: not valid JSON"):
        load_experiment_results(path)


def test_write_text_atomic_never_overwrites_silently(tmp_path):
    path = tmp_path / "sub" / "confusion_matrix.csv"
    assert write_text_atomic(path, "a\n") == path
    with pytest.raises(FileExistsError, match="already exists"):
        write_text_atomic(path, "b\n")
    assert path.read_text() == "a\n"
    write_text_atomic(path, "c\n", overwrite=True)
    assert path.read_text() == "c\n" and [p.name for p in path.parent.iterdir()] == ["confusion_matrix.csv"]
