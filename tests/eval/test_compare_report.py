"""``evdet-report compare`` on real run folders, its HTML opened in headless Chromium (Debian package ``chromium``,
driven through playwright; installed by tests/require_servers.sh).

Two kinds of runs:

- ``seed_runs``: two real runs of the baseline experiment (``evdet-train`` with seeds 1 and 2 at tiny size, then
  ``evdet-model predict`` and ``evdet-eval prophesee`` on the test split, into the store's run folders);
- ``evaluated_runs``: run folders in the store layout whose ``experiment_results.json`` come from real
  ``evdet-eval prophesee`` evaluations of synthetic ground truth against jittered copies of it (so the AP differ per
  run and are far from 0), with ``run.json`` summaries in the current format (GPU run, CPU run) and one older run
  without ``run.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evdet.data.storage import S3Store, put_path
from evdet.eval.cli import main as eval_main
from evdet.eval.report import compare
from storage.conftest import s3_env, s3_server  # noqa: F401 (fixtures: the real S3 gateway of tests/storage)

from ..conftest import TINY_TRAINING

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
EXPERIMENT = "plain_lstm_640x360_baseline"
CLASSES = ["pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair"]


# ------------------------------------------------------------------------------------------------------------------
# helpers


def run_compare(capsys, *argv: str) -> tuple[int, str, str]:
    """``evdet-report compare ARGV`` through the module's parser hooks: ``(exit code, stdout, stderr)``."""
    parser = argparse.ArgumentParser(prog="evdet-report compare")
    compare.configure_parser(parser)
    capsys.readouterr()
    code = compare.run(parser.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the Debian package, never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} missing: run tests/require_servers.sh (installs the Debian package chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


def open_page(browser, html: Path) -> dict:
    """Load ``html`` via file:// and read what a reader sees: the comparison table's headers and rows, the images'
    natural widths, console errors, failed and non-file requests, and a full-page screenshot's grey-level variance."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors, failed, requests = [], [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    headers = page.eval_on_selector_all("table#comparison thead th", "els => els.map(e => e.innerText.trim())")
    rows = page.eval_on_selector_all(
        "table#comparison tbody tr",
        "rows => rows.map(r => Array.from(r.querySelectorAll('th, td')).map(c => c.innerText.trim()))")
    images = page.eval_on_selector_all("img", "els => els.map(e => ({w: e.naturalWidth, complete: e.complete, "
                                              "alt: e.alt, src: e.getAttribute('src').slice(0, 22)}))")
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("L"), dtype=np.float64)
    text = page.inner_text("body")
    page.close()
    return {"headers": headers, "rows": rows, "images": images, "errors": errors, "failed": failed,
            "external": [u for u in requests if not u.startswith(("file:", "data:"))], "variance": float(shot.var()),
            "text": text}


def assert_renders(view: dict, runs: int, figures: int = 2) -> None:
    assert view["errors"] == [] and view["failed"] == [] and view["external"] == []
    assert len(view["rows"]) == runs
    assert len(view["images"]) == figures
    assert all(i["complete"] and i["w"] > 0 and i["src"] == "data:image/png;base64," for i in view["images"])
    assert view["variance"] > 100.0  # a blank page is one grey level (variance 0)


def expected_cells(results: Path, class_names: list[str]) -> list[str]:
    """The AP cells a row must show, formatted from the run's experiment_results.json: AP ... AP_M then per class."""
    metrics = json.loads(results.read_text())["metrics"]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    return [fmt(metrics[k]) for k in ("AP", "AP_50", "AP_75", "AP_S", "AP_M")] + [
        fmt(metrics["per_class_AP"].get(name)) for name in class_names]


def column(view: dict, name: str) -> list[str]:
    index = view["headers"].index(name)
    return [row[index] for row in view["rows"]]


# ------------------------------------------------------------------------------------------------------------------
# two real training runs (seeds 1 and 2) through the console scripts


@pytest.fixture(scope="module")
def seed_runs(tiny_shards, tmp_path_factory) -> dict:
    """Two evaluated runs in a local store: ``evdet-train`` (seed 1, seed 2), ``evdet-model predict`` of the last
    checkpoint on the test split, ``evdet-eval prophesee`` into the run's store folder."""
    base = tmp_path_factory.mktemp("seeds")
    store = base / "store"
    folders = {}
    for seed in (1, 2):
        out = base / f"out{seed}"
        train = subprocess.run(
            [str(BIN / "evdet-train"), f"+experiment={EXPERIMENT}", f"dataset.path={tiny_shards}", f"output.dir={out}",
             f"output.store={store}", f"run_id=seed{seed}", f"seed={seed}", *TINY_TRAINING],
            capture_output=True, text=True)
        assert train.returncode == 0, train.stderr[-3000:]
        folder = store / "experiments" / EXPERIMENT / f"seed{seed}"
        run = json.loads((folder / "run.json").read_text())
        predict = subprocess.run(
            [str(BIN / "evdet-model"), "predict", "--checkpoint", run["last_checkpoint"], "--shards",
             str(tiny_shards / "test"), "--output", str(base / f"dets{seed}")], capture_output=True, text=True)
        assert predict.returncode == 0, predict.stderr[-3000:]
        evaluate = subprocess.run(
            [str(BIN / "evdet-eval"), "prophesee", "--gt", str(base / f"dets{seed}"), "--detections",
             str(base / f"dets{seed}"), "--output", str(folder / "experiment_results.json"), "--config",
             str(folder / "config.yaml"), "--experiment", EXPERIMENT], capture_output=True, text=True)
        assert evaluate.returncode == 0, evaluate.stderr[-3000:]
        folders[seed] = folder
    return {"store": store, "folders": folders}


@pytest.mark.slow  # two trainings, two predictions, two evaluations: about a minute on 2 idle cores
def test_two_seeded_training_runs_render_in_chromium(seed_runs, browser, tmp_path):
    """End to end through the console script: evdet-report compare over the two runs' store folders."""
    one, two = seed_runs["folders"][1], seed_runs["folders"][2]
    proc = subprocess.run([str(BIN / "evdet-report"), "compare", str(one), str(two), "--output",
                           str(tmp_path / "report")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)
    assert written["baseline"] == str(one) and written["runs"] == [str(one), str(two)]
    assert sorted(Path(p).name for p in written["figures"]) == ["per_class_ap.png", "val_ap.png"]
    view = open_page(browser, Path(written["html"]))
    assert_renders(view, runs=2)
    class_names = json.loads((one / "experiment_results.json").read_text())["metrics"]["protocol"]["class_names"]
    assert view["headers"][:8] == ["experiment", "params", "GMAC/frame", "AP", "AP_50", "AP_75", "AP_S", "AP_M"]
    assert view["headers"][8:8 + len(class_names)] == [f"AP {c}" for c in class_names]
    assert view["headers"][-4:] == ["it/s", "peak memory", "GPU-hours", "delta vs baseline"]
    for row, folder, run_id in zip(view["rows"], (one, two), ("seed1", "seed2")):
        assert row[0].split("\n")[0] == EXPERIMENT and run_id in row[0]  # same experiment: told apart by run id
        assert row[3:8 + len(class_names)] == expected_cells(folder / "experiment_results.json", class_names)
    assert view["rows"][0][-1] == "baseline" and view["rows"][1][-1].startswith("AP ")
    markdown = Path(written["markdown"]).read_text()
    assert f"| {EXPERIMENT} (seed1, baseline) |" in markdown and f"| {EXPERIMENT} (seed2) |" in markdown
    assert "![Per-class AP of each run, grouped by class](figures/per_class_ap.png)" in markdown
    assert "(figures/val_ap.png)" in markdown


# ------------------------------------------------------------------------------------------------------------------
# run folders in the store layout with real evaluation outputs


def _write_run(folder: Path, experiment: str, run_id: str, run_json: dict | None, val_ap: list[tuple[int, float]]):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"experiment_name: {experiment}\nrun_id: {run_id}\n")
    if run_json is not None:
        (folder / "run.json").write_text(json.dumps({"experiment": experiment, "run_id": run_id, **run_json}))
    lines = ["epoch,step,train/loss,val/AP,val_AP"]
    for step, ap in val_ap:
        lines += [f"0,{step - 1},{3.0 / step:.4f},,", f"0,{step},,{ap},{ap}"]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def evaluated_runs(tmp_path_factory) -> dict:
    """Three runs in ``store/experiments/<experiment>/<run_id>``: ``alpha/r1`` (GPU summaries), ``beta/r1`` (CPU
    summaries: no GPU memory, no GPU-hours), ``gamma/r0`` (older run: no run.json). Their results are real
    ``evdet-eval prophesee`` outputs: synthetic ground truth (2 test recordings, 320x180) against copies jittered by
    1, 3 and 6 px."""
    from evdet.data.synthetic import generate_dataset

    base = tmp_path_factory.mktemp("evaluated")
    generate_dataset(base / "raw", seed=7, splits={"test": 2}, duration_s=1.5, width=320, height=180)
    gt_dir = base / "raw" / "test"
    store = base / "store"
    specs = {
        ("alpha", "r1"): (1.0, {"model_summary": {"params": 4_412_345, "gmac_per_frame": 3.21, "input_height": 360,
                                                  "input_width": 640},
                                "training_summary": {"steps": 400, "wall_time_s": 720.0, "it_s": 5.5, "samples_s": 44.0,
                                                     "peak_gpu_memory_bytes": 3 * 2 ** 30 + 2 ** 29,
                                                     "peak_rss_bytes": 5 * 2 ** 30, "device": "cuda",
                                                     "world_size": 1, "gpu_hours": 0.2}}, [(10, 0.1), (20, 0.3)]),
        ("beta", "r1"): (3.0, {"model_summary": {"params": 1_500_000, "gmac_per_frame": 0.75, "input_height": 360,
                                                 "input_width": 640},
                               "training_summary": {"steps": 40, "wall_time_s": 100.0, "it_s": 0.4, "samples_s": 3.2,
                                                    "peak_gpu_memory_bytes": None, "peak_rss_bytes": 700 * 2 ** 20,
                                                    "device": "cpu", "world_size": 1, "gpu_hours": None}},
                              [(5, 0.05), (10, 0.15), (15, 0.2)]),
        ("gamma", "r0"): (6.0, None, [(8, 0.02)]),
    }
    folders = {}
    for index, ((experiment, run_id), (jitter_px, run_json, val_ap)) in enumerate(specs.items()):
        folder = store / "experiments" / experiment / run_id
        _write_run(folder, experiment, run_id, run_json, val_ap)
        dets_dir = base / f"dets_{experiment}"
        dets_dir.mkdir()
        rng = np.random.default_rng(index)
        for gt_path in sorted(gt_dir.glob("*_bbox.npy")):
            gt = np.load(gt_path)
            dets = np.zeros(len(gt), dtype=[("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                                             ("class_id", "<u4"), ("class_confidence", "<f4"), ("track_id", "<u4")])
            for name in ("x", "y", "w", "h", "class_id"):
                dets[name] = gt[name]
            dets["t"] = gt["t"] if "t" in gt.dtype.names else gt["ts"]
            dets["x"] += rng.normal(0.0, jitter_px, len(gt)).astype(np.float32)
            dets["y"] += rng.normal(0.0, jitter_px, len(gt)).astype(np.float32)
            dets["class_confidence"] = rng.uniform(0.3, 1.0, len(gt)).astype(np.float32)
            np.save(dets_dir / gt_path.name.replace("_bbox.npy", ".npy"), dets)
        code = eval_main(["prophesee", "--gt", str(gt_dir), "--detections", str(dets_dir), "--output",
                          str(folder / "experiment_results.json"), "--protocol", "etram", "--height", "180",
                          "--width", "320", "--classes", ",".join(CLASSES), "--min-box-diag-px", "16",
                          "--min-box-side-px", "4", "--experiment", experiment])
        assert code == 0
        folders[experiment] = folder
    return {"store": store, "folders": folders, "base": base}


def test_table_units_summaries_and_deltas_against_a_named_baseline(evaluated_runs, browser, capsys, tmp_path):
    folders = evaluated_runs["folders"]
    code, out, err = run_compare(capsys, folders["alpha"], folders["beta"], folders["gamma"], "--baseline", "beta",
                                 "--output", tmp_path / "report", "--title", "alpha vs beta vs gamma")
    assert code == 0, err
    written = json.loads(out)
    assert written["baseline"] == str(folders["beta"])
    view = open_page(browser, Path(written["html"]))
    assert_renders(view, runs=3)
    assert "alpha vs beta vs gamma" in view["text"]
    for row, name in zip(view["rows"], ("alpha", "beta", "gamma")):
        assert row[3:8 + len(CLASSES)] == expected_cells(folders[name] / "experiment_results.json", CLASSES)
    assert column(view, "params") == ["4.41 M", "1.50 M", "n/a"]
    assert column(view, "GMAC/frame") == ["3.21", "0.75", "n/a"]
    assert column(view, "it/s") == ["5.50", "0.40", "n/a"]
    assert column(view, "peak memory") == ["3.50 GiB (GPU)", "700 MiB (host RSS)", "n/a"]
    assert column(view, "GPU-hours") == ["0.2", "n/a", "n/a"]
    metrics = {n: json.loads((f / "experiment_results.json").read_text())["metrics"] for n, f in folders.items()}
    assert metrics["alpha"]["AP"] > metrics["beta"]["AP"] > metrics["gamma"]["AP"] > 0.05  # jitter 1 < 3 < 6 px
    deltas = column(view, "delta vs baseline")
    assert deltas[1] == "baseline"
    for delta, name in ((deltas[0], "alpha"), (deltas[2], "gamma")):
        ap = 100 * (metrics[name]["AP"] - metrics["beta"]["AP"])
        ap_s = 100 * (metrics[name]["AP_S"] - metrics["beta"]["AP_S"])
        assert delta == f"AP {ap:+.2f} pt, AP_S {ap_s:+.2f} pt"
    assert deltas[0].startswith("AP +") and deltas[2].startswith("AP -")
    assert "gamma" in view["text"] and "no model_summary" in view["text"]  # the n/a are explained
    names = sorted(p.relative_to(tmp_path / "report").as_posix() for p in (tmp_path / "report").rglob("*")
                   if p.is_file())
    assert names == [".evdet-manifest.json", "compare.html", "compare.md", "figures/per_class_ap.png",
                     "figures/val_ap.png"]
    for figure in written["figures"]:
        assert Image.open(figure).size[0] >= 600


def test_s3_runs_and_the_newest_run_of_each_experiment(evaluated_runs, s3_env, browser, capsys, tmp_path):  # noqa: F811
    folders = evaluated_runs["folders"]
    bucket = s3_env.make_bucket("compare")
    s3 = S3Store(bucket, "team")
    older = evaluated_runs["base"] / "alpha_r0"
    shutil.copytree(folders["beta"], older)  # an older run of alpha holding beta's results: must not be picked
    put_path(s3, older, "experiments/alpha/r0")
    put_path(s3, folders["alpha"], "experiments/alpha/r1")
    put_path(s3, folders["beta"], "experiments/beta/r1")
    put_path(s3, folders["gamma"], "experiments/gamma/r0")
    gamma_uri = f"s3://{bucket}/team/experiments/gamma/r0"
    code, out, err = run_compare(capsys, gamma_uri, "--store", f"s3://{bucket}/team", "--experiments", "alpha,beta",
                                 "--baseline", "alpha", "--output", tmp_path / "report")
    assert code == 0, err
    written = json.loads(out)
    assert written["runs"] == [gamma_uri, f"s3://{bucket}/team/experiments/alpha/r1",
                               f"s3://{bucket}/team/experiments/beta/r1"]
    assert written["baseline"] == f"s3://{bucket}/team/experiments/alpha/r1"
    view = open_page(browser, Path(written["html"]))
    assert_renders(view, runs=3)
    for row, name in zip(view["rows"], ("gamma", "alpha", "beta")):
        assert row[0].startswith(name)
        assert row[3:8 + len(CLASSES)] == expected_cells(folders[name] / "experiment_results.json", CLASSES)
    assert column(view, "delta vs baseline")[1] == "baseline"
    assert gamma_uri in view["text"]  # the runs' sources are listed


def test_strings_are_escaped_in_the_page(evaluated_runs, browser, capsys, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(evaluated_runs["folders"]["beta"], folder)
    name = '<img src=x onerror="document.title=1">&amp; "q"'
    run = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**run, "experiment": name}))
    code, out, err = run_compare(capsys, folder, evaluated_runs["folders"]["alpha"], "--output", tmp_path / "report")
    assert code == 0, err
    view = open_page(browser, Path(json.loads(out)["html"]))
    assert_renders(view, runs=2)  # the name's <img> is text, not an element
    assert view["rows"][0][0].split("\n")[0] == name


def test_an_older_run_folder_without_summaries_and_without_validation(evaluated_runs, capsys, tmp_path):
    folder = tmp_path / "experiments" / "oldexp" / "bare"  # experiment and run id from the folder names
    folder.mkdir(parents=True)
    shutil.copy(evaluated_runs["folders"]["gamma"] / "experiment_results.json", folder)
    code, out, err = run_compare(capsys, folder, "--output", tmp_path / "report")
    assert code == 0, err
    written = json.loads(out)
    assert [Path(p).name for p in written["figures"]] == ["per_class_ap.png"]
    markdown = Path(written["markdown"]).read_text()
    assert "Validation AP during training: no run logged val/AP or val_AP in metrics.csv." in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| oldexp (bare, baseline) |"))
    assert row.endswith("| n/a | n/a | n/a | baseline |")


# ------------------------------------------------------------------------------------------------------------------
# errors: one line, exit 2, nothing written


def _unevaluated(tmp_path: Path) -> Path:
    folder = tmp_path / "store" / "experiments" / "delta" / "r9"
    _write_run(folder, "delta", "r9", {"status": "completed"}, [(3, 0.0)])
    return folder


@pytest.mark.parametrize("case", ["missing_run", "not_evaluated", "no_runs", "experiments_without_store",
                                  "unknown_experiment", "unknown_baseline", "ambiguous_baseline", "twice"])
def test_input_errors_are_one_line_and_write_nothing(case, evaluated_runs, capsys, tmp_path):
    folders = evaluated_runs["folders"]
    alpha = str(folders["alpha"])
    argv, expected = {
        "missing_run": ([alpha, str(tmp_path / "nope")], f"run folder {tmp_path / 'nope'}: no such folder"),
        "not_evaluated": ([alpha, str(_unevaluated(tmp_path))],
                          "experiments/delta/r9: no experiment_results.json; run the evaluate step first"),
        "no_runs": ([], "no runs to compare"),
        "experiments_without_store": (["--experiments", "alpha"], "--experiments 'alpha' needs --store"),
        "unknown_experiment": (["--store", str(evaluated_runs["store"]), "--experiments", "alpha,omega"],
                               "no run of experiment 'omega'; it holds alpha, beta, gamma"),
        "unknown_baseline": ([alpha, str(folders["beta"]), "--baseline", "omega"],
                             "--baseline 'omega': not a run folder"),
        "ambiguous_baseline": ([alpha, str(folders["beta"]), "--baseline", "r1"],
                               "--baseline 'r1': the run id of 2 compared runs"),
        "twice": ([alpha, alpha + "/"], "given twice"),
    }[case]
    output = tmp_path / "report"
    code, out, err = run_compare(capsys, *argv, "--output", output)
    assert code == 2 and out == ""
    assert err.startswith("evdet-report: error: ") and err.count("\n") == 1 and expected in err, err
    assert not output.exists()


def test_output_folder_is_refused_unless_overwrite_replaces_an_earlier_report(evaluated_runs, capsys, tmp_path):
    folders = evaluated_runs["folders"]
    output = tmp_path / "report"
    assert run_compare(capsys, folders["alpha"], folders["beta"], "--output", output)[0] == 0
    before = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    code, _, err = run_compare(capsys, folders["gamma"], "--output", output)
    assert code == 2 and err.count("\n") == 1 and "output folder is not empty" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == before
    code, _, err = run_compare(capsys, folders["gamma"], "--output", output, "--overwrite")
    assert code == 0, err
    assert "gamma (r0, baseline)" in (output / "compare.md").read_text()
    (output / "notes.txt").write_text("mine")
    code, _, err = run_compare(capsys, folders["alpha"], "--output", output, "--overwrite")
    assert code == 2 and "notes.txt" in err and (output / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------------------------
# the Kubeflow pipeline pipelines/compare.py, run by kfp.local in this environment (as `make run` runs the others)

_KFP_LOCAL = """
import json, os, sys, warnings
from pathlib import Path
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
sys.path.insert(0, sys.argv[1])
from kfp import local
from compare import compare
warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])
compare(store_uri=sys.argv[3], experiments=json.loads(sys.argv[4]), baseline=sys.argv[5])
"""


def test_compare_pipeline_runs_with_kfp_local_and_writes_the_report_to_the_store(evaluated_runs, browser, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(evaluated_runs["store"], store)
    proc = subprocess.run([sys.executable, "-c", _KFP_LOCAL, str(Path(__file__).resolve().parents[2] / "pipelines"),
                           str(tmp_path / "pipeline_root"), str(store), json.dumps(["alpha", "gamma"]), "gamma"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (executor,) = list((tmp_path / "pipeline_root").glob("*/compare-report/executor_output.json"))
    output = json.loads(json.loads(executor.read_text())["parameterValues"]["Output"])  # the component's return
    assert output["baseline"] == str(store / "experiments" / "gamma" / "r0")
    (report,) = list((store / "reports").glob("compare-*"))
    assert output["store_uri"] == str(report)
    assert sorted(p.name for p in report.rglob("*.*")) == [".evdet-manifest.json", "compare.html", "compare.md",
                                                            "per_class_ap.png", "val_ap.png"]
    view = open_page(browser, report / "compare.html")
    assert_renders(view, runs=2)
    assert [row[0].split("\n")[0] for row in view["rows"]] == ["alpha", "gamma"]
    pages = list((tmp_path / "pipeline_root").glob("*/compare-report/page"))
    assert len(pages) == 1 and pages[0].read_bytes() == (report / "compare.html").read_bytes()


def test_a_file_removed_from_the_bucket_is_not_read_from_an_earlier_mirror(evaluated_runs, s3_env, capsys,  # noqa: F811
                                                                           tmp_path):
    """The local mirror of an s3:// run follows the bucket: results deleted there make the run unevaluated again."""
    bucket = s3_env.make_bucket("mirror")
    s3 = S3Store(bucket)
    put_path(s3, evaluated_runs["folders"]["alpha"], "experiments/alpha/r1")
    uri = f"s3://{bucket}/experiments/alpha/r1"
    assert run_compare(capsys, uri, "--output", tmp_path / "first")[0] == 0
    s3.delete("experiments/alpha/r1/experiment_results.json")
    code, _, err = run_compare(capsys, uri, "--output", tmp_path / "second")
    assert code == 2 and f"run {uri}: no experiment_results.json" in err
