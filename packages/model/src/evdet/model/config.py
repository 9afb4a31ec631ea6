"""Composing the Hydra training configuration outside and inside ``@hydra.main``, and validating it.

The command lines follow RVT's seed style: ``+experiment=NAME`` selects an experiment overlay and ``profile=local``
shrinks a run for a laptop. Because ``experiment`` sits in the defaults list (so the profile can be applied after
it), ``+experiment=NAME`` is accepted as a synonym of ``experiment=NAME``.

:func:`validate_config` checks a composed config before anything is built (schema: :mod:`evdet.model.config_schema`;
plus the rules that tie keys together, the dataset folder and the store URIs); :func:`compose_checked` composes and
validates, turning Hydra's composition errors into the same one-line :class:`ConfigError`. ``evdet-train``,
``evdet-model summary`` and ``evdet-bench`` print that line and exit with status 2. Configs stored in checkpoints are
not validated (they load as they were saved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from evdet.data.classes import ClassLookup, class_lookup
from evdet.data.labels import LabelError
from evdet.model.config_schema import IGNORED_KEYS, ConfigError, schema_problems, show, unknown_key_message

__all__ = ["CONFIG_DIR", "ConfigError", "compose_checked", "compose_config", "dataset_classes", "experiment_slug",
           "normalize_overrides", "to_container", "list_experiments", "finalize_config", "validate_config",
           "composition_error"]

#: Directory of the packaged Hydra configuration (``train.yaml`` and the config groups).
CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Map ``+experiment=X`` / ``++experiment=X`` to ``experiment=X``; leave every other override unchanged."""
    out = []
    for item in overrides:
        stripped = item.lstrip("+")
        out.append(stripped if stripped.startswith("experiment=") else item)
    return out


def list_experiments() -> list[str]:
    """Names of the experiment overlays in ``conf/experiment`` (sorted)."""
    return sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def finalize_config(cfg: DictConfig) -> DictConfig:
    """Fix derived values (``run_id`` resolved once, a UTC timestamp when unset) and switch the config to struct mode.

    Raises:
        omegaconf.errors.ConfigKeyError: later, when code reads a key the config does not have.
    """
    with open_dict(cfg):
        run_id = cfg.get("run_id")
        if run_id in (None, "", "None"):
            run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        cfg.run_id = str(run_id)  # materialise ${now:...} once, so every later read agrees
    OmegaConf.set_struct(cfg, True)
    return cfg


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``train.yaml`` with Hydra overrides, as ``evdet-train`` would, without starting a Hydra run.

    Args:
        overrides: Hydra override strings, e.g. ``["+experiment=plain_lstm_640x360_baseline", "profile=local"]``.

    Returns:
        The composed config in struct mode (unknown keys raise).

    Raises:
        hydra.errors.ConfigCompositionException: for an unknown config group option or key (Hydra's message names
            it, e.g. ``Could not override 'training.max_stepz'``).
    """
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=normalize_overrides(overrides))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return finalize_config(cfg)


def to_container(cfg: DictConfig) -> dict:
    """Resolved plain-dict copy of ``cfg`` (what checkpoints and result files store)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------------ validation

_SHARDS = ("the folder of preprocessed shards (the output of evdet-data preprocess: train/ val/ test/ with "
           "<name>.h5) or s3://bucket/prefix")
#: Files of a raw (not preprocessed) dataset: eTraM / Prophesee recordings and their labels, other sensors' files.
_RAW_SUFFIXES = ("_td.h5", "_td.hdf5", "_td.dat", ".dat", "_td.raw", ".raw", ".aedat4", "_bbox.npy")


