"""ONNX export of one streaming step of the RVT detector (``evdet-model export CKPT --format onnx``).

The graph is one 50 ms time step of :class:`evdet.model.inference.streaming.StreamingDetector`'s network: the stacked histogram
of the window and the ConvLSTM states of the 4 backbone stages in, the decoded YOLOX predictions (before the
confidence threshold and NMS) and the new states out (:class:`StreamingStep`; names, shapes and dtypes in
:data:`GRAPH_INPUTS` / :data:`GRAPH_OUTPUTS`, the table of docs/onnx.md is :func:`format_io_table`). Post-processing
stays outside the graph: both engines of ``evdet-detect`` run the same :func:`evdet.model.nn.postprocess.postprocess`.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript) at opset :data:`ONNX_OPSET`, with
a dynamic batch axis. The dynamo exporter was chosen over the legacy TorchScript one because it keeps the state
outputs' channel counts static (the TorchScript exporter names them ``Mulnext_h_2_dim_1`` ...) and is the exporter
torch develops; both give the same numbers on this graph. The input height and width are fixed at export: the
attention partition size of every stage is derived from them (:meth:`MaxViTRNN.partition_size`).

The evdet settings needed to run the file without its checkpoint are stored as ``metadata_props`` (keys in
:data:`METADATA_KEYS`, values strings, lists and mappings as JSON); :func:`read_metadata` reads them back.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from evdet.data.output_folder import write_file_atomically
from evdet.model.nn.detector import RVT

__all__ = ["EXPORT_FORMATS", "GRAPH_INPUTS", "GRAPH_OUTPUTS", "METADATA_KEYS", "NUM_STATE_STAGES", "ONNX_OPSET",
           "OnnxMetadata", "StreamingStep", "TensorSpec", "check_input_size", "default_input_size", "export_checkpoint",
           "export_model", "format_io_table", "format_metadata_table", "graph_shapes", "read_metadata", "resolve_shape",
           "state_names"]

#: Opset of the exported graph (ONNX 1.13+, onnxruntime 1.14+ run it; the dynamo exporter's default in torch 2.x).
ONNX_OPSET = 18
#: Formats ``evdet-model export --format`` writes.
EXPORT_FORMATS = ("onnx",)
#: ConvLSTM stages of the backbone, each with an ``(h, c)`` state (RVT Sec. 3: one LSTM per stage).
NUM_STATE_STAGES = 4
#: Batch size of the example input the graph is traced with (2, so that the batch axis is not specialised to 1).
_TRACE_BATCH = 2


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: the ONNX value name.
        shape: symbolic dimensions: ``batch`` (dynamic), or expressions of the symbols of :func:`graph_shapes`
            (``H``, ``W``: graph input size in px; ``C_in``: histogram channels = 2 x bins; ``C_s``: channels and
            ``S_s``: stride of stage s; ``A``: anchors = sum over head levels of ``(H / s) * (W / s)``; ``K``: classes).
        dtype: numpy dtype name (all ``float32``).
        meaning: what the tensor holds.
    """

    name: str
    shape: tuple[str, ...]
    dtype: str
    meaning: str


def state_names(prefix: str = "") -> list[str]:
    """State value names in graph order: ``h_1, c_1, ..., h_4, c_4`` (``prefix`` ``next_`` for the outputs)."""
    return [f"{prefix}{kind}_{stage}" for stage in range(1, NUM_STATE_STAGES + 1) for kind in ("h", "c")]


def _state_specs(prefix: str, when: str) -> list[TensorSpec]:
    specs = []
    for stage in range(1, NUM_STATE_STAGES + 1):
        for kind, what in (("h", "hidden state h"), ("c", "cell state c")):
            specs.append(TensorSpec(f"{prefix}{kind}_{stage}", ("batch", f"C_{stage}", f"H/S_{stage}", f"W/S_{stage}"),
                                    "float32", f"ConvLSTM {what} of backbone stage {stage} {when}"))
    return specs


