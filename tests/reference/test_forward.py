"""evdet's detector with imported RVT weights reproduces RVT's own eval-mode forward (``forward_io.npz``).

The model is built from the manifest's RVT model config (:func:`evdet.model.training.rvt_import.rvt_model_config_to_overrides`)
and loaded with ``rvt_tiny_weights.pt`` (:func:`evdet.model.training.rvt_import.import_rvt_weights`); it runs eval mode over
the L steps of ``input`` from zero states. Every stored array is compared per step: stage outputs h and cell states
c, the LSTM inputs at step 0, the PAFPN levels, the raw head convolutions, the flattened head output, the decoded
boxes and the post-processed detections (at the thresholds the manifest gives). Tolerance (README, "Expect float32
agreement to ~1e-5 relative"): ``max |evdet - ref| / max |ref| <= 1e-5`` per array; every max relative and absolute
difference is recorded with ``measured``.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from evdet.model.nn.detector import pad_to_multiple
from evdet.model.nn.postprocess import postprocess

FORWARD = "forward_io.npz"
REL_TOL = 1e-5
"""README "rvt_tiny_weights.pt, forward_io.npz": float32 agreement to ~1e-5 relative (max |diff| / max |ref|)."""


def _compare(measured, name: str, got: np.ndarray, ref: np.ndarray, rel_tol: float = REL_TOL) -> None:
    assert got.shape == ref.shape, f"{name}: evdet shape {got.shape}, reference {ref.shape}"
    diff = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    rel = diff / scale if scale > 0 else diff
    measured(f"forward.{name}.max_abs", diff)
    measured(f"forward.{name}.max_rel", rel)
    assert rel <= rel_tol, f"{name}: max |evdet - ref| / max |ref| = {rel:.3e} > {rel_tol:g} (max abs {diff:.3e})"


@pytest.fixture(scope="module")
def forward_run(manifest: dict, reference_model, load_npz) -> dict:
    """Run evdet over the fixture input; returns the evdet arrays under the fixture's names plus extras."""
    ref = load_npz(FORWARD)
    post = manifest["files"][FORWARD]["config"]["postprocess"]
    model = reference_model().eval()
    x = torch.from_numpy(ref["input"])  # (B, L, C, H, W)
    batch, steps = x.shape[:2]
    num_stages = len(model.backbone.stages)
    lstm_inputs: dict[int, torch.Tensor] = {}

    def hook_for(stage: int):
        def hook(module, args):
            lstm_inputs.setdefault(stage, args[0].detach().clone())
        return hook

    handles = [model.backbone.stages[s - 1].lstm.register_forward_pre_hook(hook_for(s))
               for s in range(1, num_stages + 1)]
    out: dict[str, list] = {}
    detections: list[list[torch.Tensor]] = []
    states = None
    try:
        with torch.no_grad():
            for t in range(steps):
                frames = x[:, t]
                _, states = model.forward_backbone(frames, states)
                features = {s: states[s - 1][0] for s in range(1, num_stages + 1)}
                for s in range(1, num_stages + 1):
                    out.setdefault(f"h_stage{s}", []).append(states[s - 1][0].numpy().copy())
                    out.setdefault(f"c_stage{s}", []).append(states[s - 1][1].numpy().copy())
                pyramid = model.forward_fpn(features)
                raw = model.head(pyramid)
                for k, (level, head_out) in enumerate(zip(pyramid, raw)):
                    out.setdefault(f"fpn_level{k}", []).append(level.numpy().copy())
                    out.setdefault(f"head_reg_level{k}", []).append(head_out[:, :4].numpy().copy())
                    out.setdefault(f"head_obj_level{k}", []).append(head_out[:, 4:5].numpy().copy())
                    out.setdefault(f"head_cls_level{k}", []).append(head_out[:, 5:].numpy().copy())
                flat = torch.cat([o.flatten(2).transpose(1, 2) for o in raw], 1)  # (B, A, 5 + C), anchor order
                head_output = torch.cat((flat[..., :4], flat[..., 4:].sigmoid()), -1)
                out.setdefault("head_output", []).append(head_output.numpy().copy())
                decoded = model.head.decode(raw)
                out.setdefault("decoded", []).append(decoded.numpy().copy())
                detections.append(postprocess(decoded, conf_threshold=float(post["conf_thre"]),
                                              nms_threshold=float(post["nms_thre"])))
            _, grid, strides = model.head._flatten(raw)
    finally:
        for handle in handles:
            handle.remove()
    arrays = {name: np.stack(values) for name, values in out.items()}
    for s, value in lstm_inputs.items():
        arrays[f"lstm_input_stage{s}_step0"] = value.numpy()
    return {
        "arrays": arrays,
        "detections": detections,
        "padded_hw": tuple(pad_to_multiple(x[:, 0], model.input_multiple).shape[-2:]),
        "grid": grid.numpy(),
        "strides": strides.numpy(),
        "model_strides": model.strides,
        "batch": batch,
        "steps": steps,
        "num_stages": num_stages,
        "num_levels": len(pyramid),
    }


def test_input_is_padded_like_the_reference(forward_run, load_npz, manifest) -> None:
    ref = load_npz(FORWARD)
    config = manifest["files"][FORWARD]["config"]
    assert list(forward_run["padded_hw"]) == ref["input_padded_hw"].tolist() == list(config["hw_padded"])
    assert list(ref["input"].shape[-2:]) == list(config["hw_input"])
    assert (forward_run["steps"], forward_run["batch"]) == (config["steps"], config["batch"])
    for s in range(1, forward_run["num_stages"] + 1):
        assert list(forward_run["arrays"][f"h_stage{s}"].shape[-2:]) == list(config["feature_hw"][f"stage{s}"])


