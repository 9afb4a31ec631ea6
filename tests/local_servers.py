"""Helpers for the real servers the tests start on 127.0.0.1 (S3 gateway, Prometheus, Pushgateway)."""

import socket
import subprocess


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (bound to 0 and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate a server process, killing it if it has not exited after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
