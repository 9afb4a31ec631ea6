"""``evdet-train``: train an experiment with Hydra configuration and Lightning.

Example (the team's baseline; see README.md)::

    evdet-train +experiment=plain_lstm_640x360_baseline dataset.path=/data/etram_shards \\
        batch_size.train=6 training.max_steps=100000

The run's working directory is ``output.dir`` (``outputs/<experiment>/<run_id>``): Lightning checkpoints in
``checkpoints/``, CSV logs in ``logs/``, the resolved ``config.yaml`` and ``run.json`` (what was produced, where).
With ``output.store`` set, checkpoints and the config are also copied to the store under
``experiments/<experiment>/<run_id>/``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig

from evdet.data.storage import open_store, run_prefix
from evdet.model.config import CONFIG_DIR, finalize_config, normalize_overrides, to_container
from evdet.model.datamodule import ShardDataModule
from evdet.model.module import DetectionModule

__all__ = ["main", "run_training", "resolve_precision", "CHECKPOINT_FILENAME"]

#: Checkpoint names the team uses: ``epoch=000-step=71612-val_AP=0.25.ckpt``.
CHECKPOINT_FILENAME = "epoch={epoch:03d}-step={step}-val_AP={val_AP:.2f}"


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning precision for the device that will run.

    16-bit float mixed precision needs a GPU; on a CPU-only machine the run falls back to ``32-true`` with a warning
    (bf16 would work but is slower than fp32 on most CPUs).
    """
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if precision.startswith("16") and not on_gpu:
        warnings.warn(f"hardware.precision={precision} needs a GPU; training on the CPU in 32-true", stacklevel=2)
        return "32-true"
    return precision


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Train one run described by ``cfg`` (composed ``train.yaml``); returns the contents of ``run.json``.

    Raises:
        FileNotFoundError: the dataset path has no train shards.
        ValueError: the shards' size differs from the configured resolution.
    """
    cfg = finalize_config(cfg)
    config = to_container(cfg)
    out_dir = Path(config["output"]["dir"]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(config["seed"]), workers=True)

    data = ShardDataModule(config)
    data.facts("train")  # fail early, naming the directory, when shards are missing or of another size
    has_val = any(data.split_dir("val").glob("*.h5"))
    eval_info = {k: v for k, v in data.facts("val").items() if k != "shards"} if has_val else None
    module = DetectionModule(config, eval_info=eval_info)

    hw, tr, val, ck = config["hardware"], config["training"], config["validation"], config["checkpoint"]
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename=CHECKPOINT_FILENAME,
        auto_insert_metric_name=False,
        monitor=ck["monitor"] if has_val else None,
        mode=ck["mode"],
        save_top_k=int(ck["save_top_k"]) if has_val else 0,
        save_last=bool(ck["save_last"]),
    )
    interval = val["val_check_interval"]
    trainer = L.Trainer(
        default_root_dir=out_dir,
        max_steps=int(tr["max_steps"]),
        max_epochs=-1,
        accelerator=hw["accelerator"],
        devices=hw["devices"],
        precision=resolve_precision(str(hw["precision"]), str(hw["accelerator"])),
        gradient_clip_val=float(tr["gradient_clip_val"]),
        accumulate_grad_batches=int(tr["accumulate_grad_batches"]),
        val_check_interval=int(interval) if interval is not None and has_val else None,
        check_val_every_n_epoch=None if interval is not None else 1,
        limit_val_batches=val["limit_val_batches"] if has_val else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=int(tr["log_every_n_steps"]),
        logger=CSVLogger(out_dir, name="logs", version=""),
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step")],
        enable_model_summary=True,
    )
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    trainer.fit(module, datamodule=data, ckpt_path=config.get("ckpt_path"))

    last = Path(checkpoint.last_model_path) if checkpoint.last_model_path else None
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    summary: dict[str, Any] = {
        "experiment": config["experiment_name"],
        "run_id": config["run_id"],
        "output_dir": str(out_dir),
        "best_checkpoint": str(best) if best else None,
        "last_checkpoint": str(last) if last else None,
        "best_val_AP": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        "global_step": int(trainer.global_step),
        "store_uri": None,
    }
    store_uri = config["output"].get("store")
    if store_uri:
        summary["store_uri"] = upload_run(out_dir, store_uri, config["experiment_name"], config["run_id"])
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return summary


def upload_run(out_dir: Path, store_uri: str, experiment: str, run_id: str) -> str:
    """Copy checkpoints, ``config.yaml`` and metrics logs of a run into the store; returns the run's URI prefix."""
    store = open_store(store_uri)
    prefix = run_prefix(experiment, run_id)
    for path in sorted((out_dir / "checkpoints").glob("*.ckpt")):
        store.put_file(path, f"{prefix}/checkpoints/{path.name}")
    store.put_file(out_dir / "config.yaml", f"{prefix}/config.yaml")
    metrics = out_dir / "logs" / "metrics.csv"
    if metrics.is_file():
        store.put_file(metrics, f"{prefix}/metrics.csv")
    return f"{store.uri.rstrip('/')}/{prefix}"


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_entry(cfg: DictConfig) -> None:
    summary = run_training(cfg)
    print(json.dumps(summary))


def main() -> None:
    """Console entry point: Hydra overrides on the command line (``+experiment=NAME`` accepted)."""
    sys.argv = [sys.argv[0], *normalize_overrides(sys.argv[1:])]
    _hydra_entry()


if __name__ == "__main__":
    main()
