"""``evdet-bench eval``: one JSON line, evdet's figures identical to plain pycocotools, errors on one line."""

from __future__ import annotations

import json

import pytest

from evdet.model.bench.cli import main

KEYS = ("seconds", "pycocotools_seconds", "ratio", "identical", "bit_identical", "max_abs_diff", "frames", "detections", "gt_boxes",
        "images", "classes", "backend", "seed", "AP")


@pytest.mark.parametrize("backend", ["faster-coco-eval", "pycocotools"])
def test_eval_bench_prints_one_json_line_with_identical_figures(capsys, backend):
    assert main(["eval", "--frames", "150", "--detections", "3000", "--seed", "3", "--backend", backend]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert set(KEYS) <= set(result)
    assert result["identical"] is True and result["max_abs_diff"] <= 1e-12
    if backend == "pycocotools":  # the same code on the same data
        assert result["bit_identical"] is True and result["max_abs_diff"] == 0.0
    assert result["backend"] == backend and result["frames"] == 150 and result["seed"] == 3
    assert result["images"] > 100 and result["detections"] > 2000 and 0 < result["AP"] < 1
    assert result["seconds"] > 0 and result["pycocotools_seconds"] > 0


def test_eval_bench_data_are_seeded():
    from evdet.model.bench.evaluation import synthetic_recordings

    a, b = synthetic_recordings(300, 4000, 5), synthetic_recordings(300, 4000, 5)
    assert len(a[0]) == 2 and all((x == y).all() for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert all((d["t"][1:] >= d["t"][:-1]).all() for d in a[1])


def test_eval_bench_flag_error_is_one_line(capsys):
    assert main(["eval", "--frames", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evdet-bench: error:") and "--frames" in err[0]
