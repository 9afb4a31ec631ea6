"""Data-parallel training: 2 processes on the CPU (gloo) through the real `evdet-train` entry point, with the run's
store in a real S3 bucket (the JuiceFS gateway of :mod:`storage.s3_gateway`).

No run_id is given: the rank-0 process picks one and the rank Lightning spawns must use the same (one run folder, one
run in the bucket, one run_id label in the pushed metrics). Only rank 0 writes config.yaml / run.json and uploads:
every object goes up once.
"""

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
EXPERIMENT = "plain_lstm_640x360_baseline"


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical(tiny_shards, pushgateway, tmp_path, monkeypatch):
    from storage.s3_gateway import Gateway

    gateway = Gateway(tmp_path / "juicefs")
    server = gateway.start()
    try:
        bucket = server.make_bucket("ddp")
        env = {**os.environ, **server.env, "EVDET_CACHE_DIR": str(tmp_path / "cache")}
        env.pop("EVDET_RUN_ID", None)
        cmd = [
            str(BIN / "evdet-train"), f"+experiment={EXPERIMENT}", "dataset=etram", "profile=local",
            f"dataset.path={tiny_shards}", "dataset.height=90", "dataset.width=160",
            "hardware.devices=2", "hardware.strategy=ddp", "training.max_steps=4", "checkpoint.every_n_steps=2",
            "validation.val_check_interval=2", "wandb.enabled=false", f"metrics.pushgateway={pushgateway}",
            f"output.store=s3://{bucket}/runs",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        log = proc.stdout + proc.stderr

        # One run: one output folder (default outputs/<experiment>/<run_id>), one run prefix in the bucket.
        runs = sorted(p.name for p in (tmp_path / "outputs" / EXPERIMENT).iterdir())
        assert len(runs) == 1, runs
        run_id = runs[0]
        out = tmp_path / "outputs" / EXPERIMENT / run_id
        run = json.loads((out / "run.json").read_text())
        assert run["run_id"] == run_id and run["status"] == "completed"
        assert run["world_size"] == 2 and run["global_step"] == 4 and run["upload_failures"] == []
        assert len(run["weight_digests"]) == 2
        assert run["weights_identical_across_ranks"] is True, run["weight_digests"]

        # Only rank 0 writes checkpoints: one checkpoint folder, in rank 0's run directory, and no stray ones.
        ckpts = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("outputs/**/*.ckpt"))
        assert ckpts and all(c.startswith(f"outputs/{EXPERIMENT}/{run_id}/checkpoints/") for c in ckpts), ckpts

        from evdet.data.storage import S3Store

        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        keys = S3Store(bucket, "runs").list("experiments/")
        assert {k.split("/")[2] for k in keys} == {run_id}, keys
        assert {f"experiments/{EXPERIMENT}/{run_id}/{name}" for name in
                ("checkpoints/last.ckpt", "config.yaml", "run.json")} <= set(keys), keys
        # Every upload is rank 0's: config.yaml (unchanged during the run) went up exactly once.
        uploads = re.findall(rf"uploaded s3://{bucket}/runs/experiments/{EXPERIMENT}/{run_id}/config\.yaml$", log,
                             re.M)
        assert len(uploads) == 1, log[-3000:]

        # Both ranks exported (and pushed) their metrics, each with its rank label and the same run_id.
        with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
            text = response.read().decode()
        steps = [line for line in text.splitlines()
                 if line.startswith("evdet_train_steps_total{") and f'run_id="{run_id}"' in line]
        assert any('rank="0"' in line for line in steps) and any('rank="1"' in line for line in steps), steps
    finally:
        gateway.stop()


@pytest.mark.slow
def test_torchrun_ranks_share_the_run_id_and_stop_together_on_sigterm(tiny_shards, tmp_path, monkeypatch):
    """The PyTorchJob's launch: torchrun starts 2 ranks with $EVDET_RUN_ID and passes on the pod's SIGTERM. Both ranks
    stop after the same step, rank 0 writes and uploads last.ckpt and run.json (preempted); resume=auto continues."""
    import signal
    import time

    import torch

    from evdet.data.storage import S3Store
    from storage.s3_gateway import Gateway

    gateway = Gateway(tmp_path / "juicefs")
    server = gateway.start()
    try:
        bucket = server.make_bucket("torchrun")
        env = {**os.environ, **server.env, "EVDET_CACHE_DIR": str(tmp_path / "cache"), "EVDET_RUN_ID": "pytorchjob-1",
               "PYTHONUNBUFFERED": "1"}
        cmd = [str(BIN / "torchrun"), "--nproc-per-node", "2", "--no-python", str(BIN / "evdet-train"),
               f"+experiment={EXPERIMENT}", "dataset=etram", "profile=local", f"dataset.path={tiny_shards}",
               "dataset.height=90", "dataset.width=160", "dataset.sequence_length=2", "batch_size.train=1",
               "hardware.devices=2", "hardware.strategy=ddp", "training.max_steps=8", "checkpoint.every_n_steps=4",
               "validation.val_check_interval=1000", "wandb.enabled=false", "logging.every_n_steps=1",
               f"output.store=s3://{bucket}/runs", "resume=auto"]
        log = tmp_path / "first.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
        deadline = time.monotonic() + 600
        while not re.search(r"^step [2-9]/8 ", log.read_text(), re.M):  # training steps run (a condition)
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=600) != 0, log.read_text()[-3000:]  # torchrun reports the stop as a failure
        text = log.read_text()
        stops = re.findall(r"^evdet-train: run pytorchjob-1 .*stopped by SIGTERM at step (\d+)", text, re.M)
        assert len(stops) == 2 and len(set(stops)) == 1, text[-3000:]  # both ranks, the same step
        out_dir = tmp_path / "outputs" / EXPERIMENT / "pytorchjob-1"
        run = json.loads((out_dir / "run.json").read_text())
        assert run["status"] == "preempted" and run["global_step"] == int(stops[0]) and run["world_size"] == 2

        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        store = S3Store(bucket, "runs")
        prefix = f"experiments/{EXPERIMENT}/pytorchjob-1"
        last = torch.load(store.get_file(f"{prefix}/checkpoints/last.ckpt", tmp_path / "l.ckpt"), weights_only=True)
        assert last["global_step"] == run["global_step"]

        again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        run = json.loads((out_dir / "run.json").read_text())
        assert run["status"] == "completed" and run["global_step"] == 8 and run["resumed_from_step"] == int(stops[0])
        assert {k.split("/")[2] for k in store.list("experiments/")} == {"pytorchjob-1"}
    finally:
        gateway.stop()
