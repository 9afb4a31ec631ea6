"""Training through Hydra + Lightning on real shards, then predict, evaluate and detect on real recordings."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE, load_boxes
from evdet.model.checkpoint import load_module
from evdet.model.detect import detect_recording, input_scale_factor
from evdet.model.predict import predict_shards

BIN = Path(sys.executable).parent
REAL = Path(__file__).resolve().parents[2] / "data" / "real"


def test_training_writes_checkpoints_logs_and_store(tiny_run):
    out = Path(tiny_run["output_dir"])
    assert tiny_run["global_step"] == 6
    names = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in names
    assert any(re.fullmatch(r"epoch=\d{3}-step=\d+-val_AP=\d\.\d\d\.ckpt", n) for n in names), names
    with open(out / "logs" / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    for key in ("train/loss", "train/loss_iou", "train/loss_obj", "train/loss_cls", "val_AP", "val/AP_50"):
        assert key in columns, columns
    store = Path(tiny_run["store_uri"])
    assert (store / "checkpoints" / "last.ckpt").is_file() and (store / "config.yaml").is_file()
    assert store.as_posix().endswith("experiments/plain_lstm_640x360_baseline/tiny")


def test_checkpoint_rebuilds_the_configured_model(tiny_run):
    module, config = load_module(tiny_run["last_checkpoint"])
    assert config["model"]["backbone"]["lstm_cell"] == "PlainLSTM2d"
    assert module.model.num_classes == 8 and not module.training


def test_bad_checkpoint_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.ckpt"):
        load_module(bad)


def test_shards_of_another_size_are_rejected(tiny_shards, tmp_path):
    from evdet.model.config import compose_config
    from evdet.model.train import run_training

    cfg = compose_config(["profile=local", f"dataset.path={tiny_shards}", f"output.dir={tmp_path}"])
    with pytest.raises(ValueError, match="dataset.width x dataset.height"):
        run_training(cfg)


def test_predict_and_evaluate_write_results(tiny_run, tiny_shards, tmp_path):
    from evdet.data.shards import Shard

    report = predict_shards(Path(tiny_run["last_checkpoint"]), tiny_shards / "test", tmp_path / "dets")
    shard_path = next((tiny_shards / "test").glob("*.h5"))
    shard = Shard(shard_path)
    assert report["sequences"] == 1 and report["labelled_frames"] == shard.num_frames  # every object frame
    dets = load_boxes(tmp_path / "dets" / f"{shard_path.stem}.npy")
    gt = load_boxes(tmp_path / "dets" / f"{shard_path.stem}_bbox.npy")
    assert dets.dtype == BBOX_DTYPE and set(np.unique(dets["t"])) <= set(shard.label_t_us.tolist())
    np.testing.assert_array_equal(gt[["t", "x", "y", "w", "h", "class_id"]],
                                  shard.ground_truth()[["t", "x", "y", "w", "h", "class_id"]])
    described = json.loads((tmp_path / "dets" / "detections.json").read_text())
    assert described["class_names"] == list(shard.class_names) and described["protocol"] == "etram"
    assert (described["width"], described["height"], described["downsample_factor"]) == (160, 90, 2)
    results = tmp_path / "experiment_results.json"
    proc = subprocess.run(
        [str(BIN / "evdet-eval"), "prophesee", "--gt", str(tmp_path / "dets"), "--detections", str(tmp_path / "dets"),
         "--output", str(results), "--config", str(Path(tiny_run["output_dir"]) / "config.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(results.read_text())["metrics"]
    assert 0.0 <= metrics["AP"] <= 1.0 and metrics["headline"] == "class_agnostic"
    assert metrics["class_agnostic"]["AP"] == metrics["AP"] and "AP" in metrics["class_aware"]
    assert metrics["protocol"]["time_tolerance_us"] == 50_000


def test_input_scale_factor():
    assert input_scale_factor(1280, 720, 640, 360) == 2
    assert input_scale_factor(346, 260, 640, 360) == 1
    assert input_scale_factor(1280, 720, 160, 90) == 8
    with pytest.raises(ValueError, match="sensor width"):
        input_scale_factor(0, 720, 640, 360)


@pytest.mark.parametrize("name,width,height", [("gen4.dat", 1280, 720), ("davis346.aedat4", 346, 260)])
def test_detect_on_real_recordings(tiny_run, tmp_path, name, width, height):
    report = detect_recording(Path(tiny_run["last_checkpoint"]), REAL / name, tmp_path, confidence_threshold=0.01,
                              max_images=2, max_windows=12)
    assert (report["width"], report["height"]) == (width, height)
    assert report["windows"] == 12 and report["latency_ms_per_window"]["p50"] > 0
    boxes = load_boxes(report["boxes"])
    assert len(boxes) == report["detections"]
    if len(boxes):
        assert (boxes["x"] >= 0).all() and (boxes["x"] + boxes["w"] <= width + 1e-3).all()
        assert (boxes["y"] >= 0).all() and (boxes["y"] + boxes["h"] <= height + 1e-3).all()
        assert (np.diff(boxes["t"]) >= 0).all()  # t = window end (µs), windows in order
        assert len(np.unique(boxes["t"])) <= 12
    assert len(report["images"]) == 2 and all(Path(p).stat().st_size > 0 for p in report["images"])


def test_detect_cli_names_a_corrupt_recording(tiny_run, tmp_path):
    bad = tmp_path / "cut.dat"
    data = (REAL / "gen4.dat").read_bytes()
    bad.write_bytes(data[: len(data) // 2 + 3])  # truncated mid-record
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run([str(BIN / "evdet-detect"), tiny_run["last_checkpoint"], str(bad), "--output", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "cut.dat" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written for a bad input


def test_bench_prints_one_json_line():
    proc = subprocess.run(
        [str(BIN / "evdet-bench"), "train", "+experiment=plain_lstm_640x360_baseline", "profile=local",
         "dataset.height=64", "dataset.width=128", "--device", "cpu", "--batch", "1", "--steps", "1", "--warmup", "1"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("it_per_s", "samples_per_s", "frames_per_s", "peak_memory_bytes", "params", "device", "precision",
                "batch", "seq_len"):
        assert key in result
    assert result["frames_per_s"] == pytest.approx(result["it_per_s"] * 1 * result["seq_len"], rel=1e-3)
    assert result["device"] == "cpu" and result["peak_memory_bytes"] > 0


def test_model_summary_cli_and_bad_override():
    proc = subprocess.run([str(BIN / "evdet-model"), "summary", "+experiment=plain_lstm_640x360_baseline", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["params_total"] == 18_538_791
    bad = subprocess.run([str(BIN / "evdet-model"), "summary", "model.backbone.embed_dimm=3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "embed_dimm" in bad.stderr