#: Inputs of the graph, in order.
GRAPH_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("histogram", ("batch", "C_in", "H", "W"), "float32",
               "stacked histogram of the window (polarity-major channels, counts as float), zero-padded at the "
               "bottom and right to H x W as the detector pads"),
    *_state_specs("", "after the previous window (zeros at the start of a recording)"),
)
#: Outputs of the graph, in order.
GRAPH_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("predictions", ("batch", "A", "5+K"), "float32",
               "decoded YOLOX predictions before NMS: cx, cy, w, h (input px), objectness, K class probabilities "
               "(YOLOXHead.decode)"),
    *_state_specs("next_", "after this window (feed back as the next window's inputs)"),
)

#: ``metadata_props`` keys of the exported model (prefix ``evdet.``) and what they hold.
METADATA_KEYS: dict[str, str] = {
    "evdet.format_version": "version of this metadata layout (1)",
    "evdet.version": "evdet-model package version that exported the file",
    "evdet.experiment": "experiment_name of the checkpoint's config",
    "evdet.checkpoint": "file name of the exported checkpoint (or 'random weights' for a config's model)",
    "evdet.model": "JSON: the checkpoint's model config (backbone, fpn, head)",
    "evdet.input_height": "H: graph input height (px, a multiple of evdet.input_multiple)",
    "evdet.input_width": "W: graph input width (px, a multiple of evdet.input_multiple)",
    "evdet.input_multiple": "the detector pads its input to multiples of this (px)",
    "evdet.model_height": "dataset.height the model was trained at (px; sets the sensor downsample factor)",
    "evdet.model_width": "dataset.width the model was trained at (px)",
    "evdet.in_channels": "C_in = 2 x bins histogram channels",
    "evdet.bins": "time bins per polarity",
    "evdet.histogram": "JSON: the run's stacked-histogram parameters (eval_info.histogram), null for the reference's",
    "evdet.class_names": "JSON list: class names in class-id order",
    "evdet.num_classes": "K",
    "evdet.strides": "JSON list: head level strides (px)",
    "evdet.state_strides": "JSON list: S_1..S_4, backbone stage strides (px)",
    "evdet.state_channels": "JSON list: C_1..C_4, backbone stage channels",
    "evdet.confidence_threshold": "the run's validation.confidence_threshold (evdet-detect's --confidence is 0.3)",
    "evdet.nms_threshold": "the run's validation.nms_threshold (evdet-detect's --nms default)",
    "evdet.score": "dataset.evaluation.score: what the written class_confidence is (class_conf or obj_x_class)",
    "evdet.opset": "ONNX opset of the graph",
}


