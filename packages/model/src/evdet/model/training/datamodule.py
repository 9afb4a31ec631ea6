"""Lightning data module over representation shards (``<dataset.path>/{train,val,test}/*.h5``).

Training uses the configured sampling (stream: consecutive chunks per recording with the recurrent state carried;
random: independent sequences; mixed: both in one batch with weights ``dataset.w_stream`` / ``dataset.w_random``)
and the configured augmentation (``dataset.augmentation``, train split only, RVT's settings per sampling mode);
validation and testing always stream, unaugmented, so every object frame is seen once, in order, with the state
carried as at deployment (RVT, Sec. 4.1).

Classes are names: the shards record the names of their raw label ids, which must equal ``dataset.class_names``;
``dataset.class_map`` (null or a map of :data:`evdet.data.classes.CLASS_MAPS`) turns them into the model's classes
(:func:`evdet.model.config.dataset_classes`), whose count must equal ``dataset.num_classes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from evdet.data.shards import HISTOGRAM_ATTRS, check_shards_agree, load_shards
from evdet.model.config import dataset_classes
from evdet.model.training.augmentation import SamplingAugmentation
from evdet.model.training.dataset import build_dataloader

__all__ = ["ShardDataModule", "shard_facts"]



def shard_facts(split_dir: Path, dataset_cfg: Any) -> dict[str, Any]:
    """Facts the evaluator and the model need, read through the shard API from every shard of ``split_dir``.

    Args:
        split_dir: one split folder of shards.
        dataset_cfg: the ``dataset`` config (class names and map are checked against the shards).

    Returns:
        ``{"width", "height" (representation px), "sensor_width", "sensor_height", "downsample_factor",
        "class_names" (the model's classes), "source_class_names", "class_map", "histogram" (the stacked-histogram
        parameters the shards were made with: window_us, bins, clip, downsample_factor, downsample, time_bins),
        "windows" (label | grid), "shards" (count)}``.

    Raises:
        evdet.data.shards.ShardError: no shards, a malformed shard, shards that disagree on size, classes, sensor
            size, histogram parameters or windows (:func:`~evdet.data.shards.check_shards_agree`), or class names
            other than ``dataset.class_names`` (the message names the file and key).
        ValueError: see :func:`evdet.model.config.dataset_classes`.
    """
    lookup = dataset_classes(dataset_cfg)
    shards = load_shards(split_dir, dataset_cfg.get("class_map"), list(dataset_cfg["class_names"]))
    check_shards_agree(shards, ("sensor_width", "sensor_height", *HISTOGRAM_ATTRS, "windows"))
    first = shards[0]
    return {
        "width": first.width,
        "height": first.height,
        "sensor_width": first.sensor_width,
        "sensor_height": first.sensor_height,
        "downsample_factor": first.downsample_factor,
        "class_names": list(lookup.class_names),
        "source_class_names": list(lookup.source_names),
        "class_map": lookup.class_map,
        "histogram": first.histogram,
        "windows": first.attrs["windows"],
        "shards": len(shards),
    }


class ShardDataModule(L.LightningDataModule):
    """Loaders for the train / val / test splits of a shard directory.

    Args:
        config: resolved training config (uses ``dataset``, ``batch_size``, ``hardware.num_workers``, the loader
            settings of :meth:`loader_settings`, ``seed``).

    Raises:
        ValueError: on construction, for bad class settings (:func:`evdet.model.config.dataset_classes`) or an invalid
            ``dataset.augmentation`` (messages name the keys); in :meth:`facts`, when the shards' representation
            size differs from ``dataset.height`` x ``dataset.width`` (message names the split directory and both
            sizes).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.root = Path(config["dataset"]["path"])
        self.classes = dataset_classes(config["dataset"])
        self.augmentation = SamplingAugmentation.from_mapping(config["dataset"].get("augmentation"))

    def split_dir(self, split: str) -> Path:
        """Directory of one split's shards."""
        return self.root / split

    def facts(self, split: str) -> dict[str, Any]:
        """:func:`shard_facts` of ``split``, checked against the configured resolution."""
        facts = shard_facts(self.split_dir(split), self.config["dataset"])
        ds = self.config["dataset"]
        if (facts["height"], facts["width"]) != (int(ds["height"]), int(ds["width"])):
            raise ValueError(
                f"{self.split_dir(split)}: shards are {facts['width']}x{facts['height']} px but the config asks for "
                f"dataset.width x dataset.height = {ds['width']}x{ds['height']}"
            )
        return facts

    def loader_settings(self) -> dict[str, Any]:
        """DataLoader settings of ``hardware`` for :func:`~evdet.model.training.dataset.build_dataloader`.

        ``persistent_workers`` (default false), ``prefetch_factor`` (default 2, torch's) and ``pin_memory`` (default
        ``auto``: true when CUDA is available and ``hardware.accelerator`` is ``auto``, ``gpu`` or ``cuda``, so that
        the batches' copies to the GPU are asynchronous); configs saved before these keys existed get the defaults.

        Returns:
            ``{"persistent_workers": bool, "prefetch_factor": int, "pin_memory": bool}``.

        Raises:
            ValueError: ``hardware.pin_memory`` other than true, false or auto, or ``hardware.prefetch_factor`` < 1
                (message names the key).
        """
        hw = self.config.get("hardware", {})
        pin = hw.get("pin_memory", "auto")
        if pin == "auto":
            pin = torch.cuda.is_available() and str(hw.get("accelerator", "auto")) in ("auto", "gpu", "cuda")
        if not isinstance(pin, bool):
            raise ValueError(f"hardware.pin_memory: expected true, false or auto, got {pin!r}")
        prefetch = hw.get("prefetch_factor", 2)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"hardware.prefetch_factor: expected an integer >= 1, got {prefetch!r}")
        return {"persistent_workers": bool(hw.get("persistent_workers", False)), "prefetch_factor": prefetch,
                "pin_memory": bool(pin)}

    def _loader(self, split: str, sampling: str, batch_size: int, workers: int, shuffle: bool) -> DataLoader:
        ds = self.config["dataset"]
        return build_dataloader(
            self.split_dir(split),
            sampling=sampling,
            batch_size=batch_size,
            seq_len=int(ds["sequence_length"]),
            num_workers=workers,
            seed=int(self.config["seed"]),
            shuffle=shuffle,
            w_stream=float(ds.get("w_stream", 1.0)),
            w_random=float(ds.get("w_random", 1.0)),
            class_map=ds.get("class_map"),
            class_names=list(ds["class_names"]),
            augmentation=self.augmentation if split == "train" else None,
            # Data-parallel runs stream disjoint recordings per rank (same number of batches on every rank).
            rank=self.trainer.global_rank if self.trainer is not None else 0,
            world_size=self.trainer.world_size if self.trainer is not None else 1,
            **self.loader_settings(),
        )

    def train_dataloader(self) -> DataLoader:
        cfg = self.config
        return self._loader(
            "train", str(cfg["dataset"]["sampling"]), int(cfg["batch_size"]["train"]),
            int(cfg["hardware"]["num_workers"]["train"]), shuffle=True,
        )

    def val_dataloader(self) -> DataLoader:
        cfg = self.config
        return self._loader(
            "val", "stream", int(cfg["batch_size"]["eval"]), int(cfg["hardware"]["num_workers"]["eval"]), shuffle=False
        )

    def test_dataloader(self) -> DataLoader:
        cfg = self.config
        return self._loader(
            "test", "stream", int(cfg["batch_size"]["eval"]), int(cfg["hardware"]["num_workers"]["eval"]), shuffle=False
        )
