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
    assert set(results["metrics"]) >= {"AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L", "per_class_AP"}
    assert results["config"]["model"]["backbone"]["lstm_cell"] == "PlainLSTM2d"
    # The local profile's minimum box size (sensor px) reaches the evaluator, halved by the downsample factor.
    assert results["metrics"]["protocol"]["min_box_diag_px"] == pytest.approx(16 / 2)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "confusion_matrix.csv").read_text().startswith("true\\predicted,Car,")
    assert list((run / "detections" / "test").glob("*.npy"))
    for stem in ("gen4", "davis346"):
        assert (run / "detect" / f"{stem}_bbox.npy").is_file()
        assert list((run / "detect").glob(f"{stem}_*.png"))
        report = json.loads((run / "detect" / f"{stem}_detect.json").read_text())
        assert report["windows"] > 0 and report["latency_ms_per_window"]["p50"] > 0
