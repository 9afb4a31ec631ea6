"""Every pipeline file compiles with the kfp CLI, and the compiled spec chains the four steps."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pipelines"))
from pipeline_files import experiment_pipelines  # noqa: E402

#: The experiment pipelines (preprocess -> train -> evaluate -> detect): every ``<name> = build_pipeline(...)`` file.
#: Other pipelines (compare.py) are tested on their own below.
PIPELINE_FILES = sorted(ROOT / "pipelines" / f"{stem}.py" for stem in experiment_pipelines())


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: p.stem)
def test_pipeline_compiles(path, tmp_path):
    out = tmp_path / f"{path.stem}.yaml"
    kfp = Path(sys.executable).parent / "kfp"
    result = subprocess.run([str(kfp), "dsl", "compile", "--py", str(path), "--output", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = docs[0]
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
    # preprocessing names the raw label ids as the experiment's dataset config does (the team's 8-class sample)
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["class_names"]["defaultValue"] == "Car,Truck,Motorcycle,Bicycle,Pedestrian,Bus,Static,Other"


def test_at_least_the_baseline_pipeline_exists():
    assert "plain_lstm_baseline" in {p.stem for p in PIPELINE_FILES}


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: p.stem)
def test_pipeline_sets_cluster_settings(path, tmp_path):
    """kfp-kubernetes settings reach the compiled platform spec: GPU, placement, shm, secret, scrape annotations."""
    out = tmp_path / f"{path.stem}.yaml"
    kfp = Path(sys.executable).parent / "kfp"
    subprocess.run([str(kfp), "dsl", "compile", "--py", str(path), "--output", str(out)], check=True,
                   capture_output=True)
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = docs[0]
    platform = next(d for d in docs if d and "platforms" in d)["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train_resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert train_resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert int(train_resources["accelerator"]["resourceCount"]) == 1
    train = platform["exec-train"]
    assert train["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train["tolerations"]
    assert train["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and train["emptyDirMounts"][0]["medium"] == "Memory"
    annotations = train["podMetadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8000"
    for name in ("exec-preprocess", "exec-train", "exec-evaluate", "exec-detect"):
        secret = platform[name]["secretAsEnv"][0]
        assert secret["secretName"] == "evdet-minio"
        assert {k["envVar"] for k in secret["keyToEnv"]} == {
            "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE"}
        assert platform[name]["podMetadata"]["labels"]["app.kubernetes.io/part-of"] == "evdet"


def test_compare_pipeline_compiles_with_store_access(tmp_path):
    """pipelines/compare.py: one compare-report step in the eval image, its parameters, the MinIO Secret as env."""
    out = tmp_path / "compare.yaml"
    kfp = Path(sys.executable).parent / "kfp"
    result = subprocess.run([str(kfp), "dsl", "compile", "--py", str(ROOT / "pipelines" / "compare.py"), "--output",
                             str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = docs[0]
    assert set(spec["root"]["dag"]["tasks"]) == {"compare-report"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["store_uri"]["parameterType"] == "STRING"
    assert parameters["experiments"]["parameterType"] == "LIST"
    assert parameters["baseline"]["defaultValue"] == "" and parameters["reports_prefix"]["defaultValue"] == "reports"
    outputs = spec["components"]["comp-compare-report"]["outputDefinitions"]["artifacts"]
    assert outputs["page"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.Artifact"
    container = spec["deploymentSpec"]["executors"]["exec-compare-report"]["container"]
    assert container["image"].split("/")[-1].startswith("evdet-eval:")
    assert "evdet-report" in " ".join(container["args"] + container["command"])
    assert "pip install" not in out.read_text()
    platform = next(d for d in docs if d and "platforms" in d)["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secret = platform["exec-compare-report"]["secretAsEnv"][0]
    assert secret["secretName"] == "evdet-minio"
    assert {k["envVar"] for k in secret["keyToEnv"]} == {
        "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE"}
