"""A running ``evdet-train`` stopped the ways a pod is stopped, then continued with ``resume=auto``.

* SIGTERM (eviction, preemption) and SIGINT (Ctrl-C), sent once the process has logged that training steps run: exit
  143 / 130 with one line naming the run, ``last.ckpt`` at the step it stopped, ``run.json`` ``status: preempted``,
  both in the store; then ``resume=auto`` finishes the run with every metrics row and the learning-rate schedule as
  an uninterrupted run has them.
* SIGKILL (no chance to react): ``resume=auto`` continues from the last interval checkpoint; the steps lost are at
  most ``checkpoint.every_n_steps``.
* The S3 gateway stopped while the run trains and started again: training goes on, uploads made during the outage
  are repeated, the run completes (exit 0) with everything in the bucket.

Every wait is on a condition (a line in the process' log, an object in the store, the process' exit), bounded by a
generous limit only so that a hung process fails the test instead of hanging it.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from reliability.harness import OUTCOMES, python_env

from ..conftest import TINY_TRAINING

EXPERIMENT = "plain_lstm_640x360_baseline"
#: Upper bound of any wait (seconds): only reached when something hangs.
LIMIT_S = 600.0
STEP_LINE = re.compile(r"^step (\d+)/(\d+) ", re.M)


class Training:
    """``python -m evdet.model.cli.train ARGS`` in the background, stdout and stderr to files (logs: stderr)."""

    def __init__(self, args: list[str], logs: Path, env: dict[str, str] | None = None) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.out, self.err = logs / "stdout.log", logs / "stderr.log"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "evdet.model.cli.train", *args], stdout=out, stderr=err,
                                         env=python_env({"PYTHONUNBUFFERED": "1", **(env or {})}))

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def step(self) -> int:
        """The last global step the process logged as done (0 before the first)."""
        steps = STEP_LINE.findall(self.stderr())  # progress lines are logs: stderr (docs/cli.md)
        return int(steps[-1][0]) if steps else 0

    def wait_for(self, condition, what: str) -> None:
        """Poll ``condition()`` until true; fail if the process exits first or ``LIMIT_S`` passes."""
        deadline = time.monotonic() + LIMIT_S
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"evdet-train exited with {self.proc.returncode} before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"no {what} after {LIMIT_S:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def finish(self) -> int:
        return self.proc.wait(timeout=LIMIT_S)

    def tail(self) -> str:
        return f"stdout:\n{self.stdout()[-3000:]}\nstderr:\n{self.stderr()[-3000:]}"


def _args(shards: Path, out: Path, store: str, run_id: str, max_steps: int, every: int, *extra: str) -> list[str]:
    # Sequences of 2 windows, one per batch: a step takes a fraction of a second on a CPU.
    return [f"+experiment={EXPERIMENT}", *TINY_TRAINING, f"dataset.path={shards}", f"output.dir={out}",
            f"output.store={store}", f"run_id={run_id}", f"training.max_steps={max_steps}",
            "validation.val_check_interval=1000", f"checkpoint.every_n_steps={every}", "logging.every_n_steps=1",
            "dataset.sequence_length=2", "batch_size.train=1", *extra]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _loss_steps(rows: list[dict[str, str]]) -> list[int]:
    return [int(r["step"]) for r in rows if r.get("train/loss")]


def _expected_lrs(config: dict, steps: int) -> list[float]:
    """The learning rate of every step of an uninterrupted run (DetectionModule.configure_optimizers' schedule)."""
    tr = config["training"]
    sched = tr["lr_scheduler"]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=float(tr["learning_rate"]))
    total = max(int(tr["max_steps"]), 4) + 1
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=float(tr["learning_rate"]), total_steps=total,
        pct_start=max(float(sched["pct_start"]), 2.0 / total), div_factor=float(sched["div_factor"]),
        final_div_factor=float(sched["final_div_factor"]), anneal_strategy="linear", cycle_momentum=False)
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


def _record(case: str, outcome: str, returncode: int, message: str) -> None:
    OUTCOMES.append({"case": case, "outcome": outcome, "returncode": returncode, "message": message[:300]})


