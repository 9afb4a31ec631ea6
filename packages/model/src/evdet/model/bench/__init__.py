"""Benchmarks behind ``evdet-bench``: each subcommand measures one figure of the performance goals and prints one
JSON line (see :mod:`evdet.model.bench.cli`; the measured figures and how to reproduce them are in
``bench/README.md``)."""

from evdet.model.bench.cli import SUBCOMMANDS, main

__all__ = ["SUBCOMMANDS", "main"]
