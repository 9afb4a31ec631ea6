"""Where runs keep what they produce: checkpoints, ``experiment_results.json``, detections.

A store is addressed by a URI. A plain path or ``file://`` URI is a directory on the local disk (the laptop run and
the tests); ``s3://bucket/prefix`` is reserved for object storage, added by the MinIO work. Keys are relative
POSIX paths such as ``experiments/<experiment>/<run_id>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

__all__ = ["Store", "LocalStore", "open_store", "run_prefix", "put_path"]


class Store(Protocol):
    """What every store offers. Keys are relative POSIX paths."""

    uri: str

    def put_file(self, local_path: Path, key: str) -> str:
        """Copy ``local_path`` to ``key``; returns the object's URI."""
        ...

    def get_file(self, key: str, local_path: Path) -> Path:
        """Copy ``key`` to ``local_path``; returns ``local_path``."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
        ...


def run_prefix(experiment: str, run_id: str) -> str:
    """Key prefix of one run: ``experiments/<experiment>/<run_id>``."""
    return f"experiments/{experiment}/{run_id}"


def _check_key(key: str) -> str:
    parts = Path(key).parts
    if not key or key.startswith("/") or ".." in parts:
        raise ValueError(f"store key {key!r}: expected a relative path without '..'")
    return key


class LocalStore:
    """A store in a local directory; writes go through a temporary file and a rename, so a reader never sees a
    half-written object and an interrupted copy leaves the previous version in place.

    Args:
        root: directory of the store (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, local_path: Path, key: str) -> str:
        """Copy ``local_path`` into the store at ``key``.

        Raises:
            FileNotFoundError: ``local_path`` does not exist (message names it).
        """
        src = Path(local_path)
        if not src.is_file():
            raise FileNotFoundError(f"store upload: no such file {src}")
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return str(dst)

    def get_file(self, key: str, local_path: Path) -> Path:
        """Copy the object ``key`` to ``local_path``.

        Raises:
            FileNotFoundError: no object at ``key`` (message names the store and key).
        """
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(f"store {self.uri}: no object {key!r}")
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, local_path)
        return local_path

    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        """Keys of all objects under ``prefix`` (sorted, relative to the store root)."""
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".part")
        )


def put_path(store: Store, local_path: str | Path, key: str) -> list[str]:
    """Copy a file to ``key``, or every file below a directory to ``key/<relative path>``.

    Returns:
        The URIs written, in order.

    Raises:
        FileNotFoundError: ``local_path`` does not exist (message names it).
    """
    src = Path(local_path)
    if src.is_file():
        return [store.put_file(src, key)]
    if not src.is_dir():
        raise FileNotFoundError(f"store upload: no such file or directory {src}")
    prefix = key.rstrip("/")
    return [
        store.put_file(path, f"{prefix}/{path.relative_to(src).as_posix()}")
        for path in sorted(src.rglob("*"))
        if path.is_file()
    ]


def open_store(uri: str | Path) -> Store:
    """Open the store addressed by ``uri`` (a local path or ``file://`` URI).

    Raises:
        ValueError: for a URI scheme this build cannot serve, naming the URI and the supported forms.
    """
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file"):
        return LocalStore(parsed.path if parsed.scheme == "file" else text)
    raise ValueError(f"store URI {text!r}: unsupported scheme {parsed.scheme!r}; expected a local path or file:// URI")
