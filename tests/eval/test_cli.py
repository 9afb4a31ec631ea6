"""evdet-eval prophesee end to end on Prophesee box files written by the test: both protocols, detections.json
defaults, thresholds, the confusion matrix beside the results, every input error and no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.recfunctions import rename_fields

from evdet.eval.cli import main
from evdet.eval.prophesee import METRIC_NAMES
from evdet.eval.results import load_experiment_results

BOX_DTYPE = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "<u4"),
                      ("track_id", "<u4"), ("class_confidence", "<f4")])
CLASSES = ("pedestrian", "two-wheeler", "car")
T1 = 1_000_000  # us
T2 = 1_200_000  # 200 ms later: no detection of one frame reaches the other's +-50 ms window


def boxes(*rows: tuple) -> np.ndarray:
    """rows of (t, x, y, w, h, class_id, score) -> Prophesee box array."""
    out = np.zeros(len(rows), dtype=BOX_DTYPE)
    for i, (t, x, y, w, h, c, s) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, i, s)
    return out


# 640x360 boxes. seq_a: a pedestrian and a car at T1 (the car detected as a two-wheeler, 20 ms late), a pedestrian
# at T2; seq_b: a two-wheeler at T1.
GT = {
    "seq_a": boxes((T1, 10, 10, 50, 40, 0, 1), (T1, 200, 100, 30, 30, 2, 1), (T2, 12, 10, 50, 40, 0, 1)),
    "seq_b": boxes((T1, 300, 200, 60, 60, 1, 1)),
}
DT = {
    "seq_a": boxes((T1, 10, 10, 50, 40, 0, 0.9), (T1 + 20_000, 200, 100, 30, 30, 1, 0.8),
                   (T2 - 50_000, 12, 10, 50, 40, 0, 0.7)),
    "seq_b": boxes((T1 + 10_000, 300, 200, 60, 60, 1, 0.9)),
}


def write_inputs(gt_dir: Path, dt_dir: Path, *, info: dict | None = None) -> None:
    gt_dir.mkdir(parents=True, exist_ok=True)
    dt_dir.mkdir(parents=True, exist_ok=True)
    for name in GT:
        np.save(gt_dir / f"{name}_bbox.npy", GT[name])
        np.save(dt_dir / f"{name}.npy", DT[name])
    if info is not None:
        (dt_dir / "detections.json").write_text(json.dumps(info))


@pytest.fixture
def dirs(tmp_path):
    gt, dt, out = tmp_path / "gt", tmp_path / "dets", tmp_path / "etram_run"
    write_inputs(gt, dt)
    return gt, dt, out


def args(gt, dt, output, *more, protocol="etram", size=True, classes=True):
    out = ["prophesee", "--gt", str(gt), "--detections", str(dt), "--protocol", protocol, "--output", str(output)]
    if size:
        out += ["--height", "360", "--width", "640"]
    if classes:
        out += ["--classes", ",".join(CLASSES)]
    return out + list(more)


def one_line_error(capsys, *fragments: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("evdet-eval: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_etram_and_rvt_end_to_end(dirs, tmp_path, capsys):
    gt, dt, out = dirs
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  name: rvt_tiny\n")
    output = out / "experiment_results.json"
    assert main(args(gt, dt, output, "--config", str(config), "--table")) == 0  # the tables instead of JSON
    printed = capsys.readouterr()
    assert printed.err == ""
    for text in ("class-agnostic", "class-aware", "AP_50", "two-wheeler", "etram protocol"):
        assert text in printed.out

    results = load_experiment_results(output)
    assert results["experiment"] == "etram_run"  # default: the output file's folder
    assert results["config"] == {"model": {"name": "rvt_tiny"}}
    m = results["metrics"]
    assert m["headline"] == "class_agnostic"
    # class-agnostic: every box is found (the car as a two-wheeler counts); class-aware: the car is missed
    assert m["AP"] == pytest.approx(1.0) and m["class_agnostic"]["AP"] == pytest.approx(1.0)
    assert m["class_aware"]["AP_50"] < 1.0 and m["per_class_AP"]["car"] == 0.0
    assert m["per_class_num_gt"] == {"pedestrian": 2, "two-wheeler": 1, "car": 1}
    assert set(METRIC_NAMES) <= set(m) and len(m["class_aware"]["stats"]) == 12
    assert (m["num_recordings"], m["num_images"], m["num_gt"], m["num_detections"]) == (2, 3, 4, 4)
    p = m["protocol"]
    assert (p["name"], p["camera"], p["height"], p["width"], p["downsample_factor"]) == ("etram", "gen4", 360, 640, 2)
    assert (p["min_box_diag_px"], p["min_box_side_px"], p["skip_before_us"], p["time_tolerance_us"]) == (
        30, 10, 500_000, 50_000)
    assert p["class_names"] == list(CLASSES) and p["pycocotools"]

    extra = results["extra"]
    assert [r["name"] for r in extra["recordings"]] == ["seq_a", "seq_b"]
    assert extra["recordings"][0]["gt_file"].endswith("seq_a_bbox.npy")
    assert extra["inputs"]["gt_dir"] == str(gt.resolve()) and extra["inputs"]["detections_json"] is None
    assert set(extra["timings_s"]) == {"load", "evaluate", "confusion"}
    counts = np.array(extra["confusion_matrix"]["counts"])
    assert counts[2, 1] == 1 and counts[:, -1].sum() == 0 and counts[-1].sum() == 0  # car -> two-wheeler
    csv = (out / "confusion_matrix.csv").read_text()
    assert csv.startswith("true\\predicted,pedestrian,two-wheeler,car,background\n")
    assert sorted(x.name for x in out.iterdir()) == ["confusion_matrix.csv", "experiment_results.json"]

    rvt_out = tmp_path / "rvt" / "r.json"
    assert main(args(gt, dt, rvt_out, "--experiment", "rvt1", protocol="rvt")) == 0
    rvt = load_experiment_results(rvt_out)
    assert rvt["experiment"] == "rvt1"
    assert rvt["metrics"]["headline"] == "class_aware"
    assert rvt["metrics"]["AP"] == rvt["metrics"]["class_aware"]["AP"] < 1.0
    assert rvt["metrics"]["class_agnostic"] == m["class_agnostic"]
    assert (rvt_out.parent / "r.confusion_matrix.csv").is_file()


def test_detections_json_defaults_and_flags_win(tmp_path, capsys):
    gt, dt = tmp_path / "gt", tmp_path / "dets"
    write_inputs(gt, dt, info={"class_names": list(CLASSES), "width": 640, "height": 360, "downsample_factor": 2,
                               "score": "class_conf", "checkpoint": "x.ckpt", "protocol": "rvt", "camera": "gen4"})
    output = tmp_path / "out" / "experiment_results.json"
    no_protocol = [a for a in args(gt, dt, output, size=False, classes=False) if a not in ("--protocol", "etram")]
    assert main(no_protocol) == 0
    m = load_experiment_results(output)["metrics"]
    assert m["protocol"]["name"] == "rvt" and m["headline"] == "class_aware"
    assert m["protocol"]["class_names"] == list(CLASSES)
    assert (m["protocol"]["height"], m["protocol"]["width"], m["protocol"]["min_box_diag_px"]) == (360, 640, 30)
    info = load_experiment_results(output)["extra"]["inputs"]["detections_info"]
    assert info["score"] == "class_conf" and info["checkpoint"] == "x.ckpt"

    # flags win: other class names, full-resolution size (thresholds 60 / 20: the 30x30 car is then filtered)
    output2 = tmp_path / "out2" / "experiment_results.json"
    assert main(args(gt, dt, output2, "--height", "720", "--width", "1280", "--classes", "a,b,c",
                     size=False, classes=False)) == 0
    m2 = load_experiment_results(output2)["metrics"]
    assert m2["protocol"]["class_names"] == ["a", "b", "c"] and m2["protocol"]["min_box_diag_px"] == 60
    assert m2["protocol"]["name"] == "etram"  # --protocol etram wins over the file's rvt
    assert m2["per_class_num_gt"]["c"] == 0


def test_gt_and_detections_in_one_folder_and_prophesee_v1_ts_field(tmp_path):
    both = tmp_path / "both"
    write_inputs(both, both)
    old = rename_fields(GT["seq_b"], {"t": "ts"})
    np.save(both / "seq_b_bbox.npy", old)
    output = tmp_path / "o.json"
    assert main(args(both, both, output)) == 0
    assert load_experiment_results(output)["metrics"]["num_recordings"] == 2


def test_explicit_thresholds_override_and_scaled_boxes_give_the_same_ap(dirs, tmp_path):
    gt, dt, _ = dirs
    half = tmp_path / "half.json"
    assert main(args(gt, dt, half, protocol="rvt")) == 0
    full_gt, full_dt = tmp_path / "full_gt", tmp_path / "full_dt"
    full_gt.mkdir()
    full_dt.mkdir()
    for name in GT:
        for src, folder, suffix in ((GT, full_gt, "_bbox.npy"), (DT, full_dt, ".npy")):
            b = src[name].copy()
            for f in ("x", "y", "w", "h"):
                b[f] *= 2
            np.save(folder / f"{name}{suffix}", b)
    full = tmp_path / "full.json"
    assert main(args(full_gt, full_dt, full, "--height", "720", "--width", "1280", size=False,
                     protocol="rvt")) == 0
    a, b = load_experiment_results(half)["metrics"], load_experiment_results(full)["metrics"]
    for key in ("AP", "AP_50", "AP_75"):
        assert a[key] == pytest.approx(b[key])
    explicit = tmp_path / "explicit.json"
    assert main(args(gt, dt, explicit, "--min-box-diag-px", "50", "--min-box-side-px", "5", protocol="rvt")) == 0
    e = load_experiment_results(explicit)["metrics"]
    assert e["protocol"]["thresholds_source"] == "explicit" and e["num_gt"] == 3  # the 30x30 car (diag 42) is out


def test_no_detections_gives_zeros_and_says_so(dirs, capsys):
    gt, dt, out = dirs
    for name in DT:
        np.save(dt / f"{name}.npy", boxes())
    assert main(args(gt, dt, out / "r.json")) == 0
    printed = capsys.readouterr().out
    assert "every figure is 0.0" in printed
    m = load_experiment_results(out / "r.json")["metrics"]
    assert m["no_detections"] is True and m["AP"] == 0.0 and m["class_aware"]["stats"] == [0.0] * 12


def test_refuses_to_overwrite_and_leaves_files_untouched(dirs, capsys):
    gt, dt, out = dirs
    out.mkdir()
    output = out / "experiment_results.json"
    output.write_text("previous results\n")
    assert main(args(gt, dt, output)) == 2
    one_line_error(capsys, str(output), "--overwrite")
    assert output.read_text() == "previous results\n" and not (out / "confusion_matrix.csv").exists()

    output.unlink()
    (out / "confusion_matrix.csv").write_text("previous csv\n")
    assert main(args(gt, dt, out)) == 2  # --output as a folder
    one_line_error(capsys, "confusion_matrix.csv", "--overwrite")
    assert not output.exists() and (out / "confusion_matrix.csv").read_text() == "previous csv\n"

    assert main(args(gt, dt, out, "--overwrite")) == 0
    assert load_experiment_results(output)["metrics"]["AP"] == pytest.approx(1.0)
    assert (out / "confusion_matrix.csv").read_text().startswith("true\\predicted,")
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.csv", "experiment_results.json"]


def _mutate_file(name: str, array: np.ndarray):
    def mutate(gt: Path, dt: Path) -> None:
        np.save((gt if name.endswith("_bbox.npy") else dt) / name, array)
    return mutate


def _unsorted() -> np.ndarray:
    b = DT["seq_a"].copy()
    return b[::-1].copy()


def _nan() -> np.ndarray:
    b = DT["seq_b"].copy()
    b["w"] = np.nan
    return b


@pytest.mark.parametrize(
    ("mutate", "flags", "fragments"),
    [
        (lambda gt, dt: (dt / "seq_b.npy").unlink(), {}, ["seq_b_bbox.npy", "no detections file", "seq_b.npy"]),
        (lambda gt, dt: (gt / "seq_b_bbox.npy").unlink(), {}, ["seq_b.npy", "no ground-truth file", "seq_b_bbox.npy"]),
        (lambda gt, dt: [p.unlink() for p in gt.glob("*_bbox.npy")], {}, ["no ground-truth files"]),
        (lambda gt, dt: None, {"classes": False}, ["--classes", "detections.json"]),
        (lambda gt, dt: None, {"size": False}, ["--height and --width", "detections.json"]),
        (lambda gt, dt: None, {"more": ["--height", "300", "--width", "500"], "size": False},
         ["300x500 px is neither", "--min-box-diag-px"]),
        (lambda gt, dt: None, {"more": ["--min-box-diag-px", "10"]}, ["--min-box-diag-px/--min-box-side-px"]),
        (lambda gt, dt: None, {"more": ["--height", "360"], "size": False}, ["--height/--width: give both"]),
        (lambda gt, dt: (dt / "detections.json").write_text("{not json"), {}, ["detections.json: not valid JSON"]),
        (lambda gt, dt: (dt / "detections.json").write_text('{"width": -1}'), {},
         ["detections.json: key 'width' must be a positive integer"]),
        (lambda gt, dt: (dt / "detections.json").write_text('{"protocol": "coco"}'), {},
         ["detections.json: key 'protocol' must be one of"]),
        (_mutate_file("seq_a.npy", _unsorted()), {}, ["seq_a.npy: field 't' is not sorted", "sort by t"]),
        (_mutate_file("seq_b.npy", _nan()), {}, ["seq_b.npy: field 'w' holds NaN or inf"]),
        (_mutate_file("seq_a.npy", np.zeros((3, 6), np.float32)), {}, ["seq_a.npy: expected a 1-D structured"]),
        (_mutate_file("seq_a_bbox.npy", GT["seq_a"][["t", "x", "y", "w", "h"]]), {},
         ["seq_a_bbox.npy: missing field(s) ['class_id']"]),
        (_mutate_file("seq_a.npy", DT["seq_a"][["t", "x", "y", "w", "h", "class_id"]]), {},
         ["seq_a.npy: missing field(s) ['class_confidence']"]),
        (lambda gt, dt: (dt / "seq_a.npy").write_text("not numpy"), {}, ["seq_a.npy: not a readable .npy"]),
        (lambda gt, dt: [np.save(p, boxes()) for p in gt.glob("*_bbox.npy")], {},
         ["no ground-truth box is left after the filter"]),
        (lambda gt, dt: None, {"more": ["--classes", "a,a"], "classes": False}, ["--classes: names must be distinct"]),
        (lambda gt, dt: None, {"more": ["--camera", "gen3"]}, ["invalid choice: 'gen3'"]),
    ],
    ids=["gt-without-dets", "dets-without-gt", "no-gt-files", "no-classes", "no-size", "odd-size", "one-threshold",
         "height-only", "bad-json", "bad-json-key", "bad-json-protocol", "unsorted", "nan", "plain-array", "gt-missing-field",
         "dt-missing-score", "not-npy", "all-filtered", "duplicate-classes", "bad-camera"],
)
def test_input_errors_are_one_line_exit_2_and_write_nothing(dirs, capsys, mutate, flags, fragments):
    gt, dt, out = dirs
    mutate(gt, dt)
    more = flags.pop("more", [])
    assert main(args(gt, dt, out / "r.json", *more, **flags)) == 2
    one_line_error(capsys, *fragments)
    assert not out.exists()


def test_missing_folder_and_usage_errors(dirs, tmp_path, capsys):
    gt, dt, out = dirs
    assert main(args(tmp_path / "nope", dt, out / "r.json")) == 2
    one_line_error(capsys, "nope", "--gt folder not found")
    assert main(["prophesee", "--gt", str(gt), "--detections", str(dt), "--output", str(out / "r.json"),
                 "--classes", "a,b,c", "--height", "360", "--width", "640"]) == 2
    one_line_error(capsys, "pass --protocol etram|rvt", "detections.json")
    assert main(["prophesee", "--gt", str(gt), "--output", str(out)]) == 2
    one_line_error(capsys, "--detections")
    assert main(args(gt, dt, out / "r.json", protocol="coco")) == 2
    one_line_error(capsys, "invalid choice: 'coco'")
    bad_config = tmp_path / "run.toml"
    bad_config.write_text("a = 1\n")
    assert main(args(gt, dt, out / "r.json", "--config", str(bad_config))) == 2
    one_line_error(capsys, "unknown config suffix '.toml'")
    assert not out.exists()


def test_prophesee_path_does_not_depend_on_the_legacy_coco_module(dirs):
    """coco.py is due for removal: nothing the prophesee command runs may import it."""
    import subprocess
    import sys

    gt, dt, out = dirs
    code = (
        "import sys\n"
        "from evdet.eval.cli import main\n"
        f"rc = main({args(gt, dt, out / 'r.json')!r})\n"
        "assert rc == 0, rc\n"
        "assert 'evdet.eval.coco' not in sys.modules, 'evdet.eval.coco was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("more", "fragments"), [
    (["--height", "-5"], ["argument --height", "expected a positive integer", "'-5'"]),
    (["--width", "abc"], ["argument --width", "expected a positive integer", "'abc'"]),
    (["--height", "0"], ["argument --height", "'0'"]),
    (["--min-box-diag-px", "nan", "--min-box-side-px", "1"], ["argument --min-box-diag-px", "finite number >= 0"]),
    (["--min-box-side-px", "-1", "--min-box-diag-px", "1"], ["argument --min-box-side-px", "'-1'"]),
    (["--skip-before-us", "-1"], ["argument --skip-before-us", "integer >= 0"]),
    (["--time-tolerance-us", "1.5"], ["argument --time-tolerance-us", "integer >= 0"]),
    (["--confusion-iou", "0"], ["argument --confusion-iou", "IoU in (0, 1]"]),
    (["--confusion-iou", "1.5"], ["argument --confusion-iou", "'1.5'"]),
    (["--confusion-score", "-0.1"], ["argument --confusion-score", "score in [0, 1]"]),
    (["--experiment", " "], ["argument --experiment", "non-empty experiment name"]),
    (["--protocol", "coco"], ["argument --protocol", "invalid choice: 'coco'", "etram"]),
    (["--camera", "gen3"], ["argument --camera", "gen1", "gen4"]),
    (["--classes", ""], ["--classes", "expected comma-separated non-empty names"]),
    (["--bogus", "1"], ["unrecognized arguments: --bogus", "expected only the flags"]),
])
def test_every_flag_error_names_the_flag_and_what_is_expected(dirs, capsys, more, fragments):
    gt, dt, out = dirs
    assert main(args(gt, dt, out / "r.json", *more)) == 2
    err = one_line_error(capsys, *fragments)
    assert "expected" in err or "invalid choice" in err
    assert not out.exists()


def test_path_flags_name_the_flag(dirs, tmp_path, capsys):
    gt, dt, out = dirs
    assert main(args(gt, dt, out / "r.json", "--config", str(tmp_path / "missing.yaml"))) == 2
    one_line_error(capsys, "--config", "missing.yaml", "no such file", "expected a run config")
    blocker = tmp_path / "a_file"
    blocker.write_text("keep\n")
    assert main(args(gt, dt, blocker / "r.json")) == 2
    one_line_error(capsys, "--output", "is a file", "expected")
    assert blocker.read_text() == "keep\n"
    assert main(args(gt, tmp_path / "nope", out / "r.json")) == 2
    one_line_error(capsys, "--detections folder not found", "expected a folder of <name>.npy detections")
    assert main([]) == 2
    one_line_error(capsys, "required", "prophesee")
    assert not out.exists()
