"""S3Store against the real JuiceFS S3 gateway: round trips, multipart, tree upload, caching, CLI and errors."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from evdet.data.s3_credentials import CredentialsError, S3Credentials, load_s3_credentials
from evdet.data.storage import S3Store, StoreError, download_prefix, fetch_file, open_store, put_path

from .conftest import ACCESS_KEY, SECRET_KEY

CLI = Path(sys.executable).parent / "evdet-data"


def test_put_get_list_exists_round_trip_with_multipart(s3_env, tmp_path):
    bucket = s3_env.make_bucket("roundtrip")
    store = S3Store(bucket, "runs", part_size=5 * 1024 * 1024)
    assert isinstance(open_store(f"s3://{bucket}/runs"), S3Store)
    big = tmp_path / "big.bin"
    payload = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB: three 5 MiB parts
    big.write_bytes(payload)
    small = tmp_path / "a.json"
    small.write_text('{"AP": 0.25}')
    assert store.put_file(big, "e/r/big.bin") == f"s3://{bucket}/runs/e/r/big.bin"
    store.put_file(small, "e/r/a.json")
    assert store.exists("e/r/big.bin") and not store.exists("e/r/missing")
    assert store.list("e/") == ["e/r/a.json", "e/r/big.bin"]
    assert store.stat("e/r/big.bin").size == len(payload)
    back = store.get_file("e/r/big.bin", tmp_path / "back" / "big.bin")
    assert back.read_bytes() == payload
    assert not list((tmp_path / "back").glob("*.part"))
    store.delete("e/r/a.json")
    assert store.list("e") == ["e/r/big.bin"]
    with pytest.raises(FileNotFoundError, match="'e/r/a.json'"):
        store.get_file("e/r/a.json", tmp_path / "x")


def test_tree_upload_and_cached_prefix_download(s3_env, tmp_path):
    bucket = s3_env.make_bucket("trees")
    tree = tmp_path / "shards"
    (tree / "train").mkdir(parents=True)
    (tree / "train" / "a.h5").write_bytes(b"1" * 100)
    (tree / "val").mkdir()
    (tree / "val" / "b.h5").write_bytes(b"2" * 50)
    store = open_store(f"s3://{bucket}")
    assert put_path(store, tree, "data/shards") == [f"s3://{bucket}/data/shards/train/a.h5",
                                                    f"s3://{bucket}/data/shards/val/b.h5"]
    local = tmp_path / "cache"
    assert download_prefix(store, "data/shards", local) == {"downloaded": 2, "skipped": 0}
    assert (local / "train" / "a.h5").read_bytes() == b"1" * 100
    assert download_prefix(store, "data/shards", local) == {"downloaded": 0, "skipped": 2}
    (local / "val" / "b.h5").write_bytes(b"short")  # a damaged cache entry is fetched again
    assert download_prefix(store, "data/shards/", local) == {"downloaded": 1, "skipped": 1}
    with pytest.raises(StoreError, match="no objects under 'nothing'"):
        download_prefix(store, "nothing", local)
    fetched = fetch_file(f"s3://{bucket}/data/shards/val/b.h5")
    assert fetched.read_bytes() == b"2" * 50 and str(fetched).startswith(str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nope"):
        fetch_file(f"s3://{bucket}/nope")


def test_credentials_from_env_or_secret_files_and_masked(tmp_path):
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "endpoint").write_text("https://minio.evdet.svc:9000\n")
    (secret_dir / "access-key").write_text("user\n")
    (secret_dir / "secret-key").write_text("topsecret\n")
    creds = load_s3_credentials({"MINIO_CREDENTIALS_DIR": str(secret_dir)})
    assert (creds.endpoint, creds.access_key, creds.secret_key, creds.secure) == (
        "minio.evdet.svc:9000", "user", "topsecret", True)
    assert "topsecret" not in repr(creds) and "topsecret" not in str(creds) and "***" in repr(creds)
    env = {"MINIO_CREDENTIALS_DIR": str(secret_dir), "MINIO_ENDPOINT": "127.0.0.1:9", "MINIO_SECURE": "false"}
    assert load_s3_credentials(env).endpoint_url == "http://127.0.0.1:9"
    with pytest.raises(CredentialsError, match="MINIO_SECURE='maybe'"):
        load_s3_credentials({**env, "MINIO_SECURE": "maybe"})
    with pytest.raises(CredentialsError, match="MINIO_SECRET_KEY"):
        load_s3_credentials({"MINIO_ENDPOINT": "h:1", "MINIO_ACCESS_KEY": "a",
                             "MINIO_CREDENTIALS_DIR": str(tmp_path / "none")})
    with pytest.raises(StoreError, match="expected host:port"):
        load_s3_credentials({**env, "MINIO_ENDPOINT": "ftp://h:1"})


def _assert_one_clear_error(exc_info, endpoint, bucket, caplog, *needles):
    text = str(exc_info.value)
    assert f"endpoint http://{endpoint}" in text and f"bucket '{bucket}'" in text, text
    for needle in needles:
        assert needle in text, text
    assert SECRET_KEY not in text and SECRET_KEY not in caplog.text
    assert "\n" not in text


def test_wrong_secret_unreachable_endpoint_and_missing_bucket(s3_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bucket = s3_env.make_bucket("errors")
    f = tmp_path / "f.txt"
    f.write_text("x")
    wrong = S3Credentials(s3_env.endpoint, ACCESS_KEY, SECRET_KEY + "-wrong", secure=False)
    with pytest.raises(StoreError) as exc_info:
        S3Store(bucket, "p", wrong, retries=0).put_file(f, "k")
    _assert_one_clear_error(exc_info, s3_env.endpoint, bucket, caplog, "credentials rejected")

    closed = f"127.0.0.1:{_closed_port()}"
    unreachable = S3Credentials(closed, ACCESS_KEY, SECRET_KEY, secure=False)
    with pytest.raises(StoreError) as exc_info:
        S3Store(bucket, "", unreachable, retries=1, backoff_s=0.01).check()
    _assert_one_clear_error(exc_info, closed, bucket, caplog, "endpoint unreachable")

    with pytest.raises(StoreError) as exc_info:
        S3Store("no-such-bucket").put_file(f, "k")
    _assert_one_clear_error(exc_info, s3_env.endpoint, "no-such-bucket", caplog, "does not exist")
    with pytest.raises(StoreError) as exc_info:
        S3Store("no-such-bucket").check()
    _assert_one_clear_error(exc_info, s3_env.endpoint, "no-such-bucket", caplog, "does not exist")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_cli_put_ls_get_and_one_line_error(s3_env, tmp_path):
    import os

    bucket = s3_env.make_bucket("cli")
    f = tmp_path / "experiment_results.json"
    f.write_text("{}")
    env = dict(os.environ)
    run = lambda *a, e=env: subprocess.run([str(CLI), "store", *a], capture_output=True, text=True, env=e)  # noqa: E731
    put = run("put", "--store", f"s3://{bucket}/x", str(f), "e/r/experiment_results.json")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["written"] == [f"s3://{bucket}/x/e/r/experiment_results.json"]
    ls = run("ls", "--store", f"s3://{bucket}/x", "e/")
    assert json.loads(ls.stdout)["objects"] == [{"key": "e/r/experiment_results.json", "size": 2}]
    get = run("get", "--store", f"s3://{bucket}/x", "e/", str(tmp_path / "down"))
    assert get.returncode == 0 and (tmp_path / "down" / "r" / "experiment_results.json").read_text() == "{}"
    bad = run("ls", "--store", f"s3://{bucket}", e={**env, "MINIO_SECRET_KEY": "wrong-" + SECRET_KEY})
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "credentials rejected" in bad.stderr and s3_env.endpoint in bad.stderr
    assert SECRET_KEY not in bad.stderr and "Traceback" not in bad.stderr


def test_retry_warning_masks_a_secret_in_the_library_text(s3_env, tmp_path, caplog):
    """A transient failure whose exception text carries the secret, on the real gateway: the upload succeeds after
    one retry and the backoff warning shows *** for the whole token."""
    from urllib3.exceptions import ProtocolError

    caplog.set_level(logging.WARNING, logger="evdet.data.storage")
    bucket = s3_env.make_bucket("masking")
    store = S3Store(bucket, "p", retries=2, backoff_s=0.01)
    real = store._client.fput_object
    failures = []

    def flaky(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise ProtocolError(f"Connection aborted: request signed for {ACCESS_KEY}:{SECRET_KEY}")
        return real(*args, **kwargs)

    store._client.fput_object = flaky
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert store.put_file(f, "k.txt") == f"s3://{bucket}/p/k.txt"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "retry 1/2" in warnings[0] and f"{ACCESS_KEY}:***" in warnings[0], warnings
    assert SECRET_KEY not in caplog.text and "s3cr3t" not in caplog.text


def test_cli_refuses_a_short_secret_without_showing_it(s3_env):
    import os

    short = "Zq81x"
    env = {**os.environ, "MINIO_SECRET_KEY": short}
    done = subprocess.run([str(CLI), "store", "ls", "--store", "s3://anything"], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "MINIO_SECRET_KEY" in done.stderr and "shorter than 8" in done.stderr
    assert short not in done.stderr + done.stdout and "Traceback" not in done.stderr