def test_anchor_grid_matches_reference_order(forward_run, load_npz, manifest, measured) -> None:
    anchors = load_npz(FORWARD)["anchor_x_y_stride"]
    got = np.concatenate((forward_run["grid"], forward_run["strides"][:, None]), 1)
    assert got.shape == anchors.shape
    assert np.array_equal(got, anchors.astype(got.dtype)), "evdet anchor (x, y, stride) order differs from RVT's"
    assert list(forward_run["model_strides"]) == list(manifest["files"][FORWARD]["config"]["head_strides"])
    measured("forward.anchors", anchors.shape[0])


def _array_names(forward_run) -> list[str]:
    names = []
    for s in range(1, forward_run["num_stages"] + 1):
        names += [f"h_stage{s}", f"c_stage{s}", f"lstm_input_stage{s}_step0"]
    for k in range(forward_run["num_levels"]):
        names += [f"fpn_level{k}", f"head_reg_level{k}", f"head_obj_level{k}", f"head_cls_level{k}"]
    return names + ["head_output", "decoded"]


def test_every_array_matches_the_reference(forward_run, load_npz, measured) -> None:
    ref = load_npz(FORWARD)
    names = _array_names(forward_run)
    missing = [n for n in names if n not in ref]
    assert not missing, f"{FORWARD} lacks {missing}"
    failures = []
    for name in names:
        try:
            _compare(measured, name, forward_run["arrays"][name], ref[name])
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "; ".join(failures)


def test_per_step_differences(forward_run, load_npz, measured) -> None:
    """The same comparison step by step (a drift over the recurrence would show as growing differences)."""
    ref = load_npz(FORWARD)
    for name in _array_names(forward_run):
        if name.endswith("_step0"):
            continue
        for t in range(forward_run["steps"]):
            got, want = forward_run["arrays"][name][t], ref[name][t]
            rel = float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())
            measured(f"forward.{name}.step{t}.max_rel", rel)
            assert rel <= REL_TOL, f"{name} step {t}: relative difference {rel:.3e}"


def _match_near_ties(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, int]:
    """Order of ``got`` rows matched to ``want`` rows; rows may only trade places inside runs of near-equal scores.

    The reference's NMS output is sorted by ``obj_conf * class_conf``; on these randomised weights many detections
    have scores within a few float32 ulps of each other, and evdet's ~1e-7 relative differences can swap such
    neighbours. A run of consecutive reference rows whose scores differ by at most ``REL_TOL`` (relative) is one
    group: inside it rows are matched by box distance, outside it the order must be identical.

    Args:
        got: float ``(n, 7)`` evdet rows ``[x1, y1, x2, y2, obj_conf, class_conf, class_id]``.
        want: float ``(n, 9)`` reference rows ``[step, image, x1, y1, x2, y2, obj_conf, class_conf, class_id]``.

    Returns:
        ``(index, swapped)``: ``got[index[i]]`` is matched to ``want[i]``; number of rows not at their own position.
    """
    score = want[:, 6].astype(np.float64) * want[:, 7]
    index = np.arange(len(want))
    start = 0
    for end in range(1, len(want) + 1):
        if end < len(want) and score[end - 1] - score[end] <= REL_TOL * score[end - 1]:
            continue
        if end - start > 1:
            free = list(range(start, end))
            for i in range(start, end):
                dist = [float(np.abs(got[j, :4] - want[i, 2:6]).max()) for j in free]
                index[i] = free.pop(int(np.argmin(dist)))
        start = end
    return index, int((index != np.arange(len(want))).sum())


def test_detections_match_reference_postprocess(forward_run, load_npz, manifest, measured) -> None:
    ref = load_npz(FORWARD)
    rows, counts = ref["detections"], ref["detections_count"]
    assert counts.shape == (forward_run["steps"], forward_run["batch"])
    assert rows.shape[0] == int(counts.sum())
    box_scale = float(np.abs(rows[:, 2:6]).max()) if rows.size else 1.0
    worst_box = worst_conf = 0.0
    swapped = 0
    for t in range(forward_run["steps"]):
        for b in range(forward_run["batch"]):
            want = rows[(rows[:, 0] == t) & (rows[:, 1] == b)]
            got = forward_run["detections"][t][b].numpy()
            assert got.shape[0] == want.shape[0] == counts[t, b], (
                f"step {t} image {b}: evdet {got.shape[0]} detections, reference {want.shape[0]}")
            if not len(got):
                continue
            index, n_swapped = _match_near_ties(got, want)
            swapped += n_swapped
            got = got[index]
            assert np.array_equal(got[:, 6], want[:, 8]), f"step {t} image {b}: class ids or order differ"
            worst_box = max(worst_box, float(np.abs(got[:, :4] - want[:, 2:6]).max()))
            worst_conf = max(worst_conf, float(np.abs(got[:, 4:6] - want[:, 6:8]).max()))
    measured("forward.detections.count", rows.shape[0])
    measured("forward.detections.swapped_near_ties", swapped)
    measured("forward.detections.box_max_abs_px", worst_box)
    measured("forward.detections.box_max_rel", worst_box / box_scale)
    measured("forward.detections.conf_max_abs", worst_conf)
    assert worst_box / box_scale <= REL_TOL, f"detection boxes differ by {worst_box:.3e} px"
    assert worst_conf <= REL_TOL, f"detection confidences differ by {worst_conf:.3e}"
    assert list(counts.tolist()) == manifest["files"][FORWARD]["detections_count"]
