"""The main job end to end at tiny scale: kfp.local runs preprocess -> train -> evaluate -> detect."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_plain_lstm_baseline_pipeline_runs_locally(tmp_path):
    cmd = [
        sys.executable, str(ROOT / "pipelines" / "run_local.py"), "plain_lstm_baseline",
        "--workdir", str(tmp_path), "--duration-s", "1.5",
        "--override", "training.max_steps=4", "--override", "validation.val_check_interval=2",
        "--override", "logging.every_n_steps=2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "evdet main job" in proc.stdout and "AP_50" in proc.stdout
    # Not a terminal: training logs readable lines instead of a progress bar, and wandb runs offline.
    assert "step 2/4 (50.0%)" in proc.stdout and "it/s" in proc.stdout
    assert list(tmp_path.glob("pipeline_root/*/train/model/wandb/offline-run-*"))

    runs = list((tmp_path / "store" / "experiments" / "plain_lstm_640x360_baseline").iterdir())
    assert len(runs) == 1
    run = runs[0]
    results = json.loads((run / "experiment_results.json").read_text())
    assert results["experiment"] == "plain_lstm_640x360_baseline"
    metrics = results["metrics"]
    assert set(metrics) >= {"AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L", "per_class_AP", "class_agnostic",
                            "class_aware"}
    assert results["config"]["model"]["backbone"]["lstm_cell"] == "PlainLSTM2d"
    # the synthetic data are evaluated with the reference protocol: eTraM's, gen4 thresholds halved at 640x360
    protocol = metrics["protocol"]
    assert (protocol["name"], protocol["headline"], protocol["time_tolerance_us"]) == ("etram", "class_agnostic", 50_000)
    assert (protocol["min_box_diag_px"], protocol["min_box_side_px"], protocol["width"]) == (30, 10, 640)
    assert protocol["class_names"][:2] == ["pedestrian", "car"] and metrics["num_images"] > 0
    assert "class_agnostic" in proc.stdout and "class_aware" in proc.stdout
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "confusion_matrix.csv").read_text().startswith("true\\predicted,pedestrian,car,")
    assert list((run / "detections" / "test").glob("*_bbox.npy"))
    assert (run / "detections" / "test" / "detections.json").is_file()
    for stem in ("gen4", "davis346"):
        assert (run / "detect" / f"{stem}_bbox.npy").is_file()
        assert list((run / "detect").glob(f"{stem}_*.png"))
        report = json.loads((run / "detect" / f"{stem}_detect.json").read_text())
        assert report["windows"] > 0 and report["latency_ms_per_window"]["p50"] > 0