def compose_checked(overrides: Sequence[str] = (), *, for_training: bool = True) -> DictConfig:
    """:func:`compose_config` followed by :func:`validate_config`: what ``evdet-train``, ``evdet-model summary`` and
    ``evdet-bench`` run before building anything.

    Args:
        overrides: Hydra override strings (``+experiment=NAME`` accepted).
        for_training: see :func:`validate_config` (False for commands that build only the model).

    Returns:
        The composed config in struct mode.

    Raises:
        ConfigError: a composition error (unknown key or config group option, unparsable override; converted by
            :func:`composition_error`) or any problem :func:`validate_config` finds; one line.
    """
    from hydra.errors import HydraException

    try:
        cfg = compose_config(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise composition_error(exc, overrides) from None
    validate_config(cfg, for_training=for_training)
    return cfg


def composition_error(exc: BaseException, overrides: Sequence[str] = ()) -> ConfigError:
    """One-line :class:`ConfigError` for an exception Hydra raised while composing ``overrides``.

    An unknown key (``training.max_stepz=3``) names the key, the keys of its node and the closest one; an unknown
    config group option (``model=rvt_huge``, ``+experiment=nope``) names the group and its options; anything else
    (an unparsable override, ``+key`` on a key that exists) is Hydra's message on one line.
    """
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        options = ", ".join(exc.options) if exc.options else "(none found)"
        return ConfigError(group, f"{group}={option}: no such {group} config; expected one of {options}")
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    full_key = getattr(cause, "full_key", None)
    text = " ".join(str(exc).split())
    if full_key and ("Could not override" in text or "not in struct" in str(cause)):
        value = _override_value(overrides, str(full_key))
        return ConfigError(str(full_key), unknown_key_message(str(full_key), *value))
    detail = " ".join(str(cause).splitlines()[0].split()) if cause is not exc and str(cause) else ""
    if detail and detail not in text:
        text = f"{text} ({detail})"
    culprit = getattr(exc, "override", None) or next(
        (o for o in overrides if o in text or (o.partition("=")[0].lstrip("+~") and
                                               f"'{o.partition('=')[0].lstrip('+~')}'" in text)), None)
    where = f"override {culprit}" if culprit else "overrides"
    return ConfigError(str(full_key or where), f"{where}: {text}")


def _override_value(overrides: Sequence[str], key: str) -> tuple[Any, ...]:
    """``(value,)`` of the override that sets ``key`` (as parsed by Hydra), or ``()``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for item in overrides:
        name, sep, _ = item.partition("=")
        if sep and name.lstrip("+~") == key:
            try:
                return (OverridesParser.create().parse_override(item).value(),)
            except Exception:  # noqa: BLE001 - only for display
                return (item.partition("=")[2],)
    return ()


def validate_config(cfg: DictConfig | Mapping[str, Any], *, for_training: bool = True) -> None:
    """Check a composed training config before model, data or loggers are built.

    Checks, in this order (all problems are collected; the first is the message, the others are listed by key):

    1. the schema (:mod:`evdet.model.config_schema`): types, ranges, choices, unknown keys (also those added with
       ``+``), keys removed, values left unset (``???``);
    2. when the schema holds, the rules between keys: ``dataset.num_classes`` equals the classes of
       ``dataset.class_names`` through ``dataset.class_map``; ABC's ``model.head.small_classes`` are model classes;
       ``model.head.medium_threshold >= small_threshold``; the backbone's stage widths, patch size and LSTM cell
       agree; ``model.fpn.in_stages`` increase and are at least two; ``dataset.evaluation`` sizes come both or
       neither; ``dataset.augmentation`` is valid for its sampling mode; mixed sampling has a positive weight;
    3. with ``for_training``: ``dataset.path`` names a folder whose ``train/`` holds ``*.h5`` shards (a raw dataset
       with ``*_td.h5`` / ``*_td.dat`` recordings is named as such) or is an ``s3://bucket/prefix`` (whose shards are
       checked after the download, as before); ``ckpt_path`` is an existing file or ``s3://bucket/key``;
       ``output.store`` is a local path, ``file://`` or ``s3://`` URI; ``output.dir`` is not a file; every
       ``s3://`` URI has S3 credentials (:func:`evdet.data.s3_credentials.load_s3_credentials`, no network access).

    Args:
        cfg: the composed config (``DictConfig`` from :func:`compose_config` or ``@hydra.main``, or a plain dict);
            not modified (interpolations such as ``run_id: ${now:...}`` are resolved on a copy).
        for_training: False for commands that only build the model (``evdet-model summary``, ``evdet-bench``):
            ``dataset.path``, ``ckpt_path`` and the store are then not checked.

    Raises:
        ConfigError: one line naming the key, the value and what is expected.
    """
    config = _resolved(cfg)
    problems = schema_problems(config, skip={"dataset.path"})
    if not problems:
        problems += _consistency_problems(config)
    if for_training:
        dataset = config.get("dataset") if isinstance(config.get("dataset"), Mapping) else {}
        problems += _dataset_path_problems(dataset.get("path", "???"))
        problems += _location_problems(config)
    if problems:
        raise ConfigError(problems[0][0], problems[0][1], problems)


def _resolved(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A resolved plain-dict copy of ``cfg`` without Hydra's own node; ``???`` stays ``"???"``.

    Raises:
        ConfigError: an interpolation cannot be resolved (names the key).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if any(k in IGNORED_KEYS for k in cfg.keys()):
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k not in IGNORED_KEYS])
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", None) or "config")
        reason = " ".join(str(exc).splitlines()[0].split()) if str(exc) else type(exc).__name__
        raise ConfigError(key, f"{key}: cannot resolve its value ({reason}); expected a value or an interpolation "
                          "${...} of an existing key") from None


def _raw_files(folder: Path) -> list[Path]:
    """Files of a raw dataset in ``folder``, recordings before label files."""
    found = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(_RAW_SUFFIXES)]
    return sorted(found, key=lambda p: (p.name.endswith("_bbox.npy"), p.name))


def _dataset_path_problems(path: Any) -> list[tuple[str, str]]:
    """``dataset.path`` must name shards for training (see :func:`validate_config`)."""
    key = "dataset.path"
    if isinstance(path, str) and path == "???":
        return [(key, f"{key} is not set (???); expected {_SHARDS}; pass {key}=DIR")]
    if not isinstance(path, str) or not path.strip():
        return [(key, f"{key}={show(path)}: expected {_SHARDS}")]
    if path.startswith("s3:/"):
        return _s3_problems(key, path)
    if "://" in path and not path.startswith("file://"):
        return [(key, f"{key}={show(path)}: unsupported URI scheme; expected {_SHARDS}")]
    root = Path(path.removeprefix("file://")).expanduser()
    if not root.exists():
        return [(key, f"{key}={show(path)}: no such folder; expected {_SHARDS}")]
    if not root.is_dir():
        return [(key, f"{key}={show(path)}: not a folder; expected {_SHARDS}")]
    train = root / "train"
    raw = _raw_files(train if train.is_dir() else root)
    if raw:
        where = "train/" if train.is_dir() else "it"
        return [(key, f"{key}={show(path)}: this looks like a raw dataset ({where} holds recordings such as "
                      f"{raw[0].name}); run evdet-data preprocess first (evdet-data preprocess {path} OUT "
                      f"--class-names ...) and pass {key}=OUT")]
    if not train.is_dir():
        if any(p.is_file() for p in root.glob("*.h5")):
            return [(key, f"{key}={show(path)}: holds *.h5 shards itself but no train/ folder; expected the folder "
                          f"above the split folders (train/ val/ test/), e.g. {key}={root.parent}")]
        return [(key, f"{key}={show(path)}: no train/ folder; expected {_SHARDS}")]
    if not any(p.is_file() for p in train.glob("*.h5")):
        return [(key, f"{key}={show(path)}: train/ holds no *.h5 shards; expected {_SHARDS}")]
    return []


def _s3_problems(key: str, uri: str, *, need_key: bool = False) -> list[tuple[str, str]]:
    """An ``s3://`` URI must parse and S3 credentials must be configured (environment or mounted Secret)."""
    from evdet.data.storage import StoreError, parse_s3_uri

    try:
        _, prefix = parse_s3_uri(uri)
    except StoreError as exc:
        return [(key, f"{key}={show(uri)}: {exc}")]
    if need_key and not prefix:
        return [(key, f"{key}={show(uri)}: expected s3://bucket/key of one object")]
    from evdet.data.s3_credentials import load_s3_credentials

    try:
        load_s3_credentials()
    except StoreError as exc:  # CredentialsError: names the variable / Secret file, never the secret
        return [(key, f"{key}={show(uri)}: {exc}")]
    return []


