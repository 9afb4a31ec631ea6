"""Pipeline of the experiment ``patch2_sizeaware_100k`` (name and description from its config).

Laptop run: ``python pipelines/run_local.py patch2_sizeaware``.
"""

from pipeline_builder import build_pipeline

patch2_sizeaware = build_pipeline("patch2_sizeaware_100k")
