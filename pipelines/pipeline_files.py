"""Which pipeline file runs which experiment, read from the files themselves (no second hand-written list).

An experiment pipeline file ``pipelines/<short>.py`` is one line over the builder::

    from pipeline_builder import build_pipeline

    <short> = build_pipeline("<experiment>")

:func:`experiment_pipelines` finds that assignment in every ``pipelines/*.py`` by parsing the source (nothing is
imported, so neither kfp nor Hydra is loaded): ``run_local.py`` maps the short name it is given to the experiment,
and the tests check that every experiment config has its pipeline file. Files without a ``build_pipeline(...)``
assignment (``compare.py``, the builder, the components, the scripts) are not experiment pipelines.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

__all__ = ["PIPELINES_DIR", "PipelineFile", "pipeline_files", "experiment_pipelines"]

#: The folder of the pipeline files (this file's folder).
PIPELINES_DIR = Path(__file__).resolve().parent


class PipelineFile(NamedTuple):
    """One module-level ``<variable> = build_pipeline("<experiment>")`` assignment.

    Attributes:
        path: the pipeline file.
        variable: the name the pipeline is bound to (``run_local.py`` and ``submit.py`` look it up by the file's
            stem, so the two must be equal).
        experiment: the experiment name passed to ``build_pipeline``; None when it is not a string literal.
    """

    path: Path
    variable: str
    experiment: str | None


def _build_call_experiment(call: ast.Call) -> str | None:
    args = [*call.args[:1], *(k.value for k in call.keywords if k.arg == "experiment")]
    if len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return args[0].value
    return None


def pipeline_files(directory: Path = PIPELINES_DIR) -> list[PipelineFile]:
    """Every module-level ``NAME = build_pipeline(...)`` in ``directory/*.py`` (sorted by file).

    Raises:
        SyntaxError: a pipeline file that does not parse (Python's message names the file and line).
    """
    found = []
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                    and node.value.func.id == "build_pipeline"):
                found.append(PipelineFile(path, node.targets[0].id, _build_call_experiment(node.value)))
    return found


def experiment_pipelines(directory: Path = PIPELINES_DIR) -> dict[str, str]:
    """Short pipeline name (file stem, e.g. ``plain_lstm_baseline``) -> experiment (``plain_lstm_640x360_baseline``).

    Only well-formed files count: the variable named as the file, the experiment a string literal (the tests
    report the others).
    """
    return {f.path.stem: f.experiment for f in pipeline_files(directory)
            if f.variable == f.path.stem and f.experiment is not None}
