"""``evdet-report``: reports a person reads, from runs' folders (``docs/run-folder.md``).

``evdet-report run RUN_FOLDER [--results experiment_results.json] [--split NAME] --output DIR [--overwrite]``
writes the report of one run (:mod:`evdet.eval.report.run_report`): ``DIR/README.md``,
``DIR/confusion_matrices/*.png``, ``DIR/plots/*.png``. ``RUN_FOLDER`` is a run's store folder
(``<store>/experiments/<experiment>/<run_id>``, local or ``s3://``) or its training output folder (``output.dir``,
with the evaluate step's ``--results`` beside it). ``DIR`` must be missing or empty unless ``--overwrite`` (and then
it may only hold an earlier report).

``evdet-report compare ...`` puts several runs side by side (:mod:`evdet.eval.report.compare`, flags there).

On success ONE JSON object on stdout says what was written (docs/cli.md); any input error prints one line
``evdet-report: error: ...`` on stderr and exits with status 2, leaving ``DIR`` as it was.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from evdet.data.cli_convention import Parser, fail, print_result

__all__ = ["build_parser", "main"]


class _UsageError(Exception):
    """Raised instead of argparse's multi-line usage exit, so every error is one stderr line."""


class _Parser(Parser):
    def error(self, message: str) -> None:  # noqa: D102 (argparse hook)
        if message.startswith("unrecognized arguments"):
            message += f"; expected only the flags listed by {self.prog} --help"
        raise _UsageError(f"{self.prog}: {message}")


def build_parser(compare_module: ModuleType | None = None) -> _Parser:
    """The parser; the ``compare`` subcommand gets its flags from ``compare_module`` when given."""
    parser = _Parser(prog="evdet-report", description="Reports of evdet runs: one run, or several side by side.")
    commands = parser.add_subparsers(dest="command", metavar="{run,compare}", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="README.md, confusion-matrix and training-curve figures of one run.")
    run.add_argument("run_folder", metavar="RUN_FOLDER",
                     help="the run's store folder (local or s3://.../experiments/<experiment>/<run_id>) or its "
                          "training output folder")
    run.add_argument("--results", type=Path, default=None,
                     help="experiment_results.json of the evaluate step (default: the run folder's own)")
    run.add_argument("--split", default="test",
                     help="name of the evaluated split, for confusion_matrix_<split>.png (default: test)")
    run.add_argument("--output", type=Path, required=True,
                     help="report folder (missing or empty; an earlier report with --overwrite)")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier evdet-report run output")
    compare = commands.add_parser("compare", help="several runs side by side (evdet-report compare --help).")
    if compare_module is not None:
        compare_module.configure_parser(compare)
    return parser


def _run(args: argparse.Namespace) -> int:
    from evdet.eval.report.run_folder import load_run
    from evdet.eval.report.run_report import check_results, write_run_report

    record = load_run(args.run_folder, results=args.results)
    where = args.results if args.results is not None else f"{args.run_folder}/experiment_results.json"
    check_results(record.results, str(where))
    summary = write_run_report(record, args.output, split=args.split, overwrite=args.overwrite)
    print_result(summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evdet-report``.

    Args:
        argv: arguments without the program name; ``None`` = ``sys.argv[1:]``.

    Returns:
        0 on success, 2 on any input error (one line ``evdet-report: error: ...`` on stderr).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        compare_module = None
        if argv[:1] == ["compare"]:  # imported only for its own subcommand
            try:
                compare_module = importlib.import_module("evdet.eval.report.compare")
            except ModuleNotFoundError as exc:
                if exc.name != "evdet.eval.report.compare":
                    raise
                raise _UsageError("evdet-report compare: not available in this installation (no module "
                                  "evdet.eval.report.compare)") from None
        args = build_parser(compare_module).parse_args(argv)
        if args.command == "run":
            return _run(args)
        return int(compare_module.run(args))
    except (_UsageError, ValueError, OSError, LookupError) as err:
        return fail("evdet-report", err)


if __name__ == "__main__":
    sys.exit(main())
