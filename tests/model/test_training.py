"""Training through Hydra + Lightning on real shards, then predict, evaluate and detect on real recordings."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE, load_boxes
from evdet.model.training.checkpoint import load_module
from evdet.model.inference.detect import detect_recording, input_scale_factor
from evdet.model.inference.predict import predict_shards

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
    from evdet.model.training.train import run_training

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


def test_detect_cli_refuses_an_earlier_output_and_overwrite_leaves_no_stale_png(tiny_run, tmp_path):
    out = tmp_path / "det"
    cmd = [str(BIN / "evdet-detect"), tiny_run["last_checkpoint"], str(REAL / "davis346.aedat4"), "--output", str(out),
           "--device", "cpu", "--max-windows", "6"]
    first = subprocess.run(cmd + ["--max-images", "4"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len([n for n in before if n.endswith(".png")]) == 4
    again = subprocess.run(cmd + ["--max-images", "1"], capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert f"evdet-detect: error: {out}: output folder is not empty" in again.stderr and "--overwrite" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    replaced = subprocess.run(cmd + ["--max-images", "1", "--overwrite"], capture_output=True, text=True)
    assert replaced.returncode == 0, replaced.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [".evdet-manifest.json", "davis346_000000.png", "davis346_bbox.npy", "davis346_detect.json"]
    report = json.loads((out / "davis346_detect.json").read_text())
    assert report["images"] == [str(out / "davis346_000000.png")] and report["boxes"] == str(out / "davis346_bbox.npy")
    manifest = json.loads((out / ".evdet-manifest.json").read_text())
    assert manifest["tool"] == "evdet-detect" and manifest["files"] == names[1:]


def test_detect_gives_recordings_with_the_same_stem_distinct_names(tiny_run, tmp_path):
    from evdet.model.inference.detect import detect_recordings, output_names

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(REAL / "davis346.aedat4", a / "rec.aedat4")
    shutil.copy(REAL / "davis346.aedat4", b / "rec.aedat4")
    shutil.copy(REAL / "gen4.dat", a / "rec.dat")
    assert output_names([a / "rec.dat", a / "rec.aedat4"]) == ["rec-dat", "rec-aedat4"]
    assert output_names([a / "rec.aedat4", b / "rec.aedat4", a / "rec.dat"]) == ["rec-aedat4-a", "rec-aedat4-b",
                                                                                 "rec-dat"]
    assert output_names([a / "rec.dat", a / "rec.dat"]) == ["rec-dat-a-1", "rec-dat-a-2"]
    assert output_names([REAL / "gen4.dat", REAL / "davis346.aedat4"]) == ["gen4", "davis346"]  # unchanged
    out = tmp_path / "out"
    reports = detect_recordings(Path(tiny_run["last_checkpoint"]), [a / "rec.aedat4", b / "rec.aedat4"], out,
                                max_windows=2, max_images=1)
    assert [r["name"] for r in reports] == ["rec-aedat4-a", "rec-aedat4-b"]
    for report in reports:
        assert Path(report["boxes"]).is_file() and Path(report["boxes"]).parent == out
        assert json.loads((out / f"{report['name']}_detect.json").read_text())["recording"] == report["recording"]
    assert not [p for p in out.iterdir() if p.name.startswith(".evdet-staging")]


def test_detect_error_leaves_the_output_folder_as_it_was(tiny_run, tmp_path):
    from evdet.data.readers import RecordingError
    from evdet.model.inference.detect import detect_recordings

    out = tmp_path / "out"
    bad = tmp_path / "cut.dat"
    data = (REAL / "gen4.dat").read_bytes()
    bad.write_bytes(data[: len(data) // 2 + 3])  # truncated mid-record, as in test_detect_cli_names_a_corrupt_recording
    with pytest.raises(RecordingError, match="cut.dat"):  # the first recording is done, the second fails
        detect_recordings(Path(tiny_run["last_checkpoint"]), [REAL / "davis346.aedat4", bad], out, max_windows=2)
    assert not out.exists()


def test_predict_refuses_an_earlier_output_and_overwrite_replaces_it(tiny_run, tiny_shards, tmp_path):
    from evdet.data.output_folder import OutputFolderError

    out = tmp_path / "dets"
    checkpoint = Path(tiny_run["last_checkpoint"])
    predict_shards(checkpoint, tiny_shards / "test", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OutputFolderError, match=r"dets: output folder is not empty .*pass --overwrite"):
        predict_shards(checkpoint, tiny_shards / "val", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    report = predict_shards(checkpoint, tiny_shards / "val", out, overwrite=True)
    val = sorted(p.stem for p in (tiny_shards / "val").glob("*.h5"))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".evdet-manifest.json", "detections.json"] + [f"{n}.npy" for n in val] + [f"{n}_bbox.npy" for n in val])
    assert all(Path(f).parent == out and Path(f).is_file() for f in report["files"])
    (out / "experiment_results.json").write_text("{}")  # evdet-eval's results beside them: not predict's to delete
    with pytest.raises(OutputFolderError, match=r"experiment_results\.json"):
        predict_shards(checkpoint, tiny_shards / "test", out, overwrite=True)
    with pytest.raises(ValueError, match="batch_size"):
        predict_shards(checkpoint, tiny_shards / "test", tmp_path / "other", batch_size=0)
    assert not (tmp_path / "other").exists()


def test_run_flags_are_checked_with_the_flag_named():
    import torch

    from evdet.model.cli.flags import check_device
    from evdet.model.inference.detect import check_run_flags

    check_run_flags(max_windows=1, max_images=0, batch=2, confidence=0.0, nms=1.0)
    for flags, fragment in (({"max_windows": -1}, "--max-windows: expected a positive number"),
                            ({"max_windows": 0}, "--max-windows"), ({"max_images": -1}, "--max-images"),
                            ({"batch": 0}, "--batch"), ({"confidence": 2.0}, r"--confidence: expected a threshold in "
                                                                            r"\[0, 1\], got 2\.0"),
                            ({"nms": -0.1}, "--nms")):
        with pytest.raises(ValueError, match=fragment):
            check_run_flags(**flags)
    assert check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="--device: expected cpu, cuda or cuda:N, got 'gpu0'"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: CUDA is not available on this machine"):
            check_device("cuda")
    else:
        with pytest.raises(ValueError, match="--device cuda:99: expected a GPU index below"):
            check_device("cuda:99")


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


# ------------------------------------------------------------------------------------------ lifecycle and safe loading
def test_last_checkpoint_is_the_final_state_although_val_ap_did_not_improve(tiny_run):
    """val_AP is 0.0 at steps 3 and 6 (no improvement after 3): last.ckpt must still be step 6, the run's end."""
    import torch

    out = Path(tiny_run["output_dir"])
    assert tiny_run["status"] == "completed" and tiny_run["exit_code"] == 0
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)  # plain data only
    assert last["global_step"] == tiny_run["global_step"] == tiny_run["last_checkpoint_step"] == 6
    stored = torch.load(Path(tiny_run["store_uri"]) / "checkpoints" / "last.ckpt", weights_only=True)
    assert stored["global_step"] == 6
    assert json.loads((Path(tiny_run["store_uri"]) / "run.json").read_text())["status"] == "completed"


