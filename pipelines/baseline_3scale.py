"""Pipeline of the experiment ``baseline_3scale``: RVT-B with the default DWSConvLSTM2d cell (dws_conv off), 3-scale PAFPN.

Compile: ``kfp dsl compile --py pipelines/baseline_3scale.py --output baseline_3scale.yaml``.
Run on a laptop: ``python pipelines/run_local.py baseline_3scale``.
"""

from pipeline_builder import build_pipeline

EXPERIMENT = "baseline_3scale"

baseline_3scale = build_pipeline(
    experiment=EXPERIMENT,
    pipeline_name="evdet-baseline-3scale",
    description="RVT-B with the default DWSConvLSTM2d cell (dws_conv off), 3-scale PAFPN: preprocess -> train -> evaluate -> detect",
)
