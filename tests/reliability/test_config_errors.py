"""The catalogue's configuration and flag mistakes (issue 10, items 5, 6 and 10): each one run as a user would, in a
subprocess, through the shared harness.

Every case must end with exit status 2 and ONE line naming the key or flag (and the value / what is expected), no
traceback, and no change to the files it protects: an existing store with a previous run, the shards, an existing
results file, and the run's output folder, which must not even be created (training must not start). A store with
bad credentials must not show the secret.

Run against an earlier source tree with ``EVDET_SRC_ROOT=/path/to/tree`` to measure "before".
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reliability.harness import Case, check
from storage.conftest import s3_server  # noqa: F401, F811 (fixture: the real S3 gateway of tests/storage, JuiceFS)

#: A secret long enough to be accepted (the gateway's own is in tests/storage/conftest.py; this one is wrong).
WRONG_SECRET = "wr0ng-Secret-Key-123456"


@pytest.fixture
def ws(tmp_path: Path) -> dict[str, Path]:
    """A workspace: fake shards (train/*.h5), a local store holding a previous run, an existing results file, and
    the output folder a run would create (absent)."""
    shards = tmp_path / "shards"
    (shards / "train").mkdir(parents=True)
    (shards / "train" / "rec.h5").write_bytes(b"not opened: every case fails before reading shards")
    store = tmp_path / "store"
    (store / "experiments" / "default" / "old").mkdir(parents=True)
    (store / "experiments" / "default" / "old" / "config.yaml").write_text("previous: run\n")
    results = tmp_path / "results"
    results.mkdir()
    (results / "experiment_results.json").write_text('{"previous": true}\n')
    raw = tmp_path / "etram_raw"
    for split in ("train", "val", "test"):
        (raw / split).mkdir(parents=True)
        (raw / split / f"{split}_day_001_td.h5").write_bytes(b"raw events")
        (raw / split / f"{split}_day_001_bbox.npy").write_bytes(b"raw labels")
    empty = tmp_path / "empty_shards"
    (empty / "train").mkdir(parents=True)
    return {"root": tmp_path, "shards": shards, "store": store, "out": tmp_path / "run_out", "results": results,
            "raw": raw, "empty": empty}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: "" for k in ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")}
    env.update({"MINIO_CREDENTIALS_DIR": "/nonexistent/evdet-secret", "WANDB_MODE": "disabled"})
    env.update(extra)
    return env


def _train(ws: dict[str, Path], name: str, overrides: list[str], names: list[str], *, path: str | None = "shards",
           env: dict[str, str] | None = None) -> Case:
    """``evdet-train`` with the workspace's shards, store and output folder, plus ``overrides``."""
    argv = ["evdet-train", *overrides, f"output.dir={ws['out']}", f"output.store={ws['store']}"]
    if path is not None:
        argv.insert(1, f"dataset.path={ws[path] if path in ws else path}")
    return Case(name, argv, names=names, protect=[ws["shards"], ws["store"], ws["out"], ws["root"] / "outputs",
                                                  ws["raw"]],
                env=_clean_env(**(env or {})), cwd=ws["root"])


TRAIN_CASES = [
    ("train-batch-size-not-an-int", ["batch_size.train=abc"], ["batch_size.train='abc'", "expected an integer"]),
    ("train-batch-size-eval-negative", ["batch_size.eval=-2"], ["batch_size.eval=-2", ">= 1"]),
    ("train-max-steps-zero", ["training.max_steps=0"], ["training.max_steps=0", ">= 1"]),
    ("train-sequence-length-zero", ["dataset.sequence_length=0"], ["dataset.sequence_length=0", ">= 1"]),
    ("train-flip-probability-above-1", ["dataset.augmentation.stream.flip_p=1.5"],
     ["dataset.augmentation.stream.flip_p=1.5", "in [0, 1]"]),
    ("train-precision-fp8", ["hardware.precision=fp8"], ["hardware.precision='fp8'", "16-mixed"]),
    ("train-protocol-unknown", ["dataset.evaluation.protocol=coco"], ["dataset.evaluation.protocol='coco'", "etram"]),
    ("train-class-map-unknown", ["dataset.class_map=coco"], ["dataset.class_map='coco'", "grouped3"]),
    ("train-head-unknown", ["model.head.name=SSD"], ["model.head.name='SSD'", "YOLOX"]),
    ("train-num-classes-vs-class-names", ["+experiment=plain_lstm_640x360_baseline", "dataset.num_classes=3"],
     ["dataset.num_classes=3", "expected 8"]),
    ("train-plus-typo-max-step", ["+training.max_step=3"],
     ["training.max_step=3", "unknown key", "training.max_steps"]),
    ("train-plus-unknown-top-level", ["+foo=1"], ["foo=1", "unknown key"]),
    ("train-unknown-key-without-plus", ["training.max_stepz=3"], ["training.max_stepz", "unknown key"]),
    ("train-unknown-experiment", ["+experiment=plain_lstm_baseline"],
     ["experiment=plain_lstm_baseline", "plain_lstm_640x360_baseline"]),
]


@pytest.mark.parametrize(("name", "overrides", "names"), TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_config_mistakes(ws, name, overrides, names):
    check(_train(ws, name, overrides, names))
    assert not ws["out"].exists()


@pytest.mark.parametrize(("name", "path", "names"), [
    ("train-dataset-path-unset", None, ["dataset.path is not set (???)", "evdet-data preprocess"]),
    ("train-dataset-path-missing", "nowhere", ["dataset.path=", "nowhere", "no such folder"]),
    ("train-dataset-path-raw-etram", "raw", ["dataset.path=", "raw dataset", "run evdet-data preprocess first"]),
    ("train-dataset-path-no-shards", "empty", ["dataset.path=", "train/ holds no *.h5 shards"]),
    ("train-dataset-path-split-folder", "split", ["dataset.path=", "no train/ folder", "the folder above"]),
], ids=["unset", "missing", "raw-etram", "no-shards", "split-folder"])
def test_train_dataset_path_mistakes(ws, name, path, names):
    if path == "nowhere":
        path = str(ws["root"] / "nowhere")
    if path == "split":
        path = str(ws["shards"] / "train")  # the split folder instead of the one above it
    check(_train(ws, name, [], names, path=path))
    assert not ws["out"].exists()


def test_train_store_with_a_short_secret_is_refused_before_any_work(ws):
    secret = "Qx7Zk9"
    env = {"MINIO_ENDPOINT": "127.0.0.1:9", "MINIO_ACCESS_KEY": "user", "MINIO_SECRET_KEY": secret}
    case = _train(ws, "train-store-short-secret", [], ["output.store='s3://evdet/runs'", "MINIO_SECRET_KEY",
                                                       "shorter than 8"], env=env)
    case.argv.append("output.store=s3://evdet/runs")
    outcome = check(case)
    assert secret not in outcome.stderr + outcome.stdout
    assert not ws["out"].exists()


def test_train_s3_dataset_without_credentials(ws):
    check(_train(ws, "train-s3-dataset-without-credentials", [], ["dataset.path='s3://evdet/shards'",
                                                                    "MINIO_ENDPOINT"], path="s3://evdet/shards"))
    assert not ws["out"].exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_store_with_bad_credentials_does_not_show_the_secret(ws):
    env = _clean_env(MINIO_ENDPOINT=f"127.0.0.1:{_closed_port()}", MINIO_ACCESS_KEY="user",
                     MINIO_SECRET_KEY=WRONG_SECRET)
    outcome = check(Case("store-bad-credentials-unreachable", ["evdet-data", "store", "ls", "--store", "s3://evdet"],
                         names=["s3://evdet", "endpoint"], protect=[ws["store"]], env=env, cwd=ws["root"]))
    assert WRONG_SECRET not in outcome.stderr + outcome.stdout and "Wr0ng" not in outcome.stderr


def test_store_with_a_rejected_secret_on_a_real_server(ws, s3_server):  # noqa: F811
    bucket = s3_server.make_bucket("catalogue")
    env = {**s3_server.env, "MINIO_SECRET_KEY": WRONG_SECRET}
    outcome = check(Case("store-rejected-secret", ["evdet-data", "store", "ls", "--store", f"s3://{bucket}"],
                         names=[f"s3://{bucket}", "credentials rejected", "MINIO_SECRET_KEY"], protect=[ws["store"]],
                         env=env, cwd=ws["root"]))
    assert WRONG_SECRET not in outcome.stderr + outcome.stdout


BENCH_CASES = [
    ("bench-steps-zero", ["--steps", "0"], ["argument --steps", "expected", "'0'"]),
    ("bench-steps-negative", ["--steps", "-5"], ["argument --steps", "'-5'"]),
    ("bench-batch-zero", ["--batch", "0"], ["argument --batch", "expected", "'0'"]),
    ("bench-batch-negative", ["--batch", "-1"], ["argument --batch", "'-1'"]),
    ("bench-precision-unknown", ["--precision", "fp8"], ["argument --precision", "32-true"]),
    ("bench-config-mistake", ["--device", "cpu", "+training.max_step=3"], ["training.max_step=3", "unknown key"]),
]


@pytest.mark.parametrize(("name", "flags", "names"), BENCH_CASES, ids=[c[0] for c in BENCH_CASES])
def test_bench_flag_mistakes(ws, name, flags, names):
    check(Case(name, ["evdet-bench", "train", "profile=local", *flags], names=names,
               protect=[ws["root"] / "outputs"], cwd=ws["root"], env=_clean_env()))


def test_bench_cuda_without_cuda(ws):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    check(Case("bench-device-cuda-without-cuda", ["evdet-bench", "train", "profile=local", "--device", "cuda"],
               names=["--device cuda", "CUDA is not available", "expected --device cpu"], cwd=ws["root"],
               env=_clean_env()))


def test_model_summary_config_mistake(ws):
    check(Case("summary-unknown-key", ["evdet-model", "summary", "model.backbone.embed_dimm=3"],
               names=["model.backbone.embed_dimm=3", "unknown key", "model.backbone.embed_dim"], cwd=ws["root"],
               env=_clean_env()))


EVAL_CASES = [
    ("eval-height-negative", ["--height", "-5", "--width", "640"], ["argument --height", "positive integer"]),
    ("eval-confusion-iou-out-of-range", ["--confusion-iou", "2"], ["argument --confusion-iou", "(0, 1]"]),
    ("eval-tolerance-not-an-int", ["--time-tolerance-us", "fifty"], ["argument --time-tolerance-us", "integer"]),
    ("eval-config-missing", ["--config", "no_such_run.yaml"], ["--config", "no such file", "expected"]),
    ("eval-protocol-unknown", ["--protocol", "coco"], ["argument --protocol", "coco", "etram"]),
]


@pytest.mark.parametrize(("name", "flags", "names"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_flag_mistakes(ws, name, flags, names):
    gt = ws["root"] / "gt"
    gt.mkdir()
    argv = ["evdet-eval", "prophesee", "--gt", str(gt), "--detections", str(gt), "--output",
            str(ws["results"] / "experiment_results.json"), "--classes", "car"]
    if "--protocol" not in flags:
        argv += ["--protocol", "etram"]
    if "--height" not in flags:
        argv += ["--height", "360", "--width", "640"]
    check(Case(name, [*argv, *flags], names=names, protect=[ws["results"]], cwd=ws["root"], env=_clean_env()))
