"""``evdet-train``: train an experiment with Hydra configuration and Lightning.

Example (the team's baseline; see README.md)::

    evdet-train +experiment=plain_lstm_640x360_baseline dataset.path=/data/etram_shards \\
        batch_size.train=6 training.max_steps=100000

The run's working directory is ``output.dir`` (``outputs/<experiment>/<run_id>``): Lightning checkpoints in
``checkpoints/``, CSV logs in ``logs/``, the resolved ``config.yaml`` and ``run.json`` (what was produced, where).
With ``output.store`` set (a local path or ``s3://bucket/prefix``), checkpoints are uploaded to the store under
``experiments/<experiment>/<run_id>/checkpoints/`` while training runs (:mod:`evdet.model.checkpoint_upload`), and the
config, metrics and results beside them at the end. ``resume=auto`` continues the run from its ``last.ckpt`` in the
store (see ``conf/train.yaml``); ``ckpt_path`` and ``dataset.path`` accept ``s3://`` URIs (downloaded to the cache,
:func:`evdet.data.storage.cache_dir`).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from evdet.data.storage import (LocalStore, StoreError, cache_dir, download_prefix, fetch_file, open_store,
                                 parse_s3_uri, run_prefix)
from evdet.model.checkpoint import find_resume_checkpoint, local_checkpoint
from evdet.model.checkpoint_upload import CheckpointUploader
from evdet.model.config import CONFIG_DIR, finalize_config, normalize_overrides, to_container
from evdet.model.datamodule import ShardDataModule
from evdet.model.ddp_checks import WeightConsistencyCheck
from evdet.model.experiment_loggers import build_loggers
from evdet.model.progress_log import LogLineProgress, use_progress_bar
from evdet.model.module import DetectionModule
from evdet.model.prometheus_metrics import build_metrics_callbacks

__all__ = ["main", "run_training", "resolve_precision", "upload_run", "CHECKPOINT_FILENAME"]

log = logging.getLogger(__name__)

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
        ValueError: the shards' size differs from the configured resolution, or ``resume`` is not ``auto``/null
            (or is combined with ``ckpt_path``, or lacks ``output.store``).
        evdet.data.storage.StoreError: the store cannot be used (endpoint and bucket named), or checkpoint uploads
            failed (raised after ``run.json`` is written; the local copies are kept).
    """
    run_id_given = not OmegaConf.is_interpolation(cfg, "run_id") and cfg.get("run_id") not in (None, "", "None")
    cfg = finalize_config(cfg)
    ckpt_path = _resume_checkpoint(cfg, run_id_given)
    config = to_container(cfg)
    out_dir = Path(config["output"]["dir"]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(config["seed"]), workers=True)

    store_uri = config["output"].get("store")
    store = open_store(store_uri) if store_uri else None
    if store is not None and hasattr(store, "check"):
        store.check()  # wrong credentials / endpoint / bucket: fail now, not after the first checkpoint
    data = ShardDataModule(_with_local_dataset(config))
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
    uploader = (CheckpointUploader(store, config["experiment_name"], config["run_id"], out_dir / "checkpoints", out_dir)
                if store is not None else None)
    interval = val["val_check_interval"]
    weights_check = WeightConsistencyCheck()
    bar = use_progress_bar()  # a terminal gets a progress bar; pod logs get one line every logging.every_n_steps
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
        num_nodes=int(hw["num_nodes"]),
        strategy=str(hw["strategy"]),
        logger=build_loggers(config, out_dir),
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step"), *build_metrics_callbacks(config),
                   *([uploader] if uploader is not None else []), weights_check,
                   *([] if bar else [LogLineProgress(int(config["logging"]["every_n_steps"]))])],
        enable_progress_bar=bar,
        enable_model_summary=True,
    )
    if trainer.is_global_zero:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        # Only rank 0 owns checkpoints, uploads and run.json; other ranks report their step and weight check.
        return {"rank": trainer.global_rank, "global_step": int(trainer.global_step)}

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
        "resumed_from": str(ckpt_path) if ckpt_path else None,
        "uploaded": None,
        "world_size": int(trainer.world_size),
        "weights_identical_across_ranks": weights_check.identical,
        "weight_digests": weights_check.digests,
    }
    if store_uri:
        summary["store_uri"] = upload_run(out_dir, store_uri, config["experiment_name"], config["run_id"],
                                          checkpoints=False)
        summary["uploaded"] = list(uploader.uploaded)
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2))
    if uploader is not None and uploader.failures:
        raise StoreError(f"{len(uploader.failures)} checkpoint upload(s) to {store_uri} failed (local copies kept): "
                         + "; ".join(f"{f.key}: {f.error}" for f in uploader.failures))
    return summary


