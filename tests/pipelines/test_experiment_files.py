"""One place per experiment: every experiment config has its thin pipeline file and its generated training Job
overlay, each pipeline file is one line over the builder naming an existing experiment, and the pipeline's name and
description come from the experiment config."""

import importlib
import sys
from pathlib import Path

import pytest

from evdet.model.config import compose_config, list_experiments

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pipelines"))
from pipeline_files import experiment_pipelines, pipeline_files  # noqa: E402

EXPERIMENT_DIR = "packages/model/src/evdet/model/conf/experiment"


def _thin_file(experiment: str) -> str:
    short = experiment.lower()
    return (f"pipelines/{short}.py holding\n    from pipeline_builder import build_pipeline\n\n"
            f"    {short} = build_pipeline(\"{experiment}\")")


def test_every_experiment_has_its_pipeline_file():
    with_pipeline = set(experiment_pipelines().values())
    missing = [e for e in list_experiments() if e not in with_pipeline]
    assert not missing, "\n".join(f"experiment {e} ({EXPERIMENT_DIR}/{e}.yaml) has no pipeline file: add "
                                  f"{_thin_file(e)}" for e in missing)


def test_every_experiment_has_its_training_job_overlay():
    missing = [e for e in list_experiments() if not (ROOT / "k8s" / "training" / e / "kustomization.yaml").is_file()]
    assert not missing, (f"no k8s/training/<experiment>/kustomization.yaml for {', '.join(missing)}: run "
                         f"`make k8s-training` (python k8s/training/generate.py) and commit the generated files")


def test_pipeline_files_are_one_line_over_the_builder():
    experiments = set(list_experiments())
    problems = []
    seen: dict[str, str] = {}
    for f in pipeline_files():
        where = f"pipelines/{f.path.name}"
        if f.variable != f.path.stem:
            problems.append(f"{where}: the pipeline is bound to {f.variable!r}; name it {f.path.stem!r} "
                            f"(run_local.py and submit.py look it up by the file name)")
        if f.experiment is None:
            problems.append(f"{where}: pass the experiment name to build_pipeline as a string literal")
        elif f.experiment not in experiments:
            problems.append(f"{where}: build_pipeline({f.experiment!r}) names no {EXPERIMENT_DIR}/"
                            f"{f.experiment}.yaml")
        elif f.experiment in seen:
            problems.append(f"{where}: experiment {f.experiment} already has pipelines/{seen[f.experiment]}.py")
        else:
            seen[f.experiment] = f.path.stem
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", list_experiments())
def test_experiment_name_is_the_file_name(name):
    """The Job, its label, the pipeline's store path and +experiment= all use one name."""
    assert compose_config([f"experiment={name}"]).experiment_name == name, (
        f"{EXPERIMENT_DIR}/{name}.yaml: set experiment_name: {name}")


@pytest.mark.parametrize("stem", sorted(experiment_pipelines()))
def test_pipeline_name_and_description_come_from_the_experiment_config(stem):
    experiment = experiment_pipelines()[stem]
    pipeline = getattr(importlib.import_module(stem), stem)
    cfg = compose_config([f"experiment={experiment}"])
    assert pipeline.name == "evdet-" + experiment.lower().replace("_", "-")
    assert cfg.description and pipeline.description.startswith(cfg.description)
    assert pipeline.description.endswith("Steps: preprocess -> train -> evaluate -> detect.")


def test_pipeline_files_reports_misnamed_and_non_literal_files(tmp_path):
    (tmp_path / "good.py").write_text('from pipeline_builder import build_pipeline\n\ngood = build_pipeline("x_1")\n')
    (tmp_path / "renamed.py").write_text('other = build_pipeline(experiment="x_2")\n')
    (tmp_path / "computed.py").write_text('NAME = "x_3"\ncomputed = build_pipeline(NAME)\n')
    (tmp_path / "not_a_pipeline.py").write_text('value = dict(a=1)\n')
    found = {f.path.stem: (f.variable, f.experiment) for f in pipeline_files(tmp_path)}
    assert found == {"good": ("good", "x_1"), "renamed": ("other", "x_2"), "computed": ("computed", None)}
    assert experiment_pipelines(tmp_path) == {"good": "x_1"}
