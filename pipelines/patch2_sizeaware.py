"""Pipeline of the experiment ``patch2_sizeaware_100k``: Stem patch 2, 3-scale PAFPN, size-aware YOLOX loss.

Compile: ``kfp dsl compile --py pipelines/patch2_sizeaware.py --output patch2_sizeaware.yaml``.
Run on a laptop: ``python pipelines/run_local.py patch2_sizeaware``.
"""

from pipeline_builder import build_pipeline

EXPERIMENT = "patch2_sizeaware_100k"

patch2_sizeaware = build_pipeline(
    experiment=EXPERIMENT,
    pipeline_name="evdet-patch2-sizeaware",
    description="Stem patch 2, 3-scale PAFPN, size-aware YOLOX loss: preprocess -> train -> evaluate -> detect",
)