def test_interval_checkpoints_every_n_steps(tiny_shards, tmp_path, monkeypatch):
    from conftest import TINY_TRAINING

    import evdet.model.training.train as train
    from evdet.model.config import compose_config

    written: list[int] = []
    original = train.RunLifecycle._commit

    def spy(self, trainer):  # every last.ckpt that becomes visible, and at which step
        written.append(int(self._partial_step))
        return original(self, trainer)

    monkeypatch.setattr(train.RunLifecycle, "_commit", spy)
    cfg = compose_config(["+experiment=plain_lstm_640x360_baseline", f"dataset.path={tiny_shards}",
                          f"output.dir={tmp_path / 'run'}", "run_id=interval", *TINY_TRAINING, "training.max_steps=5",
                          "validation.val_check_interval=100", "checkpoint.every_n_steps=2"])
    summary = train.run_training(cfg)
    assert written == [2, 4, 5] and summary["last_checkpoint_step"] == 5  # the interval steps, then the end
    assert not list((tmp_path / "run" / "checkpoints").glob(".*partial"))  # written aside, then renamed


def _crafted_checkpoint(path: Path, marker: Path, config: dict | None = None) -> Path:
    """A Lightning-looking checkpoint whose pickle runs ``touch marker`` when unpickled unsafely."""
    import os

    import torch

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "hyper_parameters": {"config": config or {}, "eval_info": Planted()},
                "global_step": 1}, path)
    return path


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    import torch

    from evdet.model.training.checkpoint import CheckpointError, read_checkpoint

    # The file is live: unpickled the unsafe way, it creates its marker.
    control = tmp_path / "control-marker"
    torch.load(_crafted_checkpoint(tmp_path / "control.ckpt", control), weights_only=False)
    assert control.is_file()

    marker = tmp_path / "marker"
    evil = _crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    for load in (load_module, read_checkpoint):
        with pytest.raises(CheckpointError) as err:
            load(evil)
        message = str(err.value)
        assert "\n" not in message and "evil.ckpt" in message and "posix.system" in message
    assert not marker.exists()


