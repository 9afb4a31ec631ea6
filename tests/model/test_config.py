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


# ---------------------------------------------------------------------------------------------------------------
# The schema (evdet.model.config_schema) and validate_config: every shipped config passes, every mistake is one line
# naming the key, the value and what is expected.

from omegaconf import OmegaConf  # noqa: E402

from evdet.model.config import ConfigError, compose_checked, validate_config  # noqa: E402
from evdet.model.config_schema import schema_keys  # noqa: E402


def _leaf_keys(node, prefix=""):
    keys = []
    for name, value in node.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


@pytest.mark.parametrize("profile", ["full", "local"])
@pytest.mark.parametrize("dataset", ["etram", "etram_cls8_sample"])
@pytest.mark.parametrize("name", [None, *list_experiments()])
def test_every_shipped_config_passes_and_matches_the_schema_keys(name, dataset, profile):
    overrides = ([f"+experiment={name}"] if name else []) + [f"profile={profile}"]
    cfg = compose_checked(overrides, for_training=False)  # raises ConfigError on any schema problem
    if name is None:  # the dataset overrides the experiment's own choice only when given after it
        cfg = compose_checked([f"dataset={dataset}", f"profile={profile}"], for_training=False)
    composed = set(_leaf_keys(OmegaConf.to_container(cfg, resolve=True)))
    assert composed <= set(schema_keys()), f"keys not in config_schema.py: {sorted(composed - set(schema_keys()))}"
    required = set(schema_keys(include_optional=False))
    assert required <= composed, f"schema keys the config lacks: {sorted(required - composed)}"


def test_test_suite_and_model_presets_overrides_pass():
    from conftest import TINY_TRAINING

    compose_checked(["+experiment=plain_lstm_640x360_baseline", *TINY_TRAINING], for_training=False)
    for preset in ("rvt_tiny", "rvt_small", "rvt_base"):
        compose_checked([f"model={preset}"], for_training=False)
    compose_checked(["profile=local", "model.fpn.in_stages=[1,2,3,4]", "model.head.name=ABC",
                     "model.head.size_aware_loss=true", "hardware.precision=32", "hardware.devices=auto",
                     "validation.val_check_interval=null", "validation.limit_val_batches=3", "run_id=123",
                     "dataset.class_map=grouped3", "dataset.num_classes=3",
                     "dataset.small_classes=[pedestrian,micromobility]"], for_training=False)


