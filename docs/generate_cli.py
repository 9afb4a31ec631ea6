"""Regenerate the synopses of docs/cli.md from the tools' argparse parsers (run it after changing a flag).

    .venv/bin/python docs/generate_cli.py           # rewrite docs/cli.md in place
    .venv/bin/python docs/generate_cli.py --check   # exit 1 if the file is out of date

The tools are the ``[project.scripts]`` of ``packages/*/pyproject.toml`` (a new tool is covered without editing this
file). Each entry module has ``build_parser()`` (argparse, :class:`evdet.data.cli_convention.Parser`); the section
of a tool is its ``--help`` and that of every subcommand, formatted at a fixed width. ``evdet-train`` parses with
Hydra: its module's ``SYNOPSIS`` is shown instead. The generated part sits between ``<!-- generated: tools -->``
and ``<!-- end generated -->``; everything else in docs/cli.md is prose. ``tests/ci/test_cli.py`` fails when the
checked-in file differs from what this renders.

Needs the packages installed (it imports the entry modules): run it with the repository's ``.venv``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # docs/generated_docs.py, run as a script or loaded by path
import generated_docs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
PACKAGES = generated_docs.PACKAGES
MARKER = re.compile(r"(<!-- generated: tools -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)
COMMAND = ".venv/bin/python docs/generate_cli.py"
WIDTH = 116


def console_scripts() -> dict[str, str]:
    """``{tool: "module:function"}`` of every ``[project.scripts]`` of the three packages, sorted by tool."""
    return {tool: target for (_, tool), target in generated_docs.console_scripts().items()}


def tool_parser(tool: str, target: str) -> argparse.ArgumentParser | None:
    """The full parser of ``tool`` (every subcommand with its flags), or None for a tool without ``build_parser``
    (``evdet-train``: Hydra).

    Raises:
        ImportError: the entry module cannot be imported.
    """
    module = importlib.import_module(target.split(":")[0])
    if not hasattr(module, "build_parser"):
        return None
    if tool == "evdet-bench":
        return module.build_parser(module.SUBCOMMANDS)  # every benchmark's flags, not only the chosen one's
    if tool == "evdet-report":
        return module.build_parser(importlib.import_module("evdet.eval.report.compare"))
    return module.build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _help(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    return parser.format_help().rstrip() + "\n"


def tool_section(tool: str, target: str) -> str:
    """The markdown section of one tool: ``--help`` of the tool and of each subcommand (nested ones included)."""
    lines = [f"### `{tool}`\n", f"Entry point `{target}`.\n"]
    parser = tool_parser(tool, target)
    if parser is None:
        module = importlib.import_module(target.split(":")[0])
        lines += ["```text", getattr(module, "SYNOPSIS", tool), "```", ""]
        return "\n".join(lines)
    pending = [(tool, parser)]
    while pending:
        name, current = pending.pop(0)
        lines += ["```text", f"$ {name} --help", _help(current).rstrip(), "```", ""]
        pending += [(f"{name} {sub}", subparser) for sub, subparser in _subcommands(current)]
    return "\n".join(lines)


def tools_section() -> str:
    """Every tool's section, in tool-name order."""
    return "\n".join(tool_section(tool, target) for tool, target in console_scripts().items())


def render(text: str) -> str:
    """``text`` with the generated part replaced by its current content.

    Raises:
        ValueError: no ``<!-- generated: tools -->`` ... ``<!-- end generated -->`` markers.
    """
    if not MARKER.search(text):
        raise ValueError(f"{DOC}: expected '<!-- generated: tools -->' ... '<!-- end generated -->'")
    body = tools_section()
    return MARKER.sub(lambda m: m.group(1) + body + m.group(3), text)


def stale_sections(text: str) -> list[str]:
    """``["tools"]`` when the synopses in ``text`` differ from what the parsers print now, else ``[]``."""
    return ["tools"] if render(text) != text else []


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/cli.md, or with ``--check`` exit 1 when it is out of date."""
    return generated_docs.rewrite_or_check(DOC, render, stale_sections, COMMAND, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
