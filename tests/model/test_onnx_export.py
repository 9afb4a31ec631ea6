"""ONNX export of the streaming step (``evdet-model export``), the onnxruntime engine of ``evdet-detect`` and
``evdet-bench detect --engine``, on the real gen4 recording.

The detector is RVT-T at half width (embed_dim 16, head_dim 8) for a 45x80 input (gen4 1280x720 / 16, padded to
64x128), with random weights: every float tensor N(0, 0.1) (BatchNorm variances U(0.5, 1.5)), seed 0. Default
initialisation gives near-constant outputs (objectness and class priors 0.01, LayerScale 1e-5), where every score is
a tie; these weights give ~0.55 class probabilities whose obj x class product straddles the 0.3 threshold, so the
threshold and NMS decide which anchors are kept. The raw graph outputs are compared too, so a near-threshold flip
would show as a mismatch of kept detections with raw outputs that agree (it does not happen with these weights).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import lightning
import numpy as np
import onnx
import pytest
import torch

from evdet.data.labels import load_boxes
from evdet.data.readers import open_recording
from evdet.data.representation import stacked_histogram
from evdet.data.windows import grid_window_ends, iter_window_events
from evdet.model.cli.model import main as model_main
from evdet.model.config import compose_config, to_container
from evdet.model.inference.detect import histogram_config, input_scale_factor
from evdet.model.cli.detect import main as detect_main
from evdet.model.inference.detect_engines import load_detector
from evdet.model.training.module import DetectionModule
from evdet.model.inference.onnx_export import (
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    METADATA_KEYS,
    ONNX_OPSET,
    StreamingStep,
    format_io_table,
    format_metadata_table,
    graph_shapes,
    read_metadata,
    resolve_shape,
)

ROOT = Path(__file__).resolve().parents[2]
GEN4 = ROOT / "data" / "real" / "gen4.dat"
DAVIS = ROOT / "data" / "real" / "davis346.aedat4"
DOC = ROOT / "docs" / "onnx.md"
OVERRIDES = ["model=rvt_tiny", "model.backbone.embed_dim=16", "model.backbone.head_dim=8", "dataset.height=45",
             "dataset.width=80", "experiment_name=onnx_test"]
CONFIDENCE = 0.3
BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-5


def _write_checkpoint(path: Path, seed: int = 0, std: float = 0.1) -> Path:
    """An evdet checkpoint (the layout of evdet-model import-rvt) with random weights (module docstring)."""
    config = to_container(compose_config(OVERRIDES))
    torch.manual_seed(seed)
    module = DetectionModule(config, eval_info=None)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * std
    torch.save({"state_dict": state, "hyper_parameters": {"config": config, "eval_info": None},
                "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0}, path)
    return path


def _run(main, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """The checkpoint, its export through the CLI (default size) and the printed report."""
    base = tmp_path_factory.mktemp("onnx")
    checkpoint = _write_checkpoint(base / "tiny.ckpt")
    code, out, err = _run(model_main, ["export", checkpoint, "--format", "onnx", "--output", base / "tiny.onnx"])
    assert code == 0, err
    return {"dir": base, "checkpoint": checkpoint, "onnx": base / "tiny.onnx", "report": json.loads(out)}


def test_export_report_graph_and_metadata(exported):
    report, path = exported["report"], exported["onnx"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert report["path"] == str(path) and report["size_bytes"] == path.stat().st_size
    assert report["opset"] == ONNX_OPSET and any(o.domain in ("", "ai.onnx") and o.version == ONNX_OPSET
                                                 for o in model.opset_import)
    assert report["max_abs_diff"] < 1e-3, report["max_abs_diff"]

    def dims(values):
        return [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]

    # 45x80 rounded up to the input multiple 64; the batch axis is the one dynamic axis.
    assert dims(model.graph.input) == [(s["name"], s["shape"]) for s in report["inputs"]]
    assert dims(model.graph.output) == [(s["name"], s["shape"]) for s in report["outputs"]]
    assert report["inputs"][0]["shape"] == ["batch", 20, 64, 128]
    assert report["outputs"][0]["shape"] == ["batch", 8 * 16 + 4 * 8 + 2 * 4, 5 + 8]
    meta = read_metadata(model, path)
    assert {p.key for p in model.metadata_props} == set(METADATA_KEYS)
    assert (meta.input_height, meta.input_width, meta.model_height, meta.model_width) == (64, 128, 45, 80)
    assert meta.class_names[:2] == ["pedestrian", "car"] and len(meta.class_names) == 8 and meta.bins == 10
    assert meta.strides == [8, 16, 32] and meta.experiment == "onnx_test" and meta.checkpoint == "tiny.ckpt"
    assert meta.nms_threshold == 0.65 and meta.score == "class_conf" and meta.model["backbone"]["embed_dim"] == 16


def test_dynamic_batch_equals_torch(exported):
    """Three streams side by side, two steps (the second with the first's states) match torch."""
    import onnxruntime as ort

    detector = load_detector(exported["checkpoint"], "torch", "cpu", CONFIDENCE)
    step = StreamingStep(detector.streaming.model).eval()
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    symbols = graph_shapes(detector.streaming.model, 64, 128)
    gen = torch.Generator().manual_seed(3)
    states = [torch.zeros(resolve_shape(s.shape, symbols, batch=3)) for s in GRAPH_INPUTS[1:]]
    ort_states = [s.numpy() for s in states]
    for _ in range(2):
        frame = torch.randint(0, 6, (3, 20, 64, 128), generator=gen).float()
        with torch.no_grad():
            expected = step(frame, *states)
        got = session.run(None, {"histogram": frame.numpy(),
                                 **{s.name: v for s, v in zip(GRAPH_INPUTS[1:], ort_states)}})
        for spec, e, g in zip(GRAPH_OUTPUTS, expected, got):
            assert g.shape == tuple(e.shape) == resolve_shape(spec.shape, symbols, batch=3)
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=1e-5, err_msg=spec.name)
        states, ort_states = list(expected[1:]), got[1:]


