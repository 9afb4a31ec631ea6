"""Shared fixtures: a tiny synthetic dataset, its shards and a checkpoint trained for a few steps (made once)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT / "data" / "real"

#: Overrides that make training take seconds on 2 CPU cores (on top of the local profile). The synthetic data carry
#: the official eTraM class ids (dataset config ``etram``); at the tiny 320x180 sensor the objects are a quarter of
#: their 1280x720 size, so the evaluation's minimum box size (sensor px) is lowered with them.
TINY_TRAINING = [
    "dataset=etram",
    "profile=local",
    "dataset.height=90",
    "dataset.width=160",
    "dataset.evaluation.min_box_diag_px=16",
    "dataset.evaluation.min_box_side_px=4",
    "training.max_steps=6",
    "validation.val_check_interval=3",
    "training.log_every_n_steps=1",
    "wandb.enabled=false",
]


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Synthetic eTraM-layout data (320x180 sensor, 1.5 s per recording, 30 Hz labels, eTraM class ids)
    preprocessed with the reference protocol into shards (160x90)."""
    from evdet.data.preprocess import preprocess_dataset
    from evdet.data.synthetic import generate_dataset

    base = tmp_path_factory.mktemp("tiny")
    generate_dataset(base / "raw", seed=1, splits={"train": 2, "val": 1, "test": 1}, duration_s=1.5,
                     width=320, height=180)
    preprocess_dataset(base / "raw", base / "shards", progress=False)
    return base / "shards"


@pytest.fixture(scope="session")
def tiny_run(tiny_shards, tmp_path_factory) -> dict:
    """A training run of the baseline experiment at tiny size; returns its run.json contents."""
    from evdet.model.config import compose_config
    from evdet.model.training.train import run_training

    out = tmp_path_factory.mktemp("run")
    cfg = compose_config([
        "+experiment=plain_lstm_640x360_baseline", f"dataset.path={tiny_shards}", f"output.dir={out}",
        f"output.store={out / 'store'}", "run_id=tiny", *TINY_TRAINING,
    ])
    return run_training(cfg)
