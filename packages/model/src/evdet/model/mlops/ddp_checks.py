"""A data-parallel sanity check: after training, every rank must hold the same weights.

DistributedDataParallel averages gradients, so replicas that start equal stay equal; a rank that diverged (a
non-deterministic op outside the graph, a parameter updated outside the optimizer, a skipped all-reduce) shows up
as a different weight digest. :class:`WeightConsistencyCheck` compares SHA-256 digests of all parameters across
ranks at the end of training and records the result for ``run.json``.
"""

from __future__ import annotations

import hashlib

import lightning as L
import torch

__all__ = ["WeightConsistencyCheck", "weight_digest"]


def weight_digest(module: torch.nn.Module) -> str:
    """SHA-256 (hex) over every parameter's name, shape and float32 bytes, in ``named_parameters`` order."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class WeightConsistencyCheck(L.Callback):
    """Gather every rank's :func:`weight_digest` at the end of training.

    Attributes:
        digests: per-rank digests (rank order), filled at ``on_train_end``; one entry without data parallelism.
        identical: True when all digests agree.
    """

    def __init__(self) -> None:
        self.digests: list[str] = []
        self.identical: bool | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = weight_digest(pl_module)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[str | None] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, digest)
            self.digests = [str(d) for d in gathered]
        else:
            self.digests = [digest]
        self.identical = len(set(self.digests)) == 1