def test_doc_tables_match_the_graph(exported):
    doc = DOC.read_text()
    assert format_io_table() in doc and format_metadata_table() in doc
    assert f"opset {ONNX_OPSET}" in doc
    # The doc's rows (name, symbolic shape) resolve to the exported graph's names and shapes.
    rows = re.findall(r"^\| (input|output) \| `([a-z_0-9]+)` \| `\(([^)]*)\)` \| (\w+) \|", doc, flags=re.MULTILINE)
    model = onnx.load(str(exported["onnx"]))
    detector = load_detector(exported["checkpoint"], "torch", "cpu", CONFIDENCE)
    symbols = graph_shapes(detector.streaming.model, 64, 128)
    graph = [("input", v) for v in model.graph.input] + [("output", v) for v in model.graph.output]
    assert len(rows) == len(graph) == 18
    for (kind, name, shape, dtype), (graph_kind, value) in zip(rows, graph):
        dims = tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)
        assert (kind, name) == (graph_kind, value.name)
        assert resolve_shape(tuple(shape.split(", ")), symbols) == dims
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and dtype == "float32"


def _windows(path: Path, model_height: int, model_width: int):
    """Histograms of every 50 ms window of ``path`` as evdet-detect builds them."""
    with open_recording(path) as reader:
        factor = input_scale_factor(reader.width, reader.height, model_width, model_height)
        config = histogram_config(None, factor)
        first = reader.time_range()[0]
        windows = iter_window_events(reader.iter_chunks(), grid_window_ends(first, config.window_us),
                                     config.window_us, reader.width, reader.height, stop_at_stream_end=True)
        for t_end, events in windows:
            yield t_end, stacked_histogram(events, t_end, config)


