"""MLOps callbacks and loggers of a training run: Prometheus metrics, checkpoint upload to the store, progress lines
for ``kubectl logs``, experiment loggers, run records for the report and the data-parallel weight check.

Modules:

- :mod:`evdet.model.mlops.prometheus_metrics`: Prometheus exporter + Pushgateway callback.
- :mod:`evdet.model.mlops.checkpoint_upload`: checkpoint upload to the store while training.
- :mod:`evdet.model.mlops.progress_log`: progress lines for non-terminal logs.
- :mod:`evdet.model.mlops.experiment_loggers`: CSV and Weights & Biases loggers.
- :mod:`evdet.model.mlops.run_records`: run.json summaries, perf/* columns, validation confusion matrices.
- :mod:`evdet.model.mlops.ddp_checks`: same weights on every rank after training.

The public names below are imported on first use (PEP 562), so importing one module of this package does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PrometheusMetricsCallback": "prometheus_metrics",
    "build_metrics_callbacks": "prometheus_metrics",
    "CheckpointUploader": "checkpoint_upload",
    "LogLineProgress": "progress_log",
    "build_loggers": "experiment_loggers",
    "PerfRecorder": "run_records",
    "ValidationConfusionWriter": "run_records",
    "WeightConsistencyCheck": "ddp_checks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public name ``name`` from its module (PEP 562).

    Raises:
        AttributeError: ``name`` is not one of ``__all__``.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
