"""Fixtures of the reference-protocol tests: the folder named by ``EVDET_REFERENCE_FIXTURES`` (default: the copy in
``tests/fixtures/reference-protocol``), its ``manifest.json`` and ``.npz`` files.

Every expected value comes from these files; the tests hold no number of their own, so they pass unchanged on any
fixture set of the same layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES_ENV = "EVDET_REFERENCE_FIXTURES"
DEFAULT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference-protocol"


def fixtures_dir() -> Path:
    """The fixture folder: ``$EVDET_REFERENCE_FIXTURES`` or the repository copy."""
    return Path(os.environ.get(FIXTURES_ENV) or DEFAULT_FIXTURES)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    path = fixtures_dir()
    if not (path / "manifest.json").is_file():
        pytest.fail(f"{FIXTURES_ENV}={path}: no manifest.json (expected a reference-protocol fixture folder)")
    return path


@pytest.fixture(scope="session")
def manifest(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def load_npz(reference_dir: Path):
    """``load_npz("histograms.npz")`` -> dict of arrays (no pickles), cached per session."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def load(name: str) -> dict[str, np.ndarray]:
        if name not in cache:
            with np.load(reference_dir / name, allow_pickle=False) as f:
                cache[name] = {k: f[k] for k in f.files}
        return cache[name]

    return load


@pytest.fixture(scope="session")
def reference_model(manifest: dict, reference_dir: Path):
    """``reference_model()`` -> a new evdet RVT built from the manifest's RVT model config with the fixture's RVT
    weights imported (``evdet.model.training.rvt_import``); the caller sets train or eval mode."""
    from evdet.model.config import compose_config, to_container
    from evdet.model.nn.detector import build_detector
    from evdet.model.training.rvt_import import import_rvt_weights, rvt_model_config_to_overrides

    weights = "rvt_tiny_weights.pt"

    def build():
        model_config = manifest["files"][weights]["model_config"]
        cfg = to_container(compose_config(rvt_model_config_to_overrides(model_config)))
        ds = cfg["dataset"]
        model = build_detector(cfg["model"], int(ds["num_classes"]), int(ds["in_channels"]), include_aux=False)
        import_rvt_weights(model, reference_dir / weights)
        return model

    return build


_MEASURED: dict[str, float] = {}


@pytest.fixture
def measured():
    """``measured(name, value)`` records a comparison figure (a max difference, a count); all figures are printed as
    one JSON line at the end of the run and written to ``$EVDET_REFERENCE_REPORT`` when that is set."""

    def record(name: str, value: float) -> None:
        _MEASURED[name] = float(value)

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not _MEASURED:
        return
    line = json.dumps(dict(sorted(_MEASURED.items())))
    terminalreporter.write_line(f"reference-protocol comparisons ({fixtures_dir()}): {line}")
    report = os.environ.get("EVDET_REFERENCE_REPORT")
    if report:
        Path(report).write_text(line + "\n")