def _location_problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``ckpt_path``, ``output.store`` and ``output.dir`` (see :func:`validate_config`)."""
    problems: list[tuple[str, str]] = []
    ckpt = config.get("ckpt_path")
    if isinstance(ckpt, str) and ckpt.strip():
        if ckpt.startswith("s3:/"):
            problems += _s3_problems("ckpt_path", ckpt, need_key=True)
        elif not Path(ckpt).expanduser().is_file():
            problems.append(("ckpt_path", f"ckpt_path={show(ckpt)}: no such file; expected a Lightning checkpoint "
                                          "(.ckpt) or s3://bucket/key"))
    output = config.get("output") if isinstance(config.get("output"), Mapping) else {}
    store = output.get("store")
    if isinstance(store, str) and store.strip():
        expected = "a local folder, a file:// URI or s3://bucket/prefix"
        if store.startswith("s3:/"):
            problems += _s3_problems("output.store", store)
        elif "://" in store and not store.startswith("file://"):
            problems.append(("output.store", f"output.store={show(store)}: unsupported URI scheme; expected {expected}"))
        elif Path(store.removeprefix("file://")).expanduser().is_file():
            problems.append(("output.store", f"output.store={show(store)}: is a file; expected {expected}"))
    out_dir = output.get("dir")
    if isinstance(out_dir, str) and out_dir.strip() and Path(out_dir).expanduser().is_file():
        problems.append(("output.dir", f"output.dir={show(out_dir)}: is a file; expected a folder for the run's "
                                       "checkpoints and logs"))
    return problems


def _consistency_problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rules between keys, on a config whose schema holds (see :func:`validate_config`)."""
    from evdet.model.training.augmentation import SamplingAugmentation

    problems: list[tuple[str, str]] = []
    ds, model = config["dataset"], config["model"]
    try:
        lookup = class_lookup(ds["class_names"], ds["class_map"], source="dataset.class_names")
    except (ValueError, LabelError) as exc:
        problems.append(("dataset.class_map", f"dataset.class_map={show(ds['class_map'])}: "
                                              f"{' '.join(str(exc).split())}"))
        lookup = None
    if lookup is not None and ds["num_classes"] != lookup.num_classes:
        problems.append(("dataset.num_classes", (
            f"dataset.num_classes={ds['num_classes']}: expected {lookup.num_classes}, the number of classes "
            f"dataset.class_names gives through dataset.class_map={show(ds['class_map'])} "
            f"({', '.join(lookup.class_names)})")))
    head = model.get("head") or {}
    if lookup is not None and head.get("name") == "ABC":
        small = list(head.get("small_classes") or [])
        unknown = [c for c in small if c not in lookup.class_names]
        if not small or unknown:
            problems.append(("model.head.small_classes", (
                f"model.head.small_classes={show(small)} (default: dataset.small_classes): expected a non-empty list "
                f"of the model's classes ({', '.join(lookup.class_names)}) for the ABC head"
                + (f"; not among them: {', '.join(unknown)}" if unknown else ""))))
    if head and head["medium_threshold"] < head["small_threshold"]:
        problems.append(("model.head.medium_threshold", (
            f"model.head.medium_threshold={head['medium_threshold']}: expected >= model.head.small_threshold "
            f"({head['small_threshold']})")))
    bb = model["backbone"]
    if bb["lstm_cell"] == "PlainLSTM2d" and bb["dws_conv"]:
        problems.append(("model.backbone.dws_conv", "model.backbone.dws_conv=true: expected false with "
                                                    "model.backbone.lstm_cell=PlainLSTM2d (it has no depthwise conv)"))
    split = 4 * bb["partition_split"]
    if split % bb["patch_size"]:
        problems.append(("model.backbone.patch_size", (
            f"model.backbone.patch_size={bb['patch_size']}: expected a divisor of 4 x model.backbone.partition_split "
            f"= {split} (the stage-4 map must hold whole attention partitions)")))
    widths = [bb["embed_dim"] * m for m in bb["dim_multiplier"]]
    if any(w % bb["head_dim"] for w in widths):
        problems.append(("model.backbone.head_dim", (
            f"model.backbone.head_dim={bb['head_dim']}: expected a divisor of every stage width (embed_dim x "
            f"dim_multiplier = {widths})")))
    stages = list(model["fpn"]["in_stages"])
    if stages != sorted(stages) or len(stages) < 2:
        problems.append(("model.fpn.in_stages", (
            f"model.fpn.in_stages={show(stages)}: expected at least two increasing backbone stages from 1, 2, 3, 4")))
    ev = ds.get("evaluation") or {}
    if (ev.get("min_box_diag_px") is None) != (ev.get("min_box_side_px") is None):
        problems.append(("dataset.evaluation.min_box_diag_px", (
            f"dataset.evaluation.min_box_diag_px={show(ev.get('min_box_diag_px'))}, min_box_side_px="
            f"{show(ev.get('min_box_side_px'))}: expected both set or both null (null: the camera's)")))
    if ds["sampling"] == "mixed" and ds["w_stream"] + ds["w_random"] <= 0:
        problems.append(("dataset.w_stream", (
            f"dataset.w_stream={ds['w_stream']}, dataset.w_random={ds['w_random']}: expected a positive sum for "
            "dataset.sampling=mixed")))
    try:
        SamplingAugmentation.from_mapping(ds.get("augmentation"))
    except ValueError as exc:
        message = " ".join(str(exc).split())
        problems.append((message.split(":", 1)[0], message))
    return problems


