"""Flag parsing shared by the ``evdet-bench`` subcommands: one-line usage errors and checked numeric flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from evdet.data import cli_convention

__all__ = ["BENCH_PRECISIONS", "Parser", "UsageError", "float_above", "int_at_least", "precision"]

#: ``--precision`` values: Lightning strings the benchmarks map to an autocast dtype (or none).
BENCH_PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed")


class UsageError(Exception):
    """A flag error: raised instead of argparse's usage text and exit, so every error is one stderr line."""


class Parser(cli_convention.Parser):
    """The convention's parser (:class:`evdet.data.cli_convention.Parser`) whose errors raise :class:`UsageError`, so
    ``evdet-bench`` prints them as its one line ``evdet-bench: error: ...`` (exit 2)."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 (argparse hook)
        raise UsageError(message)


def int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= low``; the error says ``expected {what} (an integer >= low)``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what} (an integer >= {low}), got {text!r}")
        return value

    return parse


def float_above(low: float, what: str) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite numbers ``> low``; the error says ``expected {what} (a number > low)``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not value > low or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what} (a number > {low}), got {text!r}")
        return value

    return parse


def precision(text: str) -> str:
    """An argparse ``type`` for ``--precision``: one of :data:`BENCH_PRECISIONS`."""
    if text not in BENCH_PRECISIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(BENCH_PRECISIONS)}, got {text!r}")
    return text
