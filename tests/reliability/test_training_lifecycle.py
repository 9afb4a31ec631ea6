"""Catalogue: mistakes around a training run's identity, its resume and the checkpoints it loads.

Each case runs the console tool in a subprocess (``reliability.harness``) and asserts a clear refusal: exit status 2,
one stderr line naming the run / key / file, no traceback, and the protected files (the existing run's folder and
store, the crafted file's marker, output folders that must not appear) unchanged. The existing run is the session's
``tiny_run`` (run_id ``tiny``, 6 steps, store ``<run>/store``); the crafted checkpoints would create a marker file if
they were ever unpickled with ``weights_only=False``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from reliability.harness import Case, check

from ..conftest import REAL_DATA, TINY_TRAINING

EXPERIMENT = "plain_lstm_640x360_baseline"


class _Planted:
    """Unpickled unsafely, runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft_checkpoint(path: Path, marker: Path, base: dict | None = None) -> Path:
    """Write a checkpoint that looks like evdet's (``base`` when given) but carries a pickle that creates ``marker``."""
    checkpoint = dict(base or {"state_dict": {}, "hyper_parameters": {"config": {}}, "global_step": 1})
    checkpoint["hyper_parameters"] = {**checkpoint.get("hyper_parameters", {}), "eval_info": _Planted(marker)}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def world(tiny_run, tiny_shards, tmp_path_factory) -> dict:
    """The existing run, crafted files and their markers (none of which may ever appear)."""
    base = tmp_path_factory.mktemp("lifecycle")
    out = Path(tiny_run["output_dir"])
    last = out / "checkpoints" / "last.ckpt"
    real = torch.load(last, weights_only=True)
    marker = base / "PLANTED-RAN"
    evil = craft_checkpoint(base / "evil.ckpt", marker, real)
    # A store whose run 'tiny' had its last.ckpt replaced by someone with write access to the bucket.
    bad_store = base / "bad-store"
    shutil.copytree(Path(tiny_run["store_uri"]).parents[2], bad_store)
    craft_checkpoint(bad_store / "experiments" / EXPERIMENT / "tiny" / "checkpoints" / "last.ckpt", marker, real)
    notes = base / "notes.ckpt"
    notes.write_text("these are notes, not a checkpoint\n")
    weights_only = base / "weights-only.ckpt"  # the layout of evdet-model import-rvt: no optimizer / loop state
    torch.save({k: real[k] for k in ("state_dict", "hyper_parameters", "epoch", "global_step")}, weights_only)
    return {
        "base": base, "out": out, "store": Path(tiny_run["store_uri"]).parents[2], "last": last, "evil": evil,
        "marker": marker, "bad_store": bad_store, "notes": notes, "weights_only": weights_only,
        "train": ["evdet-train", f"+experiment={EXPERIMENT}", *TINY_TRAINING, f"dataset.path={tiny_shards}"],
        "shards": tiny_shards,
    }


def _case(world: dict, name: str, argv: list[str], names: list[str], protect: list[Path], **kw) -> Case:
    return Case(name, argv, names=names, protect=[world["out"], world["marker"], *protect], cwd=world["base"], **kw)


def test_rerun_of_an_existing_run_id_in_output_dir(world):
    check(_case(world, "train-rerun-existing-run-local",
                [*world["train"], f"output.dir={world['out']}", "run_id=tiny"],
                ["run_id=tiny", "exists", str(world["out"]), "resume=auto run_id=tiny", "another run_id"], []))


def test_rerun_of_an_existing_run_id_in_the_store(world):
    fresh = world["base"] / "fresh-pod"
    check(_case(world, "train-rerun-existing-run-store",
                [*world["train"], f"output.dir={fresh}", f"output.store={world['store']}", "run_id=tiny"],
                ["run_id=tiny", f"experiments/{EXPERIMENT}/tiny/", "resume=auto run_id=tiny", "another run_id"],
                [fresh, world["store"]]))


def test_rerun_of_an_existing_run_id_from_the_environment(world):
    fresh = world["base"] / "fresh-pod-env"
    check(_case(world, "train-rerun-existing-run-env",
                [*world["train"], f"output.dir={fresh}", f"output.store={world['store']}"],
                ["run_id=tiny", "EVDET_RUN_ID", "resume=auto run_id=tiny"], [fresh, world["store"]],
                env={"EVDET_RUN_ID": "tiny"}))


def test_resume_with_another_max_steps(world):
    check(_case(world, "train-resume-changed-max-steps",
                [*world["train"], f"output.dir={world['out']}", f"output.store={world['store']}", "run_id=tiny",
                 "resume=auto", "training.max_steps=9"],
                ["training.max_steps=9", "last.ckpt", "training.max_steps=6", "another run_id"], [world["store"]]))


def test_resume_auto_with_ckpt_path(world):
    check(_case(world, "train-resume-auto-with-ckpt-path",
                [*world["train"], f"output.dir={world['out']}", f"output.store={world['store']}", "run_id=tiny",
                 "resume=auto", f"ckpt_path={world['last']}"],
                ["resume=auto", "ckpt_path=", "expected one of them"], [world["store"]]))


