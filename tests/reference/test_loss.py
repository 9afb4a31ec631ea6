"""evdet's training loss with imported RVT weights reproduces RVT's (``loss_io.npz``).

As in RVT's training step (README "loss_io.npz"): train mode, the backbone runs over all steps and images of the
fixture input from zero states, the features of the labelled frames are gathered step-major then image-minor (evdet:
:func:`evdet.model.training.recurrence.run_sequence`, whose frame order is checked against ``frames_step_image``), and the
PAFPN + head + loss run once on that batch (:meth:`evdet.model.nn.detector.RVT.loss`, so the BatchNorms use the
statistics of those frames). Compared: the loss terms (1e-5 relative), the SimOTA positives of every frame (anchor
indices, matched gt and class exactly, IoU of the prediction 1e-5 relative) and the gradient norm of every parameter
(RVT names mapped to evdet names with the import rules) and overall.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from evdet.model.loss import yolox_loss
from evdet.model.training.recurrence import run_sequence
from evdet.model.training.rvt_import import rvt_key_rules
from evdet.model.loss.yolox_loss import xywh_to_cxcywh

FORWARD = "forward_io.npz"
LOSS = "loss_io.npz"
REL_TOL = 1e-5
"""Loss terms and matched IoUs: float32 agreement to 1e-5 relative (as the forward outputs)."""
GRAD_REL_TOL = 1e-4
"""Gradient norms, per parameter and overall: 1e-4 relative. The forward agrees to ~1e-6 relative; the backward sums
the same products in other orders (evdet's scaled_dot_product_attention vs RVT's explicit softmax(q k^T) v, the class
loss summed per positive instead of over the flattened (positives, classes) array, other thread counts than the
reference's single CPU thread) through ~100 layers and 3 recurrent steps, so per-parameter norms differ by up to
~1e-5 relative (measured on fixture set A: 0.9e-5 with all threads, 1.1e-5 with one). A wrong mapping, a missing
term or a different assignment changes norms by 1e-2 or more, so 1e-4 keeps a 10x margin and still catches those."""
GRAD_ABS_FLOOR = 1e-6
"""Parameters whose reference gradient norm is below ``GRAD_ABS_FLOOR * grad_norm_total`` are compared in absolute
terms against that floor (relative differences of near-zero norms are meaningless)."""


def _batch(forward: dict, loss: dict) -> dict:
    """A batch dict as evdet's data loader gives it: labels [class, x, y, w, h] (top-left px) per (step, image)."""
    x = torch.from_numpy(forward["input"])
    batch, steps = x.shape[:2]
    frames = loss["frames_step_image"]
    boxes = torch.from_numpy(loss["targets_boxes"])  # [frame, class, x, y, w, h]
    labels = [[torch.zeros(0, 5) for _ in range(batch)] for _ in range(steps)]
    has_label = torch.zeros(batch, steps, dtype=torch.bool)
    for f, (t, b) in enumerate(frames.tolist()):
        labels[t][b] = boxes[boxes[:, 0] == f][:, 1:].clone()
        has_label[b, t] = True
    return {
        "representation": x,
        "labels": labels,
        "has_label": has_label,
        "label_t_us": torch.zeros(batch, steps, dtype=torch.int64),
        "is_first_sample": torch.ones(batch, dtype=torch.bool),
        "is_padded": torch.zeros(batch, dtype=torch.bool),
    }


@pytest.fixture(scope="module")
def loss_run(manifest: dict, reference_model, load_npz) -> dict:
    forward, ref = load_npz(FORWARD), load_npz(LOSS)
    model = reference_model().train()
    batches = []
    original = yolox_loss.simota_assign_batch

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        batches.append(result)
        return result

    yolox_loss.simota_assign_batch = recording
    try:
        frames, _ = run_sequence(model, _batch(forward, ref), None)
        losses = model.loss(frames.features, frames.targets)
    finally:
        yolox_loss.simota_assign_batch = original
    losses["loss"].backward()
    assert len(batches) == 1, "the loss assigns all frames of the batch in one call"
    # per frame with boxes, in the form of the per-image assignment
    assignments = [batches[0].frame(f) for f, t in enumerate(frames.targets) if t.shape[0] > 0]
    return {"model": model, "frames": frames, "losses": losses, "assignments": assignments}


def test_frames_and_targets_like_the_reference(loss_run, load_npz) -> None:
    ref = load_npz(LOSS)
    frames = loss_run["frames"]
    got = torch.stack((frames.time_index, frames.batch_index), 1).numpy()
    assert np.array_equal(got, ref["frames_step_image"]), "evdet's labelled-frame order differs from RVT's"
    targets = ref["targets_yolox"]
    for f, target in enumerate(frames.targets):
        n = target.shape[0]
        assert np.all(targets[f, n:] == 0), f"frame {f}: reference has more boxes than evdet's targets"
        assert np.array_equal(target[:, 0].numpy(), targets[f, :n, 0])
        # evdet converts [x, y, w, h] to centres as RVT's label loader does: bit-identical to the reference targets
        assert np.array_equal(xywh_to_cxcywh(target[:, 1:]).numpy(), targets[f, :n, 1:])


def test_loss_terms_match(loss_run, load_npz, manifest, measured) -> None:
    ref = load_npz(LOSS)
    config = manifest["files"][LOSS]["config"]
    losses = loss_run["losses"]
    got = {
        "loss_total": float(losses["loss"].detach()),
        "loss_iou": float(config["reg_weight"]) * float(losses["loss_iou"].detach()),  # the fixture's is x reg_weight
        "loss_conf": float(losses["loss_obj"].detach()),
        "loss_cls": float(losses["loss_cls"].detach()),
    }
    assert bool(config["loss_iou_includes_reg_weight"])
    failures = []
    for name, value in got.items():
        want = float(ref[name])
        rel = abs(value - want) / abs(want)
        measured(f"loss.{name}.rel", rel)
        measured(f"loss.{name}.abs", abs(value - want))
        if rel > REL_TOL:
            failures.append(f"{name}: evdet {value!r}, reference {want!r} (relative {rel:.3e})")
    assert not failures, "; ".join(failures)
    assert bool(config["use_l1"]) is False
    assert float(losses["loss_l1"].detach()) == float(ref["loss_l1"])
    num_fg = int(losses["num_fg"])
    assert num_fg == int(ref["num_fg_total"])
    assert num_fg / int(ref["num_gts_total"]) == pytest.approx(float(ref["num_fg_per_gt"]), rel=1e-12)
    assert sum(t.shape[0] for t in loss_run["frames"].targets) == int(ref["num_gts_total"])


def test_simota_positives_match(loss_run, load_npz, measured) -> None:
    ref = load_npz(LOSS)
    assignments = loss_run["assignments"]
    frames_with_gt = [f for f, t in enumerate(loss_run["frames"].targets) if t.shape[0] > 0]
    assert len(assignments) == len(frames_with_gt)
    per_frame = np.zeros(len(loss_run["frames"].targets), dtype=np.int64)
    worst_iou = 0.0
    for f, result in zip(frames_with_gt, assignments):
        per_frame[f] = result.num_fg
        rows = ref["fg_frame"] == f
        assert result.fg_mask.nonzero().flatten().tolist() == ref["fg_anchor_index"][rows].tolist(), f"frame {f}"
        assert result.matched_gt_index.tolist() == ref["fg_matched_gt"][rows].tolist(), f"frame {f}"
        assert result.matched_class.tolist() == ref["fg_matched_class"][rows].astype(np.int64).tolist(), f"frame {f}"
        want_iou = ref["fg_pred_iou"][rows]
        if want_iou.size:
            worst_iou = max(worst_iou, float(np.abs(result.matched_iou.numpy() - want_iou).max()))
    measured("loss.simota.positives", int(per_frame.sum()))
    measured("loss.simota.pred_iou_max_abs", worst_iou)
    assert per_frame.tolist() == ref["num_fg_per_frame"].tolist()
    assert worst_iou <= REL_TOL * float(np.abs(ref["fg_pred_iou"]).max())


def test_gradient_norms_match(loss_run, load_npz, measured) -> None:
    ref = load_npz(LOSS)
    model = loss_run["model"]
    params = dict(model.named_parameters())
    evdet_keys: dict[str, list[str]] = {}
    for rule in rvt_key_rules(model):
        evdet_keys.setdefault(rule.rvt_key, []).append(rule.evdet_key)
    total_ref = float(ref["grad_norm_total"])
    floor = GRAD_ABS_FLOOR * total_ref
    compared: set[str] = set()
    worst_rel = worst_abs = 0.0
    failures = []
    for name, want in zip(ref["grad_param_names"].tolist(), ref["grad_param_norms"].tolist()):
        keys = evdet_keys[name]
        assert all(k in params for k in keys), f"{name} -> {keys}: not evdet parameters"
        grads = [params[k].grad for k in keys]
        assert all(g is not None for g in grads), f"{name} -> {keys}: no gradient in evdet"
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))  # one RVT tensor may be split
        compared.update(keys)
        diff = abs(norm - want)
        worst_abs = max(worst_abs, diff)
        if want > floor:
            worst_rel = max(worst_rel, diff / want)
        if diff > GRAD_REL_TOL * max(want, floor):
            failures.append(f"{name}: evdet {norm:.6g}, reference {want:.6g}")
    with_grad = {k for k, p in params.items() if p.grad is not None}
    assert compared == with_grad, f"parameters with gradients not in the reference: {sorted(with_grad - compared)[:5]}"
    total = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params.values() if p.grad is not None)))
    total_rel = abs(total - total_ref) / total_ref
    measured("loss.grad_norm.params", len(ref["grad_param_names"]))
    measured("loss.grad_norm.per_param_max_rel", worst_rel)
    measured("loss.grad_norm.per_param_max_abs", worst_abs)
    measured("loss.grad_norm.total_rel", total_rel)
    assert not failures, f"{len(failures)} gradient norms differ by more than {GRAD_REL_TOL:g}: {failures[:5]}"
    assert total_rel <= GRAD_REL_TOL
