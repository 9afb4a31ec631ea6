"""The command-line convention every evdet console tool follows (docs/cli.md), as small shared pieces.

* inputs are positional (``evdet-detect CHECKPOINT RECORDING...``); what a tool writes is ``--output``, replaced
  only with ``--overwrite``;
* the result is ONE JSON object on stdout (:func:`print_result`); tables and logs go to stderr;
* an error is ONE line ``<tool>: error: <message>`` on stderr (``<tool> <subcommand>: error:`` where argparse names
  the subcommand) and exit status 2 (:data:`EXIT_INPUT_ERROR`): usage errors included (:class:`Parser`);
* an old flag spelling stays accepted but hidden from ``--help`` (:func:`add_hidden_alias`).

This module lives in ``evdet.data`` (the lowest package) so that ``evdet-data``, ``evdet-eval`` / ``evdet-report``
and the ``evdet.model`` tools share it; it imports nothing but the standard library.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, TextIO

__all__ = ["EXIT_INPUT_ERROR", "Parser", "add_hidden_alias", "error_line", "fail", "one_line", "print_result",
           "require_input"]

#: Exit status of every input or usage error (argparse's own).
EXIT_INPUT_ERROR = 2


def one_line(message: object) -> str:
    """``str(message)`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(message).split()) or type(message).__name__


def error_line(tool: str, message: object) -> str:
    """The error line ``<tool>: error: <message>`` (message on one line; ``tool`` may be ``"evdet-model predict"``)."""
    return f"{tool}: error: {one_line(message)}"


def fail(tool: str, message: object, stream: TextIO | None = None) -> int:
    """Print :func:`error_line` on stderr (or ``stream``) and return :data:`EXIT_INPUT_ERROR` for ``main`` to return."""
    print(error_line(tool, message), file=sys.stderr if stream is None else stream, flush=True)
    return EXIT_INPUT_ERROR


def print_result(result: Any) -> None:
    """Print the tool's result as ONE JSON object on one stdout line (pipeline steps read the last stdout line).

    Raises:
        TypeError: ``result`` is not a ``dict`` (the convention: one object, never a list or several lines).
    """
    if not isinstance(result, dict):
        raise TypeError(f"a tool's result must be one JSON object (dict), got {type(result).__name__}")
    print(json.dumps(result), flush=True)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are ONE stderr line ``<prog>: error: <message>``, exit 2.

    ``--help`` is unchanged (usage and options on stdout, exit 0). Subparsers made with ``add_subparsers`` get this
    class too (argparse's default ``parser_class`` is the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message += f"; expected only the arguments listed by {self.prog} --help"
        print(error_line(self.prog, message), file=sys.stderr, flush=True)
        sys.exit(EXIT_INPUT_ERROR)


def require_input(args: argparse.Namespace, dest: str, metavar: str, old_flag: str) -> None:
    """A positional input (``nargs="?"``) that may also come from its hidden old flag: check it was given.

    Raises:
        ValueError: ``METAVAR: missing; expected ...`` when neither the positional nor ``old_flag`` gave it.
    """
    if getattr(args, dest, None) is None:
        raise ValueError(f"{metavar}: missing; expected it as a positional argument (or the old {old_flag})")


def add_hidden_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kwargs) -> argparse.Action:
    """Accept the old spelling ``flag`` for the argument stored in ``dest``, without showing it in ``--help``.

    Args:
        parser: the (sub)parser.
        flag: old option string, e.g. ``"--checkpoint"``.
        dest: the new argument's ``dest`` (the value lands there).
        **kwargs: ``type`` etc. as for the new argument (no ``default``: the new argument's stays).

    Returns:
        The argparse action.
    """
    return parser.add_argument(flag, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)
