"""evdet-data installs and imports without torch (issue 13): the preprocessing image carries no torch.

Three checks that follow the code, so none drifts when a module or a dependency is added:
- every module of ``evdet.data`` (found by walking the package, not listed here) imports in a fresh interpreter
  without loading torch, torchvision or lightning;
- ``packages/data/pyproject.toml`` names none of them as a dependency;
- nor does any dependency of those dependencies (walked through the installed distributions' metadata).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DATA_PYPROJECT = ROOT / "packages" / "data" / "pyproject.toml"
#: Distributions / top-level modules the data package must not need (the training stack).
FORBIDDEN = ("torch", "torchvision", "lightning", "pytorch-lightning")
FORBIDDEN_MODULES = ("torch", "torchvision", "lightning", "pytorch_lightning")

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import evdet.data
names = sorted(m.name for m in pkgutil.walk_packages(evdet.data.__path__, "evdet.data."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
"""


def test_every_evdet_data_module_imports_without_torch():
    """A fresh interpreter imports each module of evdet.data; none of torch/torchvision/lightning gets loaded."""
    code = _IMPORT_ALL % (FORBIDDEN_MODULES,)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, f"importing the evdet.data modules failed:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The walk really found the package (readers is a subpackage: its modules must be in the list too).
    assert {"evdet.data.cli", "evdet.data.preprocess", "evdet.data.shards", "evdet.data.readers"} <= set(
        report["modules"]), report["modules"]
    assert any(name.startswith("evdet.data.readers.") for name in report["modules"]), report["modules"]
    assert report["loaded"] == [], f"importing evdet.data loads {report['loaded']} (evdet-data must not need torch)"


def _declared_requirements() -> list[Requirement]:
    """The ``[project] dependencies`` of packages/data/pyproject.toml as parsed requirements."""
    project = tomllib.loads(DATA_PYPROJECT.read_text())["project"]
    return [Requirement(text) for text in project.get("dependencies", [])]


def test_data_pyproject_declares_no_torch():
    names = {canonicalize_name(req.name) for req in _declared_requirements()}
    assert names, f"{DATA_PYPROJECT}: no [project] dependencies found"
    bad = names & {canonicalize_name(n) for n in FORBIDDEN}
    assert not bad, f"{DATA_PYPROJECT}: dependencies name {sorted(bad)}; evdet-data must install without torch"
    optional = tomllib.loads(DATA_PYPROJECT.read_text())["project"].get("optional-dependencies", {})
    assert not optional, f"{DATA_PYPROJECT}: extras {sorted(optional)}: torch code belongs in evdet.model"


def test_no_dependency_of_evdet_data_pulls_torch():
    """Walk the declared dependencies through the installed distributions' own requirements (markers evaluated,
    extras not taken): none leads to torch. Catches a dependency that grows a torch requirement in a new version."""
    environment = default_environment()
    forbidden = {canonicalize_name(n) for n in FORBIDDEN}
    parents: dict[str, str] = {canonicalize_name(r.name): "evdet-data" for r in _declared_requirements()}
    todo = list(parents)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in forbidden:
            chain = [name]
            while chain[-1] in parents:
                chain.append(parents[chain[-1]])
            raise AssertionError(f"evdet-data pulls {name} via {' <- '.join(chain)}")
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"dependency {name} of evdet-data is not installed (run make venv)") from None
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**environment, "extra": ""}):
                continue
            child = canonicalize_name(req.name)
            parents.setdefault(child, name)
            todo.append(child)
    assert "numpy" in seen and "h5py" in seen, sorted(seen)
