"""Data-parallel training: 2 processes on the CPU (gloo) through the real `evdet-train` entry point."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical(tiny_shards, pushgateway, tmp_path):
    out = tmp_path / "run"
    cmd = [
        str(BIN / "evdet-train"), "+experiment=plain_lstm_640x360_baseline", "dataset=etram", "profile=local",
        f"dataset.path={tiny_shards}", "dataset.height=90", "dataset.width=160", f"output.dir={out}",
        "run_id=ddp", "hardware.devices=2", "hardware.strategy=ddp", "training.max_steps=4",
        "validation.val_check_interval=2", "wandb.enabled=false", f"metrics.pushgateway={pushgateway}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["global_step"] == 4
    assert len(run["weight_digests"]) == 2
    assert run["weights_identical_across_ranks"] is True, run["weight_digests"]

    # Only rank 0 writes checkpoints: one checkpoint folder, in rank 0's run directory, and no stray ones.
    ckpts = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ckpt"))
    assert ckpts and all(c.startswith("run/checkpoints/") for c in ckpts), ckpts

    # Both ranks exported (and pushed) their metrics, each with its rank label.
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        text = response.read().decode()
    steps = [line for line in text.splitlines() if line.startswith("evdet_train_steps_total{") and 'run_id="ddp"' in line]
    assert any('rank="0"' in line for line in steps) and any('rank="1"' in line for line in steps), steps
