"""Loading a trained detector from a Lightning checkpoint written by ``evdet-train``, and finding the checkpoint a run
resumes from.

Checkpoint paths may be local files or ``s3://bucket/key`` URIs (downloaded once into the cache,
:func:`evdet.data.storage.fetch_file`); a URI that went through ``pathlib.Path`` (``s3:/bucket/key``, as the
``--checkpoint`` options of ``evdet-model predict`` / ``evdet-detect`` deliver it) is accepted too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evdet.data.storage import Store, fetch_file, run_prefix
from evdet.model.module import DetectionModule

__all__ = ["load_module", "local_checkpoint", "find_resume_checkpoint"]


def local_checkpoint(path: str | Path) -> Path:
    """A local file for the checkpoint ``path``: local paths unchanged, ``s3://bucket/key`` (or ``s3:/bucket/key``)
    downloaded into the cache (reused when size and etag match).

    Raises:
        FileNotFoundError: no object at the S3 key (message names the URI).
        evdet.data.storage.StoreError: the S3 server is unreachable, refuses the credentials or lacks the bucket.
    """
    return fetch_file(str(path))


def find_resume_checkpoint(store: Store, experiment: str, run_id: str | None) -> tuple[str | None, str | None]:
    """The checkpoint ``resume=auto`` continues from.

    Args:
        store: the run's store (``output.store``).
        experiment: experiment name.
        run_id: the run to resume; ``None`` picks the run of ``experiment`` whose ``last.ckpt`` is newest.

    Returns:
        ``(run_id, key of checkpoints/last.ckpt)``; ``(run_id, None)`` when the store holds no checkpoint to resume
        (``run_id`` is then the argument unchanged).

    Raises:
        evdet.data.storage.StoreError: the store cannot be read.
    """
    if run_id is not None:
        key = f"{run_prefix(experiment, run_id)}/checkpoints/last.ckpt"
        return run_id, (key if store.exists(key) else None)
    base = f"experiments/{experiment}/"
    candidates = [info for info in store.objects(base)
                  if info.key.endswith("/checkpoints/last.ckpt") and info.key.count("/") == 4]
    if not candidates:
        return None, None
    newest = max(candidates, key=lambda info: (info.modified, info.key))
    return newest.key[len(base):].split("/", 1)[0], newest.key


def load_module(path: str | Path, device: str = "cpu") -> tuple[DetectionModule, dict[str, Any]]:
    """Rebuild the detector from ``path`` in eval mode.

    Returns:
        The module (on ``device``) and its training config (the checkpoint's hyper-parameters).

    Args:
        path: local file or ``s3://bucket/key`` (see :func:`local_checkpoint`).
        device: torch device string.

    Raises:
        FileNotFoundError: no file at ``path`` (or no object at the S3 key).
        ValueError: the file is not an evdet checkpoint (no ``config`` hyper-parameter); the message names it.
        evdet.data.storage.StoreError: the S3 server cannot be used (endpoint and bucket named).
    """
    path = local_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        module = DetectionModule.load_from_checkpoint(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch.load and Lightning raise many types for a bad file
        raise ValueError(f"checkpoint {path}: not a readable evdet checkpoint ({type(exc).__name__}: {exc})") from exc
    module.eval()
    return module.to(device), module.config
