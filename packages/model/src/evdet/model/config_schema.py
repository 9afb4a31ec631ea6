"""Schema of the training configuration: what every key of ``conf/train.yaml`` may hold once it is composed with
its config groups (``model``, ``dataset``, ``experiment``, ``profile``) and the command line's overrides.

The schema is a tree of dataclasses, one per config node, :class:`TrainConfig` at the root. A field's type says
what the value may be (``int``, ``float``, ``bool``, ``str``, ``list[...]``, ``Optional[...]``: may also be null,
``Union[...]``: any of the arms, another schema dataclass: a nested node) and its :func:`rule` the range, the choices
or the length. The dataclasses hold no defaults: the values live in the YAML files only, so the two cannot disagree
silently (``tests/model/test_config.py`` composes every experiment with every profile and validates the result, and
compares the keys of the schema with the keys of the composed config).

:func:`check_schema` walks a resolved config (a plain dict, ``OmegaConf.to_container(cfg, resolve=True)``) against
the schema and raises one :class:`ConfigError` whose message is ONE line naming the key, the value and what is
expected, e.g. ``batch_size.train='abc': expected an integer >= 1``. It reports

* a wrong type (Hydra's override parser turns ``key=abc`` into a string, ``key=3`` into an int);
* a value out of range or not among the choices (``hardware.precision='fp8'``);
* a key the schema does not know, wherever it came from (``+training.max_step=3``, ``+foo=1``, a YAML file);
* a key the schema needs that the config lacks, and a value left unset (Hydra's ``???``).

It checks the composed config, so it sees what ``+key=value`` added (Hydra lets ``+`` add keys to a struct config);
keys of the composed config that are not in the schema are errors, as the README says. Cross-key rules (class
counts, stage widths, dataset folders, store credentials) are in :func:`evdet.model.config.validate_config`.

Adding a config key means adding it here too (the tests above fail until both agree).

Why a check of the composed config rather than these dataclasses registered in Hydra's ConfigStore as the schema of
``train.yaml`` and its groups: ranges, choices and the rules between keys need a check of their own anyway; Hydra's
type errors span several lines and do not say what is expected; and nothing in the YAML files or in configs saved in
checkpoints has to change (validation applies to new runs only: ``evdet-train``, ``evdet-model summary``,
``evdet-bench``).
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

__all__ = [
    "ConfigError",
    "TrainConfig",
    "PRECISIONS",
    "check_schema",
    "describe",
    "rule",
    "schema_problems",
    "schema_keys",
    "show",
    "unknown_key_message",
]

#: Lightning precision strings the trainer accepts (``hardware.precision``); Hydra reads ``32`` as the int 32.
PRECISIONS: tuple[str, ...] = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
                               "32", "16", "bf16", "64")

#: Hydra's marker of a value that must be given (``dataset.path: ???``).
MISSING_VALUE = "???"


class ConfigError(ValueError):
    """A training config value is wrong. ``str(err)`` is one line naming the key, the value and what is expected
    (further problems found in the same config are listed by key at the end).

    Attributes:
        key: the full key of the (first) problem, e.g. ``batch_size.train``.
        problems: every problem found, one line each, first first.
    """

    def __init__(self, key: str, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        self.key = key
        self.problems = [m for _, m in problems] or [message]
        others = [k for k, _ in problems[1:]]
        text = message if not others else f"{message} (and {len(others)} more: {', '.join(others)})"
        super().__init__(" ".join(text.split()))


def rule(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | str | None = None,
    nonempty: bool = False,
    length: int | None = None,
    distinct: bool = False,
    optional: bool = False,
    expected: str | None = None,
    check: Callable[[Any], bool] | None = None,
) -> Any:
    """A schema field with constraints (a ``dataclasses.field`` whose metadata :func:`check_schema` reads).

    Args:
        ge, gt, le, lt: bounds of a number (of every item of a list of numbers).
        choices: allowed values, or ``"module:attribute"`` naming the tuple / dict (keys) that defines them, imported
            when a config is checked (so the schema follows the code that uses the value).
        nonempty: a string / list must not be empty.
        length: a list must have exactly this many items.
        distinct: a list must not repeat an item.
        optional: the key may be absent (code that reads it has a default).
        expected: the text after ``expected`` in messages, instead of one derived from the type and constraints.
        check: a further predicate on the value (with ``expected`` to describe it).
    """
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "nonempty": nonempty, "length": length,
            "distinct": distinct, "optional": optional, "expected": expected, "check": check}
    return field(metadata={k: v for k, v in meta.items() if v is not None and v is not False})


# ---------------------------------------------------------------------------------------------------- the schema


@dataclass
class BatchSizeConfig:
    """``batch_size``: sequences per training / evaluation step."""

    train: int = rule(ge=1)
    eval: int = rule(ge=1)


@dataclass
class NumWorkersConfig:
    """``hardware.num_workers``: DataLoader worker processes per split."""

    train: int = rule(ge=0)
    eval: int = rule(ge=0)


def _devices_ok(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1 or value == -1
    if isinstance(value, str):
        text = value.strip()
        return text == "auto" or text == "-1" or (bool(text) and all(p.strip().isdigit() for p in text.split(",")))
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    return False


def _precision_ok(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (str, int)) and str(value) in PRECISIONS


def _pin_memory_ok(value: Any) -> bool:
    return isinstance(value, bool) or value == "auto"


@dataclass
class HardwareConfig:
    """``hardware``: where and how Lightning trains."""

    accelerator: str = rule(choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Union[int, str, list] = rule(check=_devices_ok, expected=(
        "a number of devices >= 1, -1 (all), 'auto', or a list of device indices"))
    num_nodes: int = rule(ge=1)
    strategy: str = rule(nonempty=True, expected="a Lightning strategy name such as auto, ddp or ddp_spawn")
    num_workers: NumWorkersConfig = rule()
    precision: Union[str, int] = rule(check=_precision_ok, expected=f"one of {', '.join(PRECISIONS[:6])}")
    persistent_workers: bool = rule(optional=True)
    prefetch_factor: int = rule(optional=True, ge=1)
    pin_memory: Union[bool, str] = rule(optional=True, check=_pin_memory_ok, expected="true, false or auto")
    channels_last: bool = rule(optional=True)
    compile: str = rule(optional=True, choices="evdet.model.nn.acceleration:COMPILE_MODES")


@dataclass
class LRSchedulerConfig:
    """``training.lr_scheduler``: the one-cycle schedule."""

    pct_start: float = rule(ge=0, le=1)
    div_factor: float = rule(gt=0)
    final_div_factor: float = rule(gt=0)


@dataclass
class TrainingConfig:
    """``training``: optimisation."""

    max_steps: int = rule(ge=1)
    learning_rate: float = rule(gt=0)
    weight_decay: float = rule(ge=0)
    gradient_clip_val: float = rule(ge=0)
    accumulate_grad_batches: int = rule(ge=1)
    lr_scheduler: LRSchedulerConfig = rule()
    log_every_n_steps: int = rule(ge=1)


def _limit_batches_ok(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and 0.0 <= value <= 1.0


@dataclass
class ValidationConfig:
    """``validation``: how often and how much to validate, and the detector's thresholds."""

    val_check_interval: Optional[int] = rule(ge=1)
    limit_val_batches: Union[float, int] = rule(check=_limit_batches_ok, expected=(
        "a fraction in [0, 1] or a number of batches >= 0"))
    confidence_threshold: float = rule(ge=0, le=1)
    nms_threshold: float = rule(ge=0, le=1)


