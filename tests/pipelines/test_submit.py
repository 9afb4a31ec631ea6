"""make submit's script: argument parsing and a clear error for an unreachable KFP API."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pipelines"))
from submit import parse_args  # noqa: E402


def test_parse_args_json_and_strings():
    assert parse_args(["raw_data_uri=s3://evdet/raw", 'overrides=["a=1"]', "downsample=false"]) == {
        "raw_data_uri": "s3://evdet/raw", "overrides": ["a=1"], "downsample": False}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_args(["novalue"])


def test_unreachable_host_is_one_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the with-block ends: nothing listens there
    host = f"http://127.0.0.1:{port}"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "submit.py"), "plain_lstm_baseline", "--host", host,
         "--arg", "raw_data_uri=s3://evdet/raw", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert host in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "plain_lstm_baseline.yaml").is_file()  # compiled before submitting