@pytest.mark.parametrize(("overrides", "fragments"), [
    (["batch_size.train=abc"], ["batch_size.train='abc'", "expected an integer >= 1"]),
    (["batch_size.eval=-2"], ["batch_size.eval=-2", "expected an integer >= 1"]),
    (["training.max_steps=0"], ["training.max_steps=0", ">= 1"]),
    (["training.learning_rate=0"], ["training.learning_rate=0", "> 0"]),
    (["dataset.sequence_length=0"], ["dataset.sequence_length=0", ">= 1"]),
    (["validation.nms_threshold=1.5"], ["validation.nms_threshold=1.5", "in [0, 1]"]),
    (["dataset.augmentation.random.flip_p=-0.1"], ["dataset.augmentation.random.flip_p=-0.1", "in [0, 1]"]),
    (["hardware.precision=fp8"], ["hardware.precision='fp8'", "16-mixed", "bf16-mixed"]),
    (["hardware.accelerator=tpu2"], ["hardware.accelerator='tpu2'", "one of auto, cpu, gpu"]),
    (["dataset.evaluation.protocol=coco"], ["dataset.evaluation.protocol='coco'", "etram, rvt"]),
    (["dataset.class_map=coco"], ["dataset.class_map='coco'", "etram8, grouped3 or null"]),
    (["model.head.name=SSD"], ["model.head.name='SSD'", "YOLOX, ABC"]),
    (["model.backbone.lstm_cell=GRU"], ["model.backbone.lstm_cell='GRU'", "PlainLSTM2d"]),
    (["wandb.enabled=yes"], ["wandb.enabled='yes'", "true or false"]),
    (["model.backbone.dim_multiplier=[1,2,4]"], ["model.backbone.dim_multiplier=[1,2,4]", "list of 4 integers"]),
    (["dataset.num_classes=3"], ["dataset.num_classes=3", "expected 8", "dataset.class_map=null"]),
    (["+training.max_step=3"], ["training.max_step=3", "unknown key", "did you mean training.max_steps"]),
    (["+foo=1"], ["foo=1", "unknown key", "top-level keys"]),
    (["+model.backbone.embed_dimm=3"], ["model.backbone.embed_dimm=3", "did you mean model.backbone.embed_dim"]),
    (["training.max_stepz=3"], ["training.max_stepz=3", "unknown key", "did you mean training.max_steps"]),
    (["~training.max_steps"], ["training.max_steps: missing", "an integer >= 1"]),
    (["model=rvt_huge"], ["model=rvt_huge", "rvt_base, rvt_small, rvt_tiny"]),
    (["+experiment=no_such_experiment"], ["experiment=no_such_experiment", "plain_lstm_640x360_baseline"]),
    (["batch_size.train=[1,"], ["override batch_size.train=[1,"]),
    (["model.backbone.head_dim=7"], ["model.backbone.head_dim=7", "divisor"]),
    (["model.fpn.in_stages=[4,2]"], ["model.fpn.in_stages=[4,2]", "increasing"]),
    (["model.backbone.lstm_cell=PlainLSTM2d", "model.backbone.dws_conv=true"], ["model.backbone.dws_conv=true"]),
    (["model.head.medium_threshold=10"], ["model.head.medium_threshold=10", "small_threshold"]),
    (["dataset.evaluation.min_box_diag_px=10"], ["dataset.evaluation.min_box_diag_px=10", "both set or both null"]),
    (["dataset.augmentation.stream.zoom_in_weight=1"], ["dataset.augmentation.stream.zoom_in_weight", "streaming"]),
    (["model.head.name=ABC", "dataset.class_map=grouped3", "dataset.num_classes=3"],
     ["model.head.small_classes=", "not among them: bicycle"]),
    (["output.dir=${nope}"], ["output.dir", "cannot resolve", "nope"]),
])
def test_config_mistakes_are_one_line_naming_key_value_and_expectation(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        compose_checked(overrides, for_training=False)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_all_problems_are_counted_and_the_first_named():
    with pytest.raises(ConfigError) as info:
        compose_checked(["batch_size.train=abc", "+training.max_step=3"])
    assert info.value.key == "batch_size.train"  # schema order; dataset.path (locations) last
    assert str(info.value).startswith("batch_size.train='abc': expected an integer >= 1")
    assert str(info.value).endswith("(and 2 more: training.max_step, dataset.path)")
    assert len(info.value.problems) == 3


def _shards(root, names=("a.h5",)):
    (root / "train").mkdir(parents=True)
    for name in names:
        (root / "train" / name).write_bytes(b"")
    return root


@pytest.mark.parametrize(("layout", "fragments"), [
    (None, ["dataset.path is not set (???)", "evdet-data preprocess", "pass dataset.path=DIR"]),
    ("missing", ["no such folder"]),
    ("file", ["not a folder"]),
    ("empty", ["no train/ folder"]),
    ("empty-train", ["train/ holds no *.h5 shards"]),
    ("raw", ["this looks like a raw dataset", "rec_td.h5", "run evdet-data preprocess first"]),
    ("raw-dat", ["this looks like a raw dataset", "rec_td.dat"]),
    ("split-folder", ["holds *.h5 shards itself but no train/ folder", "the folder above"]),
    ("gs", ["unsupported URI scheme"]),
])
def test_dataset_path_must_name_shards(tmp_path, layout, fragments):
    root = tmp_path / "data"
    if layout in ("empty", "empty-train", "raw", "raw-dat", "split-folder"):
        root.mkdir()
    if layout == "empty-train":
        (root / "train").mkdir()
    if layout == "raw":
        _shards(root, ("rec_td.h5", "rec_bbox.npy"))
    if layout == "raw-dat":
        _shards(root, ("rec_td.dat", "rec_bbox.npy"))
    if layout == "split-folder":
        (root / "a.h5").write_bytes(b"")
    if layout == "file":
        root.write_text("x")
    path = {None: [], "gs": ["dataset.path=gs://bucket/shards"]}.get(layout, [f"dataset.path={root}"])
    with pytest.raises(ConfigError) as info:
        compose_checked(path)
    assert info.value.key == "dataset.path"
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    compose_checked([f"dataset.path={_shards(tmp_path / 'ok')}"])  # shards: accepted


def test_store_ckpt_and_output_locations(tmp_path, monkeypatch):
    shards = f"dataset.path={_shards(tmp_path / 'shards')}"
    for var in ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MINIO_CREDENTIALS_DIR", str(tmp_path / "no-secret"))
    with pytest.raises(ConfigError, match=r"output.store='s3://bucket/runs': S3 credentials: endpoint not set"):
        compose_checked([shards, "output.store=s3://bucket/runs"])
    secret = "Qx7Zk9"  # too short: refused, never shown
    monkeypatch.setenv("MINIO_ENDPOINT", "127.0.0.1:9")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "user")
    monkeypatch.setenv("MINIO_SECRET_KEY", secret)
    with pytest.raises(ConfigError) as info:
        compose_checked([shards, "output.store=s3://bucket/runs"])
    assert "MINIO_SECRET_KEY" in str(info.value) and "shorter than 8" in str(info.value)
    assert secret not in str(info.value)
    monkeypatch.setenv("MINIO_SECRET_KEY", "long-enough-secret")
    compose_checked([shards, "output.store=s3://bucket/runs", "ckpt_path=s3://bucket/runs/last.ckpt"])
    with pytest.raises(ConfigError, match="ckpt_path='s3://bucket': expected s3://bucket/key"):
        compose_checked([shards, "ckpt_path=s3://bucket"])
    with pytest.raises(ConfigError, match=r"ckpt_path='.*nope.ckpt': no such file"):
        compose_checked([shards, f"ckpt_path={tmp_path / 'nope.ckpt'}"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="output.dir=.*afile'.*is a file"):
        compose_checked([shards, f"output.dir={tmp_path / 'afile'}"])
    with pytest.raises(ConfigError, match="output.store='gs://x': unsupported URI scheme"):
        compose_checked([shards, "output.store=gs://x"])
    compose_checked([shards, f"output.store={tmp_path / 'store'}"])  # local store: created later


def test_validation_reads_a_copy_and_applies_to_run_training(tmp_path):
    cfg = compose_config([f"dataset.path={_shards(tmp_path / 'shards')}"])
    with open_dict_(cfg):
        cfg.run_id = "${now:%Y%m%d-%H%M%S}"
    validate_config(cfg)
    assert OmegaConf.is_interpolation(cfg, "run_id")  # not resolved in place: run_training still sees it
    cfg.batch_size.train = 0
    from evdet.model.training.train import run_training

    with pytest.raises(ConfigError, match="batch_size.train=0"):
        run_training(cfg)
    assert not (tmp_path / "outputs").exists()


def open_dict_(cfg):
    from omegaconf import open_dict

    return open_dict(cfg)


def test_configs_of_older_checkpoints_still_load(tmp_path):
    """Validation is for new runs: a checkpoint whose config has a key the schema no longer knows and lacks
    nodes that came later (model.head, dataset.evaluation) loads as it was saved."""
    import torch

    from evdet.model.training.checkpoint import load_module
    from evdet.model.config import to_container
    from evdet.model.training.module import DetectionModule

    config = to_container(compose_config(["model=rvt_tiny", "model.backbone.embed_dim=16",
                                          "model.backbone.head_dim=8", "dataset.path=/old/shards"]))
    config["model"].pop("head")
    config["dataset"].pop("evaluation")
    config["training"]["legacy_option"] = 1
    with pytest.raises(ConfigError):
        validate_config(config)
    module = DetectionModule(config)
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": config, "eval_info": None},
                "global_step": 3, "epoch": 0, "pytorch-lightning_version": "2.6.0"}, path)
    loaded, loaded_config = load_module(path)
    assert loaded_config["training"]["legacy_option"] == 1 and not loaded.training


