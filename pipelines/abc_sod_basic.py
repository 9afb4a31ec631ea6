"""Pipeline of the experiment ``ABC_sod_basic_100k``: 4-scale PAFPN, ABC head (auxiliary small-object head on P1-P2), size-aware main loss.

Compile: ``kfp dsl compile --py pipelines/abc_sod_basic.py --output abc_sod_basic.yaml``.
Run on a laptop: ``python pipelines/run_local.py abc_sod_basic``.
"""

from pipeline_builder import build_pipeline

EXPERIMENT = "ABC_sod_basic_100k"

abc_sod_basic = build_pipeline(
    experiment=EXPERIMENT,
    pipeline_name="evdet-abc-sod-basic",
    description="4-scale PAFPN, ABC head (auxiliary small-object head on P1-P2), size-aware main loss: preprocess -> train -> evaluate -> detect",
)
