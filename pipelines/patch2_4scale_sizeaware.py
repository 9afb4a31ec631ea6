"""Pipeline of the experiment ``patch2_4scale_sizeaware_200k`` (name and description from its config).

Laptop run: ``python pipelines/run_local.py patch2_4scale_sizeaware``.
"""

from pipeline_builder import build_pipeline

patch2_4scale_sizeaware = build_pipeline("patch2_4scale_sizeaware_200k")
