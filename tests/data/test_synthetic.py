"""Synthetic eTraM-layout dataset: files, defaults (1280x720, eTraM classes), label timing that the RVT / eTraM
object-frame selection accepts, class shapes, special (faulty) boxes, events, determinism, argument errors."""

from __future__ import annotations

import filecmp
import json

import h5py
import hdf5plugin
import numpy as np
import pytest

from evdet.data.cli import main
from evdet.data.labels import BBOX_DTYPE, ETRAM_CLASSES, load_boxes
from evdet.data.readers import open_recording
from evdet.data.synthetic import (
    MAX_LABEL_JITTER_US,
    SPECIAL_BOX_KINDS,
    SPECIAL_TRACK_ID_BASE,
    generate_dataset,
    simulate_sequence,
    special_box_kind,
)

# defaults of the generator: eTraM's sensor, 30 Hz labels, 900 us jitter
WIDTH, HEIGHT, LABEL_HZ, JITTER_US = 1280, 720, 30, 900
DURATION_S = 1.5
SPLITS = {"train": 1, "val": 1, "test": 1}
CLS = {name: i for i, name in enumerate(ETRAM_CLASSES)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A full-resolution dataset made with the generator's defaults (no size, rate or jitter given)."""
    out = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(out, seed=7, splits=SPLITS, duration_s=DURATION_S)
    boxes = {s["name"]: load_boxes(out / s["split"] / f"{s['name']}_bbox.npy") for s in summary["sequences"]}
    return out, summary, boxes


# ---------------------------------------------------------------------------------------------------------------
# The reference protocol (RVT / eTraM preprocessing), written from its description, to check the data against
# ---------------------------------------------------------------------------------------------------------------


class ReferenceAbort(Exception):
    """The reference preprocessing would stop on an assertion."""


def reference_box_filter(boxes: np.ndarray, width: int, height: int, split: str) -> np.ndarray:
    """Crop x, x+w to [0, width-1] and y, y+h to [0, height-1]; drop sides < 5 px; train: drop w > 9*width//10."""
    out = boxes.copy()
    x1 = np.clip(boxes["x"], 0, width - 1)
    x2 = np.clip(boxes["x"] + boxes["w"], 0, width - 1)
    y1 = np.clip(boxes["y"], 0, height - 1)
    y2 = np.clip(boxes["y"] + boxes["h"], 0, height - 1)
    out["x"], out["y"], out["w"], out["h"] = x1, y1, x2 - x1, y2 - y1
    keep = (out["w"] >= 5) & (out["h"] >= 5)
    if split == "train":
        keep &= out["w"] <= 9 * width // 10
    return out[keep]


def select_object_frames(label_t_us: np.ndarray) -> tuple[int, int, np.ndarray, list[int]]:
    """The ~10 Hz object-frame selection: returns (label Hz, step us, kept frame times, multiple n per kept gap).

    Raises ReferenceAbort where the reference aborts: the median spacing does not round to 30 or 60 Hz, a frame is
    accepted with n <= 0, or two kept frames are <= 98000 us apart.
    """
    ts = np.unique(np.asarray(label_t_us, dtype=np.int64))
    median = float(np.median(np.diff(ts)))
    hz = int(np.rint(1e6 / median))
    if hz not in (30, 60):
        raise ReferenceAbort(f"label rate {hz} Hz")
    step = int(3 * median) if hz == 30 else int(6 * median)
    later = ts[ts >= 100_000]
    kept, multiples = [int(later[0])], []
    for t in later[1:]:
        distance = int(t) - kept[-1]
        n = round(distance / step)
        if abs(distance - n * step) <= 2000:
            if n <= 0:
                raise ReferenceAbort(f"accepted a frame with n = {n}")
            kept.append(int(t))
            multiples.append(n)
    kept_arr = np.array(kept, dtype=np.int64)
    if len(kept_arr) > 1 and np.diff(kept_arr).min() <= 98_000:
        raise ReferenceAbort(f"kept frames {np.diff(kept_arr).min()} us apart")
    return hz, step, kept_arr, multiples


def test_reference_rule_aborts_on_what_the_old_generator_wrote():
    """The rule as written here rejects 20 Hz labels on a 50 ms grid and frames <= 98 ms apart (so the tests
    below that apply it can fail)."""
    with pytest.raises(ReferenceAbort, match="20 Hz"):
        select_object_frames(50_000 * np.arange(1, 40))
    # 198 000 - 100 000 is within 2 ms of the step 99 999 (the label 199 999 is left out, it would be 1999 us later)
    close = np.sort(np.r_[100_000 + 33_333 * np.arange(0, 30), 198_000])
    close = close[close != 199_999]
    with pytest.raises(ReferenceAbort, match="apart"):
        select_object_frames(close)
    hz, step, kept, multiples = select_object_frames(100_000 + np.rint(np.arange(60) * 1e6 / 30).astype(np.int64))
    assert (hz, step) == (30, 99_999) and set(multiples) == {1} and len(kept) == 20


# ---------------------------------------------------------------------------------------------------------------
# Files, defaults, events
# ---------------------------------------------------------------------------------------------------------------


def test_layout_defaults_and_readme(dataset):
    out, summary, boxes = dataset
    assert (summary["width"], summary["height"]) == (WIDTH, HEIGHT)
    assert summary["label_hz"] == LABEL_HZ and summary["label_jitter_us"] == JITTER_US
    assert summary["class_names"] == list(ETRAM_CLASSES) and summary["synthetic"] is True
    for split, count in SPLITS.items():
        files = sorted(p.name for p in (out / split).iterdir())
        expected = sorted(f"synth_{split}_{i:03d}{suffix}" for i in range(count) for suffix in ("_td.h5", "_bbox.npy"))
        assert files == expected
    with h5py.File(out / "train" / "synth_train_000_td.h5", "r") as f:
        assert {"x", "y", "p", "t", "width", "height"} <= set(f["events"].keys())
        assert f["events/t"].dtype == np.int64 and f["events/x"].dtype == np.uint16
        assert int(f["events/width"][()]) == WIDTH and int(f["events/height"][()]) == HEIGHT
        plist = f["events/t"].id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert hdf5plugin.BLOSC_ID in filters  # Blosc (HDF5 filter 32001) via hdf5plugin
    readme = (out / "README.md").read_text()
    assert "SYNTHETIC" in readme and "seed: 7" in readme and "ESIM" in readme
    assert f"{WIDTH} x {HEIGHT} px" in readme and f"{LABEL_HZ} Hz" in readme and "[-900, +900] us" in readme
    assert all(name in readme for name in ETRAM_CLASSES) and "Static" not in readme
    for seq in summary["sequences"]:
        b = boxes[seq["name"]]
        assert b.dtype == BBOX_DTYPE and len(b) == seq["boxes"] and seq["first_label_us"] == int(b["t"].min())


def test_events_within_the_sensor_and_time_sorted(dataset):
    out, summary, _ = dataset
    for seq in summary["sequences"]:
        with open_recording(out / seq["split"] / f"{seq['name']}_td.h5") as reader:
            assert reader.format == "etram-hdf5" and (reader.width, reader.height) == (WIDTH, HEIGHT)
            ev = reader.read()
        assert len(ev) == seq["events"] > 200_000
        assert np.all(np.diff(ev.t) >= 0)
        assert ev.t[0] >= 0 and ev.t[-1] <= DURATION_S * 1e6
        assert ev.x.max() < WIDTH and ev.y.max() < HEIGHT
        assert ev.x.max() > 0.9 * WIDTH and ev.y.max() > 0.8 * HEIGHT  # the whole sensor is used
        assert 0.2 < ev.p.mean() < 0.8  # both polarities


def test_events_come_from_the_labelled_objects():
    """Without noise, nearly all events of the 10 ms before a label time lie in (slightly grown) object boxes.

    Events in the outer 15 % of the columns are left out: objects entering or leaving there are not labelled
    while less than 20 % of them is inside the frame."""
    events, boxes = simulate_sequence([7, 9], duration_s=0.5, width=320, height=180, noise_rate_hz=0.0)
    objects = boxes[boxes["track_id"] < SPECIAL_TRACK_ID_BASE]
    t_label = int(np.unique(objects["t"])[-2])
    sel = (events["t"] >= t_label - 10_000) & (events["t"] < t_label)
    sel &= (events["x"] >= 0.15 * 320) & (events["x"] < 0.85 * 320)
    x, y = events["x"][sel].astype(float), events["y"][sel].astype(float)
    assert sel.sum() > 300
    inside = np.zeros(len(x), bool)
    for b in objects[objects["t"] == t_label]:
        inside |= (x >= b["x"] - 4) & (x < b["x"] + b["w"] + 4) & (y >= b["y"] - 4) & (y < b["y"] + b["h"] + 4)
    assert inside.mean() > 0.95


# ---------------------------------------------------------------------------------------------------------------
# Label timing
# ---------------------------------------------------------------------------------------------------------------


def _check_label_times(t: np.ndarray, label_hz: int, jitter_us: int) -> None:
    period = 1e6 / label_hz
    ts = np.unique(t)
    assert len(ts) >= 10
    assert np.mean(ts % 50_000 == 0) < 0.05 and np.mean(ts % 1_000 == 0) < 0.05  # on no 50 ms or 1 ms grid
    assert ts[0] % 1_000 != 0
    d = np.diff(ts)
    assert d.min() >= period - 2 * jitter_us - 1 and d.max() <= period + 2 * jitter_us + 1  # no label missing
    residual = ts - np.rint(np.arange(len(ts)) * period).astype(np.int64)  # = offset + jitter
    assert residual.max() - residual.min() <= 2 * jitter_us
    if jitter_us:
        assert residual.max() - residual.min() > jitter_us  # the jitter is really there (about +-1 ms)
    assert round(1e6 / np.median(d)) == label_hz


def test_label_times_off_grid_with_bounded_jitter(dataset):
    _, summary, boxes = dataset
    firsts = set()
    for seq in summary["sequences"]:
        b = boxes[seq["name"]]
        assert np.all(np.diff(b["t"]) >= 0)
        _check_label_times(b["t"], LABEL_HZ, JITTER_US)
        assert b["t"].max() <= DURATION_S * 1e6
        firsts.add(int(b["t"].min()))
    assert len(firsts) == len(summary["sequences"])  # a random offset per sequence


@pytest.mark.parametrize("label_hz", [30, 60])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_object_frame_selection_never_aborts_and_keeps_10hz(seed, label_hz):
    """Filter the boxes and select object frames as the reference does: it accepts the rate, never aborts and keeps
    a frame every ~100 ms (every 3rd / 6th label) from the first label >= 100 ms."""
    duration_s = 2.0
    _, boxes = simulate_sequence([seed, 5], duration_s=duration_s, width=160, height=90, label_hz=label_hz,
                                 label_jitter_us=MAX_LABEL_JITTER_US, noise_rate_hz=0.0)
    _check_label_times(boxes["t"], label_hz, MAX_LABEL_JITTER_US)
    for split in ("train", "val"):
        kept_boxes = reference_box_filter(boxes, 160, 90, split)
        # every label time keeps a box after the filters, so no frame goes missing
        np.testing.assert_array_equal(np.unique(kept_boxes["t"]), np.unique(boxes["t"]))
        hz, step, frames, multiples = select_object_frames(kept_boxes["t"])
        assert hz == label_hz and abs(step - 100_000) <= 101
        assert set(multiples) == {1}
        gaps = np.diff(frames)
        assert gaps.min() > 98_000 and gaps.max() < 102_000
        assert frames[0] >= 100_000 and frames[0] < 100_000 + 1e6 / label_hz + 2 * MAX_LABEL_JITTER_US
        assert len(frames) >= int((duration_s * 1e6 - frames[0]) / 100_000)  # ~10 Hz up to the end
        per_step = label_hz // 10
        labels = np.unique(boxes["t"])
        first = int(np.searchsorted(labels, 100_000))
        np.testing.assert_array_equal(frames, labels[first::per_step])


def test_every_label_time_keeps_a_box_when_the_scene_empties():
    """Without arrivals the 8 objects in view at t = 0 leave the frame; label times must still keep a box that
    survives the reference's filters (else the selection would skip frames), and without jitter the label times
    still lie on no 1 ms grid."""
    extra_objects = 0
    for seed in (3, 4):
        _, boxes = simulate_sequence([seed, 8], duration_s=20.0, width=160, height=90, spawn_rate_hz=0.0,
                                     label_jitter_us=0, noise_rate_hz=0.0, frame_dt_us=10_000)
        _check_label_times(boxes["t"], LABEL_HZ, 0)
        assert len(np.unique(boxes["t"])) == 600
        kept_boxes = reference_box_filter(boxes, 160, 90, "train")
        np.testing.assert_array_equal(np.unique(kept_boxes["t"]), np.unique(boxes["t"]))
        _, _, frames, multiples = select_object_frames(kept_boxes["t"])
        assert set(multiples) == {1} and len(frames) >= 198
        regular = boxes["track_id"][boxes["track_id"] < SPECIAL_TRACK_ID_BASE]
        extra_objects += int(regular.max()) - len(ETRAM_CLASSES)  # objects beyond the 8 of t = 0
    assert extra_objects > 0  # the scene did empty and a car was sent through


def test_full_resolution_files_pass_the_reference_selection(dataset):
    _, summary, boxes = dataset
    for seq in summary["sequences"]:
        kept_boxes = reference_box_filter(boxes[seq["name"]], WIDTH, HEIGHT, seq["split"])
        hz, _, frames, multiples = select_object_frames(kept_boxes["t"])
        assert hz == LABEL_HZ and set(multiples) == {1} and np.diff(frames).min() > 98_000


# ---------------------------------------------------------------------------------------------------------------
# Classes and special boxes
# ---------------------------------------------------------------------------------------------------------------


def _object_boxes(boxes: dict[str, np.ndarray], width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Boxes of simulated objects that are not cut by a frame edge (their true size)."""
    b = np.concatenate(list(boxes.values()))
    b = b[b["track_id"] < SPECIAL_TRACK_ID_BASE]
    inside = (b["x"] > 0) & (b["y"] > 0) & (b["x"] + b["w"] < width) & (b["y"] + b["h"] < height)
    return b[inside]


def _median_speed(boxes: dict[str, np.ndarray], class_id: int) -> tuple[float, float]:
    """Median (|vx|, |vy|) px/s of the box centres of one class over consecutive labels of each track."""
    vx, vy = [], []
    for b in boxes.values():
        b = b[(b["class_id"] == class_id) & (b["track_id"] < SPECIAL_TRACK_ID_BASE)]
        b = b[(b["x"] > 0) & (b["y"] > 0) & (b["x"] + b["w"] < WIDTH) & (b["y"] + b["h"] < HEIGHT)]
        for track in np.unique(b["track_id"]):
            tb = b[b["track_id"] == track]
            if len(tb) < 2:
                continue
            dt = np.diff(tb["t"]) * 1e-6
            vx += list(np.abs(np.diff(tb["x"] + tb["w"] / 2)) / dt)
            vy += list(np.abs(np.diff(tb["y"] + tb["h"] / 2)) / dt)
    return float(np.median(vx)), float(np.median(vy))


def test_class_ids_are_etram_and_shapes_plausible(dataset):
    _, summary, boxes = dataset
    everything = np.concatenate(list(boxes.values()))
    assert set(everything["class_id"].tolist()) == set(range(len(ETRAM_CLASSES)))
    assert all(set(s["boxes_per_class"]) == set(ETRAM_CLASSES) for s in summary["sequences"])
    b = _object_boxes(boxes)
    for name, seq_boxes in boxes.items():
        for track in np.unique(seq_boxes["track_id"]):
            assert len(np.unique(seq_boxes["class_id"][seq_boxes["track_id"] == track])) == 1, name
    med = {}
    for name, c in CLS.items():
        cb = b[b["class_id"] == c]
        assert len(cb) >= 10, name
        med[name] = (float(np.median(cb["w"])), float(np.median(cb["h"])))
    aspect = {name: h / w for name, (w, h) in med.items()}
    assert aspect["pedestrian"] > 1.8  # tall and narrow
    assert 0.8 < aspect["wheelchair"] < 1.8
    for name in ("car", "bus", "truck", "tram", "bicycle", "motorbike"):
        assert aspect[name] < 0.9, name  # longer than high, seen from the side
    assert aspect["bus"] < 0.4 and aspect["tram"] < 0.3  # long
    assert med["tram"][0] > med["bus"][0] > med["car"][0] > med["motorbike"][0]
    assert med["truck"][0] > med["car"][0]
    small = ("pedestrian", "wheelchair", "bicycle", "motorbike")
    assert max(med[n][0] * med[n][1] for n in small) < 0.5 * med["car"][0] * med["car"][1]
    speed = {name: _median_speed(boxes, c) for name, c in CLS.items()}
    for name in ("car", "bus", "truck", "tram", "bicycle", "motorbike"):
        assert speed[name][1] == 0.0, name  # on horizontal lanes
    assert speed["pedestrian"][0] + speed["pedestrian"][1] < 0.5 * speed["car"][0]
    assert speed["wheelchair"][0] + speed["wheelchair"][1] < 0.5 * speed["car"][0]
    assert speed["motorbike"][0] > speed["car"][0] and speed["bicycle"][0] > 2 * speed["pedestrian"][0]


def test_most_boxes_pass_the_gen4_evaluation_filter(dataset):
    """At full resolution the Prophesee gen4 filter keeps sides >= 20 px and diagonal >= 60 px: most object boxes
    pass, some small ones (and only small classes) do not."""
    _, _, boxes = dataset
    b = _object_boxes(boxes)
    passes = (b["w"] >= 20) & (b["h"] >= 20) & (np.hypot(b["w"], b["h"]) >= 60)
    assert 0.65 < passes.mean() < 0.98
    failing = set(b["class_id"][~passes].tolist())
    assert failing and failing <= {CLS["pedestrian"], CLS["wheelchair"], CLS["bicycle"], CLS["motorbike"]}
    for name in ("car", "bus", "truck", "tram"):
        assert passes[b["class_id"] == CLS[name]].all(), name


def _check_special(kind: str, box: np.void, width: int, height: int) -> None:
    x, y, w, h = (float(box[k]) for k in ("x", "y", "w", "h"))
    crop_w = min(max(x + w, 0), width - 1) - min(max(x, 0), width - 1)
    crop_h = min(max(y + h, 0), height - 1) - min(max(y, 0), height - 1)
    in_frame = x >= 0 and y >= 0 and x + w <= width - 1 and y + h <= height - 1
    if kind == "side_lt_5px":
        assert in_frame and 0 < min(w, h) < 5 and max(w, h) >= 5
    elif kind == "zero_width":
        assert w == 0 and h >= 5 and 0 <= x <= width - 1 and 0 <= y and y + h <= height - 1
    elif kind == "partly_out_x":
        assert (x < 0 or x + w > width) and 0 <= y and y + h <= height - 1
        assert 5 <= crop_w < w and crop_h == pytest.approx(h)
    elif kind == "partly_out_y":
        assert (y < 0 or y + h > height) and 0 <= x and x + w <= width - 1
        assert 5 <= crop_h < h and crop_w == pytest.approx(w)
    elif kind == "fully_out_of_frame":
        assert x + w < 0 or x > width - 1 or y + h < 0 or y > height - 1
        assert crop_w == 0 or crop_h == 0
    elif kind == "over_wide":
        assert in_frame and w > 9 * width // 10 and crop_w > 1152 * width / 1280
    else:
        raise AssertionError(kind)


def test_special_boxes_exist_and_are_what_they_claim(dataset):
    out, summary, boxes = dataset
    readme = (out / "README.md").read_text()
    for seq in summary["sequences"]:
        b = boxes[seq["name"]]
        special = b[b["track_id"] >= SPECIAL_TRACK_ID_BASE]
        kinds = [special_box_kind(int(t)) for t in special["track_id"]]
        assert sorted(kinds) == sorted(SPECIAL_BOX_KINDS)  # one of each
        assert [s["kind"] for s in seq["special_boxes"]] == kinds
        regular_times = np.unique(b["t"][b["track_id"] < SPECIAL_TRACK_ID_BASE])
        for kind, box in zip(kinds, special):
            _check_special(kind, box, WIDTH, HEIGHT)
            assert box["class_id"] < len(ETRAM_CLASSES)
            assert box["t"] in regular_times  # on a label time, in fact an object frame:
            assert box["t"] in select_object_frames(regular_times)[2]
            assert f"| {seq['split']} | {seq['name']} | {kind} | {box['t']} | {box['track_id']} |" in readme
        # what the reference's filters make of them: only the partly-out boxes (cropped) survive everywhere;
        # the over-wide one only outside the train split
        survivors = reference_box_filter(special, WIDTH, HEIGHT, seq["split"])
        expected = {"partly_out_x", "partly_out_y"} | ({"over_wide"} if seq["split"] != "train" else set())
        assert {special_box_kind(int(t)) for t in survivors["track_id"]} == expected
    assert special_box_kind(5) is None
    with pytest.raises(ValueError, match="track_id"):
        special_box_kind(SPECIAL_TRACK_ID_BASE + len(SPECIAL_BOX_KINDS))


def test_special_boxes_can_be_left_out_and_hold_at_small_sizes():
    _, plain = simulate_sequence([3], duration_s=0.5, width=320, height=180, special_boxes=False)
    assert len(plain) and plain["track_id"].max() < SPECIAL_TRACK_ID_BASE
    _, boxes = simulate_sequence([3], duration_s=0.5, width=320, height=180)
    special = boxes[boxes["track_id"] >= SPECIAL_TRACK_ID_BASE]
    assert len(special) == len(SPECIAL_BOX_KINDS)
    for box in special:
        _check_special(special_box_kind(int(box["track_id"])), box, 320, 180)
    regular = boxes[boxes["track_id"] < SPECIAL_TRACK_ID_BASE]
    np.testing.assert_array_equal(regular, plain)  # the special boxes change nothing else


# ---------------------------------------------------------------------------------------------------------------
# Determinism, CLI, errors
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_identical_files_other_seed_differs(tmp_path):
    kwargs = {"splits": {"train": 1}, "duration_s": 0.3, "width": 160, "height": 90}
    a = generate_dataset(tmp_path / "a", seed=1, **kwargs)
    generate_dataset(tmp_path / "b", seed=1, **kwargs)
    c = generate_dataset(tmp_path / "c", seed=2, **kwargs)
    for suffix in ("_td.h5", "_bbox.npy"):
        name = f"train/synth_train_000{suffix}"
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
        assert not filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, shallow=False)
    assert (tmp_path / "a" / "README.md").read_text().replace(str(tmp_path / "a"), "") == \
        (tmp_path / "b" / "README.md").read_text().replace(str(tmp_path / "b"), "")
    assert a["total_events"] != c["total_events"]
    assert a["sequences"][0]["special_boxes"] != c["sequences"][0]["special_boxes"]
    assert a["sequences"][0]["first_label_us"] != c["sequences"][0]["first_label_us"]


def test_cli_synth_options(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", str(out), "--train", "1", "--val", "0", "--test", "0", "--duration-s", "0.5", "--width", "160",
            "--height", "90", "--label-hz", "60", "--label-jitter-us", "300", "--seed", "4"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["width"], summary["height"], summary["label_hz"], summary["label_jitter_us"]) == (160, 90, 60, 300)
    boxes = load_boxes(out / "train" / "synth_train_000_bbox.npy")
    _check_label_times(boxes["t"], 60, 300)
    assert main(args + ["--no-special-boxes", "--overwrite"]) == 0  # replaces the earlier run's files
    assert load_boxes(out / "train" / "synth_train_000_bbox.npy")["track_id"].max() < SPECIAL_TRACK_ID_BASE
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["synth", str(out), "--label-hz", "20"])
    assert main(["synth", str(out), "--label-jitter-us", "1000", "--train", "1", "--val", "0", "--test", "0"]) == 2
    assert "--label-jitter-us" in capsys.readouterr().err


def test_cli_synth_refuses_a_non_empty_folder_and_overwrite_leaves_no_stale_file(tmp_path, capsys):
    out = tmp_path / "synth"
    small = ["--val", "0", "--test", "0", "--duration-s", "0.3", "--width", "160", "--height", "90"]
    assert main(["synth", str(out), "--train", "2", *small]) == 0
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    capsys.readouterr()
    assert main(["synth", str(out), "--train", "1", *small]) == 2  # an earlier run is there: refused, untouched
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--overwrite" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == first
    assert main(["synth", str(out), "--train", "1", *small, "--overwrite"]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "train/synth_train_001_td.h5" in first and "train/synth_train_001_td.h5" not in files  # no stale file
    assert json.loads((out / ".evdet-manifest.json").read_text())["files"] == [f for f in files if
                                                                               not f.startswith(".evdet")]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):  # a folder with the user's files: refused even with --overwrite
        assert main(["synth", str(user), "--train", "1", *small, *extra]) == 2
        assert "notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"] and (user / "notes.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="output folder is not empty"):  # the library function refuses too
        generate_dataset(user, splits={"train": 1}, duration_s=0.3, width=160, height=90)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"width": 0}, "width"),
        ({"height": 70_000}, "height"),
        ({"width": 12.5}, "width"),
        ({"frame_dt_us": 0}, "frame_dt_us"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"label_hz": 20}, "label_hz"),
        ({"label_jitter_us": MAX_LABEL_JITTER_US + 1}, "label_jitter_us"),
        ({"label_jitter_us": -1}, "label_jitter_us"),
        ({"contrast_threshold": 0}, "contrast_threshold"),
        ({"threshold_sigma": -0.1}, "threshold_sigma"),
        ({"noise_rate_hz": -1}, "noise_rate_hz"),
        ({"spawn_rate_hz": -1}, "spawn_rate_hz"),
    ],
)
def test_bad_simulation_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_sequence(0, **kwargs)


def test_bad_dataset_arguments(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        simulate_sequence(-1)
    with pytest.raises(ValueError, match="seed"):
        generate_dataset(tmp_path, seed=[1, 2])
    with pytest.raises(ValueError, match="split 'train' has negative count"):
        generate_dataset(tmp_path, splits={"train": -1})
    with pytest.raises(ValueError, match="invalid split name"):
        generate_dataset(tmp_path, splits={"../x": 1})
    with pytest.raises(ValueError, match="label_hz"):
        generate_dataset(tmp_path / "never", splits={"train": 1}, label_hz=20)
    assert not (tmp_path / "never").exists()  # arguments are checked before anything is written
