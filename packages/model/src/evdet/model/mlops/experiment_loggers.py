"""Experiment loggers of a training run: CSV in the run directory, and Weights & Biases.

wandb follows the team's command lines (``wandb.project_name=... wandb.group_name=...``). It runs offline unless
the user has a key: ``WANDB_MODE`` wins when set; otherwise ``WANDB_API_KEY`` in the environment means online, and
anything else offline (runs land in ``<output.dir>/wandb`` and can be uploaded later with ``wandb sync``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

__all__ = ["build_loggers", "wandb_mode"]


def wandb_mode(configured: str | None = None) -> str:
    """``online`` or ``offline`` (or ``disabled``) for this process; see the module docstring.

    Raises:
        ValueError: a mode other than online / offline / disabled (names the key ``wandb.mode``).
    """
    mode = configured or os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)  # wandb's legacy names (its offline mode sets dryrun)
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"wandb.mode: expected online, offline or disabled, got {mode!r}")
    return mode


def build_loggers(config: dict[str, Any], out_dir: Path) -> list[Logger]:
    """CSV logger (``<out_dir>/logs/metrics.csv``) plus a WandbLogger when ``wandb.enabled``."""
    loggers: list[Logger] = [CSVLogger(out_dir, name="logs", version="")]
    wb = config.get("wandb") or {}
    if wb.get("enabled"):
        from lightning.pytorch.loggers import WandbLogger

        mode = wandb_mode(wb.get("mode"))
        os.environ["WANDB_MODE"] = mode  # the wandb service reads the mode from the environment too
        loggers.append(
            WandbLogger(
                project=str(wb["project_name"]),
                group=wb.get("group_name") or config["experiment_name"],
                name=f"{config['experiment_name']}-{config['run_id']}",
                id=f"{config['experiment_name']}-{config['run_id']}".replace("/", "-"),
                save_dir=str(out_dir),
                offline=mode == "offline",
                mode=mode,
                config=config,
                job_type="train",
            )
        )
    return loggers
