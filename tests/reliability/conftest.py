"""Writes the recorded outcomes of the reliability catalogue to ``$EVDET_RELIABILITY_REPORT`` (JSON lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reliability.harness import OUTCOMES


def pytest_terminal_summary(terminalreporter) -> None:
    if not OUTCOMES:
        return
    counts: dict[str, int] = {}
    for row in OUTCOMES:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    terminalreporter.write_line(f"reliability catalogue: {len(OUTCOMES)} cases {json.dumps(counts, sort_keys=True)}")
    report = os.environ.get("EVDET_RELIABILITY_REPORT")
    if report:
        Path(report).write_text("".join(json.dumps(row) + "\n" for row in OUTCOMES))
