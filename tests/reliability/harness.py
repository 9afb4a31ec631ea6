"""The catalogue of bad inputs and mistakes: run a console tool as a user would and classify what happened.

Every case runs one evdet command in a subprocess (``python -m <module>``, so the same case can be run against
another source tree by pointing ``EVDET_SRC_ROOT`` at it, e.g. an earlier commit, to measure "before"), snapshots the
files it must not touch, and classifies the outcome:

* ``clear_error``: the expected non-zero exit code, one line on stderr naming the expected file / key / flag, no
  traceback, nothing changed;
* ``traceback``: a Python traceback on stderr;
* ``silent``: exit 0 although the input was wrong;
* ``data_loss``: a file that existed before changed or disappeared;
* ``unclear``: failed, but not with one line naming what it should name.

``check`` asserts ``clear_error``; every outcome is recorded and, with ``EVDET_RELIABILITY_REPORT=FILE``, written as
JSON lines at the end of the session (the closing note's table).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Console script -> module run with ``python -m``.
MODULES = {
    "evdet-data": "evdet.data.cli",
    "evdet-train": "evdet.model.cli.train",
    "evdet-model": "evdet.model.cli.model",
    "evdet-detect": "evdet.model.cli.detect",
    "evdet-eval": "evdet.eval.cli",
    "evdet-bench": "evdet.model.bench",
}

OUTCOMES: list[dict] = []


@dataclass
class Outcome:
    """What one command did: exit code, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Case:
    """One catalogue entry.

    Attributes:
        name: short id, e.g. ``predict-over-earlier-detections``.
        argv: the console script and its arguments, e.g. ``["evdet-model", "predict", ...]``.
        expect_rc: the exit code a clear refusal uses (2 for input errors, 130 for Ctrl-C, 143 for SIGTERM).
        names: strings the one-line message must contain (the file, key or flag, and what was expected).
        protect: files or folders whose content must not change.
        env: extra environment variables.
        cwd: working directory.
    """

    name: str
    argv: list[str]
    expect_rc: int = 2
    names: list[str] = field(default_factory=list)
    protect: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout_s: float = 900.0


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This interpreter's environment; with ``EVDET_SRC_ROOT`` the packages come from that source tree."""
    env = dict(os.environ)
    src_root = env.get("EVDET_SRC_ROOT")
    if src_root:
        paths = [str(Path(src_root) / "packages" / p / "src") for p in ("data", "eval", "model")]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def run_cli(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout_s: float = 900.0) -> Outcome:
    """Run ``argv`` (console script name first) as ``python -m <module> ...`` and capture its output."""
    module = MODULES[argv[0]]
    proc = subprocess.run([sys.executable, "-m", module, *[str(a) for a in argv[1:]]], capture_output=True,
                          text=True, env=python_env(env), cwd=cwd, timeout=timeout_s)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def snapshot(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file at or below ``paths`` (missing paths are recorded as missing)."""
    digests: dict[str, str] = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() \
            else []
        if not root.exists():
            digests[str(root)] = "<missing>"
        for path in files:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def classify(case: Case, outcome: Outcome, before: dict[str, str], after: dict[str, str]) -> str:
    """One of ``clear_error``, ``traceback``, ``silent``, ``data_loss``, ``unclear`` (module docstring)."""
    changed = [p for p, d in before.items() if after.get(p) != d]
    if changed:
        return "data_loss"
    if "Traceback (most recent call last)" in outcome.stderr:
        return "traceback"
    if outcome.returncode == 0:
        return "silent"
    message = [line for line in outcome.stderr.strip().splitlines() if line.strip()]
    ok = (outcome.returncode == case.expect_rc and message and all(n in message[-1] for n in case.names))
    return "clear_error" if ok else "unclear"


def check(case: Case) -> Outcome:
    """Run ``case``, record its classification and assert it is a clear error."""
    before = snapshot(case.protect)
    outcome = run_cli(case.argv, env=case.env, cwd=case.cwd, timeout_s=case.timeout_s)
    after = snapshot(case.protect)
    kind = classify(case, outcome, before, after)
    last = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else ""
    OUTCOMES.append({"case": case.name, "outcome": kind, "returncode": outcome.returncode, "message": last[:300]})
    assert kind == "clear_error", (
        f"{case.name}: {kind} (exit {outcome.returncode}, expected {case.expect_rc} naming {case.names})\n"
        f"stderr tail:\n{outcome.stderr[-2000:]}\nstdout tail:\n{outcome.stdout[-1000:]}")
    return outcome