@dataclass
class CheckpointConfig:
    """``checkpoint``: Lightning's ModelCheckpoint."""

    monitor: str = rule(nonempty=True)
    mode: str = rule(choices=("min", "max"))
    save_top_k: int = rule(ge=-1)
    save_last: bool = rule()
    every_n_steps: Optional[int] = rule(ge=1, optional=True)
    grace_period_s: float = rule(ge=0, optional=True)


@dataclass
class OutputConfig:
    """``output``: the run's local folder and its store (local path or ``s3://bucket/prefix``)."""

    dir: str = rule(nonempty=True)
    store: Optional[str] = rule(nonempty=True)


@dataclass
class MetricsConfig:
    """``metrics``: the Prometheus exporter of each training process."""

    enabled: bool = rule()
    addr: str = rule(nonempty=True)
    port: int = rule(ge=0, le=65535)
    pushgateway: Optional[str] = rule(nonempty=True)
    job: str = rule(nonempty=True)
    linger_s: float = rule(ge=0)
    linger_scrapes: int = rule(ge=0)


@dataclass
class LoggingConfig:
    """``logging``: the log line printed without a terminal."""

    every_n_steps: int = rule(ge=1)


@dataclass
class WandbConfig:
    """``wandb``: Weights & Biases (:mod:`evdet.model.mlops.experiment_loggers`)."""

    enabled: bool = rule()
    project_name: str = rule(nonempty=True)
    group_name: Optional[Union[str, int]] = rule()
    mode: Optional[str] = rule(choices=("online", "offline", "disabled", "dryrun", "run"))


