"""``evdet-train [HYDRA_OVERRIDE ...]``: parse the Hydra overrides, check what needs no model or data, run
:func:`evdet.model.training.train.run_training`, print its summary as ONE JSON object on stdout (docs/cli.md).

Logs (Hydra's, Lightning's, the progress lines) go to stderr. Exit status (:data:`evdet.model.training.train.EXIT_CODES`):
0 completed, 1 failed during training (``run.json`` status failed), 2 wrong input (one line ``evdet-train: error:
...`` on stderr, nothing written), 130 / 143 stopped by SIGINT / SIGTERM after writing ``last.ckpt``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from evdet.data.cli_convention import error_line, one_line, print_result
from evdet.data.storage import open_store
from evdet.model.config import (
    CONFIG_DIR,
    ConfigError,
    compose_checked,
    normalize_overrides,
    to_container,
)
from evdet.model.training import train as training
from evdet.model.training.train import EXIT_CODES, RUN_ID_ENV, Preempted, run_training
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
    training._RUN_STATE["training"] = False
    try:
        summary = run_training(cfg)
    except Preempted as exc:
        print(f"{TOOL}: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except (ValueError, OSError, KeyError, OmegaConfBaseException, HydraException) as exc:
        if training._RUN_STATE["training"]:
            traceback.print_exc()
            print(error_line(TOOL, f"run failed (run.json status failed): {type(exc).__name__}: "
                                   f"{one_line(exc)[:400]}"), file=sys.stderr, flush=True)
            sys.exit(EXIT_CODES["failed"])
        print(error_line(TOOL, exc), file=sys.stderr, flush=True)
        sys.exit(EXIT_CODES["input_error"])
    except Exception as exc:  # noqa: BLE001 - a failure during training: traceback, then one line
        traceback.print_exc()
        print(error_line(TOOL, f"run failed{' (run.json status failed)' if training._RUN_STATE['training'] else ''}: "
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
        print(error_line(TOOL, exc), file=sys.stderr)
        sys.exit(EXIT_CODES["input_error"])
    try:
        if not any(arg.startswith("-") for arg in sys.argv[1:]):
            compose_checked(sys.argv[1:])
    except ConfigError as exc:
        print(error_line(TOOL, exc), file=sys.stderr)
        sys.exit(EXIT_CODES["input_error"])
    try:
        _check_before_hydra(sys.argv[1:])
    except (ValueError, OSError) as exc:
        print(error_line(TOOL, exc), file=sys.stderr)
        sys.exit(EXIT_CODES["input_error"])
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


def _check_before_hydra(overrides: list[str]) -> None:
    """The checks of :func:`run_training` on the run's identity and its checkpoint that need no model or data, done
    before Hydra writes its own files (``hydra/*.yaml``, ``train.log``) into ``output.dir``, so a refused command
    changes nothing there: a torchrun launch without a run_id, an existing run_id without ``resume=auto``, and the
    checkpoint the run would start from (``ckpt_path``, or ``resume=auto``'s ``last.ckpt``: weights-only readable, a
    training checkpoint, the same ``training.max_steps``). Whether its weights fit the model is checked by
    :func:`run_training`. A config that does not compose is left to Hydra and :func:`run_training`.

    Raises:
        ValueError: one line (:class:`evdet.model.training.checkpoint.CheckpointError`, ``StoreError`` included).
        OSError: a checkpoint or store file cannot be read.
    """
    from evdet.model.config import compose_config
    from evdet.model.training.checkpoint import check_resume_metadata, peek_checkpoint

    if any(item.startswith("-") for item in overrides):
        return
    try:
        cfg = compose_config(overrides)
    except Exception:  # noqa: BLE001 - composition errors are Hydra's / validate_config's to report
        return
    # compose_config fixes run_id at once, so whether it was given is read from the command line itself.
    given_values = [item.split("=", 1)[1] for item in overrides if item.split("=", 1)[0].lstrip("+~") == "run_id"]
    if given_values and given_values[-1] not in ("", "null", "None"):
        given, how = True, "given as run_id="
    elif os.environ.get(RUN_ID_ENV, "").strip():
        given, how = True, f"from ${RUN_ID_ENV}"
    else:
        given, how = False, "from the start time"
    training._check_distributed_run_id(given)
    if not training._launch_rank_zero():
        return
    if cfg.get("resume") in (None, False, "null", "none") and given:
        config = to_container(cfg)
        store = open_store(config["output"]["store"]) if config["output"].get("store") else None
        training._refuse_existing_run(Path(config["output"]["dir"]).resolve(), store, str(config["experiment_name"]),
                                      str(config["run_id"]), how)
    plan = training._resume_plan(cfg, given)
    if plan.path is not None:
        check_resume_metadata(peek_checkpoint(plan.path), plan.path, to_container(cfg), plan.what)


if __name__ == "__main__":
    main()
