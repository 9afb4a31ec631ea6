"""What the doc generators (``docs/generate_architecture.py``, ``docs/generate_cli.py``) share: reading the console
scripts of the three packages, and the rewrite-or-check command line over one markdown file with generated
sections. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "eval", "model")


def console_scripts() -> dict[tuple[str, str], str]:
    """``{(package, tool): "module:function"}`` of every ``[project.scripts]`` in ``packages/*/pyproject.toml``,
    sorted by tool.

    Raises:
        FileNotFoundError: a package's pyproject.toml is missing.
        tomllib.TOMLDecodeError: one is not valid TOML.
    """
    scripts: dict[tuple[str, str], str] = {}
    for package in PACKAGES:
        with open(ROOT / "packages" / package / "pyproject.toml", "rb") as f:
            for tool, target in tomllib.load(f).get("project", {}).get("scripts", {}).items():
                scripts[(package, tool)] = target
    return dict(sorted(scripts.items(), key=lambda item: item[0][1]))


def rewrite_or_check(doc: Path, render: Callable[[str], str], stale: Callable[[str], list[str]], command: str,
                     description: str, argv: list[str] | None = None) -> int:
    """The command line of a doc generator: rewrite ``doc``'s generated sections in place, or with ``--check``
    exit 1 (naming the stale sections and ``command`` on stderr) when the file differs from what ``render`` gives.

    Returns:
        The exit status: 0 (written or up to date), 1 (``--check`` and out of date).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {doc.name} is out of date")
    args = parser.parse_args(argv)
    text = doc.read_text(encoding="utf-8")
    new = render(text)
    if new == text:
        return 0
    if args.check:
        print(f"{doc}: out of date in {stale(text)}; run {command}", file=sys.stderr)
        return 1
    doc.write_text(new, encoding="utf-8")
    print(f"{doc}: rewrote {stale(text)}", file=sys.stderr)
    return 0
