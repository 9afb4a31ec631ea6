"""Where runs keep what they produce: checkpoints, ``experiment_results.json``, detections.

A store is addressed by a URI. A plain path or ``file://`` URI is a directory on the local disk (the laptop run and
the tests); ``s3://bucket/prefix`` is a bucket (and key prefix) on an S3 server such as MinIO, reached through the
minio SDK with the endpoint and credentials of :mod:`evdet.data.s3_credentials` (environment or mounted Secret, never
config). Keys are relative POSIX paths such as ``experiments/<experiment>/<run_id>/checkpoints/last.ckpt``.

Errors of the S3 server (wrong credentials, unreachable endpoint, missing bucket) are raised as one
:class:`StoreError` (a ``ValueError``) whose message names the endpoint and the bucket and never the secret key.
Every text that may carry library output (StoreError messages, the retry / backoff warnings with the exception's
text) is masked by :meth:`evdet.data.s3_credentials.S3Credentials.mask` (whole tokens; rule in that module).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from evdet.data.s3_credentials import S3Credentials, load_s3_credentials
from evdet.data.store_errors import StoreError

__all__ = [
    "Store", "LocalStore", "S3Store", "StoreError", "ObjectInfo", "open_store", "run_prefix", "put_path",
    "parse_s3_uri", "download_prefix", "fetch_file", "cache_dir", "DEFAULT_PART_SIZE",
]

log = logging.getLogger(__name__)

#: Part size of multipart uploads (bytes): 64 MiB; files larger than one part go up in parts (S3 minimum 5 MiB).
DEFAULT_PART_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a store.

    Attributes:
        key: relative POSIX key.
        size: bytes.
        etag: the server's entity tag (S3), ``None`` for a local store.
        modified: last modification, seconds since the epoch (UTC).
    """

    key: str
    size: int
    etag: str | None
    modified: float


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

    def objects(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects under ``prefix`` with size, etag and modification time, sorted by key."""
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """The object at ``key``, or ``None`` when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object at ``key`` (no error when there is none)."""
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

    def stat(self, key: str) -> ObjectInfo | None:
        """Size (bytes) and modification time of the file at ``key``; ``None`` when there is none."""
        path = self._path(key)
        if not path.is_file():
            return None
        st = path.stat()
        return ObjectInfo(key=key, size=st.st_size, etag=None, modified=st.st_mtime)

    def objects(self, prefix: str = "") -> list[ObjectInfo]:
        """:meth:`stat` of every key under ``prefix``, sorted by key."""
        return [info for key in self.list(prefix) if (info := self.stat(key)) is not None]

    def delete(self, key: str) -> None:
        """Remove the file at ``key``; nothing happens when there is none."""
        self._path(key).unlink(missing_ok=True)


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


def open_store(uri: str | Path, credentials: S3Credentials | None = None) -> Store:
    """Open the store addressed by ``uri``: a local path, a ``file://`` URI or ``s3://bucket[/prefix]``.

    Args:
        uri: the store's address.
        credentials: for ``s3://`` only; default :func:`evdet.data.s3_credentials.load_s3_credentials` (environment
            or mounted Secret).

    Raises:
        ValueError: for a URI scheme this build cannot serve, naming the URI and the supported forms.
        StoreError: ``s3://`` without credentials, or a malformed bucket name (no network access happens here).
    """
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file"):
        return LocalStore(parsed.path if parsed.scheme == "file" else text)
    if parsed.scheme == "s3":
        bucket, prefix = parse_s3_uri(text)
        return S3Store(bucket, prefix, credentials)
    raise ValueError(f"store URI {text!r}: unsupported scheme {parsed.scheme!r}; expected a local path, a file:// URI "
                     "or s3://bucket/prefix")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/some/prefix`` into ``("bucket", "some/prefix")`` (prefix without surrounding slashes).

    Also accepts ``s3:/bucket/prefix``, which is what ``pathlib.Path("s3://...")`` turns a URI into.

    Raises:
        StoreError: not an ``s3://`` URI, or no bucket; the message names the URI.
    """
    text = str(uri)
    if text.startswith("s3:/") and not text.startswith("s3://"):
        text = "s3://" + text[len("s3:/"):]
    parsed = urlparse(text)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"S3 URI {uri!r}: expected s3://bucket/prefix")
    prefix = parsed.path.strip("/")
    if ".." in prefix.split("/"):
        raise StoreError(f"S3 URI {uri!r}: expected a prefix without '..'")
    return parsed.netloc, prefix


