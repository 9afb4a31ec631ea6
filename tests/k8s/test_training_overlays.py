"""The training Job overlays k8s/training/<experiment>/ are generated from the experiment configs
(k8s/training/generate.py, ``make k8s-training``): the checked-in files equal the generator's output, no overlay is
left without its experiment, a multi-GPU experiment gets its GPUs, and bad configs are refused with one line."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evdet.model.config import list_experiments

TRAINING = Path(__file__).resolve().parents[2] / "k8s" / "training"


def _generator():
    name = "evdet_k8s_training_generate"
    if name not in sys.modules:  # registered before it runs: its dataclasses look their module up by name
        spec = importlib.util.spec_from_file_location(name, TRAINING / "generate.py")
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_committed_overlays_are_the_generators_output():
    gen = _generator()
    files = gen.render_all()
    assert sorted(rel.split("/")[0] for rel in files) == list_experiments()
    for rel, text in files.items():
        path = TRAINING / rel
        assert path.is_file(), f"k8s/training/{rel} is missing: run `make k8s-training`"
        assert path.read_text() == text, f"k8s/training/{rel} is stale: run `make k8s-training`"


def test_no_overlay_without_its_experiment():
    gen = _generator()
    stale = gen.stale_overlays(list_experiments())
    assert not stale, (f"k8s/training/{', '.join(p.name for p in stale)}: no experiment config of that name; "
                       f"run `make k8s-training` (removes generated overlays of deleted experiments)")


def test_generator_writes_and_removes_only_generated_overlays(tmp_path, capsys):
    gen = _generator()
    out = tmp_path / "training"
    (out / "gone_experiment").mkdir(parents=True)
    (out / "gone_experiment" / "kustomization.yaml").write_text(gen.GENERATED_MARK + "\n")
    (out / "hand_made").mkdir()
    (out / "hand_made" / "kustomization.yaml").write_text("# written by hand\n")
    written = gen.write_overlays(out)
    assert sorted(p.parent.name for p in written) == list_experiments()
    assert not (out / "gone_experiment").exists()
    assert (out / "hand_made" / "kustomization.yaml").read_text() == "# written by hand\n"
    assert "hand_made" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="--out"):
        gen.write_overlays(tmp_path / "file")


def _config(name: str, **hardware) -> dict:
    return {"experiment_name": name, "description": "A test experiment.", "hardware": {"devices": 1, "num_nodes": 1,
                                                                                        **hardware}}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (needed for `kubectl kustomize`)")
def test_multi_gpu_experiment_gets_its_gpus_args_and_metrics_ports(tmp_path):
    gen = _generator()
    job = gen.training_job("four_gpus", _config("four_gpus", devices=4))
    shutil.copytree(TRAINING / "job", tmp_path / "job")
    (tmp_path / "four_gpus").mkdir()
    (tmp_path / "four_gpus" / "kustomization.yaml").write_text(gen.render(job, gen.base_job()))
    proc = subprocess.run(["kubectl", "kustomize", str(tmp_path / "four_gpus")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    (built,) = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert built["metadata"]["name"] == "evdet-train-four-gpus"
    container = built["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "+experiment=four_gpus"
    assert [a for a in container["args"] if a.startswith("hardware.devices=")] == ["hardware.devices=4"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 4
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert sorted(p["containerPort"] for p in container["ports"]) == [8000, 8001, 8002, 8003]


@pytest.mark.parametrize("name,config,message", [
    ("renamed", {**_config("other_name")}, "experiment_name is 'other_name', expected 'renamed'"),
    ("multi_node", _config("multi_node", num_nodes=2), "hardware.num_nodes=2"),
    ("auto_devices", _config("auto_devices", devices="auto"), "hardware.devices='auto'"),
    ("Bad-Name", _config("Bad-Name"), "letters, digits and '_'"),
    ("x" * 60, _config("x" * 60), "at most 63 characters"),
])
def test_generator_refuses_bad_experiment_configs(name, config, message):
    gen = _generator()
    with pytest.raises(ValueError, match="conf/experiment/") as err:
        gen.training_job(name, config)
    assert message in str(err.value) and "\n" not in str(err.value)
