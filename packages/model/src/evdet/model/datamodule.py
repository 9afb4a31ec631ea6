"""Lightning data module over representation shards (``<dataset.path>/{train,val,test}/*.h5``).

Training uses the configured sampling (stream: consecutive chunks per recording with the recurrent state carried;
random: independent sequences; mixed: both in one batch with weights ``dataset.w_stream`` / ``dataset.w_random``)
and the configured augmentation (``dataset.augmentation``, train split only); validation and testing always stream,
unaugmented, so every labelled window is seen once, in order, with the state carried as at deployment (RVT,
Sec. 4.1). Every split's labels are remapped on load with ``dataset.class_map``, whose class count must equal
``dataset.num_classes`` and whose names are the evaluation class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the blosc filter used by the shards)
import lightning as L
from torch.utils.data import DataLoader

from evdet.data.augmentation import AugmentationConfig
from evdet.data.dataset import build_dataloader
from evdet.data.labels import EXPERIMENT_CLASSES, ClassMap, get_class_map

__all__ = ["ShardDataModule", "dataset_class_map", "shard_facts"]


def dataset_class_map(dataset_cfg: Any) -> ClassMap:
    """The class map of a ``dataset`` config, checked against ``dataset.num_classes``.

    Args:
        dataset_cfg: the ``dataset`` mapping; ``class_map`` defaults to ``experiment8`` when absent (configs saved
            before the key existed).

    Raises:
        ValueError: unknown ``dataset.class_map``, or ``dataset.num_classes`` differing from the map's class count
            (message names both keys and values).
    """
    name = str(dataset_cfg.get("class_map", "experiment8"))
    try:
        cmap = get_class_map(name)
    except ValueError as exc:
        raise ValueError(f"dataset.class_map: {exc}") from None
    if int(dataset_cfg["num_classes"]) != cmap.num_classes:
        raise ValueError(f"dataset.num_classes is {dataset_cfg['num_classes']} but dataset.class_map '{name}' has "
                         f"{cmap.num_classes} classes {list(cmap.class_names)}; set dataset.num_classes="
                         f"{cmap.num_classes}")
    return cmap


def shard_facts(split_dir: Path) -> dict[str, Any]:
    """Facts the evaluator and the model need, read from the first shard of ``split_dir``.

    Returns:
        ``{"width", "height" (representation px), "downsample_factor", "class_names", "shards" (count)}``.

    Raises:
        FileNotFoundError: ``split_dir`` holds no ``*.h5`` shard (message names the directory).
        ValueError: the shards disagree on size or downsample factor (message names the first differing file).
    """
    shards = sorted(Path(split_dir).glob("*.h5"))
    if not shards:
        raise FileNotFoundError(f"{split_dir}: no representation shards (*.h5); run `evdet-data preprocess` first")
    facts: dict[str, Any] | None = None
    for path in shards:
        with h5py.File(path, "r") as f:
            names = f.attrs.get("class_names")
            current = {
                "width": int(f.attrs["width"]),
                "height": int(f.attrs["height"]),
                "downsample_factor": int(f.attrs["downsample_factor"]),
                "class_names": [str(n) for n in names] if names is not None else list(EXPERIMENT_CLASSES),
            }
        if facts is None:
            facts = current
        elif current != facts:
            raise ValueError(f"{path}: shard attributes {current} differ from {shards[0].name}'s {facts}")
    assert facts is not None
    facts["shards"] = len(shards)
    return facts


class ShardDataModule(L.LightningDataModule):
    """Loaders for the train / val / test splits of a shard directory.

    Args:
        config: resolved training config (uses ``dataset``, ``batch_size``, ``hardware.num_workers``, ``seed``).

    Raises:
        ValueError: on construction, when ``dataset.num_classes`` differs from ``dataset.class_map``'s class count
            or ``dataset.augmentation`` is invalid (messages name the keys); in :meth:`facts`, when the shards'
            representation size differs from ``dataset.height`` x ``dataset.width`` (message names the split
            directory and both sizes).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.root = Path(config["dataset"]["path"])
        self.class_map = dataset_class_map(config["dataset"])
        self.augmentation = AugmentationConfig.from_mapping(config["dataset"].get("augmentation"))

    def split_dir(self, split: str) -> Path:
        """Directory of one split's shards."""
        return self.root / split

    def facts(self, split: str) -> dict[str, Any]:
        """:func:`shard_facts` of ``split``, checked against the configured resolution; ``class_names`` are the
        configured class map's names (``class_map`` its name), since the loaders remap the labels to it."""
        facts = shard_facts(self.split_dir(split))
        facts["class_names"] = list(self.class_map.class_names)
        facts["class_map"] = self.class_map.name
        ds = self.config["dataset"]
        if (facts["height"], facts["width"]) != (int(ds["height"]), int(ds["width"])):
            raise ValueError(
                f"{self.split_dir(split)}: shards are {facts['width']}x{facts['height']} px but the config asks for "
                f"dataset.width x dataset.height = {ds['width']}x{ds['height']}"
            )
        return facts

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
            class_map=self.class_map,
            augmentation=self.augmentation if split == "train" else None,
            # Data-parallel runs stream disjoint recordings per rank (same number of batches on every rank).
            rank=self.trainer.global_rank if self.trainer is not None else 0,
            world_size=self.trainer.world_size if self.trainer is not None else 1,
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
