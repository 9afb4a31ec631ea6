"""``evdet-report run`` on a real run folder: the tiny training run's store folder, evaluated on its test split."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evdet.eval.cli import main as eval_main
from evdet.eval.report.cli import main as report_main
from evdet.eval.report.run_folder import load_run
from evdet.eval.report.run_report import write_run_report

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def evaluated(tiny_run, tiny_shards, tmp_path_factory) -> Path:
    """``experiment_results.json`` + ``confusion_matrix.csv`` of the test split. The detections are the test
    split's ground truth with every other box given the next class id (score 0.9), so the class-agnostic AP is high,
    the class-aware AP lower and the confusion matrix has off-diagonal counts."""
    from evdet.model.inference.predict import predict_shards

    base = tmp_path_factory.mktemp("evaluated")
    predict_shards(Path(tiny_run["last_checkpoint"]), tiny_shards / "test", base / "dets")
    info = json.loads((base / "dets" / "detections.json").read_text())
    for gt_path in (base / "dets").glob("*_bbox.npy"):
        gt = np.load(gt_path)
        dets = np.load(gt_path.with_name(gt_path.name.replace("_bbox.npy", ".npy")))[:0]
        dets = np.zeros(len(gt), dtype=dets.dtype)
        for name in ("t", "x", "y", "w", "h", "class_id"):
            dets[name] = gt[name]
        dets["class_id"][1::2] = (gt["class_id"][1::2] + 1) % len(info["class_names"])
        dets["class_confidence"] = 0.9
        np.save(gt_path.with_name(gt_path.name.replace("_bbox.npy", ".npy")), dets)
    results = base / "results" / "experiment_results.json"
    assert eval_main(["prophesee", "--gt", str(base / "dets"), "--detections", str(base / "dets"), "--output",
                      str(results), "--config", str(Path(tiny_run["output_dir"]) / "config.yaml")]) == 0
    return results


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"))


def test_report_of_a_real_run(tiny_run, evaluated, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([str(BIN / "evdet-report"), "run", tiny_run["store_uri"], "--results", str(evaluated),
                           "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["readme"] == str(out / "README.md")
    store = Path(tiny_run["store_uri"])
    validations = sorted(p.name.replace(".csv", ".png") for p in (store / "confusion").glob("*.csv"))
    assert len(validations) == 2
    assert sorted(p.name for p in (out / "confusion_matrices").glob("*.png")) == sorted(
        [*validations, "confusion_matrix_latest.png", "confusion_matrix_test.png"])
    # the tiny run logs losses, val AP, lr and perf (no CUDA: the memory figure shows the host RSS)
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "learning_rate.png", "losses.png", "memory.png", "throughput.png", "val_ap.png"]
    for path in [*(out / "confusion_matrices").glob("*.png"), *(out / "plots").glob("*.png")]:
        pixels = _png(path)
        assert 400 <= pixels.shape[0] <= 2000 and 400 <= pixels.shape[1] <= 2000, (path.name, pixels.shape)
        assert pixels.std() > 10 and len(np.unique(pixels)) > 20, path.name  # drawn, not blank

    readme = (out / "README.md").read_text()
    results = json.loads(evaluated.read_text())["metrics"]
    run = json.loads((store / "run.json").read_text())
    assert readme.startswith("# plain_lstm_640x360_baseline — run tiny")
    assert run["description"] in readme
    for kind in ("class_agnostic", "class_aware"):
        row = [f"{results[kind][k]:.3f}" if results[kind][k] is not None else "n/a"
               for k in ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L")]
        assert " | ".join(row) in readme, (kind, row)
    assert results["class_agnostic"]["AP"] > results["class_aware"]["AP"]  # the fixture's class swaps
    for name, ap in results["per_class_AP"].items():
        assert name in readme and (ap is None or f"{ap:.3f}" in readme)
    for name in ("pedestrian", "bicycle", "motorbike", "wheelchair"):  # dataset etram's small classes
        assert f"| {name} (small) |" in readme
    training = run["training_summary"]
    assert f"{training['it_s']:.3f} it/s" in readme and f"{training['samples_s']:.2f} samples/s" in readme
    assert f"{run['model_summary']['params']:,}" in readme
    for checkpoint in (store / "checkpoints").glob("*.ckpt"):
        assert f"`checkpoints/{checkpoint.name}`" in readme
    assert "| `model.backbone.lstm_cell` | `DWSConvLSTM2d` | `PlainLSTM2d` | experiment |" in readme
    for link in ("plots/losses.png", "plots/throughput.png", "confusion_matrices/confusion_matrix_latest.png",
                 "confusion_matrices/confusion_matrix_test.png", f"confusion_matrices/{validations[0]}"):
        assert f"({link})" in readme and (out / link).is_file()


def test_missing_series_are_said_not_drawn(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run["store_uri"], run, ignore=shutil.ignore_patterns("checkpoints"))
    text = (run / "metrics.csv").read_text().splitlines()
    header = text[0].split(",")
    keep = [i for i, c in enumerate(header) if not c.startswith("perf/")]
    (run / "metrics.csv").write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in text) + "\n")
    summary = write_run_report(load_run(run), tmp_path / "out")
    assert set(summary["plots_not_drawn"]) == {"throughput", "memory"}
    assert not (tmp_path / "out" / "plots" / "throughput.png").exists()
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Not drawn — not recorded: no perf/it_s, perf/samples_s values in metrics.csv." in readme
    assert "Not evaluated: the run has no `experiment_results.json`" in readme


def _report(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = report_main(list(args))
    return code, err.getvalue()


def test_errors_are_one_line_and_write_nothing(tiny_run, evaluated, tmp_path):
    out = tmp_path / "out"
    code, err = _report("run", str(tmp_path / "nowhere"), "--output", str(out))
    assert code == 2 and err.count("\n") == 1 and "nowhere: no such folder" in err and not out.exists()

    bad = tmp_path / "bad.json"
    bad.write_text('{"metrics": {"AP": 0.5}}')
    code, err = _report("run", tiny_run["store_uri"], "--results", str(bad), "--output", str(out))
    assert code == 2 and err.count("\n") == 1 and f"{bad}" in err and "metrics.headline" in err
    assert not out.exists()
    bad.write_text("{not json")
    code, err = _report("run", tiny_run["store_uri"], "--results", str(bad), "--output", str(out))
    assert code == 2 and "not valid JSON" in err and not out.exists()
    code, err = _report("run", tiny_run["store_uri"], "--results", str(tmp_path / "missing.json"), "--output",
                        str(out))
    assert code == 2 and "missing.json: no such file" in err

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = _report("run", tiny_run["store_uri"], "--results", str(evaluated), "--output", str(out))
    assert code == 2 and "not empty" in err and "--overwrite" in err
    code, err = _report("run", tiny_run["store_uri"], "--results", str(evaluated), "--output", str(out),
                        "--overwrite")
    assert code == 2 and "notes.txt" in err  # a file the tool did not write is never replaced
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"

    code, err = _report("run", tiny_run["store_uri"], "--output")
    assert code == 2 and err.count("\n") == 1 and "--output" in err


def test_overwrite_replaces_an_earlier_report(tiny_run, evaluated, tmp_path):
    out = tmp_path / "out"
    assert _report("run", tiny_run["store_uri"], "--results", str(evaluated), "--output", str(out))[0] == 0
    first = (out / "README.md").read_text()
    code, err = _report("run", tiny_run["store_uri"], "--results", str(evaluated), "--output", str(out))
    assert code == 2 and "not empty" in err and (out / "README.md").read_text() == first
    code, err = _report("run", tiny_run["store_uri"], "--output", str(out), "--overwrite")  # without results now
    assert code == 0, err
    assert "Not evaluated" in (out / "README.md").read_text()
    assert not (out / "confusion_matrices" / "confusion_matrix_test.png").exists()  # no stale figure kept
