"""``evdet-bench train --profile`` and ``evdet-bench detect``: the JSON keys the performance issue asks for, the speed
options of ``hardware`` (same function as the default step) and the streaming detector (same detections as the
model's own per-window forward). Speeds are printed by the benchmarks, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evdet.model.nn.acceleration import apply_acceleration, build_adamw, fold_batch_norms
from evdet.model.config import compose_checked, to_container
from evdet.model.nn.detector import build_detector
from evdet.model.inference.streaming import StreamingDetector

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["+experiment=plain_lstm_640x360_baseline", "profile=local", "dataset.height=64", "dataset.width=128"]


def _bench(*args: str) -> dict:
    proc = subprocess.run([str(BIN / "evdet-bench"), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_train_profile_adds_the_phase_times() -> None:
    result = _bench("train", *SMALL, "hardware.channels_last=true", "--device", "cpu", "--batch", "1", "--steps", "1",
                    "--warmup", "1", "--profile")
    assert set(result["phase_ms"]) == {"backbone", "head_loss", "backward", "optimizer"}
    assert all(v > 0 for v in result["phase_ms"].values())
    assert result["channels_last"] is True and result["compile"] == "none"


def test_detect_bench_prints_latency_and_real_time_factor() -> None:
    result = _bench("detect", *SMALL, "--device", "cpu", "--windows", "3", "--warmup", "1",
                    "--recording", str(ROOT / "data/real/gen4.dat"))
    for key in ("latency_ms_p50", "latency_ms_p95", "real_time_factor", "histogram_ms_p50", "params"):
        assert result[key] is not None and result[key] > 0, key
    assert result["windows"] == 3 and result["window_us"] == 50_000


@pytest.mark.parametrize("argv, fragments", [
    (["detect", "--recording", "missing.dat", "--device", "cpu"], ["--recording missing.dat", "no such file"]),
    (["detect", "--device", "cpu", "--compile", "cuda_graphs"], ["--compile cuda_graphs", "CUDA device"]),
    (["detect", "--device", "cpu", "--windows", "0"], ["--windows", "integer >= 1"]),
    (["train", "--device", "cpu", "hardware.compile=everything"], ["hardware.compile", "everything"]),
])
def test_bench_errors_are_one_line(argv, fragments) -> None:
    proc = subprocess.run([str(BIN / "evdet-bench"), *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("evdet-bench: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def _model(config: dict) -> torch.nn.Module:
    ds = config["dataset"]
    torch.manual_seed(0)
    return build_detector(config["model"], num_classes=int(ds["num_classes"]), in_channels=int(ds["in_channels"]),
                          include_aux=False, class_names=list(ds["class_names"]) if "class_names" in ds else None)


def test_channels_last_and_fused_adamw_compute_the_same_step() -> None:
    config = to_container(compose_checked(SMALL, for_training=False))
    x = torch.rand(2, 20, 64, 128, generator=torch.Generator().manual_seed(3)) * 4
    results = []
    for channels_last in (False, True):
        model = apply_acceleration(_model(config), {"channels_last": channels_last, "compile": "none"}).train()
        optimizer = build_adamw(model.parameters(), lr=1e-3)
        features, _ = model.forward_backbone(x, None)
        out = torch.cat([o.flatten(1) for o in model.forward_detect(features)], 1)
        out.square().mean().backward()
        optimizer.step()
        results.append((out.detach(), next(iter(model.parameters())).detach().clone()))
    # float32 sums in another order through ~50 layers: differences of ~1e-5 on outputs of magnitude ~1
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-4)
    # one AdamW step moves each weight by ~lr * g / (|g| + eps): for gradients near eps the step itself is sensitive
    # to the gradient's rounding, so parameters agree to a fraction of lr (1e-3), not to float rounding
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=2e-4)
    with pytest.raises(ValueError, match="hardware.compile: expected one of"):
        apply_acceleration(_model(config), {"compile": "all"})


def test_streaming_detector_equals_the_models_own_window_loop() -> None:
    config = to_container(compose_checked(SMALL, for_training=False))
    model = _model(config).eval()
    with torch.no_grad():  # confident outputs, so that NMS sees boxes
        for conv in (*model.head.obj_preds, *model.head.cls_preds):
            conv.bias.fill_(3.0)
    rng = np.random.default_rng(0)
    windows = [(rng.integers(0, 11, (20, 64, 128)) * (rng.random((20, 64, 128)) < 0.2)).astype(np.uint8)
               for _ in range(4)]
    streaming = StreamingDetector(model, "cpu", confidence_threshold=0.5, nms_threshold=0.45)
    states = None
    for histogram in windows:
        got = streaming.step(histogram)
        with torch.no_grad():
            features, states = model.forward_backbone(torch.from_numpy(histogram).float().unsqueeze(0), states)
            want = model.detect(features, 0.5, 0.45)[0]
        assert got.shape[0] > 0
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="compile cuda_graphs: CUDA graphs need a CUDA device"):
        StreamingDetector(model, "cpu", 0.5, 0.45, compile="cuda_graphs")


def test_folded_batch_norms_compute_the_same_function() -> None:
    config = to_container(compose_checked(SMALL, for_training=False))
    model = _model(config).train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model.forward_detect(model.forward_backbone(torch.rand(2, 20, 64, 128) * 4, None)[0])
    model.eval()
    x = torch.rand(1, 20, 64, 128) * 4
    with torch.no_grad():
        want = torch.cat([o.flatten(1) for o in model.forward_detect(model.forward_backbone(x, None)[0])], 1)
        folded = fold_batch_norms(model)
        got = torch.cat([o.flatten(1) for o in model.forward_detect(model.forward_backbone(x, None)[0])], 1)
    assert folded > 20 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="fold_batch_norms: expected a model in eval mode"):
        fold_batch_norms(_model(config).train())