def _match(torch_boxes: np.ndarray, ort_boxes: np.ndarray) -> None:
    """One-to-one match of two windows' detections: same class, x/y/w/h within BOX_TOL_PX, score within SCORE_TOL
    (the order of detections with equal scores is not part of the result)."""
    assert len(torch_boxes) == len(ort_boxes)
    free = list(range(len(ort_boxes)))
    for box in torch_boxes:
        candidates = [j for j in free if ort_boxes[j]["class_id"] == box["class_id"]
                      and max(abs(float(ort_boxes[j][k]) - float(box[k])) for k in "xywh") <= BOX_TOL_PX
                      and abs(float(ort_boxes[j]["class_confidence"]) - float(box["class_confidence"])) <= SCORE_TOL]
        assert candidates, f"no onnxruntime detection matches torch's {box}"
        best = min(candidates, key=lambda j: max(abs(float(ort_boxes[j][k]) - float(box[k])) for k in "xywh"))
        free.remove(best)


def test_gen4_same_detections_through_torch_and_onnxruntime(exported, tmp_path):
    # Raw graph outputs (pre-NMS predictions and states) over every window of gen4.
    torch_det = load_detector(exported["checkpoint"], None, "cpu", CONFIDENCE)
    ort_det = load_detector(exported["onnx"], None, "cpu", CONFIDENCE)
    assert (torch_det.engine, ort_det.engine) == ("torch", "onnxruntime")
    states, windows, kept = None, 0, []
    for _, histogram in _windows(GEN4, 45, 80):
        with torch.no_grad():
            predictions, states = torch_det.streaming._network(torch.from_numpy(histogram).float()[None], states)
        frame = np.zeros((1, 20, 64, 128), dtype=np.float32)
        frame[0, :, :45, :80] = histogram
        got = ort_det.streaming.run_graph(frame)
        np.testing.assert_allclose(got[..., :4], predictions[..., :4].numpy(), atol=BOX_TOL_PX / 16, rtol=0)
        np.testing.assert_allclose(got[..., 4:], predictions[..., 4:].numpy(), atol=SCORE_TOL, rtol=0)
        for g, e in zip(ort_det.streaming.states, [t for pair in states for t in pair]):
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0)
        score = predictions[0, :, 4] * predictions[0, :, 5:].max(dim=1).values
        kept.append(int((score >= CONFIDENCE).sum()))
        windows += 1
    assert windows == 216
    assert 0 < min(kept) and max(kept) < 168  # the threshold keeps some anchors of every window, not all

    # evdet-detect through both engines: the same files and the same detections per window.
    reports = {}
    for engine, model in (("torch", exported["checkpoint"]), ("onnxruntime", exported["onnx"])):
        out = tmp_path / engine
        code, stdout, err = _run(detect_main, [model, GEN4, "--output", out, "--engine", engine, "--device", "cpu",
                                               "--confidence", CONFIDENCE, "--max-images", 2])
        assert code == 0, err
        reports[engine] = json.loads(stdout)["recordings"][0]  # one recording: its report
        assert reports[engine]["engine"] == engine
    assert sorted(p.name for p in (tmp_path / "torch").iterdir()) == \
        sorted(p.name for p in (tmp_path / "onnxruntime").iterdir())
    first, second = reports["torch"], reports["onnxruntime"]
    assert set(first) == set(second) and first["windows"] == second["windows"] == 216
    assert first["detections"] == second["detections"] > 0
    a, b = load_boxes(first["boxes"]), load_boxes(second["boxes"])
    assert np.array_equal(np.unique(a["t"]), np.unique(b["t"])) and len(np.unique(a["t"])) == 216
    for t in np.unique(a["t"]):
        _match(a[a["t"] == t], b[b["t"] == t])