def test_bench_and_summary_flag_and_config_errors(capsys):
    import torch

    from evdet.model import bench
    from evdet.model.cli import model as cli

    cases = [
        (["train", "--steps", "0"], ["argument --steps", "expected", "integer >= 1", "'0'"]),
        (["train", "--steps", "-4"], ["argument --steps", "'-4'"]),
        (["train", "--batch", "0"], ["argument --batch", "integer >= 1"]),
        (["train", "--batch", "-1"], ["argument --batch", "'-1'"]),
        (["train", "--warmup", "x"], ["argument --warmup", "integer >= 0"]),
        (["train", "--precision", "fp8"], ["argument --precision", "expected one of 32-true"]),
        (["train", "--device", "tpu"], ["--device 'tpu'", "expected cpu, cuda or cuda:N"]),
        (["train", "--stepz", "3"], ["--stepz", "expected the flags"]),
        (["train", "--device", "cpu", "hardware.precision=fp8"], ["hardware.precision='fp8'"]),
        (["train", "--device", "cpu", "+training.max_step=3"], ["training.max_step=3", "unknown key"]),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", "--device", "cuda"], ["--device cuda", "CUDA is not available", "--device cpu"]))
    for argv, fragments in cases:
        assert bench.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("evdet-bench: error: ") and err.count("\n") == 1, err
        for fragment in fragments:
            assert fragment in err, (argv, err)
    for argv, fragments in [
        (["summary", "model.backbone.embed_dimm=3"], ["model.backbone.embed_dimm=3", "did you mean"]),
        (["summary", "+experiment=plain_lstm_640x360_baseline", "dataset.num_classes=3"], ["dataset.num_classes=3"]),
        (["summary", "--all", "hardware.precision=fp8"], ["hardware.precision='fp8'"]),
    ]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("evdet-model summary: error: ") and err.count("\n") == 1, err
        for fragment in fragments:
            assert fragment in err, (argv, err)
