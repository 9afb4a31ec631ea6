"""Every experiment of the research team: its config builds, trains 2 steps on CPU at tiny size and logs its loss
parts; strides and feature shapes for patch 2 and the 4-scale PAFPN."""

import csv
from pathlib import Path

import numpy as np
import pytest

from evdet.model.config import compose_config, list_experiments, to_container
from evdet.model.nn.summary import lstm_cell_counts, summarize
from evdet.model.training.train import run_training

#: The research team's experiments: they must stay (renaming or deleting one breaks the team's comparisons).
TEAM_EXPERIMENTS = [
    "baseline_3scale",
    "plain_lstm_640x360_baseline",
    "patch2_sizeaware_100k",
    "patch2_4scale_sizeaware_200k",
    "ABC_sod_basic_100k",
]
#: Every experiment config in conf/experiment/ (a new one is tested without editing this file).
EXPERIMENTS = list_experiments()
TINY = ["dataset=etram", "profile=local", "dataset.height=90", "dataset.width=160", "training.max_steps=2",
        "validation.val_check_interval=2", "training.log_every_n_steps=1", "wandb.enabled=false",
        "dataset.evaluation.min_box_diag_px=16", "dataset.evaluation.min_box_side_px=4"]


def test_all_team_experiments_exist():
    assert set(TEAM_EXPERIMENTS) <= set(list_experiments())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_two_steps_and_logs_loss_parts(name, tiny_shards, tmp_path):
    cfg = compose_config([f"+experiment={name}", f"dataset.path={tiny_shards}", f"output.dir={tmp_path}", *TINY])
    run = run_training(cfg)
    assert run["global_step"] == 2
    with open(Path(run["output_dir"]) / "logs" / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    expected = {"train/loss", "train/loss_iou", "train/loss_obj", "train/loss_cls"}
    if cfg.model.head.name == "ABC":  # the ABC head adds the auxiliary small-object loss
        expected |= {"train/loss_main", "train/loss_aux"}
    assert expected <= columns, columns


def test_gradient_accumulation_counts_optimizer_steps(tiny_shards, tmp_path):
    cfg = compose_config(["+experiment=patch2_4scale_sizeaware_200k", f"dataset.path={tiny_shards}",
                          f"output.dir={tmp_path}", *TINY, "batch_size.train=1", "training.accumulate_grad_batches=2"])
    run = run_training(cfg)
    assert run["global_step"] == 2  # two optimiser steps = four batches of one sequence


@pytest.mark.parametrize(
    "name,strides,fpn_stages",
    [
        ("plain_lstm_640x360_baseline", [4, 8, 16, 32], [2, 3, 4]),
        ("patch2_sizeaware_100k", [2, 4, 8, 16], [2, 3, 4]),
        ("patch2_4scale_sizeaware_200k", [2, 4, 8, 16], [1, 2, 3, 4]),
        ("ABC_sod_basic_100k", [4, 8, 16, 32], [1, 2, 3, 4]),
    ],
)
def test_strides_and_feature_shapes(name, strides, fpn_stages):
    summary = summarize(to_container(compose_config([f"+experiment={name}"])))
    assert [summary["stages"][str(s)]["stride"] for s in (1, 2, 3, 4)] == strides
    assert summary["fpn_stages"] == fpn_stages
    h, w = summary["padded_input"]
    assert (h, w) == (384, 640)
    for s, stride in zip((1, 2, 3, 4), strides):
        channels = 64 * 2 ** (s - 1)
        assert summary["stages"][str(s)]["shape"] == [channels, h // stride, w // stride]


def test_abc_summary_lists_the_auxiliary_head():
    summary = summarize(to_container(compose_config(["+experiment=ABC_sod_basic_100k"])))
    assert summary["params"]["aux_head"] > 0


def test_lstm_cell_counts_settle_the_question():
    for row in lstm_cell_counts():
        d = row["width"]
        assert row["PlainLSTM2d"] == row["DWSConvLSTM2d"] == 8 * d * d + 4 * d
        assert row["DWSConvLSTM2d+dws_conv"] == row["DWSConvLSTM2d"] + 10 * d


def test_activation_checkpointing_flag_reaches_the_backbone(tiny_shards, tmp_path):
    from evdet.model.nn.detector import build_detector

    cfg = to_container(compose_config(["+experiment=patch2_4scale_sizeaware_200k", "profile=local",
                                       "model.backbone.checkpoint_stages=true"]))
    model = build_detector(cfg["model"], num_classes=8, in_channels=20)  # plain YOLOX head: no class names needed
    assert model.backbone.checkpoint_stages is True
    run = run_training(compose_config(["+experiment=patch2_4scale_sizeaware_200k", f"dataset.path={tiny_shards}",
                                       f"output.dir={tmp_path}", *TINY, "model.backbone.checkpoint_stages=true"]))
    assert run["global_step"] == 2


def test_grouped3_run_is_evaluated_in_its_own_classes(tiny_shards, tmp_path):
    import json
    import subprocess
    import sys

    from evdet.model.inference.predict import predict_shards

    run = run_training(compose_config(["+experiment=baseline_3scale", f"dataset.path={tiny_shards}",
                                       f"output.dir={tmp_path / 'run'}", *TINY, "dataset.class_map=grouped3",
                                       "dataset.num_classes=3"]))
    predict_shards(Path(run["last_checkpoint"]), tiny_shards / "test", tmp_path / "dets")
    gt = np.load(next((tmp_path / "dets").glob("*_bbox.npy")))
    assert set(np.unique(gt["class_id"]).tolist()) <= {0, 1, 2}  # ground truth in the map's classes
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "evdet-eval"), "prophesee", "--gt", str(tmp_path / "dets"),
         "--detections", str(tmp_path / "dets"), "--output", str(out), "--config", str(tmp_path / "run" / "config.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())["metrics"]
    assert list(metrics["per_class_AP"]) == ["pedestrian", "vehicle", "micromobility"]
    assert metrics["protocol"]["class_names"] == ["pedestrian", "vehicle", "micromobility"]
