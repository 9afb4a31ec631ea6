"""evdet.eval.prophesee against the reference's own outputs (``evaluation.npz`` and ``manifest.json`` -> files ->
``evaluation.npz``): the images built (exact) and every COCO summary of every reference run (within 1e-6).

Everything is derived from the fixture files: the runs and their arguments (``all_runs[*].args``), the summaries
with the ``useCats`` / ``catIds`` the reference used, the recordings (``gt_rec<i>`` / ``dt_rec<i>``). No figure of
the fixtures is copied here, so another fixture set of the same layout passes unchanged.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from evdet.eval.prophesee import (
    METRIC_NAMES,
    REFERENCE_CLASS_NAMES,
    build_images,
    evaluate_images,
    resolve_protocol,
)

NPZ = "evaluation.npz"
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def spec(manifest: dict) -> dict:
    return manifest["files"][NPZ]


@pytest.fixture(scope="module")
def recordings(load_npz) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(gt per recording, detections per recording)`` from ``gt_rec<i>`` / ``dt_rec<i>``, in index order."""
    arrays = load_npz(NPZ)
    indices = sorted(int(m.group(1)) for k in arrays if (m := re.fullmatch(r"gt_rec(\d+)", k)))
    assert indices == list(range(len(indices))) and indices, f"{NPZ}: expected gt_rec0..gt_recN, got {sorted(arrays)}"
    for i in indices:
        assert f"dt_rec{i}" in arrays, f"{NPZ}: gt_rec{i} without dt_rec{i}"
    return [arrays[f"gt_rec{i}"] for i in indices], [arrays[f"dt_rec{i}"] for i in indices]


def _base_width(runs: dict) -> int:
    """Width of the frame the stored boxes are in: the smallest frame any run evaluates at (the ``*_fullres``
    runs use the boxes scaled up to a larger frame)."""
    return min(int(run["args"]["width"]) for run in runs.values())


def _call_for(name: str, run: dict, base_width: int) -> tuple[dict, int]:
    """The :func:`resolve_protocol` keyword arguments for one reference run, and the box scale factor.

    ``args`` hold either the reference ``evaluate_list`` arguments (``camera``, ``height``, ``width``,
    ``apply_bbox_filters``, ``downsampled_by_2``; class list = the camera's) or an explicit ``evaluate_detection``
    call (``classes``, ``height``, ``width``, ``filter`` with ``skip_ts_us``, ``min_box_diag``, ``min_box_side``).
    The protocol (headline) is ``etram`` when the reference ran a ``useCats = 0`` pass, else ``rvt``.
    """
    args = run["args"]
    protocol = "etram" if any(s["useCats"] == 0 for s in run["summaries"]) else "rvt"
    camera = args.get("camera", "gen4")
    kwargs = dict(protocol=protocol, camera=camera, height=int(args["height"]), width=int(args["width"]))
    kwargs["class_names"] = list(args["classes"]) if "classes" in args else list(REFERENCE_CLASS_NAMES[camera])
    if "filter" in args:
        flt = args["filter"]
        kwargs.update(min_box_diag_px=flt["min_box_diag"], min_box_side_px=flt["min_box_side"],
                      skip_before_us=int(flt["skip_ts_us"]))
    else:
        assert args.get("apply_bbox_filters", True), f"run {name}: apply_bbox_filters=False is not supported here"
        kwargs["downsample_factor"] = 2 if args.get("downsampled_by_2") else 1
    scale, rest = divmod(int(args["width"]), base_width)
    assert rest == 0, f"run {name}: width {args['width']} is not a multiple of the stored frame width {base_width}"
    return kwargs, scale


def _scaled(boxes: np.ndarray, scale: int) -> np.ndarray:
    out = boxes.copy()
    for field in ("x", "y", "w", "h"):
        out[field] = out[field] * np.float32(scale)  # a power of two: exact in float32
    return out


@pytest.fixture(scope="module")
def evaluated(spec: dict, recordings) -> dict[str, tuple]:
    """``{run name: (protocol settings, images, metrics, scale)}`` for every reference run."""
    runs = spec["all_runs"]
    base = _base_width(runs)
    gt, dt = recordings
    out = {}
    for name, run in runs.items():
        kwargs, scale = _call_for(name, run, base)
        protocol = kwargs.pop("protocol")
        settings = resolve_protocol(protocol, **kwargs)
        images = build_images([_scaled(g, scale) for g in gt], [_scaled(d, scale) for d in dt], settings)
        out[name] = (settings, images, evaluate_images(images, settings), scale)
    return out


def test_every_run_is_checked(spec: dict, evaluated, measured) -> None:
    assert set(evaluated) == set(spec["all_runs"]) and evaluated
    measured("evaluation.runs_checked", len(evaluated))


def test_images_match_reference(load_npz, recordings, evaluated, measured) -> None:
    """Images (recording, timestamp, #GT, #detections) and the (image, track_id) of every GT / detection entry,
    for every run (the scaled full-resolution runs must build the same images)."""
    arrays = load_npz(NPZ)
    gt, dt = recordings
    for name, (_, images, _, _) in evaluated.items():
        counts = images.counts()
        expected = arrays["image_recording_t_ngt_ndt"]
        assert counts.shape == expected.shape, f"run {name}: {counts.shape[0]} images, reference {expected.shape[0]}"
        np.testing.assert_array_equal(counts, expected, err_msg=f"run {name}: image_recording_t_ngt_ndt")
        for what, boxes, image, row in (("match_gt", gt, images.gt_image, images.gt_row),
                                        ("match_dt", dt, images.dt_image, images.dt_row)):
            recording = images.image_recording[image]
            track = np.array([boxes[r]["track_id"][i] for r, i in zip(recording, row)], dtype=np.int64)
            got = np.stack([image, track], axis=1) if len(image) else np.zeros((0, 2), np.int64)
            assert got.shape == arrays[what].shape, f"run {name}: {what} has {len(got)} rows, reference " \
                                                    f"{len(arrays[what])}"
            np.testing.assert_array_equal(got, arrays[what], err_msg=f"run {name}: {what}")
        measured(f"evaluation.{name}.images_mismatch", int(np.sum(counts != expected)))
    measured("evaluation.images", len(arrays["image_recording_t_ngt_ndt"]))