@dataclass
class BackboneConfig:
    """``model.backbone``: the MaxViT-RNN (:class:`evdet.model.nn.backbone.MaxViTRNN`)."""

    embed_dim: int = rule(ge=1)
    head_dim: int = rule(ge=1)
    dim_multiplier: list[int] = rule(length=4, ge=1)
    num_blocks: list[int] = rule(length=4, ge=1)
    patch_size: int = rule(ge=1)
    mlp_ratio: float = rule(gt=0)
    lstm_cell: str = rule(choices="evdet.model.nn.lstm:LSTM_CELL_NAMES")
    dws_conv: bool = rule()
    drop_path: float = rule(ge=0, lt=1)
    partition_split: int = rule(ge=1)
    checkpoint_stages: bool = rule(optional=True)


@dataclass
class FPNConfig:
    """``model.fpn``: the PAFPN over backbone stages."""

    in_stages: list[int] = rule(nonempty=True, distinct=True, ge=1, le=4)
    depth: float = rule(ge=0)


@dataclass
class HeadSchema:
    """``model.head``: YOLOX or ABC, and the size-aware loss (:class:`evdet.model.nn.detector.HeadConfig`)."""

    name: str = rule(choices="evdet.model.nn.detector:HEAD_NAMES")
    size_aware_loss: bool = rule()
    size_aware_weight: float = rule(ge=1)
    small_threshold: float = rule(gt=0)
    medium_threshold: float = rule(gt=0)
    weight_type: str = rule(choices="evdet.model.loss.size_aware:WEIGHT_TYPES")
    small_classes: list[str] = rule(distinct=True)
    aux_loss_weight: float = rule(ge=0)


@dataclass
class ModelConfig:
    """``model``: the detector (config group ``model``)."""

    name: str = rule(choices=("rvt",))
    size: Union[str, int] = rule()
    backbone: BackboneConfig = rule()
    fpn: FPNConfig = rule()
    head: HeadSchema = rule(optional=True)


@dataclass
class AugmentationModeConfig:
    """``dataset.augmentation.<stream|random>``: one sampling mode's augmentation (missing keys: RVT's values)."""

    flip_p: float = rule(ge=0, le=1, optional=True)
    zoom_p: float = rule(ge=0, le=1, optional=True)
    zoom_in_weight: float = rule(ge=0, optional=True)
    zoom_in_max: float = rule(ge=1, optional=True)
    zoom_out_weight: float = rule(ge=0, optional=True)
    zoom_out_max: float = rule(ge=1, optional=True)


@dataclass
class AugmentationConfig:
    """``dataset.augmentation``: training augmentation per sampling mode."""

    enabled: bool = rule(optional=True)
    stream: Optional[AugmentationModeConfig] = rule(optional=True)
    random: Optional[AugmentationModeConfig] = rule(optional=True)