def dataset_classes(dataset_cfg: Any) -> ClassLookup:
    """The model's classes for a ``dataset`` config: ``class_names`` through ``class_map``.

    Args:
        dataset_cfg: the ``dataset`` mapping (``class_names``, ``class_map``, ``num_classes``).

    Returns:
        The :class:`~evdet.data.classes.ClassLookup` (``class_names`` = the model's classes in id order).

    Raises:
        ValueError: ``dataset.class_names`` missing or not a list of names, an unknown ``dataset.class_map``, a
            class the map does not list, or ``dataset.num_classes`` differing from the class count (the message
            names the keys and values).
    """
    names = dataset_cfg.get("class_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"dataset.class_names: expected the list of class names of the label ids, got {names!r}")
    class_map = dataset_cfg.get("class_map")
    try:
        lookup = class_lookup(names, class_map, source="dataset.class_names")
    except (ValueError, LabelError) as exc:
        raise ValueError(f"dataset.class_map: {exc}") from None
    if int(dataset_cfg["num_classes"]) != lookup.num_classes:
        raise ValueError(f"dataset.num_classes is {dataset_cfg['num_classes']} but dataset.class_names / class_map "
                         f"give {lookup.num_classes} classes {list(lookup.class_names)}; set dataset.num_classes="
                         f"{lookup.num_classes}")
    return lookup


def experiment_slug(experiment: str) -> str:
    """The experiment's name as Kubernetes and Kubeflow resource names use it: lower case, ``_`` -> ``-``
    (``plain_lstm_640x360_baseline`` -> ``plain-lstm-640x360-baseline``; the training Job ``evdet-train-<slug>`` of
    ``k8s/training/generate.py`` and the pipeline ``evdet-<slug>`` of ``pipelines/pipeline_builder.py``).

    Args:
        experiment: the Hydra experiment name (``conf/experiment/<experiment>.yaml``).

    Returns:
        The slug; whether it is a valid DNS-1123 name is the caller's check (it knows the prefix and the length limit).
    """
    return experiment.lower().replace("_", "-")