def _pass_for(metrics: dict, settings, summary: dict) -> tuple[str, list[float], dict]:
    """The evdet figures of the reference pass ``summary``: ``(label, 12 raw stats, per-category raw stats)``."""
    k = len(settings.class_names)
    cat_ids = [int(c) for c in summary["catIds"]]
    per_class = metrics["class_aware"]["per_class"]
    by_cat = {row["category_id"]: row["stats"] for row in per_class.values()}
    if summary["useCats"] == 0:
        return "class_agnostic", metrics["class_agnostic"]["stats"], {}
    if sorted(cat_ids) == list(range(1, k + 1)):
        return "class_aware", metrics["class_aware"]["stats"], by_cat
    assert len(cat_ids) == 1, f"unexpected reference pass over categories {cat_ids}"
    return f"category_{cat_ids[0]}", by_cat[cat_ids[0]], by_cat


def test_coco_summaries_match_reference(spec: dict, evaluated, measured) -> None:
    """All 12 stats of every summary the reference computed (class-agnostic ``useCats = 0``, class-aware over all
    categories, single-category passes) and its per-category AP / AP_50, within 1e-6."""
    failures = []
    for name, run in spec["all_runs"].items():
        settings, _, metrics, _ = evaluated[name]
        worst = 0.0
        for index, summary in enumerate(run["summaries"]):
            label, stats, by_cat = _pass_for(metrics, settings, summary)
            diff = float(np.max(np.abs(np.asarray(stats) - np.asarray(summary["stats"], dtype=np.float64))))
            measured(f"evaluation.{name}.summary{index}_{label}.max_abs_diff", diff)
            worst = max(worst, diff)
            if diff > TOLERANCE:
                failures.append(f"{name} summary {index} ({label}): max |diff| {diff:.3g}")
            per_category = summary.get("per_category", {})
            category_worst = 0.0
            for cat, figures in per_category.items():
                ours = by_cat[int(cat)]
                for key, idx in (("AP", METRIC_NAMES.index("AP")), ("AP_50", METRIC_NAMES.index("AP_50"))):
                    d = abs(ours[idx] - float(figures[key]))
                    category_worst = max(category_worst, d)
                    if d > TOLERANCE:
                        failures.append(f"{name} summary {index} category {cat} {key}: |diff| {d:.3g}")
            if per_category:
                measured(f"evaluation.{name}.summary{index}_per_category_AP_AP50.max_abs_diff", category_worst)
            worst = max(worst, category_worst)
        measured(f"evaluation.{name}.max_abs_diff", worst)
    assert not failures, "; ".join(failures)


def _returned_name(key: str) -> str:
    """The reference's returned key -> evdet's figure name (``AR_max_det=10`` -> ``AR_10``)."""
    m = re.fullmatch(r"AR_max_det=(\d+)", key)
    return f"AR_{m.group(1)}" if m else key


def test_headline_is_what_the_reference_returned(spec: dict, evaluated, measured) -> None:
    """The figures the reference returned are evdet's headline (etram: class-agnostic, rvt: class-aware), also
    copied to the top level (``-1`` there is ``None``)."""
    for name, run in spec["all_runs"].items():
        _, _, metrics, _ = evaluated[name]
        returned = run["returned"]
        worst = 0.0
        for key, value in returned.items():
            figure = _returned_name(key)
            raw = metrics["headline_stats"][METRIC_NAMES.index(figure)]
            worst = max(worst, abs(raw - float(value)))
            named = metrics[figure]
            assert (named is None) == (float(value) == -1.0), f"run {name} {figure}: {named} vs {value}"
            if named is not None:
                worst = max(worst, abs(named - float(value)))
        measured(f"evaluation.{name}.returned.max_abs_diff", worst)
        assert worst <= TOLERANCE, f"run {name}: returned figures differ by {worst:.3g}"
        assert metrics[metrics["headline"]]["stats"] == metrics["headline_stats"]


def test_fullres_runs_change_only_area_figures(spec: dict, evaluated, measured) -> None:
    """Scaling the boxes (and thresholds) leaves the images and IoUs alone: AP/AP_50/AP_75 equal the run at the
    stored frame with the same protocol and classes (the reference's ``*_fullres`` property)."""
    by_key: dict[tuple, list[str]] = {}
    for name, (settings, _, _, scale) in evaluated.items():
        by_key.setdefault((settings.name, settings.class_names), []).append(name)
    checked = 0
    for names in by_key.values():
        base = [n for n in names if evaluated[n][3] == 1]
        for name in names:
            if evaluated[name][3] == 1 or not base:
                continue
            for key in ("class_agnostic", "class_aware"):
                a, b = evaluated[name][2][key]["stats"], evaluated[base[0]][2][key]["stats"]
                diff = max(abs(a[i] - b[i]) for i in range(3))
                measured(f"evaluation.{name}.vs_{base[0]}.{key}.AP_AP50_AP75_abs_diff", diff)
                assert diff <= TOLERANCE
            checked += 1
    measured("evaluation.fullres_pairs_checked", checked)
