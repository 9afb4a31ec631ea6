"""Lightning module: recurrent training over sequences, Prophesee-protocol validation, AdamW + one-cycle.

Training recipe from RVT (Gehrig & Scaramuzza, CVPR 2023, Sec. 4.1): AdamW, one-cycle learning-rate schedule with
linear warm-up and annealing, gradient clipping, mixed precision, truncated BPTT over L windows with the LSTM
states carried across batches of a stream and reset at the start of each recording.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from evdet.eval.prophesee import evaluate_prophesee
from evdet.model.config import dataset_classes
from evdet.model.training.detections import DetectionCollector
from evdet.model.nn.detector import LstmStates, build_detector
from evdet.model.nn.acceleration import apply_acceleration, build_adamw
from evdet.model.training.recurrence import detach_states, run_sequence

__all__ = ["DetectionModule", "plain_data"]

LOSS_KEYS = ("loss", "loss_iou", "loss_obj", "loss_cls", "loss_l1", "loss_main", "loss_aux")
"""Loss-dict entries logged as ``train/<key>`` when present (``loss_main`` / ``loss_aux``: ABC head only)."""


class DetectionModule(L.LightningModule):
    """RVT detector trained with YOLOX losses.

    Args:
        config: the resolved training configuration as a plain dict (``conf/train.yaml`` composed with the
            experiment); stored in the checkpoint's hyper-parameters so detection can rebuild the model.
        eval_info: shard facts needed by the evaluator and by detection on raw recordings
            (:func:`evdet.model.training.datamodule.shard_facts`: ``width``, ``height`` (representation px),
            ``downsample_factor``, ``class_names``, ``histogram``); None disables validation metrics.
    """

    def __init__(self, config: dict[str, Any], eval_info: dict[str, Any] | None = None) -> None:
        super().__init__()
        # Plain data only (dicts, lists, str, numbers, bool, None), so a checkpoint holds nothing but tensors and plain
        # containers and loads with torch.load(weights_only=True) (evdet.model.training.checkpoint.read_checkpoint).
        config = plain_data(config, "config")
        eval_info = plain_data(eval_info, "eval_info")
        self.save_hyperparameters({"config": config, "eval_info": eval_info})
        self.config = config
        self.eval_info = eval_info
        ds = config["dataset"]
        self.class_names = list(dataset_classes(ds).class_names)
        self.model = build_detector(config["model"], num_classes=int(ds["num_classes"]),
                                    in_channels=int(ds["in_channels"]), class_names=self.class_names)
        self._train_states: LstmStates | None = None
        self._eval_states: LstmStates | None = None
        self._collector: DetectionCollector | None = None
        #: The latest validation's detections and metrics ``(collector, evaluate_collected(...))`` (every rank holds
        #: the whole split), for :class:`evdet.model.mlops.run_records.ValidationConfusionWriter`; None when it was not
        #: evaluated.
        self.validation_result: tuple[DetectionCollector, dict] | None = None

    # ----------------------------------------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        """Before fitting: the speed options of ``hardware`` (channels-last, regional compile;
        :mod:`evdet.model.nn.acceleration`). Predict, detect and evaluation load the model without them."""
        if stage == "fit":
            apply_acceleration(self.model, self.config.get("hardware", {}))

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move only the stacked histograms (uint8 ``(B, L, C, H, W)``) of a batch dict to ``device``.

        Labels, masks and timestamps stay on the host: :func:`evdet.model.training.recurrence.run_sequence` selects the
        labelled windows with them and the loss pads the labels into one tensor that it copies to the device once,
        so neither waits for the device. Other batch types go through Lightning's default transfer.
        """
        if not isinstance(batch, dict) or "representation" not in batch:
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        moved = dict(batch)
        moved["representation"] = batch["representation"].to(device, non_blocking=True)
        return moved

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """One truncated-BPTT step over ``batch`` (B sequences x L windows); returns the total loss."""
        frames, states = run_sequence(self.model, batch, self._train_states)
        self._train_states = detach_states(states)
        bsz = batch["representation"].shape[0]
        if frames.count == 0:
            # No labelled window in this batch: keep the graph connected so DDP and AMP see a loss.
            zero = sum(p.sum() for p in self.model.parameters()) * 0.0
            self.log("train/loss", zero.detach(), prog_bar=True, batch_size=bsz)
            return zero
        losses = self.model.loss(frames.features, frames.targets)
        for key in LOSS_KEYS:
            if key in losses:
                self.log(f"train/{key}", losses[key].detach(), prog_bar=key == "loss", batch_size=bsz)
        # tensors, not floats: logging converts them only when a logger writes, so the step does not wait for the GPU
        self.log("train/num_fg", losses["num_fg"].detach(), batch_size=bsz)
        if "num_fg_aux" in losses:
            self.log("train/num_fg_aux", losses["num_fg_aux"].detach(), batch_size=bsz)
        return losses["loss"]

    def on_train_epoch_start(self) -> None:
        self._train_states = None
        # New recording order and augmentation draws every epoch (streaming / mixed datasets are seeded by epoch).
        loader = self.trainer.train_dataloader if self._trainer is not None else None
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    # --------------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._eval_states = None
        self.validation_result = None
        self._collector = DetectionCollector(score=_evaluation(self.config["dataset"]).get("score", "class_conf"))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Stream one validation batch, collecting detections at label timestamps."""
        val = self.config["validation"]
        frames, self._eval_states = run_sequence(self.model, batch, self._eval_states)
        if frames.count == 0:
            return
        dets = self.model.detect(frames.features, float(val["confidence_threshold"]), float(val["nms_threshold"]))
        assert self._collector is not None
        self._collector.add(batch["sequence"], frames.batch_index, frames.label_t_us, frames.targets, dets)

    def on_validation_epoch_end(self) -> None:
        collector, self._collector = self._collector, None
        if collector is not None and self.trainer.world_size > 1:
            # Each rank streamed its own recordings: gather them so every rank scores the whole split.
            states = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(states, collector.state())
            collector = DetectionCollector(score=collector.score)
            for state in states:
                collector.merge(state)
        if collector is None or not collector.sequences or self.eval_info is None:
            return
        try:
            metrics = evaluate_collected(collector, self.eval_info, self.config["dataset"])
            self.validation_result = (collector, metrics)
        except ValueError as exc:  # malformed boxes or settings; never hide it silently
            rank_zero_warn(f"validation: cannot evaluate ({exc}); val_AP logged as 0")
            metrics = {key: 0.0 for key in ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L")}
        for note in metrics.get("notes", []):
            rank_zero_warn(f"validation: {note}")
        self.log("val_AP", float(metrics["AP"] or 0.0), prog_bar=True, sync_dist=True)
        for key in ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L"):
            if metrics.get(key) is not None:  # None: no label of that size range in the validation split
                self.log(f"val/{key}", float(metrics[key]), sync_dist=True)
        for kind in ("class_agnostic", "class_aware"):
            value = metrics.get(kind, {}).get("AP")
            if value is not None:
                self.log(f"val/AP_{kind}", float(value), sync_dist=True)

    # -------------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict:
        """AdamW with a one-cycle schedule stepped every optimiser step (RVT Sec. 4.1)."""
        tr = self.config["training"]
        sched = tr["lr_scheduler"]
        optimizer = build_adamw(self.parameters(), lr=float(tr["learning_rate"]),
                                weight_decay=float(tr["weight_decay"]))
        total_steps = max(int(tr["max_steps"]), 4) + 1  # one spare: the last optimiser step must not pass the end
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=float(tr["learning_rate"]),
            total_steps=total_steps,
            # At least two warm-up steps: OneCycleLR divides by (warm-up steps - 1).
            pct_start=max(float(sched["pct_start"]), 2.0 / total_steps),
            div_factor=float(sched["div_factor"]),
            final_div_factor=float(sched["final_div_factor"]),
            anneal_strategy="linear",
            cycle_momentum=False,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def plain_data(value: Any, where: str = "value") -> Any:
    """A copy of ``value`` made of plain data only: dicts with string keys, lists, str, int, float, bool and None.

    Tuples become lists, ``pathlib`` paths strings, numpy scalars and 0-d arrays Python numbers, OmegaConf containers
    plain containers. This is what the module stores as hyper-parameters, so that checkpoints load with
    ``torch.load(weights_only=True)``.

    Raises:
        TypeError: any other object (names where in ``value`` it is, e.g. ``config.dataset.path``, and its type).
    """
    from pathlib import PurePath

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    if isinstance(value, dict):
        return {str(k): plain_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars, 0-d numpy arrays and torch tensors
    if callable(item) and getattr(value, "ndim", None) == 0:
        return plain_data(item(), where)
    raise TypeError(f"{where}: {type(value).__module__}.{type(value).__qualname__} is not plain data (expected "
                    "dict, list, str, int, float, bool or None)")


def _evaluation(dataset_cfg: dict) -> dict:
    """The ``dataset.evaluation`` node (``{}`` for configs saved before it existed)."""
    return dict(dataset_cfg.get("evaluation") or {})


def evaluate_collected(collector: DetectionCollector, eval_info: dict[str, Any], dataset_cfg: dict) -> dict:
    """Prophesee-protocol COCO metrics over everything in ``collector``, as ``evdet-eval prophesee`` computes them.

    Args:
        collector: labels and detections per recording (detections stamped with their frame's label time).
        eval_info: ``width``, ``height`` (px), ``downsample_factor``, ``class_names`` of the shards.
        dataset_cfg: the ``dataset`` config; ``dataset.evaluation`` gives the protocol (``etram`` | ``rvt``), the
            camera, optional minimum box sizes in SENSOR px (divided by the downsample factor here), the skip
            time and the time tolerance.

    Returns:
        The metrics dict of :func:`evdet.eval.prophesee.evaluate_prophesee` (headline figures at the top level,
        both the class-agnostic and the class-aware passes, per-class AP, the protocol values).

    Raises:
        ValueError: malformed boxes or settings (names the recording / key).
    """
    ev = _evaluation(dataset_cfg)
    factor = int(eval_info["downsample_factor"])
    diag, side = ev.get("min_box_diag_px"), ev.get("min_box_side_px")
    if (diag is None) != (side is None):
        raise ValueError("dataset.evaluation.min_box_diag_px / min_box_side_px: set both or neither (null = the "
                         "camera's)")
    names = collector.sequences
    return evaluate_prophesee(
        [collector.labels(n) for n in names],
        [collector.detections(n) for n in names],
        protocol=str(ev.get("protocol", "etram")),
        class_names=list(eval_info["class_names"]),
        height=int(eval_info["height"]),
        width=int(eval_info["width"]),
        camera=str(ev.get("camera", "gen4")),
        downsample_factor=factor,
        min_box_diag_px=None if diag is None else float(diag) / factor,
        min_box_side_px=None if side is None else float(side) / factor,
        skip_before_us=int(ev.get("skip_before_us", 500_000)),
        time_tolerance_us=int(ev.get("time_tolerance_us", 50_000)),
        recording_names=names,
    )
