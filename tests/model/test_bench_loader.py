"""``evdet-bench loader``: one JSON line from synthetic or given shards, one-line errors naming the input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evdet.data.shards import Shard
from evdet.model.bench.cli import main

KEYS = ("frames_per_s_per_worker", "frames_per_s", "workers", "batches", "batch_size", "sequence_length", "input",
        "sampling", "shards", "augmentation", "warmup_batches", "persistent_workers", "prefetch_factor", "pin_memory")


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


@pytest.mark.parametrize(("sampling", "workers"), [("random", 0), ("stream", 1)])
def test_loader_bench_on_synthetic_shards(capsys, tmp_path, sampling, workers):
    result = run_json(capsys, ["loader", str(tmp_path / "shards"), "--synthetic", "--batches", "2", "--batch-size",
                               "2", "--sequence-length", "3", "--workers", str(workers), "--sampling", sampling])
    assert set(KEYS) <= set(result)
    assert result["input"] == [20, 360, 640] and result["sampling"] == sampling and result["synthetic"] is True
    assert (result["workers"], result["batches"], result["batch_size"], result["sequence_length"]) == (workers, 2, 2, 3)
    assert result["shards"] == 2 and result["frames_per_s"] > 0
    assert result["frames_per_s_per_worker"] == pytest.approx(result["frames_per_s"] / max(workers, 1), rel=0.01)
    # the shards were written where asked and are kept: read them again as given shards
    again = run_json(capsys, ["loader", str(tmp_path / "shards"), "--batches", "1", "--batch-size", "2",
                              "--sequence-length", "3", "--workers", "0", "--augmentation", "off"])
    assert again["synthetic"] is False and again["augmentation"] is False and again["shards"] == 2


def test_synthetic_shards_are_sparse_labelled_640x360x20(tmp_path):
    from evdet.model.bench.loader import write_synthetic_shards

    paths = write_synthetic_shards(tmp_path, shards=1, windows=4, occupancy=0.03, seed=1)
    shard = Shard(paths[0])
    rep = shard.read_representation(0, 4)
    assert rep.shape == (4, 20, 360, 640) and rep.dtype == np.uint8 and rep.max() <= 10
    assert 0.01 < float((rep > 0).mean()) < 0.03
    assert shard.num_frames == 4 and all(len(shard.frame_boxes(k)) >= 3 for k in range(4))
    boxes = shard.frame_boxes(0)
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= 639).all()


def test_bad_shards_path_is_one_line_naming_it(capsys, tmp_path):
    missing = tmp_path / "no-such-folder"
    assert main(["loader", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evdet-bench: error:") and str(missing) in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["loader", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "empty") in err[0]


def test_loader_bench_needs_shards_or_synthetic(capsys):
    assert main(["loader"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SHARDS" in err[0] and "--synthetic" in err[0]
