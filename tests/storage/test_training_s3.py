"""Training against the real S3 gateway: shards from the bucket, checkpoints uploaded while training runs, resume=auto
from the bucket, ckpt_path / predict with s3:// checkpoints, and the background uploader on its own."""

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from evdet.data.storage import LocalStore, S3Store, put_path
from evdet.model.training.checkpoint import load_module
from evdet.model.mlops.checkpoint_upload import CheckpointUploader
from evdet.model.config import compose_config
from evdet.model.inference.predict import predict_shards

from ..conftest import TINY_TRAINING
from .conftest import SECRET_KEY

EXPERIMENT = "plain_lstm_640x360_baseline"
CKPT_NAME = re.compile(r"epoch=\d{3}-step=\d+-val_AP=\d\.\d\d\.ckpt")


def _config(*overrides):
    return compose_config([f"+experiment={EXPERIMENT}", *TINY_TRAINING, *overrides])


class Preempted(RuntimeError):
    """Stands in for a pod eviction in the middle of a run."""


@pytest.fixture(scope="module")
def s3_run(s3_server, tiny_shards, tmp_path_factory):
    """A tiny 8-step run, shards from the bucket, store in the bucket, "preempted" before step 7; records the bucket
    before the interruption."""
    import os

    import evdet.model.training.train as train

    saved = {k: os.environ.get(k) for k in [*s3_server.env, "EVDET_CACHE_DIR"]}
    os.environ.update(s3_server.env)
    os.environ["EVDET_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    bucket = s3_server.make_bucket("training")
    put_path(S3Store(bucket), tiny_shards, "data/shards")
    seen_while_training: list[list[str]] = []

    class PreemptedAtStep6(CheckpointUploader):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step >= 6:
                self.wait()  # what the background thread had uploaded while the run was training
                seen_while_training.append(self.store.list("experiments/"))
                raise Preempted("evicted")

    original = train.CheckpointUploader
    train.CheckpointUploader = PreemptedAtStep6
    try:
        out = tmp_path_factory.mktemp("s3run")
        try:
            with pytest.raises(Preempted):
                train.run_training(_config(f"dataset.path=s3://{bucket}/data/shards", f"output.dir={out}",
                                           f"output.store=s3://{bucket}/runs", "run_id=first",
                                           "training.max_steps=8", "checkpoint.every_n_steps=3"))
        finally:
            train.CheckpointUploader = original
        yield {"out": out, "bucket": bucket, "while_training": seen_while_training[0]}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_checkpoints_uploaded_while_training_with_team_names(s3_run, s3_env, tmp_path):
    bucket, out = s3_run["bucket"], s3_run["out"]
    prefix = f"experiments/{EXPERIMENT}/first"
    store = S3Store(bucket, "runs")
    keys = store.list(prefix)
    ckpts = [k.rsplit("/", 1)[1] for k in keys if k.startswith(f"{prefix}/checkpoints/")]
    assert "last.ckpt" in ckpts and any(CKPT_NAME.fullmatch(n) for n in ckpts), ckpts
    local_topk = sorted(p.name for p in (out / "checkpoints").glob("epoch=*.ckpt"))
    assert sorted(n for n in ckpts if CKPT_NAME.fullmatch(n)) == local_topk  # top-1: replaced ones deleted
    assert f"{prefix}/config.yaml" in keys  # uploaded on the interruption too
    # the step-3 validation checkpoint reached the bucket while the run was still training
    assert any("/checkpoints/epoch=000-step=3-" in k for k in s3_run["while_training"]), s3_run["while_training"]
    last = torch.load(store.get_file(f"{prefix}/checkpoints/last.ckpt", tmp_path / "l.ckpt"), weights_only=True)
    local_last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == local_last["global_step"] == 6  # the interval checkpoint before the failure
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "evicted" in run["error"] and run["last_checkpoint_step"] == 6
    assert f"{prefix}/run.json" in keys and f"{prefix}/metrics.csv" in keys  # the failed run's record, in the bucket
    assert not (out / ".upload-staging").exists()  # staged copies removed once confirmed
    assert (out / "checkpoints" / "last.ckpt").is_file()  # local checkpoints stay where Lightning wrote them
    assert "s3://" in (out / "config.yaml").read_text()  # the config records the bucket, not the cache path


def test_resume_auto_continues_the_newest_run_from_the_bucket(s3_run, s3_env, tmp_path, caplog):
    import evdet.model.training.train as train

    caplog.set_level(logging.INFO)
    bucket = s3_run["bucket"]
    cfg = _config(f"dataset.path=s3://{bucket}/data/shards", f"output.dir={tmp_path / 'resumed'}",
                  f"output.store=s3://{bucket}/runs", "resume=auto", "training.max_steps=8")
    cfg.run_id = None  # as on the command line without run_id=: the newest run of the experiment
    summary = train.run_training(cfg)
    assert summary["run_id"] == "first" and summary["global_step"] == 8
    assert summary["resumed_from"].endswith("first/checkpoints/last.ckpt")
    assert summary["store_uri"] == f"s3://{bucket}/runs/experiments/{EXPERIMENT}/first"
    last = torch.load(S3Store(bucket, "runs").get_file(f"experiments/{EXPERIMENT}/first/checkpoints/last.ckpt",
                                                        tmp_path / "last.ckpt"), weights_only=True)
    assert last["global_step"] == 8 and last["optimizer_states"] and last["lr_schedulers"]  # written after resume
    assert summary["status"] == "completed" and summary["resumed_from_step"] == 6
    assert "continuing run first" in caplog.text and SECRET_KEY not in caplog.text


def test_resume_auto_without_checkpoint_starts_fresh_and_bad_values(s3_run, s3_env, tmp_path, caplog):
    from evdet.model.training.train import _resume_plan

    caplog.set_level(logging.INFO)
    cfg = _config(f"output.store=s3://{s3_run['bucket']}/runs", "resume=auto", "run_id=never-ran",
                  f"output.dir={tmp_path}")
    plan = _resume_plan(cfg, run_id_given=True)
    assert plan.path is None and plan.resume
    assert "starting fresh" in caplog.text and "never-ran" in caplog.text
    with pytest.raises(ValueError, match="resume='sometimes'"):
        _resume_plan(_config("resume=sometimes"), run_id_given=True)
    with pytest.raises(ValueError, match="output.store"):
        _resume_plan(_config("resume=auto"), run_id_given=True)


def test_predict_and_ckpt_path_with_an_s3_checkpoint(s3_run, s3_env, tiny_shards, tmp_path):
    from evdet.model.training.train import _resume_plan

    uri = f"s3://{s3_run['bucket']}/runs/experiments/{EXPERIMENT}/first/checkpoints/last.ckpt"
    report = predict_shards(uri, tiny_shards / "test", tmp_path / "dets")
    assert report["sequences"] == 1 and list((tmp_path / "dets").glob("*.npy"))
    module, config = load_module(Path(uri))  # what argparse type=Path makes of the URI ("s3:/bucket/...")
    assert config["experiment_name"] == EXPERIMENT and not module.training
    local = _resume_plan(_config(f"ckpt_path={uri}"), run_id_given=True).path
    assert Path(local).is_file() and str(local).startswith(str(tmp_path / "cache"))


def test_uploader_deletes_removed_topk_and_reports_failures(s3_env, tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    store = LocalStore(tmp_path / "store")
    up = CheckpointUploader(store, "exp", "r1", ckpts)
    (ckpts / "epoch=000-step=3-val_AP=0.10.ckpt").write_bytes(b"a" * 10)
    (ckpts / "last.ckpt").write_bytes(b"b" * 10)
    up.scan()
    assert up.wait(10)
    assert store.list() == ["experiments/exp/r1/checkpoints/epoch=000-step=3-val_AP=0.10.ckpt",
                            "experiments/exp/r1/checkpoints/last.ckpt"]
    (ckpts / "epoch=000-step=3-val_AP=0.10.ckpt").unlink()  # ModelCheckpoint dropped it from the top-k
    (ckpts / "epoch=000-step=6-val_AP=0.20.ckpt").write_bytes(b"c" * 10)
    (ckpts / "last.ckpt").write_bytes(b"d" * 12)
    (tmp_path / "run" / "experiment_results.json").write_text("{}")
    assert up.finish(10) == []
    assert store.list() == ["experiments/exp/r1/checkpoints/epoch=000-step=6-val_AP=0.20.ckpt",
                            "experiments/exp/r1/checkpoints/last.ckpt", "experiments/exp/r1/experiment_results.json"]
    assert store.stat("experiments/exp/r1/checkpoints/last.ckpt").size == 12

    broken = CheckpointUploader(S3Store("no-such-bucket", retries=0), "exp", "r2", ckpts)
    failures = broken.finish(10, attempts=2)
    assert failures and all(f.kept is not None and f.kept.is_file() for f in failures)  # local copies kept
    assert "no-such-bucket" in failures[0].error and SECRET_KEY not in failures[0].error
