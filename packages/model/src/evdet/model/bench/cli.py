"""``evdet-bench``: one subcommand per benchmark, each printing ONE JSON object on stdout (docs/cli.md).

Subcommands (each module's docstring gives its keys and method):

* ``train`` (:mod:`evdet.model.bench.train`): training throughput of an experiment config, ``--profile`` adds the
  per-phase times;
* ``detect`` (:mod:`evdet.model.bench.detect`): batch-1 streaming inference latency and real-time factor;
* ``repr`` (:mod:`evdet.model.bench.representation`): stacked-histogram speed against a reference-style numpy
  ``bincount`` on a recording;
* ``loader`` (:mod:`evdet.model.bench.loader`): frames per second per data-loader worker from shards;
* ``eval`` (:mod:`evdet.model.bench.evaluation`): evaluation time against pycocotools on synthetic detections.

Errors (flags, configs, inputs) are one line ``evdet-bench: error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from types import ModuleType

from evdet.data.cli_convention import fail, print_result
from evdet.model.bench.flags import Parser, UsageError
from evdet.model.config import ConfigError

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

TOOL = "evdet-bench"

#: Subcommand name -> (module, one-line help). The module has ``HELP``, ``ACCEPTS_OVERRIDES``,
#: ``add_arguments(parser)`` and ``run(args, overrides) -> dict``; it is imported only when its subcommand runs.
SUBCOMMANDS = {
    "train": ("evdet.model.bench.train", "training throughput of an experiment config (--profile: phase times)"),
    "detect": ("evdet.model.bench.detect", "batch-1 streaming detect latency and real-time factor"),
    "repr": ("evdet.model.bench.representation", "stacked histogram speed vs a reference-style numpy bincount"),
    "loader": ("evdet.model.bench.loader", "frames/s per data-loader worker from shards"),
    "eval": ("evdet.model.bench.evaluation", "evaluation time vs pycocotools, with identical figures"),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(SUBCOMMANDS[name][0])


def build_parser(load: Iterable[str] = ()) -> Parser:
    """The ``evdet-bench`` parser; the subcommands named in ``load`` get their flags (their modules are imported),
    the others only their name and help."""
    parser = Parser(prog=TOOL, description="One subcommand per benchmark, each printing ONE JSON object on stdout.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", required=True,
                                parser_class=Parser)
    for name in SUBCOMMANDS:
        if name in load:
            module = _module(name)
            usage = f"{TOOL} {name} [flags]" + (" [HYDRA_OVERRIDE ...]" if module.ACCEPTS_OVERRIDES else "")
            module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.__doc__.split("\n\n")[0],
                                                usage=None if not module.ACCEPTS_OVERRIDES else usage))
        else:
            sub.add_parser(name, help=SUBCOMMANDS[name][1])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``evdet-bench SUBCOMMAND [flags] [Hydra overrides where the subcommand takes them]``.

    Returns:
        0 after printing the JSON object; 2 for a flag error (names the flag and what is expected), a config error
        (:func:`evdet.model.config.compose_checked`; names the key), a missing or unreadable input (names the
        file) or an invalid benchmark setting, each one line ``evdet-bench: error: ...`` on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen subcommand's module is imported (help lists the names without importing them all).
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    parser = build_parser([chosen] if chosen else [])
    try:
        args, overrides = parser.parse_known_args(argv)
        module = _module(args.command)
        bad = [o for o in overrides if "=" not in o or not module.ACCEPTS_OVERRIDES]
        if bad:
            what = "the flags of --help or Hydra overrides key=value" if module.ACCEPTS_OVERRIDES else "the flags of --help"
            raise UsageError(f"unrecognised arguments {' '.join(bad)}; expected {what}")
        result = module.run(args, overrides)
    except (UsageError, ConfigError, ValueError, FileNotFoundError) as exc:
        return fail(TOOL, exc)
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
