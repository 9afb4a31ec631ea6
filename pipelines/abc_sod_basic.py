"""Pipeline of the experiment ``ABC_sod_basic_100k`` (name and description from its config).

Laptop run: ``python pipelines/run_local.py abc_sod_basic``.
"""

from pipeline_builder import build_pipeline

abc_sod_basic = build_pipeline("ABC_sod_basic_100k")
