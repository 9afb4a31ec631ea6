"""Readable pod logs: one progress line every N steps when stdout is not a terminal; wandb offline by default."""

import io

import pytest

from evdet.model.mlops.experiment_loggers import wandb_mode
from evdet.model.mlops.progress_log import LogLineProgress, format_progress_line, use_progress_bar


def test_progress_line_has_every_field():
    line = format_progress_line(1200, 100_000, 3.41, 20.46, 4.18234, 3.5e-5, (5 * 2**30, 8 * 2**30))
    assert line == ("step 1200/100000 (1.2%) | 3.41 it/s | 20.5 samples/s | loss 4.1823 | lr 3.50e-05 | "
                    "gpu 5.00/8.00 GiB | ETA 8:02:53")  # (100000 - 1200) / 3.41 = 28973 s


def test_progress_line_without_gpu_or_loss():
    line = format_progress_line(10, 10, 0.0, 0.0, None, None, None)
    assert "loss n/a" in line and "ETA n/a" in line and "gpu" not in line


def test_terminal_detection():
    assert use_progress_bar(io.StringIO()) is False

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert use_progress_bar(Tty()) is True


def test_interval_is_validated():
    with pytest.raises(ValueError, match="logging.every_n_steps"):
        LogLineProgress(0)


def test_wandb_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # what wandb itself leaves in the environment when offline
    assert wandb_mode() == "offline"
    with pytest.raises(ValueError, match="wandb.mode"):
        wandb_mode("sometimes")
