"""A real S3 server on 127.0.0.1 for the storage tests: the JuiceFS S3 gateway (MinIO's gateway code) over a local
file-backed JuiceFS volume with SQLite metadata (:mod:`storage.s3_gateway`). No S3 mocks."""

from __future__ import annotations

import pytest

from storage.s3_gateway import ACCESS_KEY, SECRET_KEY, Gateway, GatewayError, S3Server

__all__ = ["ACCESS_KEY", "SECRET_KEY", "S3Server", "s3_server", "s3_env"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """Start ``juicefs gateway --multi-buckets`` on a free port; stopped at the end of the session."""
    try:
        gateway = Gateway(tmp_path_factory.mktemp("juicefs"))
        server = gateway.start()
    except GatewayError as exc:
        pytest.fail(str(exc))
    yield server
    gateway.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path) -> S3Server:
    """Point evdet at the gateway through the environment (as a pod would) with a per-test cache directory."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EVDET_CACHE_DIR", str(tmp_path / "cache"))
    return s3_server