def _resume_checkpoint(cfg: DictConfig, run_id_given: bool) -> str | None:
    """Local checkpoint path that ``trainer.fit`` starts from: ``ckpt_path`` (local or ``s3://``, downloaded), or with
    ``resume=auto`` the run's ``last.ckpt`` in ``output.store``; sets ``cfg.run_id`` to the resumed run.

    Raises:
        ValueError: ``resume`` is not ``auto``/null, is combined with ``ckpt_path``, or ``output.store`` is unset.
        evdet.data.storage.StoreError: the store cannot be read.
    """
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume in (None, False, "null", "none"):
        return str(local_checkpoint(ckpt_path)) if ckpt_path else None
    if resume != "auto":
        raise ValueError(f"resume={resume!r}: expected auto or null")
    if ckpt_path:
        raise ValueError(f"resume=auto and ckpt_path={ckpt_path!r} both set: expected one of them")
    store_uri = cfg.output.get("store")
    if not store_uri:
        raise ValueError("resume=auto: output.store is not set; expected the store that holds the run's checkpoints")
    store = open_store(store_uri)
    run_id, key = find_resume_checkpoint(store, str(cfg.experiment_name), str(cfg.run_id) if run_id_given else None)
    if key is None:
        log.info("resume=auto: no checkpoints/last.ckpt for experiment %s%s in %s; starting fresh",
                 cfg.experiment_name, f" run {cfg.run_id}" if run_id_given else "", store.uri)
        return None
    cfg.run_id = run_id
    local = Path(store.uri) / key if isinstance(store, LocalStore) else fetch_file(f"{store.uri}/{key}")
    log.info("resume=auto: continuing run %s from %s/%s", run_id, store.uri, key)
    return str(local)


def _with_local_dataset(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with an ``s3://bucket/prefix`` ``dataset.path`` replaced by its local mirror
    ``<cache>/s3/<bucket>/<prefix>`` (downloaded, reusing cached shards of the same size/etag); unchanged otherwise.

    Raises:
        evdet.data.storage.StoreError: the store cannot be read or holds nothing under the prefix.
    """
    path = str(config["dataset"]["path"])
    if not path.startswith("s3:/"):
        return config
    bucket, prefix = parse_s3_uri(path)
    local = cache_dir() / "s3" / bucket / prefix
    download_prefix(open_store(f"s3://{bucket}"), prefix, local)
    return {**config, "dataset": {**config["dataset"], "path": str(local)}}


def upload_run(out_dir: Path, store_uri: str, experiment: str, run_id: str, *, checkpoints: bool = True) -> str:
    """Copy checkpoints (unless ``checkpoints=False``: already uploaded by :class:`CheckpointUploader`),
    ``config.yaml`` and metrics logs of a run into the store; returns the run's URI prefix.

    Raises:
        evdet.data.storage.StoreError: the store refuses or is unreachable.
    """
    store = open_store(store_uri)
    prefix = run_prefix(experiment, run_id)
    for path in sorted((out_dir / "checkpoints").glob("*.ckpt")) if checkpoints else ():
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
