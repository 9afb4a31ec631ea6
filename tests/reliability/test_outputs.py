"""The catalogue, outputs and run flags: ``evdet-data synth``, ``evdet-detect`` and ``evdet-model predict`` never
overwrite an existing output folder without ``--overwrite`` (and ``--overwrite`` never deletes files they did not
write), and their flags are checked before anything is loaded or written (``reliability.harness``).

Every case expects exit 2, one message line naming the folder / flag and what was expected, no traceback, and the
protected files unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reliability.harness import Case, check

ROOT = Path(__file__).resolve().parents[2]
GEN4 = ROOT / "data" / "real" / "gen4.dat"
DAVIS = ROOT / "data" / "real" / "davis346.aedat4"
SYNTH = ["--train", "1", "--val", "0", "--test", "0", "--duration-s", "0.3", "--width", "160", "--height", "90"]


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> str:
    return tiny_run["last_checkpoint"]


@pytest.fixture(scope="module")
def earlier_detect(checkpoint, tmp_path_factory) -> Path:
    """The output of an earlier ``evdet-detect`` run (two windows, one PNG)."""
    from evdet.model.inference.detect import detect_recordings

    out = tmp_path_factory.mktemp("detect") / "out"
    detect_recordings(Path(checkpoint), [DAVIS], out, max_windows=2, max_images=1)
    return out


@pytest.fixture(scope="module")
def earlier_predict(checkpoint, tiny_shards, tmp_path_factory) -> Path:
    """The output of an earlier ``evdet-model predict`` run over the test split."""
    from evdet.model.inference.predict import predict_shards

    out = tmp_path_factory.mktemp("predict") / "dets"
    predict_shards(Path(checkpoint), tiny_shards / "test", out)
    return out


def detect(checkpoint: str, out: Path, *extra) -> list:
    return ["evdet-detect", checkpoint, DAVIS, "--output", out, "--device", "cpu", "--max-windows", "2", *extra]


def predict(checkpoint: str, shards: Path, out: Path, *extra) -> list:
    return ["evdet-model", "predict", "--checkpoint", checkpoint, "--shards", shards, "--output", out, *extra]


# ---------------------------------------------------------------------------------------------------------------
# nothing overwritten


def test_synth_into_a_folder_with_the_users_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")  # synth writes a README.md of its own
    (folder / "data.csv").write_text("1,2,3\n")
    check(Case("synth-into-user-folder", ["evdet-data", "synth", folder, *SYNTH],
               names=[str(folder), "output folder is not empty", "README.md", "--overwrite"], protect=[folder]))
    check(Case("synth-overwrite-user-folder", ["evdet-data", "synth", folder, *SYNTH, "--overwrite"],
               names=[str(folder), "not written by it", "README.md", "data.csv"], protect=[folder]))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "data.csv"]


def test_synth_over_an_earlier_synth(tmp_path):
    from evdet.data.cli import main

    out = tmp_path / "synth"
    assert main(["synth", str(out), *SYNTH]) == 0
    check(Case("synth-over-earlier-synth", ["evdet-data", "synth", out, *SYNTH, "--seed", "3"],
               names=[str(out), "output folder is not empty", "pass --overwrite"], protect=[out]))


def test_detect_over_an_earlier_output(checkpoint, earlier_detect):
    check(Case("detect-over-earlier-output", detect(checkpoint, earlier_detect, "--max-images", "3"),
               names=[str(earlier_detect), "output folder is not empty", "pass --overwrite"],
               protect=[earlier_detect]))


def test_detect_overwrite_keeps_files_it_did_not_write(checkpoint, earlier_detect, tmp_path):
    import shutil

    folder = tmp_path / "out"
    shutil.copytree(earlier_detect, folder)
    (folder / "my_notes.txt").write_text("keep me")
    check(Case("detect-overwrite-foreign-file", detect(checkpoint, folder, "--overwrite"),
               names=[str(folder), "my_notes.txt", "not written by it"], protect=[folder]))


def test_detect_output_that_is_a_file(checkpoint, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("x")
    check(Case("detect-output-is-a-file", detect(checkpoint, target), names=[str(target), "output folder is a file"],
               protect=[target]))


def test_predict_over_earlier_detections(checkpoint, tiny_shards, earlier_predict):
    check(Case("predict-over-earlier-detections", predict(checkpoint, tiny_shards / "val", earlier_predict),
               names=[str(earlier_predict), "output folder is not empty", "pass --overwrite"],
               protect=[earlier_predict]))


def test_predict_overwrite_keeps_the_evaluation_results(checkpoint, tiny_shards, earlier_predict, tmp_path):
    import shutil

    folder = tmp_path / "dets"
    shutil.copytree(earlier_predict, folder)
    (folder / "experiment_results.json").write_text(json.dumps({"metrics": {"AP": 0.5}}))
    check(Case("predict-overwrite-keeps-eval-results", predict(checkpoint, tiny_shards / "val", folder, "--overwrite"),
               names=[str(folder), "experiment_results.json", "not written by it"], protect=[folder]))


# ---------------------------------------------------------------------------------------------------------------
# flags, checked before anything is loaded or written


@pytest.mark.parametrize("extra,message", [
    (["--max-windows", "-1"], "--max-windows: expected a positive number of 50 ms windows, got -1"),
    (["--max-windows", "0"], "--max-windows: expected a positive number of 50 ms windows, got 0"),
    (["--max-images", "-2"], "--max-images: expected a number >= 0 (0: none) of PNG overlays per recording, got -2"),
    (["--confidence", "1.5"], "--confidence: expected a threshold in [0, 1], got 1.5"),
    (["--nms", "-0.1"], "--nms: expected a threshold in [0, 1], got -0.1"),
    (["--device", "gpu0"], "--device: expected cpu, cuda or cuda:N, got 'gpu0'"),
])
def test_detect_flags(checkpoint, tmp_path, extra, message):
    out = tmp_path / "out"
    check(Case(f"detect-flag {' '.join(extra)}", detect(checkpoint, out, *extra), names=[message]))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("tool", ["detect", "predict"])
def test_device_cuda_without_cuda(checkpoint, tiny_shards, tmp_path, tool):
    out = tmp_path / "out"
    argv = (detect(checkpoint, out)[:-4] + ["--device", "cuda"] if tool == "detect"
            else predict(checkpoint, tiny_shards / "test", out, "--device", "cuda"))
    check(Case(f"{tool}-device-cuda-without-cuda", argv,
               names=["--device cuda: CUDA is not available on this machine", "use --device cpu"]))
    assert not out.exists()


@pytest.mark.parametrize("batch", ["0", "-3"])
def test_predict_batch(checkpoint, tiny_shards, tmp_path, batch):
    out = tmp_path / "out"
    check(Case(f"predict-flag --batch {batch}", predict(checkpoint, tiny_shards / "test", out, "--batch", batch),
               names=[f"--batch: expected a positive number of recordings streamed in parallel, got {batch}"]))
    assert not out.exists()
