"""Pipeline of the team's plain 1x1 LSTM baseline (experiment ``plain_lstm_640x360_baseline``).

Compile: ``kfp dsl compile --py pipelines/plain_lstm_baseline.py --output plain_lstm_baseline.yaml``.
Run on a laptop: ``make run`` (``pipelines/run_local.py``).
"""

from pipeline_builder import build_pipeline

EXPERIMENT = "plain_lstm_640x360_baseline"

plain_lstm_baseline = build_pipeline(
    experiment=EXPERIMENT,
    pipeline_name="evdet-plain-lstm-baseline",
    description="RVT-B with PlainLSTM2d cells, 3-scale PAFPN, 640x360: preprocess -> train -> evaluate -> detect",
)