def test_python_example_of_the_doc_runs(exported):
    """The 10-line onnxruntime example of docs/onnx.md gives the engine's detections."""
    code = re.search(r"## Running the graph from Python.*?```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL).group(1)
    histograms = [h for _, h in zip(range(4), (h for _, h in _windows(GEN4, 45, 80)))]
    namespace = {"windows": histograms}
    engine = load_detector(exported["onnx"], "onnxruntime", "cpu", 0.3)
    expected = [engine.streaming.step(h) for h in histograms]
    exec(compile(code.replace('"model.onnx"', repr(str(exported["onnx"]))), "docs/onnx.md", "exec"), namespace)  # noqa: S102 - the doc example
    got = namespace["detections"]
    assert got.shape == expected[-1].shape and torch.equal(got[:, 6], expected[-1][:, 6])
    torch.testing.assert_close(got, expected[-1], atol=1e-4, rtol=0)


def test_export_errors_are_one_line_and_leave_files(exported, tmp_path):
    checkpoint = exported["checkpoint"]
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"keep me")
    cases = [
        (["export", tmp_path / "missing.ckpt", "--format", "onnx", "--output", tmp_path / "a.onnx"],
         "missing.ckpt: no such file"),
        (["export", checkpoint, "--format", "tflite", "--output", tmp_path / "a.onnx"], "--format: expected one of"),
        (["export", checkpoint, "--format", "onnx", "--output", tmp_path / "a.onnx", "--height", "96"],
         "--height: expected a positive multiple of 64"),
        (["export", checkpoint, "--format", "onnx", "--output", tmp_path / "a.onnx", "--width", "-64"],
         "--width: expected a positive multiple of 64"),
        (["export", checkpoint, "--format", "onnx", "--output", existing], "exists; pass --overwrite"),
    ]
    for argv, message in cases:
        code, out, err = _run(model_main, argv)
        assert code == 2 and out == "" and message in err, (argv, err)
        assert err.startswith("evdet-model export: error:") and err.count("\n") == 1
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_detect_engine_errors(exported, tmp_path):
    out = tmp_path / "out"
    cases = [
        ([exported["onnx"], GEN4, "--engine", "torch"], "--engine torch:", "is an ONNX model"),
        ([exported["checkpoint"], GEN4, "--engine", "onnxruntime"], "--engine onnxruntime:", "evdet-model export"),
        # davis346 (346x260) / 6 -> a 43x57 histogram, padded 64x64: not the graph's 64x128.
        ([exported["onnx"], DAVIS], "takes a 64x128 (HxW) input", "43x57 px, padded to 64x64", "--height 64"),
    ]
    for argv, *messages in cases:
        code, stdout, err = _run(detect_main, [*argv, "--output", out, "--device", "cpu"])
        assert code == 2 and stdout == "", err
        assert err.count("\n") == 1 and all(m in err for m in messages), err
        assert not out.exists()


def test_bench_detect_reports_both_engines(exported):
    from evdet.model.bench.cli import main as bench_main

    results = {}
    for engine, model in (("torch", exported["checkpoint"]), ("onnxruntime", exported["onnx"])):
        code, out, err = _run(bench_main, ["detect", "--engine", engine, "--checkpoint", model, "--device", "cpu",
                                           "--recording", GEN4, "--windows", 4, "--warmup", 1])
        assert code == 0, err
        results[engine] = json.loads(out)
    for engine, result in results.items():
        assert result["engine"] == engine and result["windows"] == 4 and result["input"] == [20, 45, 80]
        assert 0 < result["latency_ms_p50"] <= result["latency_ms_p95"]
        assert result["embed_dim"] == 16
    assert results["onnxruntime"]["params"] > 0 and results["onnxruntime"]["onnx_export_s"] is None
    code, out, err = _run(bench_main, ["detect", "--engine", "torch", "--checkpoint", exported["onnx"],
                                       "--device", "cpu"])
    assert code == 2 and "--engine torch:" in err and "is an ONNX model" in err
    code, out, err = _run(bench_main, ["detect", "--engine", "onnxruntime", "--compile", "inductor",
                                       "--device", "cpu"])
    assert code == 2 and "--compile: torch engine options" in err
