"""docs/architecture.md cannot drift from the code (issue 13).

- The generated sections (package tree, console scripts, shard schema, detector members) equal what
  ``docs/generate_architecture.py`` renders now.
- The shard schema they come from is what ``evdet-data preprocess`` really writes, and the writer refuses an
  attribute the schema does not list.
- Every dotted ``evdet.*`` name in the hand-written prose names a module, or a name defined in one.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from evdet.data.labels import BBOX_DTYPE
from evdet.data.preprocess import PreprocessOptions, preprocess_dataset
from evdet.data.shards import SHARD_ATTRS, SHARD_DATASETS, ShardWriter
from evdet.data.synthetic import generate_dataset

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_architecture", ROOT / "docs" / "generate_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_sections_are_up_to_date():
    generator = _generator()
    text = DOC.read_text(encoding="utf-8")
    assert generator.render(text) == text, (
        f"{DOC.relative_to(ROOT)} is out of date in {generator.stale_sections(text)}: "
        f"run python docs/generate_architecture.py")


def test_every_section_has_its_markers():
    text = DOC.read_text(encoding="utf-8")
    for name in _generator().SECTIONS:
        assert f"<!-- generated: {name} -->" in text, f"{DOC.name}: no marker for the generated section {name!r}"


def test_a_preprocessed_shard_has_exactly_the_documented_schema(tmp_path):
    generate_dataset(tmp_path / "raw", seed=1, splits={"train": 1}, duration_s=0.6, width=160, height=96)
    preprocess_dataset(tmp_path / "raw", tmp_path / "shards", splits=["train"], progress=False,
                       options=PreprocessOptions())
    [path] = sorted((tmp_path / "shards" / "train").glob("*.h5"))
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == sorted(SHARD_DATASETS), f"{path.name}: datasets {list(f.keys())}"
        extra, absent = sorted(set(f.attrs) - set(SHARD_ATTRS)), sorted(set(SHARD_ATTRS) - set(f.attrs))
        assert not extra and not absent, f"{path.name}: attributes outside SHARD_ATTRS {extra}, not written {absent}"
        for name, (shape, dtype, _) in SHARD_DATASETS.items():
            dataset = f[name]
            ndim = shape.count(",") + (0 if shape.endswith(",)") else 1)
            assert dataset.ndim == ndim, f"{name}: shape {dataset.shape}, documented {shape}"
            expected = BBOX_DTYPE if dtype == "BBOX_DTYPE" else np.dtype(dtype.split(",")[0])
            assert dataset.dtype == expected, f"{name}: {dataset.dtype} vs documented {dtype}"


def test_the_writer_refuses_an_attribute_outside_the_schema(tmp_path):
    with ShardWriter(tmp_path / "s.h5", 2, 4, 4) as writer:
        writer.append(np.zeros((2, 4, 4), np.uint8), 50_000)
        with pytest.raises(ValueError, match="not_in_schema"):
            writer.finish(np.zeros(0, BBOX_DTYPE), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros((0, 2), np.int64), {"width": 4, "not_in_schema": 1})
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "s.h5.tmp").exists()


def _defined_names(tree: ast.Module) -> dict[str, ast.AST]:
    """Top-level names a module defines or imports: name -> node."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


def _resolves(dotted: str) -> bool:
    """True if ``dotted`` is a module/package of packages/*/src or a (class member of a) name defined in one."""
    parts = dotted.split(".")
    src = ROOT / "packages" / parts[1] / "src"
    for cut in range(len(parts), 1, -1):
        base = src.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not module.is_file():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        names = _defined_names(ast.parse(module.read_text(encoding="utf-8")))
        node = names.get(rest[0])
        if node is None:
            return False
        if len(rest) == 1:
            return True
        if not isinstance(node, ast.ClassDef):
            return isinstance(node, (ast.Import, ast.ImportFrom))  # an attribute of an imported module
        members = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        return rest[1] in members
    return False


def test_dotted_names_in_the_prose_exist():
    text = DOC.read_text(encoding="utf-8")
    prose = re.sub(r"<!-- generated: .*?<!-- end generated -->", "", text, flags=re.S)
    names = sorted(set(re.findall(r"\bevdet\.(?:data|eval|model)(?:\.[A-Za-z_]\w*)+", prose)))
    assert len(names) > 20, names
    missing = [name for name in names if not _resolves(name)]
    assert not missing, f"{DOC.name} names what the code does not have: {missing}"
