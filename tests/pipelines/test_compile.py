"""Every pipeline file compiles with the kfp CLI, and the compiled spec chains the four steps."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_FILES = sorted(
    p for p in (ROOT / "pipelines").glob("*.py") if p.stem not in {"pipeline_builder", "pipeline_components", "run_local"}
)


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: p.stem)
def test_pipeline_compiles(path, tmp_path):
    out = tmp_path / f"{path.stem}.yaml"
    kfp = Path(sys.executable).parent / "kfp"
    result = subprocess.run([str(kfp), "dsl", "compile", "--py", str(path), "--output", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"preprocess", "train", "evaluate", "detect"}
    assert tasks["train"]["dependentTasks"] == ["preprocess"]
    assert sorted(tasks["evaluate"]["dependentTasks"]) == ["preprocess", "train"]
    assert tasks["detect"]["dependentTasks"] == ["train"]
    text = out.read_text()
    assert "pip install" not in text  # components never install packages at run time
    executors = spec["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    assert images["exec-train"].split("/")[-1].startswith("evdet-model:")
    assert images["exec-preprocess"].split("/")[-1].startswith("evdet-data:")
    assert images["exec-evaluate"].split("/")[-1].startswith("evdet-eval:")
    train_inputs = tasks["train"]["inputs"]["parameters"]
    assert train_inputs["experiment"]["runtimeValue"]["constant"]  # the experiment name is fixed per file


def test_at_least_the_baseline_pipeline_exists():
    assert "plain_lstm_baseline" in {p.stem for p in PIPELINE_FILES}