class StreamingStep(nn.Module):
    """One streaming step of an :class:`RVT` with the states as explicit tensors (the exported graph).

    Args:
        model: the detector (used in eval mode; not copied).
    """

    def __init__(self, model: RVT) -> None:
        super().__init__()
        self.model = model

    def forward(self, histogram: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        """Args:
            histogram: float32 ``(B, C_in, H, W)``, H and W multiples of ``model.input_multiple``.
            states: 8 float32 tensors ``h_1, c_1, ..., h_4, c_4``, stage s ``(B, C_s, H / S_s, W / S_s)``.

        Returns:
            ``predictions`` float32 ``(B, A, 5 + K)`` (:meth:`YOLOXHead.decode`) and the 8 new states in input order.

        Raises:
            ValueError: not 8 states, or shapes the backbone refuses (names the stage).
        """
        if len(states) != 2 * NUM_STATE_STAGES:
            raise ValueError(f"StreamingStep: expected {2 * NUM_STATE_STAGES} state tensors, got {len(states)}")
        pairs = [(states[2 * i], states[2 * i + 1]) for i in range(NUM_STATE_STAGES)]
        features, new_states = self.model.forward_backbone(histogram, pairs)
        predictions = self.model.head.decode(self.model.forward_detect(features))
        return (predictions, *[t for pair in new_states for t in pair])


def default_input_size(model: RVT, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``model.input_multiple`` (what :func:`pad_to_multiple` gives),
    e.g. 360x640 -> 384x640 for RVT's multiple 64."""
    m = model.input_multiple
    return -(-int(height) // m) * m, -(-int(width) // m) * m


def graph_shapes(model: RVT, height: int, width: int) -> dict[str, int]:
    """Values of the shape symbols of :class:`TensorSpec` for ``model`` at graph input ``height x width`` (px).

    Returns:
        ``{"H", "W", "C_in", "C_1".."C_4", "S_1".."S_4", "A", "K"}`` -> int.
    """
    backbone = model.backbone
    symbols = {"H": int(height), "W": int(width), "C_in": int(backbone.in_channels), "K": int(model.num_classes),
               "A": sum((int(height) // s) * (int(width) // s) for s in model.strides)}
    for stage in range(1, NUM_STATE_STAGES + 1):
        symbols[f"C_{stage}"] = int(backbone.out_channels[stage])
        symbols[f"S_{stage}"] = int(backbone.strides[stage])
    return symbols


def resolve_shape(shape: Sequence[str], symbols: Mapping[str, int], batch: int | str = "batch") -> tuple:
    """Evaluate a symbolic :class:`TensorSpec` shape: ``batch`` -> ``batch``, ``X`` -> ``symbols[X]``, ``X/Y`` ->
    ``symbols[X] // symbols[Y]``, ``N+X`` -> ``N + symbols[X]``.

    Raises:
        KeyError: a symbol not in ``symbols``.
    """
    out: list[int | str] = []
    for dim in shape:
        if dim == "batch":
            out.append(batch)
        elif "/" in dim:
            top, bottom = dim.split("/")
            out.append(symbols[top] // symbols[bottom])
        elif "+" in dim:
            number, name = dim.split("+")
            out.append(int(number) + symbols[name])
        else:
            out.append(symbols[dim])
    return tuple(out)


def format_io_table() -> str:
    """The markdown table of graph inputs and outputs that docs/onnx.md holds (generated from :data:`GRAPH_INPUTS`
    and :data:`GRAPH_OUTPUTS`, so the doc and the graph cannot drift apart unnoticed: tests compare them)."""
    rows = ["| kind | name | shape | dtype | meaning |", "| --- | --- | --- | --- | --- |"]
    for kind, specs in (("input", GRAPH_INPUTS), ("output", GRAPH_OUTPUTS)):
        for spec in specs:
            rows.append(f"| {kind} | `{spec.name}` | `({', '.join(spec.shape)})` | {spec.dtype} | {spec.meaning} |")
    return "\n".join(rows)


def format_metadata_table() -> str:
    """The markdown table of :data:`METADATA_KEYS` (docs/onnx.md)."""
    rows = ["| key | value |", "| --- | --- |"]
    rows += [f"| `{key}` | {meaning} |" for key, meaning in METADATA_KEYS.items()]
    return "\n".join(rows)


@dataclass(frozen=True)
class OnnxMetadata:
    """The evdet settings stored in an exported model (:data:`METADATA_KEYS`).

    Attributes:
        input_height, input_width: graph input size H x W (px).
        input_multiple: padding multiple of the detector (px).
        model_height, model_width: the trained representation size (px).
        in_channels, bins: histogram channels and time bins per polarity.
        histogram: the run's histogram parameters (``eval_info["histogram"]``) or None.
        class_names: names in class-id order.
        strides: head level strides (px).
        confidence_threshold, nms_threshold: the run's validation thresholds.
        score: ``class_conf`` or ``obj_x_class``.
        model: the model config (``backbone``, ``fpn``, ``head``).
        experiment, checkpoint, version: provenance.
        opset: the graph's opset.
    """

    input_height: int
    input_width: int
    input_multiple: int
    model_height: int
    model_width: int
    in_channels: int
    bins: int
    histogram: dict[str, Any] | None
    class_names: list[str]
    strides: list[int]
    confidence_threshold: float
    nms_threshold: float
    score: str
    model: dict[str, Any]
    experiment: str
    checkpoint: str
    version: str
    opset: int


def read_metadata(model: Any, path: str | Path) -> OnnxMetadata:
    """Parse the ``evdet.*`` ``metadata_props`` of an ONNX ``ModelProto`` (or of an onnxruntime session's
    ``get_modelmeta().custom_metadata_map``, a plain mapping).

    Args:
        model: ``onnx.ModelProto`` or a mapping key -> string.
        path: the file (named in errors).

    Raises:
        ValueError: a key of :data:`METADATA_KEYS` is missing or does not parse (names the file and the key: a model
            not exported by ``evdet-model export``).
    """
    props = dict(model) if isinstance(model, Mapping) else {p.key: p.value for p in model.metadata_props}
    missing = [k for k in METADATA_KEYS if k not in props]
    if missing:
        raise ValueError(f"{path}: not an ONNX model of evdet-model export (metadata_props lacks {missing[0]}"
                         f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); export the checkpoint with "
                         "evdet-model export CKPT --format onnx")
    key = ""
    try:
        values: dict[str, Any] = {}
        for key, cast in (("input_height", int), ("input_width", int), ("input_multiple", int),
                          ("model_height", int), ("model_width", int), ("in_channels", int), ("bins", int),
                          ("confidence_threshold", float), ("nms_threshold", float), ("opset", int)):
            values[key] = cast(props[f"evdet.{key}"])
        for key in ("histogram", "class_names", "strides", "model"):
            values[key] = json.loads(props[f"evdet.{key}"])
        for key in ("score", "experiment", "checkpoint", "version"):
            values[key] = props[f"evdet.{key}"]
    except (ValueError, TypeError):
        raise ValueError(f"{path}: metadata_props evdet.{key} does not parse: {props.get(f'evdet.{key}')!r}") from None
    return OnnxMetadata(**values)


def _package_version() -> str:
    try:
        return importlib_metadata.version("evdet-model")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _metadata(model: RVT, config: Mapping[str, Any], eval_info: Mapping[str, Any] | None, height: int, width: int,
              source: str) -> dict[str, str]:
    """The ``metadata_props`` values (strings) of :data:`METADATA_KEYS`."""
    from evdet.model.config import dataset_classes

    ds, val = config["dataset"], config.get("validation") or {}
    histogram = (eval_info or {}).get("histogram")
    in_channels = int(model.backbone.in_channels)
    values = {
        "evdet.format_version": "1",
        "evdet.version": _package_version(),
        "evdet.experiment": str(config.get("experiment_name", "default")),
        "evdet.checkpoint": source,
        "evdet.model": json.dumps(config["model"]),
        "evdet.input_height": str(height),
        "evdet.input_width": str(width),
        "evdet.input_multiple": str(model.input_multiple),
        "evdet.model_height": str(int(ds["height"])),
        "evdet.model_width": str(int(ds["width"])),
        "evdet.in_channels": str(in_channels),
        "evdet.bins": str(in_channels // 2),
        "evdet.histogram": json.dumps(dict(histogram) if histogram else None),
        "evdet.class_names": json.dumps(list(dataset_classes(ds).class_names)),
        "evdet.num_classes": str(int(model.num_classes)),
        "evdet.strides": json.dumps([int(s) for s in model.strides]),
        "evdet.state_strides": json.dumps([int(model.backbone.strides[s]) for s in range(1, NUM_STATE_STAGES + 1)]),
        "evdet.state_channels": json.dumps([int(model.backbone.out_channels[s])
                                            for s in range(1, NUM_STATE_STAGES + 1)]),
        "evdet.confidence_threshold": repr(float(val.get("confidence_threshold", 0.001))),
        "evdet.nms_threshold": repr(float(val.get("nms_threshold", 0.65))),
        "evdet.score": str((ds.get("evaluation") or {}).get("score", "class_conf")),
        "evdet.opset": str(ONNX_OPSET),
    }
    assert list(values) == list(METADATA_KEYS)  # the doc table and the file list the same keys
    return values


def check_input_size(model: RVT, height: int, width: int) -> None:
    """Check an export size against the detector's padding multiple.

    Raises:
        ValueError: ``height`` or ``width`` not a positive multiple of ``model.input_multiple`` (names ``--height`` /
            ``--width``, the value and the multiple).
    """
    m = model.input_multiple
    for flag, value in (("--height", height), ("--width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % m:
            raise ValueError(f"{flag}: expected a positive multiple of {m} px (the detector's input multiple: 32 x "
                             f"partition_split), got {value!r}")


def _random_inputs(model: RVT, batch: int, height: int, width: int, seed: int) -> list[Tensor]:
    """A sparse random histogram (counts 0..10 as float) and random states bounded like LSTM states (|h| < 1)."""
    gen = torch.Generator().manual_seed(seed)
    channels = int(model.backbone.in_channels)
    histogram = torch.randint(0, 11, (batch, channels, height, width), generator=gen).float()
    histogram *= (torch.rand(histogram.shape, generator=gen) < 0.05).float()
    states = []
    for stage in range(1, NUM_STATE_STAGES + 1):
        shape = (batch, int(model.backbone.out_channels[stage]), height // model.backbone.strides[stage],
                 width // model.backbone.strides[stage])
        states += [torch.rand(shape, generator=gen) * 2 - 1, torch.randn(shape, generator=gen)]
    return [histogram, *states]


def _to_proto(model: RVT, height: int, width: int):
    """Trace :class:`StreamingStep` with the dynamo exporter; returns the ``onnx.ModelProto``."""
    step = StreamingStep(model).eval()
    example = tuple(_random_inputs(model, _TRACE_BATCH, height, width, seed=0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = ({0: batch}, *[{0: batch} for _ in range(2 * NUM_STATE_STAGES)])
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter progress notes and a note on the shared batch symbol
        program = torch.onnx.export(
            step, example, None, dynamo=True, opset_version=ONNX_OPSET, verbose=False,
            input_names=[s.name for s in GRAPH_INPUTS], output_names=[s.name for s in GRAPH_OUTPUTS],
            dynamic_shapes=(dynamic[0], dynamic[1:]), optimize=True,
        )
    return program.model_proto


def export_model(model: RVT, output: str | Path, *, height: int, width: int, config: Mapping[str, Any],
                 eval_info: Mapping[str, Any] | None = None, source: str = "random weights",
                 overwrite: bool = False, check_seed: int = 1) -> dict[str, Any]:
    """Export one streaming step of ``model`` to ONNX, validate it and compare it with torch.

    The file is written to a temporary name in ``output``'s folder and renamed into place once
    ``onnx.checker.check_model(full_check=True)`` passed, so a failed export never leaves a partial file. The check
    runs one random step (batch 1: sparse histogram, random states) through torch and onnxruntime.

    Args:
        model: the detector (put in eval mode, on the CPU).
        output: the ``.onnx`` file to write.
        height, width: graph input size (px), multiples of ``model.input_multiple``.
        config: the model's config (``dataset``, ``validation``, ``experiment_name``) for the metadata.
        eval_info: the checkpoint's ``eval_info`` (histogram parameters), or None.
        source: what the weights are (metadata ``evdet.checkpoint``).
        overwrite: replace an existing ``output``.
        check_seed: seed of the comparison step's random input.

    Returns:
        JSON-ready report: ``path``, ``format``, ``opset``, ``exporter``, ``inputs`` / ``outputs`` (name, shape with
        ``batch`` for the dynamic axis, dtype), ``size_bytes``, ``max_abs_diff`` (max over all outputs of
        |onnxruntime - torch| on the check step), ``max_abs_diff_predictions``, ``metadata``.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False (left untouched).
        ValueError: a size that is not a multiple of the input multiple (names ``--height`` / ``--width``); ``output``
            is a directory; the checker refuses the graph.
    """
    import onnx
    import onnxruntime as ort

    output = Path(output)
    check_input_size(model, height, width)
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; give the .onnx file to write")
    if output.exists() and not overwrite:
        raise FileExistsError(f"--output {output} exists; pass --overwrite to replace it")
    model = model.eval().cpu()
    proto = _to_proto(model, height, width)
    for key, value in _metadata(model, config, eval_info, height, width, source).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"the exported graph fails onnx.checker: {' '.join(str(exc).split())[:300]}") from None
    data = proto.SerializeToString()
    symbols = graph_shapes(model, height, width)
    inputs = _random_inputs(model, 1, height, width, seed=check_seed)
    with torch.no_grad():
        expected = StreamingStep(model)(*inputs)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {spec.name: t.numpy() for spec, t in zip(GRAPH_INPUTS, inputs)})
    diffs = [float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected)]
    for spec, array in zip(GRAPH_OUTPUTS, got):
        want = resolve_shape(spec.shape, symbols, batch=1)
        if tuple(array.shape) != want:
            raise ValueError(f"the exported graph's output {spec.name} has shape {array.shape}, expected {want}")
    _write_atomically(data, output, overwrite)

    def described(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "shape": list(resolve_shape(s.shape, symbols)), "dtype": s.dtype} for s in specs]

    return {
        "path": str(output),
        "format": "onnx",
        "opset": ONNX_OPSET,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "inputs": described(GRAPH_INPUTS),
        "outputs": described(GRAPH_OUTPUTS),
        "size_bytes": output.stat().st_size,
        "max_abs_diff": max(diffs),
        "max_abs_diff_predictions": diffs[0],
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }


def _write_atomically(data: bytes, output: Path, overwrite: bool) -> None:
    """Write ``data`` to ``output`` whole or not at all (:func:`evdet.data.output_folder.write_file_atomically`).

    Raises:
        FileExistsError: ``output`` exists (or appeared meanwhile) and ``overwrite`` is False (left untouched).
        ValueError: the folder cannot be created or written (names it).
    """
    try:
        write_file_atomically(lambda tmp: tmp.write_bytes(data), output, overwrite=overwrite, label="--output ")
    except FileExistsError:
        raise
    except OSError as exc:
        raise ValueError(f"--output {output}: cannot write ({exc.strerror or exc})") from None


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, export_format: str = "onnx",
                      height: int | None = None, width: int | None = None,
                      overwrite: bool = False) -> dict[str, Any]:
    """``evdet-model export``: load ``checkpoint`` (weights-only, :func:`evdet.model.training.checkpoint.load_module`) and
    export it with :func:`export_model`.

    Args:
        checkpoint: evdet checkpoint (local path or ``s3://``).
        output: the ``.onnx`` file to write.
        export_format: one of :data:`EXPORT_FORMATS`.
        height, width: graph input size (px); default: the run's ``dataset.height`` / ``dataset.width`` rounded up to
            the input multiple (:func:`default_input_size`; 360x640 -> 384x640).

    Returns:
        The report of :func:`export_model`, plus ``checkpoint``.

    Raises:
        ValueError: unknown ``export_format`` (names ``--format``); a size that is not a multiple of the input multiple;
            an unusable checkpoint (:class:`evdet.model.training.checkpoint.CheckpointError`).
        FileNotFoundError: no checkpoint at ``checkpoint``.
        FileExistsError: ``output`` exists without ``overwrite``.
    """
    from evdet.model.training.checkpoint import load_module

    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"--format: expected one of {list(EXPORT_FORMATS)}, got {export_format!r}")
    output = Path(output)
    if output.exists() and not overwrite and not output.is_dir():
        raise FileExistsError(f"--output {output} exists; pass --overwrite to replace it")
    module, config = load_module(checkpoint, "cpu")
    model = module.model
    ds = config["dataset"]
    default_h, default_w = default_input_size(model, int(ds["height"]), int(ds["width"]))
    height = default_h if height is None else height
    width = default_w if width is None else width
    check_input_size(model, height, width)
    report = export_model(model, output, height=height, width=width, config=config, eval_info=module.eval_info,
                          source=Path(str(checkpoint)).name, overwrite=overwrite)
    return {"checkpoint": str(checkpoint), **report}
