"""MLOps callbacks and loggers of a training run: Prometheus metrics, checkpoint upload to the store, progress lines
for ``kubectl logs``, experiment loggers, run records for the report and the data-parallel weight check.

Modules:

- :mod:`evdet.model.mlops.prometheus_metrics`: Prometheus exporter + Pushgateway callback.
- :mod:`evdet.model.mlops.checkpoint_upload`: checkpoint upload to the store while training.
- :mod:`evdet.model.mlops.progress_log`: progress lines for non-terminal logs.
- :mod:`evdet.model.mlops.experiment_loggers`: CSV and Weights & Biases loggers.
- :mod:`evdet.model.mlops.run_records`: run.json summaries, perf/* columns, validation confusion matrices.
- :mod:`evdet.model.mlops.ddp_checks`: same weights on every rank after training.

The public names below load their module on first use (``lazy_loader``, SPEC 1), so importing one module of this
package does not import the others.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "prometheus_metrics": ["PrometheusMetricsCallback", "build_metrics_callbacks"],
        "checkpoint_upload": ["CheckpointUploader"],
        "progress_log": ["LogLineProgress"],
        "experiment_loggers": ["build_loggers"],
        "run_records": ["PerfRecorder", "ValidationConfusionWriter"],
        "ddp_checks": ["WeightConsistencyCheck"],
    },
)
