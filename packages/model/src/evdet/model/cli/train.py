"""``evdet-train [HYDRA_OVERRIDE ...]``: parse the Hydra overrides, check what needs no model or data, run
:func:`evdet.model.training.train.run_training`, print its summary as ONE JSON object on stdout (docs/cli.md).

Logs (Hydra's, Lightning's, the progress lines) go to stderr. Exit status (:data:`evdet.model.training.train.EXIT_CODES`):
0 completed, 1 failed during training (``run.json`` status failed), 2 wrong input (one line ``evdet-train: error:
...`` on stderr, nothing written), 130 / 143 stopped by SIGINT / SIGTERM after writing ``last.ckpt``.
"""

from __future__ import annotations

import logging
import sys
import traceback

import hydra
from evdet.data.cli_convention import error_line, fail, one_line, print_result
from evdet.model.config import (
    CONFIG_DIR,
    ConfigError,
    compose_checked,
    normalize_overrides,
)
from evdet.model.training.train import EXIT_CODES, Preempted, check_before_run, run_training, training_started
from omegaconf import DictConfig

__all__ = ["TOOL", "main"]

TOOL = "evdet-train"

#: Synopsis of ``docs/cli.md`` (Hydra parses the command line; ``evdet-train --help`` prints Hydra's help).
SYNOPSIS = "evdet-train [+experiment=NAME] [HYDRA_OVERRIDE ...]"


def _logs_to_stderr() -> None:
    """Point the stream handlers Hydra configured on stdout (its default ``job_logging``) at stderr."""
    for logger in (logging.getLogger(), *[logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]):
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
                handler.setStream(sys.stderr)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_entry(cfg: DictConfig) -> None:
    """Run :func:`run_training`; turn its outcome into the exit status (see :data:`EXIT_CODES`) and one stderr line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _logs_to_stderr()
    try:
        summary = run_training(cfg)
    except Preempted as exc:
        print(f"{TOOL}: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except (ValueError, OSError, KeyError, OmegaConfBaseException, HydraException) as exc:
        if training_started():
            traceback.print_exc()
            print(error_line(TOOL, f"run failed (run.json status failed): {type(exc).__name__}: "
                                   f"{one_line(exc)[:400]}"), file=sys.stderr, flush=True)
            sys.exit(EXIT_CODES["failed"])
        print(error_line(TOOL, exc), file=sys.stderr, flush=True)
        sys.exit(EXIT_CODES["input_error"])
    except Exception as exc:  # noqa: BLE001 - a failure during training: traceback, then one line
        traceback.print_exc()
        print(error_line(TOOL, f"run failed{' (run.json status failed)' if training_started() else ''}: "
                               f"{type(exc).__name__}: {one_line(exc)[:400]}"), file=sys.stderr, flush=True)
        sys.exit(EXIT_CODES["failed"])
    print_result(summary)


def main() -> None:
    """Console entry point: Hydra overrides on the command line (``+experiment=NAME`` accepted).

    The config is composed and validated (:func:`evdet.model.config.compose_checked`) before Hydra creates the run
    folder; a config error prints one line ``evdet-train: error: <key>=<value>: expected ...`` on stderr and exits
    with status 2. With Hydra's own flags (``--help``, ``--cfg``, ``-m``) the check is left to :func:`run_training`.
    Exit status: 0 completed, 1 failed during training, 2 wrong input (nothing written), 130 / 143 stopped by
    SIGINT / SIGTERM after writing ``last.ckpt`` (see :data:`EXIT_CODES`).
    """
    sys.argv = [sys.argv[0], *normalize_overrides(sys.argv[1:])]
    try:
        _check_hydra_flags(sys.argv[1:])
    except ValueError as exc:
        sys.exit(fail(TOOL, exc))
    try:
        if not any(arg.startswith("-") for arg in sys.argv[1:]):
            compose_checked(sys.argv[1:])
    except ConfigError as exc:
        sys.exit(fail(TOOL, exc))
    try:
        check_before_run(sys.argv[1:])
    except (ValueError, OSError) as exc:
        sys.exit(fail(TOOL, exc))
    _hydra_entry()


def _check_hydra_flags(args: list[str]) -> None:
    """Usage errors of Hydra's own parser as one line (Hydra would print its usage first).

    Raises:
        ValueError: an unknown flag or a bad value of a Hydra flag (argparse's message).
    """
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str):
        raise ValueError(f"{message}; expected Hydra overrides key=value or the flags of {TOOL} --help")

    parser.error = error
    _, unknown = parser.parse_known_args(args)
    if unknown:
        error(f"unrecognized arguments: {' '.join(unknown)}")


if __name__ == "__main__":
    main()
