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