def cache_dir() -> Path:
    """Local cache of downloaded objects (shards, checkpoints): ``$EVDET_CACHE_DIR``, default ``~/.cache/evdet``."""
    return Path(os.environ.get("EVDET_CACHE_DIR") or Path.home() / ".cache" / "evdet").expanduser()


def _cache_is_current(local: Path, info: ObjectInfo) -> bool:
    marker = local.with_name(f".{local.name}.etag")
    if not local.is_file() or local.stat().st_size != info.size:
        return False
    if info.etag is None:
        return True
    return marker.is_file() and marker.read_text() == info.etag


def _fetch_object(store: Store, info: ObjectInfo, local: Path) -> bool:
    """Download ``info`` to ``local`` unless an identical copy (same size and etag) is there; True when downloaded."""
    if _cache_is_current(local, info):
        return False
    store.get_file(info.key, local)
    if info.etag is not None:
        local.with_name(f".{local.name}.etag").write_text(info.etag)
    return True


def download_prefix(store: Store, prefix: str, local_dir: str | Path) -> dict[str, int]:
    """Mirror every object under ``prefix`` into ``local_dir`` (``<local_dir>/<key relative to prefix>``).

    Files already present with the same size (and, for S3, the same etag, remembered in a ``.<name>.etag`` file
    beside them) are not downloaded again, so a restarted pod reuses its cache.

    Returns:
        ``{"downloaded": n, "skipped": m}``.

    Raises:
        StoreError: the store cannot be read, or holds nothing under ``prefix`` (message names both).
    """
    prefix = prefix.strip("/")
    infos = store.objects(prefix + "/" if prefix else "")
    if not infos:
        raise StoreError(f"store {store.uri}: no objects under {prefix!r}")
    local_dir = Path(local_dir)
    counts = {"downloaded": 0, "skipped": 0}
    for info in infos:
        rel = info.key[len(prefix):].lstrip("/") if prefix else info.key
        fetched = _fetch_object(store, info, local_dir / rel)
        counts["downloaded" if fetched else "skipped"] += 1
    log.info("store %s/%s -> %s: %d downloaded, %d already cached", store.uri, prefix, local_dir,
             counts["downloaded"], counts["skipped"])
    return counts


def fetch_file(uri: str | Path, cache: str | Path | None = None) -> Path:
    """A local path for ``uri``: a local path is returned as is, ``s3://bucket/key`` is downloaded into
    ``<cache>/s3/<bucket>/<key>`` (default cache :func:`cache_dir`), reusing an identical cached copy.

    Raises:
        StoreError: the S3 server cannot be reached or refuses (endpoint and bucket named).
        FileNotFoundError: no object at the key (message names the URI).
    """
    text = str(uri)
    if not text.startswith("s3:/"):
        return Path(text)
    bucket, key = parse_s3_uri(text)
    if not key:
        raise StoreError(f"S3 URI {text!r}: expected s3://bucket/key of one object")
    store = S3Store(bucket, "")
    info = store.stat(key)
    if info is None:
        raise FileNotFoundError(f"{text}: no such object (endpoint {store.credentials.endpoint_url}, bucket {bucket!r})")
    local = Path(cache if cache is not None else cache_dir()) / "s3" / bucket / key
    _fetch_object(store, info, local)
    return local


