"""Regenerate the code-derived sections of docs/architecture.md (run it after changing what they show).

    python docs/generate_architecture.py           # rewrite docs/architecture.md in place
    python docs/generate_architecture.py --check   # exit 1 (and name the sections) if the file is out of date

A generated section sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``; everything outside the
markers is prose and left as written. The sections and where they come from:

- ``package-tree``: every module of ``packages/*/src/evdet/`` with the first sentence of its docstring (read with
  :mod:`ast`: nothing is imported, so any Python 3.11 runs this script, without the packages installed);
- ``console-scripts``: ``[project.scripts]`` of each ``packages/*/pyproject.toml``;
- ``shard-datasets`` / ``shard-attrs``: ``SHARD_DATASETS`` and ``SHARD_ATTRS`` of ``evdet/data/shards.py``, the
  schema its ``ShardWriter`` writes (it refuses attributes not listed there);
- ``detector-api``: the public methods of ``RVT`` in ``evdet/model/nn/detector.py`` with their signatures and the
  first line of their docstrings.

``tests/ci/test_architecture_doc.py`` renders the file in memory and fails when it differs from the checked-in one.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # docs/generated_docs.py, run as a script or loaded by path
import generated_docs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = generated_docs.PACKAGES
DETECTOR = ROOT / "packages" / "model" / "src" / "evdet" / "model" / "nn" / "detector.py"
SHARDS = ROOT / "packages" / "data" / "src" / "evdet" / "data" / "shards.py"
MARKER = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+)[^>]*-->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
#: The command the checked-in file must be regenerated with (the test's failure message names it).
COMMAND = "python docs/generate_architecture.py"


_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!\bal)(?<!\bSec)(?<!\bFig)(?<!\bvs)\.(?=\s+[A-Z(`:]|$)")


def summary(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line (``(no docstring)`` when there is none)."""
    if not doc or not doc.strip():
        return "(no docstring)"
    paragraph = " ".join(line.strip() for line in doc.strip().split("\n\n")[0].splitlines())
    paragraph = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", paragraph)  # Sphinx roles -> plain code spans
    end = _SENTENCE_END.search(paragraph)
    return paragraph[: end.end()] if end else paragraph


def _cell(text: str) -> str:
    """``text`` safe inside a markdown table cell (``|`` escaped)."""
    return text.replace("|", "\\|")


def _module_summary(path: Path) -> str:
    """:func:`summary` of a module's docstring, read with :mod:`ast`. Raises SyntaxError naming the file."""
    return summary(ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))))


