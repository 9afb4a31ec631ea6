"""Pipeline of the comparison report: the newest run of each experiment in the store, side by side.

One step, ``compare_report`` (``evdet-report compare --store STORE --experiments A,B,C``, in the evdet-eval image with
the MinIO credentials of the other steps). Parameters (all overridable at submission):

- ``store_uri``: the store the experiment pipelines wrote to (``s3://bucket/prefix``; runs under
  ``experiments/<experiment>/<run_id>/``, each evaluated);
- ``experiments``: the experiment names to compare (the newest run of each);
- ``baseline``: the experiment (or ``<experiment>/<run_id>``) the deltas are taken against (empty: the first);
- ``reports_prefix``: the report is also copied to ``<store_uri>/<reports_prefix>/compare-<UTC time>/``
  (``compare.md``, ``compare.html``, ``figures/``); empty: only the artifacts.

Outputs: the ``report`` artifact (the folder) and the ``page`` HTML artifact (``compare.html``, self-contained, shown
in the Kubeflow UI).

Compile: ``kfp dsl compile --py pipelines/compare.py --output compare.yaml``. Submit: ``python pipelines/submit.py
compare --host HOST --arg store_uri=s3://evdet --arg 'experiments=["plain_lstm_640x360_baseline","rvt_b"]'``.
"""

from kfp import dsl

from pipeline_builder import _storage_access
from pipeline_components import compare_report

__all__ = ["compare"]


@dsl.pipeline(name="evdet-compare", description="Comparison report of the newest run of each experiment in a store")
def compare(
    store_uri: str,
    experiments: list,
    baseline: str = "",
    reports_prefix: str = "reports",
):
    report = compare_report(store_uri=store_uri, experiments=experiments, baseline=baseline,
                            reports_prefix=reports_prefix).set_display_name("compare-report")
    _storage_access(report)
