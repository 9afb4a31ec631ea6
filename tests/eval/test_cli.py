"""evdet-eval coco end to end on tiny hand-made shards, and the experiment_results.json writer/reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE, EXPERIMENT_CLASSES
from evdet.eval.cli import main
from evdet.eval.results import load_experiment_results, write_experiment_results

T1 = 1_000_000  # µs, after the 0.5 s skip
T2 = 1_050_000


def boxes(*rows: tuple) -> np.ndarray:
    """rows of (t, x, y, w, h, class_id, score) -> BBOX_DTYPE array."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, c, s) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, i, s)
    return out


def write_shard(path: Path, labels: np.ndarray, *, width=640, height=360, downsample_factor=2, class_names=None,
                **extra_attrs) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=labels)
        f.attrs["width"] = width
        f.attrs["height"] = height
        f.attrs["downsample_factor"] = downsample_factor
        if class_names is not None:
            f.attrs["class_names"] = list(class_names)
        for key, value in extra_attrs.items():
            f.attrs[key] = value
    return path


@pytest.fixture
def run_dirs(tmp_path):
    """Two shards at 640x360 (downsample 2) with perfect detections; returns (shards, detections, out dir)."""
    shards, dets, out = tmp_path / "test", tmp_path / "det", tmp_path / "plain_lstm_run"
    shards.mkdir()
    dets.mkdir()
    a = boxes((T1, 10, 10, 50, 40, 0, 1), (T1, 200, 100, 30, 30, 4, 1), (T2, 12, 10, 50, 40, 0, 1))
    b = boxes((T1, 300, 200, 60, 60, 1, 1))
    for name, lab in (("seq_a", a), ("seq_b", b)):
        write_shard(shards / f"{name}.h5", lab)
        det = lab.copy()
        det["class_confidence"] = 0.9
        np.save(dets / f"{name}.npy", det)
    return shards, dets, out


def coco_args(shards, dets, output, *more):
    return ["coco", "--shards", str(shards), "--detections", str(dets), "--output", str(output), *more]


def test_cli_writes_results_with_config_and_versions(run_dirs, tmp_path, capsys):
    shards, dets, out = run_dirs
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  name: rvt_tiny\n  lstm: plain\nbatch_size: 8\n")
    output = out / "experiment_results.json"
    assert main(coco_args(shards, dets, output, "--config", str(config))) == 0
    printed = capsys.readouterr()
    assert "AP_50" in printed.out and "Pedestrian" in printed.out and printed.err == ""

    results = load_experiment_results(output)
    assert results["experiment"] == "plain_lstm_run"  # default: the output file's folder
    assert results["config"] == {"model": {"name": "rvt_tiny", "lstm": "plain"}, "batch_size": 8}
    metrics = results["metrics"]
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP_50"] == pytest.approx(1.0)
    assert (metrics["num_recordings"], metrics["num_images"], metrics["num_labels"]) == (2, 3, 4)
    assert list(metrics["per_class_AP"]) == list(EXPERIMENT_CLASSES)  # shards without class_names attr
    assert metrics["per_class_AP"]["Bus"] is None
    assert metrics["protocol"]["min_box_diag_px"] == 30.0  # gen4 60 px / downsample 2
    for dist in ("python", "numpy", "pycocotools", "torch", "evdet-eval", "evdet-data"):
        assert results["versions"][dist], dist
    assert results["extra"]["recordings"] == ["seq_a", "seq_b"]
    assert results["created_utc"].endswith("+00:00")


def test_cli_uses_class_names_attr_and_experiment_name(run_dirs, tmp_path):
    shards, dets, out = run_dirs
    for shard in shards.glob("*.h5"):
        with h5py.File(shard, "a") as f:
            f.attrs["class_names"] = [f"c{i}" for i in range(5)]
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"lr": 0.0002}))
    out.mkdir()
    assert main(coco_args(shards, dets, out, "--experiment", "exp1", "--config", str(config))) == 0
    results = load_experiment_results(out / "experiment_results.json")  # --output given as an existing folder
    assert results["experiment"] == "exp1"
    assert list(results["metrics"]["per_class_AP"]) == ["c0", "c1", "c2", "c3", "c4"]
    assert results["config"] == {"lr": 0.0002}


def test_cli_refuses_to_overwrite_and_leaves_file_untouched(run_dirs, capsys):
    shards, dets, out = run_dirs
    out.mkdir()
    output = out / "experiment_results.json"
    output.write_text("previous results\n")
    assert main(coco_args(shards, dets, output)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(output) in err and "--overwrite" in err
    assert output.read_text() == "previous results\n"
    assert main(coco_args(shards, dets, output, "--overwrite")) == 0
    assert load_experiment_results(output)["metrics"]["AP"] == pytest.approx(1.0)
    # no temp file left behind; the confusion matrix lands beside the results
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.csv", "experiment_results.json"]
    results = load_experiment_results(output)
    counts = np.array(results["extra"]["confusion_matrix"]["counts"])
    assert counts[-1].sum() == 0 and counts[:, -1].sum() == 0  # perfect detections: no false positive, no miss
    assert (out / "confusion_matrix.csv").read_text().startswith("true\\predicted,")


def test_cli_missing_detections_file_names_it(run_dirs, capsys):
    shards, dets, out = run_dirs
    (dets / "seq_b.npy").unlink()
    assert main(coco_args(shards, dets, out / "r.json")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seq_b.npy" in err and "not found" in err
    assert not (out / "r.json").exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.attrs.__delitem__("downsample_factor"), "missing attr 'downsample_factor'"),
        (lambda f: f.attrs.__setitem__("width", -3), "attr 'width' must be a positive integer"),
        (lambda f: f.__delitem__("labels"), "missing dataset 'labels'"),
        (lambda f: f.attrs.__setitem__("complete", False), "attr 'complete' is False"),
        (lambda f: f.attrs.__setitem__("height", 720), "attr 'height' differs between shards"),
    ],
    ids=["no-downsample", "bad-width", "no-labels", "incomplete", "mixed-height"],
)
def test_cli_bad_shard_is_one_line_error(run_dirs, capsys, mutate, message):
    shards, dets, out = run_dirs
    with h5py.File(shards / "seq_b.h5", "a") as f:
        mutate(f)
    assert main(coco_args(shards, dets, out / "r.json")) == 2
    err = capsys.readouterr().err
    assert err.startswith("evdet-eval: error: ") and err.count("\n") == 1 and message in err


def test_cli_bad_detections_and_config_and_usage(run_dirs, tmp_path, capsys):
    shards, dets, out = run_dirs
    np.save(dets / "seq_a.npy", np.zeros((3, 6), np.float32))
    assert main(coco_args(shards, dets, out / "r.json")) == 2
    assert "seq_a.npy: expected a 1-D structured numpy box array" in capsys.readouterr().err

    bad_config = tmp_path / "run.toml"
    bad_config.write_text("a = 1\n")
    assert main(coco_args(shards, dets, out / "r.json", "--config", str(bad_config))) == 2
    assert "unknown config suffix '.toml'" in capsys.readouterr().err

    assert main(["coco", "--shards", str(shards)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--detections" in err


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
