"""The tree shows the architecture: imports between evdet's packages and subpackages run one way.

Read from the source (every ``import`` / ``from ... import`` statement, those inside functions included), so a new
module that reaches the wrong way fails here with the file and line:

- ``evdet.data`` imports neither ``evdet.eval`` nor ``evdet.model``; ``evdet.eval`` does not import ``evdet.model``.
- Inside ``evdet.model`` the layers are, lowest first: config (``config``, ``config_schema``), ``loss``, ``nn``,
  ``mlops``, ``training``, ``inference``, then the entry points and benchmarks (``cli``, ``bench``). A module imports
  only from its own layer or a lower one (see the package docstring of :mod:`evdet.model`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {name: ROOT / "packages" / name / "src" / "evdet" / name for name in ("data", "eval", "model")}

#: Which top-level packages each package may import.
PACKAGE_DEPENDENCIES = {"data": {"data"}, "eval": {"data", "eval"}, "model": {"data", "eval", "model"}}

#: Rank of each part of evdet.model; a module may import parts of the same or a lower rank.
MODEL_LAYERS = {"config": 0, "config_schema": 0, "conf": 0, "loss": 1, "nn": 2, "mlops": 3, "training": 4,
                "inference": 5, "cli": 6, "bench": 6}

#: Known upward imports, each with its reason (kept short on purpose: a new one needs a reason here).
ALLOWED_UPWARD = {
    # validate_config checks dataset.augmentation by parsing it with the class training uses (one parser).
    ("config", "training"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "evdet" or name.startswith("evdet.")]


def _model_part(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["evdet", "model"] else None


def _sources(package: str) -> list[Path]:
    return sorted(SOURCES[package].rglob("*.py"))


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_packages_import_only_downstream(package):
    wrong = []
    for path in _sources(package):
        for line, name in _imports(path):
            target = name.split(".")[1] if "." in name else None
            if target is not None and target not in PACKAGE_DEPENDENCIES[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert not wrong, "evdet." + package + " must not import " + ", ".join(
        sorted(set(SOURCES) - PACKAGE_DEPENDENCIES[package])) + ":\n" + "\n".join(wrong)


def test_model_subpackages_import_only_lower_layers():
    wrong = []
    for path in _sources("model"):
        relative = path.relative_to(SOURCES["model"])
        own = relative.parts[0].removesuffix(".py") if relative.parts[0] != "__init__.py" else None
        if own is None:
            continue
        assert own in MODEL_LAYERS, f"{relative}: evdet.model.{own} is in no layer; add it to MODEL_LAYERS"
        for line, name in _imports(path):
            target = _model_part(name)
            if target is None or target == own or MODEL_LAYERS[target] <= MODEL_LAYERS[own]:
                continue
            if (own, target) not in ALLOWED_UPWARD:
                wrong.append(f"packages/model/src/evdet/model/{relative}:{line}: evdet.model.{own} imports {name}")
    assert not wrong, "imports against the layer order " + " < ".join(MODEL_LAYERS) + ":\n" + "\n".join(wrong)


def test_every_model_part_is_ranked():
    parts = {p.name.removesuffix(".py") for p in SOURCES["model"].iterdir()
             if p.name != "__init__.py" and p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")}
    assert parts <= set(MODEL_LAYERS), f"not in MODEL_LAYERS: {sorted(parts - set(MODEL_LAYERS))}"
