"""Lightning data module over representation shards (``<dataset.path>/{train,val,test}/*.h5``).

Training uses the configured sampling (stream: consecutive chunks per recording with the recurrent state carried;
random: independent sequences); validation and testing always stream so every labelled window is seen once, in
order, with the state carried as at deployment (RVT, Sec. 4.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the blosc filter used by the shards)
import lightning as L
from torch.utils.data import DataLoader

from evdet.data.dataset import build_dataloader
from evdet.data.labels import EXPERIMENT_CLASSES

__all__ = ["ShardDataModule", "shard_facts"]


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
        ValueError: when the shards' representation size differs from ``dataset.height`` x ``dataset.width``
            (message names the split directory and both sizes).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.root = Path(config["dataset"]["path"])

    def split_dir(self, split: str) -> Path:
        """Directory of one split's shards."""
        return self.root / split

    def facts(self, split: str) -> dict[str, Any]:
        """:func:`shard_facts` of ``split``, checked against the configured resolution."""
        facts = shard_facts(self.split_dir(split))
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
