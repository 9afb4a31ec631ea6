"""Pipeline of the experiment ``baseline_3scale`` (name and description from its config).

Laptop run: ``python pipelines/run_local.py baseline_3scale``.
"""

from pipeline_builder import build_pipeline

baseline_3scale = build_pipeline("baseline_3scale")