class S3Store:
    """A store in an S3 bucket (MinIO, or any S3-compatible server) below an optional key prefix.

    Uploads use multipart for files larger than ``part_size`` and are confirmed by a ``stat`` of the object (the size
    must match the local file); transient failures (connection errors, HTTP 5xx, size mismatch) are retried with
    exponential backoff ``backoff_s * 2**attempt``. Downloads go through a temporary file and a rename.

    Args:
        bucket: bucket name (must exist: the store never creates buckets).
        prefix: key prefix inside the bucket (``""`` for the bucket root).
        credentials: default :func:`evdet.data.s3_credentials.load_s3_credentials`.
        part_size: multipart part size in bytes (>= 5 MiB, the S3 minimum).
        retries: attempts per operation after the first one.
        backoff_s: first retry delay in seconds.
        timeout_s: connect and read timeout of one HTTP request in seconds.

    Raises:
        StoreError: missing credentials, or ``part_size`` below 5 MiB.
    """

    def __init__(self, bucket: str, prefix: str = "", credentials: S3Credentials | None = None, *,
                 part_size: int = DEFAULT_PART_SIZE, retries: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 30.0) -> None:
        import urllib3
        from minio import Minio

        if part_size < 5 * 1024 * 1024:
            raise StoreError(f"S3 store s3://{bucket}: part_size {part_size} B: expected at least 5 MiB (S3 minimum)")
        self.credentials = credentials if credentials is not None else load_s3_credentials()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.part_size = part_size
        self.retries = retries
        self.backoff_s = backoff_s
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
                                   retries=urllib3.Retry(total=0), maxsize=4)
        try:
            self._client = Minio(self.credentials.endpoint, access_key=self.credentials.access_key,
                                 secret_key=self.credentials.secret_key, secure=self.credentials.secure,
                                 http_client=http)
        except ValueError as exc:  # malformed endpoint or bucket-independent argument
            raise self._error("cannot create a client", exc) from None

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint={self.credentials.endpoint_url!r})"

    def _name(self, key: str) -> str:
        key = _check_key(key) if key else key
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _where(self) -> str:
        return f"S3 store {self.uri} (endpoint {self.credentials.endpoint_url}, bucket {self.bucket!r})"

    def _error(self, what: str, exc: BaseException | None = None) -> StoreError:
        """One clear :class:`StoreError` for ``exc``; the whole message is masked (secret key tokens -> ``***``)."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        reason = ""
        if isinstance(exc, S3Error):
            code = exc.code or ""
            if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken"):
                reason = (f"credentials rejected ({code}); check MINIO_ACCESS_KEY / MINIO_SECRET_KEY or the mounted "
                          "Secret")
            elif code == "NoSuchBucket":
                reason = f"bucket {self.bucket!r} does not exist; create it first (e.g. `mc mb`)"
            else:
                reason = f"server error {code}: {exc.message}"
        elif isinstance(exc, (HTTPError, OSError)):
            reason = f"endpoint unreachable ({type(exc).__name__}); check MINIO_ENDPOINT / MINIO_SECURE"
        elif exc is not None:
            reason = f"{type(exc).__name__}: {exc}"
        message = f"{self._where()}: {what}" + (f": {reason}" if reason else "")
        return StoreError(self.credentials.mask(" ".join(message.split())))

    def _describe(self, exc: BaseException, limit: int = 200) -> str:
        """Short one-line masked description of a (transient) failure for the retry warning."""
        from minio.error import S3Error

        detail = f"{exc.code}: {exc.message}" if isinstance(exc, S3Error) else str(exc)
        text = " ".join(f"{type(exc).__name__}: {detail}".split()) if detail else type(exc).__name__
        text = self.credentials.mask(text)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    @staticmethod
    def _transient(exc: BaseException) -> bool:
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        if isinstance(exc, S3Error):
            return exc.code in ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
        return isinstance(exc, (HTTPError, OSError, _SizeMismatch))

    def _call(self, what: str, fn, *args, **kwargs):
        """Run ``fn`` with retries on transient failures; translate the final failure into a StoreError."""
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below
                if attempt < self.retries and self._transient(exc):
                    delay = self.backoff_s * 2**attempt
                    log.warning(self.credentials.mask(
                        f"{self._where()}: {what} failed ({self._describe(exc)}), retry {attempt + 1}/{self.retries} "
                        f"in {delay:.1f} s"))
                    time.sleep(delay)
                    continue
                raise self._error(what, exc) from None
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Verify that the endpoint answers, the credentials are accepted and the bucket exists.

        Raises:
            StoreError: naming the endpoint and bucket and which of the three failed.
        """
        if not self._call("check bucket", self._client.bucket_exists, self.bucket):
            raise StoreError(f"{self._where()}: bucket {self.bucket!r} does not exist; create it first (e.g. `mc mb`)")

    def put_file(self, local_path: Path, key: str) -> str:
        """Upload ``local_path`` to ``key`` (multipart above ``part_size``), confirmed by the object's size.

        Returns:
            ``s3://bucket/<prefix>/<key>``.

        Raises:
            FileNotFoundError: ``local_path`` does not exist (message names it).
            StoreError: the server refuses or stays unreachable after the retries (endpoint and bucket named).
        """
        src = Path(local_path)
        if not src.is_file():
            raise FileNotFoundError(f"store upload: no such file {src}")
        name = self._name(key)
        size = src.stat().st_size

        def upload() -> None:
            self._client.fput_object(self.bucket, name, str(src), part_size=self.part_size)
            remote = self._client.stat_object(self.bucket, name).size
            if remote != size:
                raise _SizeMismatch(f"uploaded {remote} B, local file has {size} B")

        self._call(f"upload {src} to {key!r}", upload)
        return f"s3://{self.bucket}/{name}"

    def get_file(self, key: str, local_path: Path) -> Path:
        """Download ``key`` to ``local_path`` (through a temporary file in the same folder).

        Raises:
            FileNotFoundError: no object at ``key`` (message names the store and key).
            StoreError: the server refuses or is unreachable (endpoint and bucket named).
        """
        if self.stat(key) is None:
            raise FileNotFoundError(f"{self._where()}: no object {key!r}")
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local_path.parent, prefix=f".{local_path.name}.", suffix=".part")
        os.close(fd)
        try:
            self._call(f"download {key!r}", self._client.fget_object, self.bucket, self._name(key), tmp)
            os.replace(tmp, local_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return local_path

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, etag and modification time of ``key``; ``None`` when there is no such object.

        Raises:
            StoreError: the server refuses or is unreachable, or the bucket does not exist.
        """
        from minio.error import S3Error

        def head():
            try:
                return self._client.stat_object(self.bucket, self._name(key))
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                    return None
                raise

        obj = self._call(f"stat {key!r}", head)
        if obj is None:
            return None
        return ObjectInfo(key=key, size=int(obj.size or 0), etag=(obj.etag or None),
                          modified=obj.last_modified.timestamp() if obj.last_modified else 0.0)

    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``.

        Raises:
            StoreError: the server refuses or is unreachable, or the bucket does not exist.
        """
        return self.stat(key) is not None

    def objects(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects below ``prefix`` (keys relative to the store's prefix), sorted by key.

        Raises:
            StoreError: the server refuses or is unreachable, or the bucket does not exist.
        """
        base = self._name(prefix) if prefix else self.prefix
        if base and self.prefix and not prefix:
            base += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0

        def listing() -> list[ObjectInfo]:
            return [
                ObjectInfo(key=o.object_name[strip:], size=int(o.size or 0), etag=(o.etag or "").strip('"') or None,
                           modified=o.last_modified.timestamp() if o.last_modified else 0.0)
                for o in self._client.list_objects(self.bucket, prefix=base or None, recursive=True)
                if not o.is_dir
            ]

        return sorted(self._call(f"list {prefix!r}", listing), key=lambda info: info.key)

    def list(self, prefix: str = "") -> list[str]:
        """Keys below ``prefix`` (relative to the store's prefix), sorted.

        Raises:
            StoreError: the server refuses or is unreachable, or the bucket does not exist.
        """
        return [info.key for info in self.objects(prefix)]

    def delete(self, key: str) -> None:
        """Remove the object at ``key`` (S3 succeeds when there is none).

        Raises:
            StoreError: the server refuses or is unreachable, or the bucket does not exist.
        """
        self._call(f"delete {key!r}", self._client.remove_object, self.bucket, self._name(key))


class _SizeMismatch(Exception):
    """An upload whose object size differs from the local file (retried)."""