def _check_complete_history(out: Path, store_run: Path, max_steps: int) -> None:
    """metrics.csv, locally and in the store: one loss row per step 0..max_steps-1 and the uninterrupted LR."""
    config = yaml.safe_load((out / "config.yaml").read_text())
    expected = _expected_lrs(config, max_steps)
    for path in (out / "logs" / "metrics.csv", store_run / "metrics.csv"):
        rows = _rows(path)
        assert _loss_steps(rows) == list(range(max_steps)), (path, _loss_steps(rows))
        lrs = {int(r["step"]): float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")}
        assert sorted(lrs) == list(range(max_steps)), (path, sorted(lrs))
        for step, lr in lrs.items():
            assert lr == pytest.approx(expected[step], rel=1e-6, abs=1e-12), (path, step, lr, expected[step])


@pytest.mark.parametrize("signum,code", [
    pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
    pytest.param(signal.SIGINT, 130, id="SIGINT", marks=pytest.mark.slow),
])
def test_signal_mid_training_then_resume(tiny_shards, tmp_path, signum, code):
    max_steps, every, run_id = 8, 4, f"pre-{signal.Signals(signum).name.lower()}"
    out, store = tmp_path / "run", tmp_path / "store"
    store_run = store / "experiments" / EXPERIMENT / run_id
    args = _args(tiny_shards, out, str(store), run_id, max_steps, every)
    first = Training(args, tmp_path / "first")
    first.wait_for(lambda: first.step() >= 2, "two logged training steps")
    sent = time.monotonic()
    first.proc.send_signal(signum)
    returncode = first.finish()
    seconds = time.monotonic() - sent
    message = first.stderr().strip().splitlines()[-1] if first.stderr().strip() else ""
    _record(f"train-{signal.Signals(signum).name}-mid-training", "clear_error" if returncode == code else "unclear",
            returncode, f"[{seconds:.1f} s from the signal to the exit] {message}")
    assert returncode == code, first.tail()
    assert "Traceback" not in first.stderr(), first.tail()
    assert f"run {run_id}" in message and f"stopped by {signal.Signals(signum).name}" in message
    assert "last.ckpt" in message and f"resume=auto run_id={run_id}" in message

    run = json.loads((out / "run.json").read_text())
    stopped = run["global_step"]
    assert run["status"] == "preempted" and run["exit_code"] == code and run["upload_failures"] == []
    assert 2 <= stopped < max_steps and run["last_checkpoint_step"] == stopped == first.step()
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == stopped
    assert torch.load(store_run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == stopped
    assert json.loads((store_run / "run.json").read_text())["status"] == "preempted"
    assert _loss_steps(_rows(out / "logs" / "metrics.csv")) == list(range(stopped))  # the stopping step included
    assert not list((out / "checkpoints").glob(".*partial"))

    second = Training([*args, "resume=auto"], tmp_path / "second")
    assert second.finish() == 0, second.tail()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == max_steps and run["resumed_from_step"] == stopped
    assert json.loads((store_run / "run.json").read_text())["status"] == "completed"
    _check_complete_history(out, store_run, max_steps)


@pytest.mark.slow
def test_sigkill_mid_training_loses_at_most_one_interval(tiny_shards, tmp_path):
    max_steps, every, run_id = 8, 2, "killed"
    out, store = tmp_path / "run", tmp_path / "store"
    store_run = store / "experiments" / EXPERIMENT / run_id
    args = _args(tiny_shards, out, str(store), run_id, max_steps, every)
    first = Training(args, tmp_path / "first")
    first.wait_for(lambda: first.step() >= every + 1, f"step {every + 1}")
    first.proc.kill()
    assert first.finish() == -signal.SIGKILL
    done = first.step()  # steps the killed process had completed (each is logged right after it ends)
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # no chance to write more

    second = Training([*args, "resume=auto"], tmp_path / "second")
    assert second.finish() == 0, second.tail()
    run = json.loads((out / "run.json").read_text())
    resumed = run["resumed_from_step"]
    _record("train-SIGKILL-then-resume", "clear_error", 0, f"killed after step {done}, resumed from step {resumed}: "
            f"{done - resumed} step(s) lost (checkpoint.every_n_steps={every})")
    assert resumed % every == 0 and 0 <= done - resumed <= every, (done, resumed)
    assert run["status"] == "completed" and run["global_step"] == max_steps
    _check_complete_history(out, store_run, max_steps)


@pytest.mark.slow
def test_store_outage_mid_training_loses_nothing(tiny_shards, tmp_path, monkeypatch):
    from evdet.data.storage import S3Store
    from storage.s3_gateway import Gateway

    gateway = Gateway(tmp_path / "juicefs")
    server = gateway.start()
    try:
        bucket = server.make_bucket("outage")
        env = {**server.env, "EVDET_CACHE_DIR": str(tmp_path / "cache")}
        max_steps, every, run_id = 16, 2, "outage"
        out = tmp_path / "run"
        args = _args(tiny_shards, out, f"s3://{bucket}/runs", run_id, max_steps, every)
        training = Training(args, tmp_path / "logs", env=env)
        prefix = f"experiments/{EXPERIMENT}/{run_id}"
        training.wait_for(lambda: f"uploaded s3://{bucket}/runs/{prefix}/checkpoints/last.ckpt" in training.stderr(),
                          "a last.ckpt in the bucket")
        gateway.stop()
        stopped_at = training.step()
        # An upload tried while the gateway is down: the store's retry warning (or the uploader's failure line).
        training.wait_for(lambda: re.search(r"failed \(.*\), retry \d/\d|checkpoint put to .* failed",
                                            training.stderr()) is not None, "an upload attempt during the outage")
        gateway.start()
        restarted_at = training.step()
        returncode = training.finish()
        _record("train-store-outage", "clear_error" if returncode == 0 else "unclear", returncode,
                f"gateway down from step {stopped_at} to step {restarted_at}; exit {returncode}")
        assert returncode == 0, training.tail()
        run = json.loads((out / "run.json").read_text())
        assert run["status"] == "completed" and run["upload_failures"] == [] and run["global_step"] == max_steps
        for key, value in server.env.items():  # for the S3Store below
            monkeypatch.setenv(key, value)
        s3 = S3Store(bucket, "runs")
        keys = s3.list(prefix)
        assert {f"{prefix}/checkpoints/last.ckpt", f"{prefix}/config.yaml", f"{prefix}/metrics.csv",
                f"{prefix}/run.json"} <= set(keys), keys
        last = torch.load(s3.get_file(f"{prefix}/checkpoints/last.ckpt", tmp_path / "last.ckpt"), weights_only=True)
        assert last["global_step"] == max_steps
        assert json.loads(s3.get_file(f"{prefix}/run.json", tmp_path / "run.json").read_text())["status"] == "completed"
        assert _loss_steps(_rows(s3.get_file(f"{prefix}/metrics.csv", tmp_path / "m.csv"))) == list(range(max_steps))
    finally:
        gateway.stop()
