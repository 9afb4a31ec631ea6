"""What a training run records for its report (docs/run-folder.md): run.json's summaries, the perf/* columns of
metrics.csv and one confusion matrix per validation, locally and in the store."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from evdet.eval.report.run_folder import CONFUSION_NAME, parse_confusion_csv


def _metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_json_holds_the_model_and_training_summaries(tiny_run):
    out = Path(tiny_run["output_dir"])
    run = json.loads((out / "run.json").read_text())
    model = run["model_summary"]
    # tiny run: 160x90 shards; params > 0 and a frame costs some MACs at that resolution
    assert (model["input_height"], model["input_width"]) == (90, 160)
    assert model["params"] > 10_000 and 0 < model["gmac_per_frame"] < 10
    training = run["training_summary"]
    assert training["steps"] == 6 and training["steps_trained"] == 6
    assert training["device"] == "cpu" and training["world_size"] == 1
    assert training["peak_gpu_memory_bytes"] is None and training["gpu_hours"] is None
    assert training["wall_time_s"] > 0
    assert training["it_s"] == pytest.approx(6 / training["wall_time_s"])
    assert training["samples_s"] == pytest.approx(6 * 2 / training["wall_time_s"])  # local profile: batch 2
    assert training["peak_rss_bytes"] > 100 * 2**20  # a Python process with torch loaded
    assert run["description"].startswith("The team's plain 1x1 LSTM baseline")


def test_config_diff_names_what_the_experiment_and_the_overrides_changed(tiny_run):
    run = json.loads((Path(tiny_run["output_dir"]) / "run.json").read_text())
    diff = run["config_diff"]
    assert diff["experiment"] == "plain_lstm_640x360_baseline"
    changes = {c["key"]: c for c in diff["changes"]}
    assert changes["model.backbone.lstm_cell"] == {"key": "model.backbone.lstm_cell", "value": "PlainLSTM2d",
                                                   "default": "DWSConvLSTM2d", "set_by": "experiment"}
    assert changes["training.max_steps"]["value"] == 6 and changes["training.max_steps"]["set_by"] == "override"
    assert changes["dataset.height"]["value"] == 90 and changes["dataset.height"]["default"] == 360
    assert "run_id" not in changes and "output.dir" not in changes
    assert "seed" not in changes  # unchanged keys are left out


def test_metrics_csv_has_the_perf_columns_every_logged_step(tiny_run):
    rows = _metrics(Path(tiny_run["output_dir"]) / "logs" / "metrics.csv")
    perf = [r for r in rows if r.get("perf/it_s")]
    # training.log_every_n_steps=1: one value per optimiser step
    assert len(perf) == 6, [r["step"] for r in perf]
    for row in perf:
        assert float(row["perf/it_s"]) > 0
        assert float(row["perf/samples_s"]) == pytest.approx(2 * float(row["perf/it_s"]), rel=1e-3)
        assert float(row["perf/rss_bytes"]) > 100 * 2**20
        assert row.get("perf/peak_gpu_memory_bytes", "") == ""  # no CUDA here


def test_every_validation_writes_a_confusion_matrix_locally_and_in_the_store(tiny_run):
    out = Path(tiny_run["output_dir"])
    files = sorted((out / "confusion").glob("*.csv"))
    # validation every 3 steps of 6: steps 3 and 6
    assert [p.name for p in files] == ["confusion_matrix_e000_s0000003.csv", "confusion_matrix_e000_s0000006.csv"]
    assert all(CONFUSION_NAME.match(p.name) for p in files)  # the names the report's loader reads
    rows = _metrics(out / "logs" / "metrics.csv")
    val_steps = sorted(int(float(r["step"])) for r in rows if r.get("val_AP"))
    # Lightning logs the validation of step S at step S - 1 (before the step counter moves on)
    assert len(val_steps) == len(files)
    names = ("pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair")
    for path in files:
        matrix, classes = parse_confusion_csv(path)
        assert classes == names and matrix.shape == (9, 9) and matrix.dtype == np.int64
        assert matrix.sum() > 0 and matrix[-1, -1] == 0  # background vs background is never counted
        assert (Path(tiny_run["store_uri"]) / "confusion" / path.name).read_bytes() == path.read_bytes()
    for name in ("run.json", "config.yaml", "metrics.csv"):
        assert (Path(tiny_run["store_uri"]) / name).is_file(), name
    stored = json.loads((Path(tiny_run["store_uri"]) / "run.json").read_text())
    assert stored["training_summary"]["steps"] == 6 and stored["status"] == "completed"


def test_upload_run_copies_the_confusion_matrices(tiny_run, tmp_path):
    from evdet.model.training.train import upload_run

    uri = upload_run(Path(tiny_run["output_dir"]), str(tmp_path / "store"), "exp", "r1", checkpoints=False)
    assert re.search(r"experiments/exp/r1$", uri)
    copied = sorted(p.name for p in (Path(uri) / "confusion").glob("*.csv"))
    assert copied == sorted(p.name for p in (Path(tiny_run["output_dir"]) / "confusion").glob("*.csv")) and copied
