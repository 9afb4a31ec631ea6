"""Pipeline of the experiment ``patch2_4scale_sizeaware_200k``: Stem patch 2, 4-scale PAFPN (P1-P4), size-aware YOLOX loss, 200k steps.

Compile: ``kfp dsl compile --py pipelines/patch2_4scale_sizeaware.py --output patch2_4scale_sizeaware.yaml``.
Run on a laptop: ``python pipelines/run_local.py patch2_4scale_sizeaware``.
"""

from pipeline_builder import build_pipeline

EXPERIMENT = "patch2_4scale_sizeaware_200k"

patch2_4scale_sizeaware = build_pipeline(
    experiment=EXPERIMENT,
    pipeline_name="evdet-patch2-4scale-sizeaware",
    description="Stem patch 2, 4-scale PAFPN (P1-P4), size-aware YOLOX loss, 200k steps: preprocess -> train -> evaluate -> detect",
)