def _package_rows(package_dir: Path, dotted: str) -> list[tuple[str, str]]:
    """``(dotted name, summary)`` for a package and, recursively, its modules and subpackages (sorted by name)."""
    init = package_dir / "__init__.py"
    rows = [(dotted, _module_summary(init) if init.is_file() else "(namespace package)")]
    for path in sorted(package_dir.iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            rows += _package_rows(path, f"{dotted}.{path.name}")
        elif path.suffix == ".py" and path.name != "__init__.py":
            rows.append((f"{dotted}.{path.stem}", _module_summary(path)))
    return rows


def package_tree() -> str:
    """The ``package-tree`` section: per package a table of its modules and subpackages (docstring summaries)."""
    parts = []
    for package in PACKAGES:
        dotted = f"evdet.{package}"
        rows = _package_rows(ROOT / "packages" / package / "src" / "evdet" / package, dotted)
        title = rows[0][1].removeprefix(f"{dotted}: ")
        lines = [f"**`{dotted}`** (`packages/{package}`): {title}", "", "| module | holds |", "|---|---|"]
        for name, doc in rows[1:]:
            lines.append(f"| `{name.removeprefix(dotted + '.')}` | {_cell(doc)} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def console_scripts_table() -> str:
    """The ``console-scripts`` section: a table of every ``[project.scripts]`` entry of the three packages."""
    lines = ["| command | entry point | distribution |", "|---|---|---|"]
    for (package, script), target in sorted(generated_docs.console_scripts().items()):
        lines.append(f"| `{script}` | `{target}` | `evdet-{package}` |")
    return "\n".join(lines) + "\n"


def _module_constant(path: Path, name: str):
    """The literal value of a module-level constant ``name`` in ``path`` (read with :func:`ast.literal_eval`, so the
    module's imports need not be installed).

    Raises:
        LookupError: ``path`` assigns no literal to ``name`` (names both).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                break
    raise LookupError(f"{path}: no literal module constant {name}")


def _shard_schema() -> tuple[dict, dict, int]:
    """``(SHARD_DATASETS, SHARD_ATTRS, SHARD_FORMAT_VERSION)`` of evdet.data.shards, the schema its writer uses."""
    return tuple(_module_constant(SHARDS, name) for name in ("SHARD_DATASETS", "SHARD_ATTRS", "SHARD_FORMAT_VERSION"))


def shard_datasets() -> str:
    """The ``shard-datasets`` section: one table row per dataset of :data:`evdet.data.shards.SHARD_DATASETS`."""
    datasets, _, _ = _shard_schema()
    lines = ["| dataset | shape | dtype | meaning |", "|---|---|---|---|"]
    for name, (shape, dtype, meaning) in datasets.items():
        lines.append(f"| `{name}` | {shape} | {dtype} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def shard_attrs() -> str:
    """The ``shard-attrs`` section: one table row per attribute of :data:`evdet.data.shards.SHARD_ATTRS`."""
    _, attrs, version = _shard_schema()
    lines = [f"Format version {version}. HDF5 attributes:", "", "| attribute | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(meaning)} |" for name, meaning in attrs.items()]
    return "\n".join(lines) + "\n"


def _signature(func: ast.FunctionDef) -> str:
    """``name(arg, ...)`` of a method without ``self``, annotations and defaults."""
    args = func.args
    names = [a.arg for a in args.posonlyargs + args.args][1:]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        names.append("*")
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return f"{func.name}({', '.join(names)})"


def detector_api(class_name: str = "RVT") -> str:
    """The ``detector-api`` section: the public methods and properties of ``RVT`` (nn/detector.py).

    Raises:
        LookupError: the class is not defined in the detector module (names both).
    """
    tree = ast.parse(DETECTOR.read_text(encoding="utf-8"), filename=str(DETECTOR))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None:
        raise LookupError(f"{DETECTOR}: no class {class_name}")
    module = "evdet.model.nn.detector"
    lines = [f"`{module}.{class_name}` (`torch.nn.Module`):", "", "| member | what it does |", "|---|---|"]
    for node in cls.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        first = summary(ast.get_docstring(node))
        is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
        member = f"{node.name} (property)" if is_property else _signature(node)
        lines.append(f"| `{member}` | {_cell(first)} |")
    return "\n".join(lines) + "\n"


SECTIONS = {
    "package-tree": package_tree,
    "console-scripts": console_scripts_table,
    "shard-datasets": shard_datasets,
    "shard-attrs": shard_attrs,
    "detector-api": detector_api,
}


def render(text: str) -> str:
    """``text`` with every generated section replaced by its current content.

    Raises:
        ValueError: a marker names an unknown section, or a section of :data:`SECTIONS` has no marker (names it).
    """
    found = {m.group("name") for m in MARKER.finditer(text)}
    unknown, missing = sorted(found - set(SECTIONS)), sorted(set(SECTIONS) - found)
    if unknown or missing:
        raise ValueError(f"{DOC}: generated sections unknown {unknown}, without markers {missing} (expected "
                         f"'<!-- generated: NAME -->' ... '<!-- end generated -->' for each of {list(SECTIONS)})")
    return MARKER.sub(lambda m: m.group(1) + SECTIONS[m.group("name")]() + m.group(4), text)


def stale_sections(text: str) -> list[str]:
    """Names of the generated sections whose content in ``text`` differs from what the code gives now."""
    return [m.group("name") for m in MARKER.finditer(text) if m.group("body") != SECTIONS[m.group("name")]()]


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/architecture.md, or with ``--check`` exit 1 when it is out of date."""
    return generated_docs.rewrite_or_check(DOC, render, stale_sections, COMMAND, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
