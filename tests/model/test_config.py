"""Hydra configuration: experiment values, struct mode, seed-style command lines, the local profile."""

import pytest
from hydra.errors import ConfigCompositionException

from evdet.model.config import compose_config, list_experiments, normalize_overrides


def test_baseline_experiment_carries_published_values():
    cfg = compose_config(["+experiment=plain_lstm_640x360_baseline", "dataset.path=/data/shards"])
    assert cfg.experiment_name == "plain_lstm_640x360_baseline"
    assert cfg.model.backbone.embed_dim == 64 and cfg.model.size == "base"
    assert cfg.model.backbone.lstm_cell == "PlainLSTM2d"
    assert list(cfg.model.fpn.in_stages) == [2, 3, 4]
    assert cfg.dataset.num_classes == 8 and (cfg.dataset.width, cfg.dataset.height) == (640, 360)
    assert (cfg.batch_size.train, cfg.batch_size.eval) == (6, 2)
    assert cfg.training.max_steps == 100_000 and cfg.training.learning_rate == pytest.approx(3.5e-5)
    assert cfg.dataset.sampling == "stream" and cfg.hardware.precision == "16-mixed"
    assert cfg.validation.confidence_threshold == pytest.approx(0.001)
    assert cfg.validation.nms_threshold == pytest.approx(0.65)


def test_seed_style_overrides_apply():
    cfg = compose_config(
        ["+experiment=plain_lstm_640x360_baseline", "dataset.path=/x", "batch_size.train=6", "training.max_steps=7"]
    )
    assert cfg.training.max_steps == 7 and cfg.dataset.path == "/x"


def test_local_profile_applies_after_the_experiment():
    cfg = compose_config(["+experiment=plain_lstm_640x360_baseline", "profile=local"])
    assert cfg.model.backbone.lstm_cell == "PlainLSTM2d"  # experiment structure kept
    assert cfg.model.backbone.embed_dim < 64 and cfg.training.max_steps < 1000
    assert cfg.hardware.accelerator == "cpu"


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigCompositionException, match="training.max_stepz"):
        compose_config(["training.max_stepz=3"])
    cfg = compose_config([])
    with pytest.raises(Exception, match="no_such_key"):
        _ = cfg.training.no_such_key


def test_unknown_experiment_is_an_error():
    with pytest.raises(ConfigCompositionException, match="no_such_experiment"):
        compose_config(["+experiment=no_such_experiment"])


def test_normalize_overrides_and_listing():
    assert normalize_overrides(["+experiment=a", "x=1", "++experiment=b"]) == ["experiment=a", "x=1", "experiment=b"]
    assert "plain_lstm_640x360_baseline" in list_experiments()


def test_run_id_is_fixed_once():
    cfg = compose_config([])
    assert cfg.run_id == cfg.run_id and "$" not in cfg.run_id
    assert cfg.output.dir.endswith(cfg.run_id)
