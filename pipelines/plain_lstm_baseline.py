"""Pipeline of the experiment ``plain_lstm_640x360_baseline`` (name and description from its config).

Laptop run: ``make run``.
"""

from pipeline_builder import build_pipeline

plain_lstm_baseline = build_pipeline("plain_lstm_640x360_baseline")