@dataclass
class EvaluationConfig:
    """``dataset.evaluation``: the Prophesee protocol as eTraM / RVT run it."""

    protocol: str = rule(choices="evdet.eval.prophesee:PROTOCOLS")
    camera: str = rule(choices="evdet.eval.prophesee:CAMERA_SENSOR_HW")
    score: str = rule(choices="evdet.model.nn.postprocess:SCORE_KINDS")
    min_box_diag_px: Optional[float] = rule(ge=0)
    min_box_side_px: Optional[float] = rule(ge=0)
    skip_before_us: int = rule(ge=0)
    time_tolerance_us: int = rule(ge=0)


@dataclass
class DatasetConfig:
    """``dataset``: the shards and the classes (config group ``dataset``). ``path`` is checked by
    :func:`evdet.model.config.validate_config` (it must name a folder of shards for training)."""

    name: str = rule(nonempty=True)
    path: str = rule(nonempty=True, expected=(
        "the folder of preprocessed shards (the output of evdet-data preprocess, with train/ val/ test/) or "
        "s3://bucket/prefix"))
    class_names: list[str] = rule(nonempty=True, distinct=True)
    class_map: Optional[str] = rule(choices="evdet.data.classes:CLASS_MAPS")
    num_classes: int = rule(ge=1)
    small_classes: list[str] = rule(distinct=True)
    in_channels: int = rule(ge=1)
    height: int = rule(ge=1)
    width: int = rule(ge=1)
    sequence_length: int = rule(ge=1)
    sampling: str = rule(choices=("stream", "random", "mixed"))
    w_stream: float = rule(ge=0)
    w_random: float = rule(ge=0)
    augmentation: Optional[AugmentationConfig] = rule(optional=True)
    evaluation: EvaluationConfig = rule(optional=True)


@dataclass
class TrainConfig:
    """The whole training config (``conf/train.yaml`` composed). ``hydra`` (Hydra's own node) is not checked."""

    experiment_name: Union[str, int] = rule()
    description: Optional[str] = rule(optional=True)
    run_id: Optional[Union[str, int]] = rule()
    seed: int = rule(ge=0, le=2**32 - 1)
    batch_size: BatchSizeConfig = rule()
    hardware: HardwareConfig = rule()
    training: TrainingConfig = rule()
    validation: ValidationConfig = rule()
    checkpoint: CheckpointConfig = rule()
    output: OutputConfig = rule()
    ckpt_path: Optional[str] = rule(nonempty=True)
    resume: Optional[Union[str, bool]] = rule(expected="auto or null (see conf/train.yaml)")
    metrics: MetricsConfig = rule()
    logging: LoggingConfig = rule()
    wandb: WandbConfig = rule()
    model: ModelConfig = rule()
    dataset: DatasetConfig = rule()


#: Top-level keys that are not the run's settings and are never checked.
IGNORED_KEYS = frozenset({"hydra"})


# ---------------------------------------------------------------------------------------------------- the check


