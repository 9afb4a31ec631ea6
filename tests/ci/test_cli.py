"""One command-line convention for every evdet tool (docs/cli.md, issue 13), checked on the installed console scripts.

The tools are the ``[project.scripts]`` of the three ``packages/*/pyproject.toml`` (read here, so a new tool is
covered without editing this file):

- ``TOOL --help`` exits 0 with the usage on stdout and nothing on stderr;
- one wrong input per tool gives exactly one stderr line ``<tool>[ <subcommand>]: error: ...``, nothing on stdout,
  exit status 2 (a new tool needs its case in :data:`WRONG_INPUT`);
- the synopses of docs/cli.md are what the parsers print now (``docs/generate_cli.py``).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _scripts() -> dict[str, str]:
    scripts: dict[str, str] = {}
    for package in ("data", "eval", "model"):
        with open(ROOT / "packages" / package / "pyproject.toml", "rb") as f:
            scripts.update(tomllib.load(f)["project"].get("scripts", {}))
    return dict(sorted(scripts.items()))


SCRIPTS = _scripts()

#: One wrong input per tool (a missing input file: checked before anything is loaded or written) and a fragment the
#: one error line must contain.
WRONG_INPUT = {
    "evdet-data": (["info", "{tmp}/missing.dat"], "missing.dat"),
    "evdet-eval": (["prophesee", "{tmp}/missing", "{tmp}/missing", "--output", "{tmp}/r.json"], "missing"),
    "evdet-report": (["run", "{tmp}/missing", "--output", "{tmp}/report"], "missing"),
    "evdet-train": (["+experiment=no_such_experiment"], "no_such_experiment"),
    "evdet-model": (["predict", "{tmp}/missing.ckpt", "{tmp}/shards", "--output", "{tmp}/out", "--device", "cpu"],
                    "missing.ckpt"),
    "evdet-detect": (["{tmp}/missing.ckpt", "{tmp}/missing.dat", "--output", "{tmp}/out", "--device", "cpu"],
                     "missing.ckpt"),
    "evdet-bench": (["repr", "{tmp}/missing.dat"], "missing.dat"),
}


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          check=False)


def test_the_three_packages_declare_the_known_tools():
    assert set(SCRIPTS) == set(WRONG_INPUT), (
        f"console scripts {sorted(SCRIPTS)} vs the cases of WRONG_INPUT {sorted(WRONG_INPUT)}: give a new tool its "
        "wrong-input case (and a section in docs/cli.md: python docs/generate_cli.py)")


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_help_prints_usage_on_stdout(tool):
    proc = _run(tool, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {tool}"), proc.stdout[:300]
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_a_wrong_input_is_one_error_line_and_exit_2(tool, tmp_path):
    args, fragment = WRONG_INPUT[tool]
    proc = _run(tool, *[a.format(tmp=tmp_path) for a in args])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and re.match(rf"{re.escape(tool)}( [a-z-]+)?: error: ", lines[0]), proc.stderr
    assert fragment in lines[0] and proc.stdout == "", (proc.stdout, proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused command wrote files"


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_a_usage_error_is_one_line_and_exit_2(tool):
    proc = _run(tool, "--no-such-flag")
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert re.match(rf"{re.escape(tool)}( [a-z-]+)?: error: ", lines[0]), proc.stderr


def test_docs_cli_md_matches_the_parsers():
    spec = importlib.util.spec_from_file_location("generate_cli", ROOT / "docs" / "generate_cli.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    text = generator.DOC.read_text(encoding="utf-8")
    assert generator.render(text) == text, f"docs/cli.md is out of date: run {generator.COMMAND}"
    for tool in SCRIPTS:
        assert f"### `{tool}`" in text, f"docs/cli.md has no section for {tool}"
