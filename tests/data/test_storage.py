"""The local store behind the storage interface (s3:// comes with the MinIO work)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evdet.data.storage import LocalStore, open_store, put_path, run_prefix


def test_put_get_list_round_trip(tmp_path):
    store = open_store(tmp_path / "store")
    src = tmp_path / "a.txt"
    src.write_text("hello")
    uri = store.put_file(src, "experiments/e/r/a.txt")
    assert Path(uri).read_text() == "hello"
    assert store.exists("experiments/e/r/a.txt") and not store.exists("experiments/e/r/b.txt")
    assert store.list("experiments") == ["experiments/e/r/a.txt"]
    back = store.get_file("experiments/e/r/a.txt", tmp_path / "back.txt")
    assert back.read_text() == "hello"
    assert run_prefix("e", "r") == "experiments/e/r"


def test_file_uri_and_tree_upload(tmp_path):
    store = open_store(f"file://{tmp_path / 's'}")
    assert isinstance(store, LocalStore)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "x.npy").write_bytes(b"1")
    (tree / "sub" / "y.png").write_bytes(b"2")
    written = put_path(store, tree, "run/detect")
    assert len(written) == 2
    assert store.list("run") == ["run/detect/sub/y.png", "run/detect/x.npy"]


def test_overwrite_replaces_atomically_and_errors_name_the_key(tmp_path):
    store = LocalStore(tmp_path)
    f = tmp_path / "f"
    f.write_text("1")
    store.put_file(f, "k/v")
    f.write_text("2")
    store.put_file(f, "k/v")
    assert (tmp_path / "k" / "v").read_text() == "2"
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(FileNotFoundError, match="'k/missing'"):
        store.get_file("k/missing", tmp_path / "out")
    with pytest.raises(ValueError, match="'../escape'"):
        store.put_file(f, "../escape")
    with pytest.raises(ValueError, match="unsupported scheme 'gs'"):
        open_store("gs://bucket/prefix")


def test_cli_store_put(tmp_path):
    f = tmp_path / "r.json"
    f.write_text("{}")
    cli = Path(sys.executable).parent / "evdet-data"
    proc = subprocess.run([str(cli), "store", "put", "--store", str(tmp_path / "s"), str(f), "a/r.json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["written"] == [str((tmp_path / "s" / "a" / "r.json").resolve())]
    bad = subprocess.run([str(cli), "store", "put", "--store", str(tmp_path / "s"), str(tmp_path / "nope"), "k"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr


# ---------------------------------------------------------------------------------------------------------------
# Secret masking (evdet.data.s3_credentials): whole tokens, never partial, short secrets refused at load time.

SECRET = "s3cr3t-Pa55word/+x"


@pytest.mark.parametrize(("text", "expected"), [
    (f"key {SECRET} end", "key *** end"),
    (f"wrong-{SECRET}.bak, next", "***, next"),  # a token holding the secret goes as a whole: no contrast
    (f"http://user:{SECRET}@host:9000/b", "http://user:***@host:9000/b"),
    (f"'{SECRET}' and \"{SECRET}\"", "'***' and \"***\""),
    (f"MINIO_SECRET_KEY={SECRET}", "MINIO_SECRET_KEY=***"),
    ("s3cr3t-Pa55word%2F%2Bx in a URL", "*** in a URL"),  # the percent-encoded form too
    ("nothing secret here: s3cr3t-Pa55", "nothing secret here: s3cr3t-Pa55"),  # other tokens untouched
])
def test_mask_replaces_whole_tokens_holding_the_secret(text, expected):
    from evdet.data.s3_credentials import mask_secret

    assert mask_secret(text, SECRET) == expected


def test_short_secret_never_garbles_words_and_is_refused_at_load(tmp_path):
    from evdet.data.s3_credentials import CredentialsError, S3Credentials, load_s3_credentials, mask_secret

    # Only possible through mask_secret directly: a short secret masks only tokens equal to it.
    assert mask_secret("table ab cab (ab) abab", "ab") == "table *** cab (***) abab"
    env = {"MINIO_ENDPOINT": "127.0.0.1:9000", "MINIO_ACCESS_KEY": "user", "MINIO_SECRET_KEY": "ab",
           "MINIO_CREDENTIALS_DIR": str(tmp_path / "none")}
    with pytest.raises(CredentialsError) as info:
        load_s3_credentials(env)
    assert "environment variable MINIO_SECRET_KEY" in str(info.value) and "shorter than 8" in str(info.value)
    assert " ab" not in str(info.value) and "'ab'" not in str(info.value)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "secret-key").write_text("Zq81x\n")
    with pytest.raises(CredentialsError, match="Secret file .*secret-key is shorter than 8") as info:
        load_s3_credentials({**env, "MINIO_SECRET_KEY": "", "MINIO_CREDENTIALS_DIR": str(tmp_path / "secret")})
    assert "Zq81x" not in str(info.value)
    with pytest.raises(CredentialsError, match="shorter than 8"):
        S3Credentials("127.0.0.1:9000", "user", "short")
    assert S3Credentials("h:1", "user", SECRET).mask(f"x {SECRET}") == "x ***"


def test_retry_warnings_and_errors_mask_library_texts(caplog):
    """A transient failure whose text carries the secret (as a library might print it): the backoff warning and
    the final StoreError show *** in place of the whole token, never the secret or a part of it."""
    import logging

    from evdet.data.s3_credentials import S3Credentials
    from evdet.data.storage import S3Store, StoreError

    caplog.set_level(logging.WARNING, logger="evdet.data.storage")
    store = S3Store("bucket", "", S3Credentials("127.0.0.1:9", "user", SECRET), retries=2, backoff_s=0.0)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        raise ConnectionResetError(f"reset while signing with secret={SECRET} (attempt {len(calls)})")

    with pytest.raises(StoreError) as info:
        store._call("stat 'k'", flaky)
    assert len(calls) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("retry" in w and "secret=***" in w for w in warnings), warnings
    assert "ConnectionResetError" in warnings[0]
    for text in (*warnings, str(info.value)):
        assert SECRET not in text and "s3cr3t" not in text and "Pa55word" not in text, text