def show(value: Any, limit: int = 80) -> str:
    """``value`` as it would be written in a Hydra override (``'abc'``, ``3``, ``null``, ``[1,2]``), cut at
    ``limit`` characters."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(show(v, limit) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ",".join(f"{k}:{show(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hints(schema: type) -> dict[str, Any]:
    return get_type_hints(schema)


def _choices(meta: Mapping[str, Any]) -> tuple[Any, ...] | None:
    spec = meta.get("choices")
    if spec is None:
        return None
    if isinstance(spec, str):
        module, _, attr = spec.partition(":")
        spec = getattr(importlib.import_module(module), attr)
    if isinstance(spec, Mapping):
        return tuple(sorted(spec))
    return tuple(spec)


def _bounds_text(meta: Mapping[str, Any]) -> str:
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))

    def num(x: float) -> str:
        return f"{x:g}" if isinstance(x, float) else str(x)

    low = f"[{num(ge)}" if ge is not None else f"({num(gt)}" if gt is not None else None
    high = f"{num(le)}]" if le is not None else f"{num(lt)})" if lt is not None else None
    if low and high:
        return f" in {low}, {high}"
    if ge is not None:
        return f" >= {num(ge)}"
    if gt is not None:
        return f" > {num(gt)}"
    if le is not None:
        return f" <= {num(le)}"
    if lt is not None:
        return f" < {num(lt)}"
    return ""


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "names")}


def describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a value of schema type ``tp`` with constraints ``meta`` must be, as the text after "expected"."""
    if meta.get("expected"):
        return str(meta["expected"])
    origin = get_origin(tp)
    if origin is Union:
        arms = [a for a in get_args(tp) if a is not type(None)]
        text = " or ".join(describe(a, meta) for a in arms)
        return f"{text} or null" if len(arms) < len(get_args(tp)) else text
    if is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in fields(tp))}"
    choices = _choices(meta)
    if choices is not None:
        return "one of " + ", ".join(str(c) for c in choices)
    if origin in (list, tuple) or tp in (list, tuple):
        items = get_args(tp)
        noun = _NOUNS.get(items[0], ("", "values"))[1] if items else "values"
        count = f"{meta['length']} " if meta.get("length") else ""
        text = f"a {'non-empty ' if meta.get('nonempty') else ''}list of {count}{'distinct ' if meta.get('distinct') else ''}{noun}"
        return text + _bounds_text(meta)
    noun = _NOUNS.get(tp, ("a value", ""))[0]
    if tp is str and meta.get("nonempty"):
        noun = "a non-empty string"
    return noun + _bounds_text(meta)


def _in_bounds(x: float, meta: Mapping[str, Any]) -> bool:
    return ((meta.get("ge") is None or x >= meta["ge"]) and (meta.get("gt") is None or x > meta["gt"])
            and (meta.get("le") is None or x <= meta["le"]) and (meta.get("lt") is None or x < meta["lt"]))


def _scalar_ok(value: Any, tp: Any, meta: Mapping[str, Any]) -> bool:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and _in_bounds(value, meta)
    elif tp is float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and _in_bounds(value, meta))
    elif tp is str:
        ok = isinstance(value, str) and (not meta.get("nonempty") or bool(value.strip()))
    elif tp in (list, tuple):
        ok = isinstance(value, (list, tuple))
    else:
        ok = True
    if ok and meta.get("choices") is not None and tp in (str, int, float):
        ok = value in (_choices(meta) or ())
    return ok


def _value_ok(value: Any, tp: Any, meta: Mapping[str, Any]) -> bool:
    """Whether ``value`` fits a non-dataclass schema type (scalars, lists, unions) and ``meta``."""
    origin = get_origin(tp)
    if origin is Union:
        if value is None:
            return type(None) in get_args(tp)
        return any(_value_ok(value, arm, meta) for arm in get_args(tp) if arm is not type(None))
    if value is None:
        return False
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if meta.get("length") is not None and len(value) != meta["length"]:
            return False
        if meta.get("nonempty") and not value:
            return False
        if meta.get("distinct") and len({show(v) for v in value}) != len(value):
            return False
        item_tp = (get_args(tp) or (Any,))[0]
        item_meta = {k: v for k, v in meta.items() if k in ("ge", "gt", "le", "lt")}
        return all(item_tp is Any or _scalar_ok(item, item_tp, item_meta) for item in value)
    ok = _scalar_ok(value, tp, meta)
    if ok and meta.get("check") is not None:
        ok = bool(meta["check"](value))
    return ok


def _node_type(tp: Any) -> type | None:
    """The schema dataclass of a node type (``Optional[Node]`` included), else None."""
    if is_dataclass(tp):
        return tp
    if get_origin(tp) is Union:
        nodes = [a for a in get_args(tp) if is_dataclass(a)]
        return nodes[0] if nodes else None
    return None