def test_refusals_name_the_file(tiny_run, tmp_path):
    import torch

    from evdet.model.training.checkpoint import CheckpointError, check_resume_checkpoint, read_checkpoint
    from evdet.model.training.module import DetectionModule

    state = tmp_path / "weights.pt"
    torch.save({"model.x": torch.zeros(2)}, state)  # a bare state_dict: no Lightning layout
    with pytest.raises(CheckpointError, match="weights.pt: not a Lightning checkpoint"):
        load_module(state)
    ckpt_path = Path(tiny_run["last_checkpoint"])
    checkpoint = read_checkpoint(ckpt_path)
    config = json.loads(json.dumps(checkpoint["hyper_parameters"]["config"]))
    module = DetectionModule(config)
    check_resume_checkpoint(checkpoint, ckpt_path, module, config, "resume=auto")  # the run's own: fine
    longer = {**config, "training": {**config["training"], "max_steps": 9}}
    with pytest.raises(CheckpointError, match=r"training.max_steps=9 differs from the 6 .* pass training.max_steps=6"):
        check_resume_checkpoint(checkpoint, ckpt_path, module, longer, "resume=auto")
    wider = json.loads(json.dumps(config))
    wider["model"]["backbone"]["embed_dim"] = 32
    with pytest.raises(CheckpointError, match=r"model.backbone.embed_dim=16 in the checkpoint, 32 now"):
        check_resume_checkpoint(checkpoint, ckpt_path, DetectionModule(wider), wider, "ckpt_path")
    weights_only = {k: v for k, v in checkpoint.items() if k not in ("optimizer_states", "loops")}
    with pytest.raises(CheckpointError, match="holds weights only"):
        check_resume_checkpoint(weights_only, ckpt_path, module, config, "ckpt_path")


def test_hyper_parameters_are_plain_data():
    import numpy as np

    from evdet.model.training.module import plain_data

    assert plain_data({"a": (1, np.int64(2), np.float32(0.5), Path("/x"))}) == {"a": [1, 2, 0.5, "/x"]}
    with pytest.raises(TypeError, match=r"config.dataset.thing: builtins.object is not plain data"):
        plain_data({"dataset": {"thing": object()}}, "config")


def test_run_id_rules(monkeypatch):
    from evdet.model.config import compose_config
    from evdet.model.training.train import RUN_ID_ENV, _check_distributed_run_id, _launch_rank_zero, _run_id_given

    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert _run_id_given(compose_config(["run_id=r7"]))[0]
    cfg = compose_config([])
    cfg.run_id = None
    assert not _run_id_given(cfg)[0]
    monkeypatch.setenv(RUN_ID_ENV, "from-the-job")
    assert _run_id_given(cfg) == (True, f"from ${RUN_ID_ENV}")
    assert compose_config([]).run_id == "from-the-job"  # the config's default follows the variable
    monkeypatch.delenv(RUN_ID_ENV)
    assert _launch_rank_zero()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert not _launch_rank_zero()
    with pytest.raises(ValueError, match=r"WORLD_SIZE=4 .* pass run_id=<id> or set EVDET_RUN_ID=<id>"):
        _check_distributed_run_id(False)
    _check_distributed_run_id(True)


def test_sigterm_during_validation_abandons_it_and_checkpoints(tiny_shards, tmp_path, monkeypatch):
    """A signal that arrives while validation runs (single process): validation stops at its next batch, last.ckpt is
    written at the training step it validated, run.json says preempted, and the run raises Preempted (exit 143)."""
    import os
    import signal

    import torch
    from conftest import TINY_TRAINING

    import evdet.model.training.train as train
    from evdet.model.config import compose_config

    validated: list[int] = []

    def signal_at_validation(self, trainer, pl_module):
        validated.append(int(trainer.global_step))
        os.kill(os.getpid(), signal.SIGTERM)  # handled by evdet-train's handler: only recorded

    monkeypatch.setattr(train.RunLifecycle, "on_validation_start", signal_at_validation, raising=False)
    cfg = compose_config(["+experiment=plain_lstm_640x360_baseline", f"dataset.path={tiny_shards}",
                          f"output.dir={tmp_path / 'run'}", "run_id=val-sigterm", *TINY_TRAINING,
                          "training.max_steps=4", "validation.val_check_interval=2", "checkpoint.every_n_steps=100"])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(train.Preempted) as stopped:
        train.run_training(cfg)
    assert stopped.value.exit_code == 143 and "resume=auto run_id=val-sigterm" in stopped.value.message
    assert validated == [2]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "preempted" and run["stopped_by"] == "SIGTERM" and run["global_step"] == 2
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers found are restored afterwards