def test_resume_auto_without_a_store(world):
    check(_case(world, "train-resume-auto-without-store",
                [*world["train"], f"output.dir={world['out']}", "run_id=tiny", "resume=auto"],
                ["resume=auto", "output.store is not set"], []))


def test_resume_auto_from_a_planted_last_ckpt(world):
    check(_case(world, "train-resume-planted-last-ckpt",
                [*world["train"], f"output.dir={world['base'] / 'pod-bad'}", f"output.store={world['bad_store']}",
                 "run_id=tiny", "resume=auto"],
                ["last.ckpt", "posix.system", "weights_only=True"], [world["bad_store"]]))
    assert not world["marker"].exists()


def test_ckpt_path_planted_pickle(world):
    check(_case(world, "train-ckpt-path-planted-pickle",
                [*world["train"], f"output.dir={world['base'] / 'new-run'}", "run_id=new-run",
                 f"ckpt_path={world['evil']}"],
                ["evil.ckpt", "posix.system", "weights_only=True"], [world["evil"]]))
    assert not world["marker"].exists()


def test_predict_planted_pickle(world):
    dets = world["base"] / "dets"
    check(_case(world, "predict-planted-pickle",
                ["evdet-model", "predict", "--checkpoint", str(world["evil"]), "--shards",
                 str(world["shards"] / "test"), "--output", str(dets)],
                ["evil.ckpt", "posix.system", "weights_only=True"], [dets, world["evil"]]))
    assert not world["marker"].exists()


def test_detect_planted_pickle(world):
    detections = world["base"] / "detect"
    check(_case(world, "detect-planted-pickle",
                ["evdet-detect", str(world["evil"]), str(REAL_DATA / "gen4.dat"), "--output", str(detections)],
                ["evil.ckpt", "posix.system", "weights_only=True"], [detections, world["evil"]]))
    assert not world["marker"].exists()


def test_predict_a_file_that_is_no_checkpoint(world):
    dets = world["base"] / "dets-notes"
    check(_case(world, "predict-not-a-checkpoint",
                ["evdet-model", "predict", "--checkpoint", str(world["notes"]), "--shards",
                 str(world["shards"] / "test"), "--output", str(dets)],
                ["notes.ckpt", "not a torch checkpoint"], [dets, world["notes"]]))


def test_ckpt_path_of_another_model_config(world):
    check(_case(world, "train-ckpt-path-other-model",
                [*world["train"], f"output.dir={world['base'] / 'wider'}", "run_id=wider", f"ckpt_path={world['last']}",
                 "model.backbone.embed_dim=32"],
                ["last.ckpt", "do not fit", "model.backbone.embed_dim=16 in the checkpoint, 32 now"], []))


def test_ckpt_path_weights_only(world):
    check(_case(world, "train-ckpt-path-weights-only",
                [*world["train"], f"output.dir={world['base'] / 'from-weights'}", "run_id=from-weights",
                 f"ckpt_path={world['weights_only']}"],
                ["weights-only.ckpt", "holds weights only"], [world["weights_only"]]))


def test_torchrun_launch_without_run_id(world):
    check(_case(world, "train-torchrun-without-run-id",
                [*world["train"], f"output.store={world['store']}"],
                ["run_id", "WORLD_SIZE=2", "EVDET_RUN_ID=<id>"], [world["base"] / "outputs", world["store"]],
                env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "EVDET_RUN_ID": ""}))


def test_the_existing_run_is_untouched_and_loads_weights_only(world):
    """After every refusal above: the run's files are as the run left them and its checkpoint is plain data."""
    run = json.loads((world["out"] / "run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == 6
    assert torch.load(world["last"], weights_only=True)["global_step"] == 6


def test_launchers_name_the_run_explicitly(tmp_path):
    """The k8s Job and PyTorchJob pass run_id=$(EVDET_RUN_ID) with EVDET_RUN_ID set, and the KFP train task gets the
    pipeline run's id: no launcher leaves the run to "the newest run" of resume=auto or to each process' clock."""
    import subprocess
    import sys

    import yaml
    from kfp import dsl

    root = Path(__file__).resolve().parents[2]
    pods = [yaml.safe_load((root / "k8s/training/job/job.yaml").read_text())["spec"]["template"]]
    job = yaml.safe_load((root / "k8s/training/pytorchjob/pytorchjob.yaml").read_text())
    pods += [spec["template"] for spec in job["spec"]["pytorchReplicaSpecs"].values()]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert "run_id=$(EVDET_RUN_ID)" in container["args"] and env.get("EVDET_RUN_ID"), container["args"]
        grace = [a for a in container["args"] if a.startswith("checkpoint.grace_period_s=")]
        assert grace == [f"checkpoint.grace_period_s={pod['spec']['terminationGracePeriodSeconds']}"]
    out = tmp_path / "pipeline.yaml"
    proc = subprocess.run([str(Path(sys.executable).parent / "kfp"), "dsl", "compile", "--py",
                           str(root / "pipelines" / "plain_lstm_baseline.py"), "--output", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    train = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train["pipeline_job_id"]["runtimeValue"]["constant"] == dsl.PIPELINE_JOB_ID_PLACEHOLDER