def _check_node(data: Mapping[str, Any], schema: type, prefix: str, problems: list[tuple[str, str]],
                skip: Collection[str]) -> None:
    hints = _hints(schema)
    known = {f.name: f for f in fields(schema)}
    for name, value in data.items():
        full = f"{prefix}{name}"
        if name not in known and not (not prefix and name in IGNORED_KEYS):
            problems.append((full, unknown_key_message(full, value)))
    for name, fld in known.items():
        full = f"{prefix}{name}"
        if full in skip:
            continue
        tp, meta = hints[name], fld.metadata
        if name not in data:
            if not meta.get("optional"):
                problems.append((full, f"{full}: missing; expected {describe(tp, meta)} (the key was removed?)"))
            continue
        value = data[name]
        if isinstance(value, str) and value == MISSING_VALUE:
            problems.append((full, f"{full} is not set (???); expected {describe(tp, meta)}; pass {full}=VALUE"))
            continue
        node = _node_type(tp)
        if node is not None and isinstance(value, Mapping):
            _check_node(value, node, f"{full}.", problems, skip)
        elif node is not None and value is None and get_origin(tp) is Union and type(None) in get_args(tp):
            continue
        elif node is not None:
            problems.append((full, f"{full}={show(value)}: expected {describe(node, {})}"))
        elif not _value_ok(value, tp, meta):
            problems.append((full, f"{full}={show(value)}: expected {describe(tp, meta)}"))


def schema_problems(config: Mapping[str, Any], *, skip: Collection[str] = ()) -> list[tuple[str, str]]:
    """Every problem of a resolved training config against :class:`TrainConfig`, as ``(full key, one line)`` pairs:
    unknown keys of a node first, then its keys in schema order.

    Args:
        config: ``OmegaConf.to_container(cfg, resolve=True)`` of the composed config (plain dicts and lists).
        skip: full keys (e.g. ``"dataset.path"``) not to check here.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(config, Mapping):
        return [("<root>", f"the training config must be a mapping, got {show(config)}")]
    _check_node(config, TrainConfig, "", problems, skip)
    return problems


def check_schema(config: Mapping[str, Any], *, skip: Collection[str] = ()) -> None:
    """Check a resolved training config against :class:`TrainConfig` (see :func:`schema_problems`).

    Raises:
        ConfigError: one line for the first problem, naming the key, the value and what is expected; the keys of
            the others are listed after it.
    """
    problems = schema_problems(config, skip=skip)
    if problems:
        raise ConfigError(problems[0][0], problems[0][1], problems)


def _schema_at(path: Sequence[str]) -> type | None:
    schema: type | None = TrainConfig
    for name in path:
        if schema is None:
            return None
        known = {f.name for f in fields(schema)}
        if name not in known:
            return None
        schema = _node_type(_hints(schema)[name])
    return schema


_NO_VALUE = object()


def unknown_key_message(full_key: str, value: Any = _NO_VALUE) -> str:
    """One line for a key the schema does not know: the key (and value), the keys its node has and the closest one.

    Example: ``training.max_step=3: unknown key; expected one of the keys of training: max_steps, ...; did you mean
    training.max_steps?``
    """
    *parents, name = full_key.split(".")
    node = _schema_at(parents)
    head = full_key if value is _NO_VALUE else f"{full_key}={show(value)}"
    if node is None:  # a key below a leaf or below an unknown key
        return f"{head}: unknown key; expected a key of the training config (evdet/model/config_schema.py)"
    names = [f.name for f in fields(node)]
    scope = f"the keys of {'.'.join(parents)}" if parents else "the top-level keys"
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {'.'.join([*parents, close[0]])}?" if close else ""
    return f"{head}: unknown key; expected one of {scope}: {', '.join(names)}{hint}"


def schema_keys(schema: type = TrainConfig, prefix: str = "", *, include_optional: bool = True) -> list[str]:
    """Full keys of every leaf of the schema (nested nodes expanded), in schema order."""
    keys: list[str] = []
    hints = _hints(schema)
    for fld in fields(schema):
        if not include_optional and fld.metadata.get("optional"):
            continue
        node = _node_type(hints[fld.name])
        full = f"{prefix}{fld.name}"
        if node is not None:
            keys += schema_keys(node, f"{full}.", include_optional=include_optional)
        else:
            keys.append(full)
    return keys
