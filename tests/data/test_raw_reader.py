"""Prophesee RAW (EVT 2.0 / EVT 3.0) reader against independent decoders, on the real events of data/real/gen4.dat.

The gen4 events (1,218,618 events, 10.77 s, EVK4 1280x720) are encoded twice per format: by faery's encoder (which
writes EVT 3.0 vectors) and by tests/evt_encoder.py, written from Prophesee's format pages (with trigger / OTHERS /
CONTINUED words to skip). Timestamps start at 12 s, so every recording crosses the EVT 3.0 time-high wrap at
2**24 µs = 16.78 s. Decoded with evdet and with faery (and expelliarmus for EVT 2.0), the events must be identical.

expelliarmus 1.1.12 decodes EVT 3.0 timestamps wrongly (it counts each ``TIME_LOW`` decrease as an extra
``TIME_HIGH`` step); :func:`test_expelliarmus_evt3_timestamps_are_wrong` records that, so it is not used as the
reference for EVT 3.0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faery
import numpy as np
import pytest
from expelliarmus import Wizard

from evdet.data.events import Events
from evdet.data.labels import BBOX_DTYPE, save_boxes
from evdet.data.preprocess import PreprocessOptions, preprocess_dataset, scan_split
from evdet.data.readers import RawReader, RecordingError, open_recording
from evdet.data.readers.raw import BLOCK_WORDS
from evdet.data.shards import Shard
from evdet.data.synthetic import write_td_h5
from evt_encoder import encode_evt3, raw_header, write_raw

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
GEN4 = REAL / "gen4.dat"
BIN = Path(sys.executable).parent
SHIFT_US = 12_000_000  # gen4 then spans 12.006 .. 22.774 s, across the EVT 3.0 wrap at 2**24 µs
WRAP_US = 1 << 24
EVT2_WRAP_US = 1 << 34


@pytest.fixture(scope="session")
def gen4() -> Events:
    with open_recording(GEN4) as reader:
        return reader.read()


def _faery_array(events: Events, shift_us: int) -> np.ndarray:
    arr = np.zeros(len(events), faery.EVENTS_DTYPE)
    arr["t"], arr["x"], arr["y"], arr["p"] = events.t + shift_us, events.x, events.y, events.p.astype(bool)
    return arr


@pytest.fixture(scope="session")
def raw_files(tmp_path_factory, gen4) -> dict[str, tuple[Path, int]]:
    """name -> (file, offset): the file's events are gen4's with ``t + offset`` (encoded once per session)."""
    out = tmp_path_factory.mktemp("raw")
    files = {}
    for encoding in ("evt2", "evt3"):
        path = out / f"faery_{encoding}.raw"
        faery.events_stream_from_array(_faery_array(gen4, SHIFT_US), dimensions=(1280, 720)).to_file(
            path, version=encoding, zero_t0=False)
        files[f"faery_{encoding}"] = (path, SHIFT_US)
        files[f"spec_{encoding}"] = (write_raw(out / f"spec_{encoding}.raw", encoding, gen4.t + SHIFT_US, gen4.x,
                                               gen4.y, gen4.p, noise_every=997), SHIFT_US)
    # Starting after three EVT 3.0 wraps: the file cannot tell, so it reads 3 * 2**24 µs earlier.
    files["spec_evt3_after_3_wraps"] = (write_raw(out / "late_evt3.raw", "evt3", gen4.t + 3 * WRAP_US + SHIFT_US,
                                                  gen4.x, gen4.y, gen4.p), SHIFT_US)
    # EVT 2.0 across its 34-bit wrap (4.77 h).
    shift = EVT2_WRAP_US - 5_000_000
    files["spec_evt2_34bit_wrap"] = (write_raw(out / "wrap_evt2.raw", "evt2", gen4.t + shift, gen4.x, gen4.y,
                                               gen4.p), shift)
    return files


def faery_decode(path: Path) -> dict[str, np.ndarray]:
    """All events of a RAW file decoded by faery (Rust)."""
    arr = np.concatenate(list(faery.events_stream_from_file(path)))
    return {"x": arr["x"], "y": arr["y"], "t": arr["t"].astype(np.int64), "p": arr["p"].astype(np.uint8)}


def expelliarmus_decode(path: Path, encoding: str) -> dict[str, np.ndarray]:
    """All events decoded by expelliarmus (C)."""
    arr = Wizard(encoding=encoding.upper(), fpath=path).read()
    return {"x": arr["x"], "y": arr["y"], "t": arr["t"].astype(np.int64), "p": arr["p"].astype(np.uint8)}


def assert_same(events: Events, ref: dict[str, np.ndarray]) -> None:
    assert len(events) == len(ref["t"])
    for name in "xytp":
        np.testing.assert_array_equal(getattr(events, name), ref[name], err_msg=name)


def expected(gen4: Events, offset: int) -> dict[str, np.ndarray]:
    return {"x": gen4.x, "y": gen4.y, "t": gen4.t + offset, "p": gen4.p}


# ---------------------------------------------------------------------------------------------------------------
# decoding against independent decoders


@pytest.mark.parametrize("name", ["faery_evt2", "faery_evt3", "spec_evt2", "spec_evt3", "spec_evt3_after_3_wraps",
                                  "spec_evt2_34bit_wrap"])
def test_decodes_the_gen4_events_like_faery(raw_files, gen4, name):
    path, offset = raw_files[name]
    with open_recording(path) as reader:
        assert isinstance(reader, RawReader)
        assert (reader.width, reader.height) == (1280, 720)
        assert reader.format == f"prophesee-raw-{'evt3' if 'evt3' in name else 'evt2'}"
        events = reader.read()
        assert reader.time_range() == (int(gen4.t[0]) + offset, int(gen4.t[-1]) + offset)
    assert_same(events, expected(gen4, offset))
    reference = faery_decode(path)
    if name == "spec_evt3_after_3_wraps":  # faery keeps the camera clock's wraps it cannot know either
        reference["t"] = reference["t"] - reference["t"][0] + int(gen4.t[0]) + offset
    assert_same(events, reference)


@pytest.mark.parametrize("name", ["faery_evt2", "spec_evt2"])
def test_evt2_matches_expelliarmus(raw_files, name):
    path, _ = raw_files[name]
    with open_recording(path) as reader:
        assert_same(reader.read(), expelliarmus_decode(path, "evt2"))


def test_expelliarmus_evt3_timestamps_are_wrong(raw_files, gen4):
    """expelliarmus 1.1.12 gets x, y, p right but counts every TIME_HIGH step twice (span 10.77 s -> 21.54 s)."""
    ref = expelliarmus_decode(raw_files["faery_evt3"][0], "evt3")  # it rejects CONTINUED_4 words (spec_evt3)
    for name in "xyp":
        np.testing.assert_array_equal(ref[name], getattr(gen4, name))
    assert ref["t"][0] == gen4.t[0] + SHIFT_US
    assert round((ref["t"][-1] - ref["t"][0]) / 1e6, 2) == 21.54  # the true span is 10.77 s


@pytest.mark.parametrize("name", ["spec_evt2", "spec_evt3"])
def test_cli_info_matches_faery(raw_files, name):
    path, _ = raw_files[name]
    proc = subprocess.run([str(BIN / "evdet-data"), "info", str(path)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = faery_decode(path)
    assert info == {
        "path": str(path), "format": f"prophesee-raw-{name[-4:]}", "width": 1280, "height": 720,
        "events": len(ref["t"]), "t_first_us": int(ref["t"][0]), "t_last_us": int(ref["t"][-1]),
        "positive_events": int(np.count_nonzero(ref["p"])),
    }


def test_evt3_vectors_and_skipped_words_by_hand(tmp_path):
    """Words written out from the EVT 3.0 page: vectors, words before the first TIME_HIGH, EM rows, triggers."""
    words = [
        0x2000 | 5,  # EVT_ADDR_X before any TIME_HIGH: time unknown, skipped
        0x8001,  # TIME_HIGH 1
        0x6005,  # TIME_LOW 5 -> t = 4096 + 5
        0x0007,  # EVT_ADDR_Y 7
        0x3000 | 0x800 | 100,  # VECT_BASE_X x=100, p=1
        0x4000 | 0b100000000101,  # VECT_12: x = 100, 102, 111; base -> 112
        0x5000 | 0b10000001,  # VECT_8: x = 112, 119; base -> 120
        0xA101,  # EXT_TRIGGER (skipped)
        0x2000 | 3,  # EVT_ADDR_X x=3, p=0
        0x1009,  # type 0x1 (EM y address of older sensors): no CD events until the next EVT_ADDR_Y
        0x2000 | 4,  # skipped
        0x0008,  # EVT_ADDR_Y 8
        0x6007,  # TIME_LOW 7
        0x4000 | 1,  # VECT_12 from base 120: x = 120
        0x8002,  # TIME_HIGH 2: time low resets until the next TIME_LOW
        0x2800 | 9,  # x=9, p=1 at t = 8192
    ]
    path = tmp_path / "hand.raw"
    path.write_bytes(raw_header("evt3", 640, 480) + np.array(words, "<u2").tobytes())
    with open_recording(path) as reader:
        ev = reader.read()
    t1, t2 = 4096 + 5, 4096 + 7
    assert list(zip(ev.x.tolist(), ev.y.tolist(), ev.t.tolist(), ev.p.tolist())) == [
        (100, 7, t1, 1), (102, 7, t1, 1), (111, 7, t1, 1), (112, 7, t1, 1), (119, 7, t1, 1), (3, 7, t1, 0),
        (120, 8, t2, 1), (9, 8, 8192, 1)]


def test_small_time_high_step_back_is_not_a_wrap(tmp_path):
    """Only a drop of at least half the TIME_HIGH range counts as a wrap; a small step back is bad events."""
    t = np.array([5 * 4096 + 10, 5 * 4096 + 20, 4 * 4096 + 30, 5 * 4096 + 40])  # the third steps back 4 ms
    path = write_raw(tmp_path / "back.raw", "evt3", t, [1, 2, 3, 4], [1, 1, 1, 1], [1, 0, 1, 0], 64, 48)
    with pytest.raises(RecordingError, match=r"back\.raw: timestamps decrease at event 2 \(20500 -> 16414 µs\)"):
        open_recording(path).read()
    with open_recording(path, on_bad_events="drop") as reader:
        ev = reader.read()
        assert ev.t.tolist() == [20490, 20500, 20520] and reader.bad_events.counts == {"t": 1}


# ---------------------------------------------------------------------------------------------------------------
# windows, chunks, index


@pytest.mark.parametrize("name", ["faery_evt3", "spec_evt2"])
def test_windows_match_slicing_the_whole_recording(raw_files, name):
    path, _ = raw_files[name]
    with open_recording(path) as reader:
        full = reader.read()
        rng = np.random.default_rng(0)
        starts = rng.integers(int(full.t[0]) - 10_000, int(full.t[-1]), 12)
        windows = [(int(s), int(s) + int(rng.integers(0, 400_000))) for s in starts]
        windows += [(WRAP_US - 50_000, WRAP_US + 50_000), (0, int(full.t[0])), (0, int(full.t[0]) + 1),
                    (int(full.t[-1]), int(full.t[-1]) + 1), (int(full.t[-1]) + 1, 10**12), (15_000_000, 15_000_000),
                    (0, 10**12)]
        for start, end in windows:
            lo, hi = np.searchsorted(full.t, [start, end], side="left")
            window = reader.read_window(start, end)
            np.testing.assert_array_equal(window.t, full.t[lo:hi], err_msg=f"[{start}, {end})")
            np.testing.assert_array_equal(window.x, full.x[lo:hi])
            np.testing.assert_array_equal(window.p, full.p[lo:hi])


@pytest.mark.parametrize("max_events", [77_777, 1_000_000])
def test_chunks_concatenate_to_the_whole_recording(raw_files, max_events):
    path, _ = raw_files["faery_evt3"]
    with open_recording(path) as reader:
        full = reader.read()
        chunks = list(reader.iter_chunks(max_events))
    assert all(len(c) == max_events for c in chunks[:-1]) and 0 < len(chunks[-1]) <= max_events
    joined = Events.concatenate(chunks, 1280, 720)
    for name in "xytp":
        np.testing.assert_array_equal(getattr(joined, name), getattr(full, name))


def test_index_blocks_and_decode_throughput(raw_files, gen4):
    """Several index blocks per file; the decode rate is printed (``-s``) for the report, not asserted."""
    import time

    for name in ("spec_evt2", "faery_evt3"):
        path, _ = raw_files[name]
        start = time.perf_counter()
        reader = open_recording(path)
        indexed = time.perf_counter()
        events = reader.read()
        done = time.perf_counter()
        assert reader.num_words > 4 * BLOCK_WORDS and len(events) == len(gen4)
        print(f"{name}: {reader.num_words} words, index {len(events) / (indexed - start) / 1e6:.0f} M events/s, "
              f"decode {len(events) / (done - indexed) / 1e6:.0f} M events/s")
        reader.close()
        with pytest.raises(RecordingError, match="closed"):
            reader.read_window(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# header


def _head(gen4: Events, n: int = 3000) -> tuple[np.ndarray, ...]:
    return gen4.t[:n] + SHIFT_US, gen4.x[:n], gen4.y[:n], gen4.p[:n]


@pytest.mark.parametrize("header, size", [
    ("% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n", (1280, 720)),
    ("% format EVT3;width=1280;height=720\n", (1280, 720)),  # faery's order, no '% end', no '% evt'
    ("% evt 3.0\n% geometry 1280x720\n% end\n", (1280, 720)),
    ("% evt 3.0\n% format EVT3\n% plugin_name hal_plugin_imx636_evk4\n% end\n", (1280, 720)),
    ("% Date 2019-01-01\n% evt 3.0\n% plugin_name hal_plugin_gen41_evk2\n% system_ID 40\n", (1280, 720)),
    ("% evt 3.0\n% sensor_name IMX636\n% end\n", (1280, 720)),
    ("% evt 3.0\n% generation 4.2\n% end\n", (1280, 720)),
    ("% evt 3.0\n% plugin_name hal_plugin_gen31_fx3\n% end\n", (640, 480)),
    ("% evt 3.0\n% plugin_name hal_plugin_genx320_mp\n% end\n", (320, 320)),
])
def test_geometry_from_the_header(tmp_path, gen4, header, size):
    t, x, y, p = _head(gen4)
    keep = (x < size[0]) & (y < size[1])
    path = write_raw(tmp_path / "h.raw", "evt3", t[keep], x[keep], y[keep], p[keep], header=header.encode())
    with open_recording(path) as reader:
        assert (reader.width, reader.height) == size
        assert len(reader.read()) == int(keep.sum())


@pytest.mark.parametrize("header, message", [
    ("% evt 3.0\n% plugin_name hal_plugin_mystery\n% end\n",
     (r"h\.raw: sensor size unknown: no '% format <enc>;height=<H>;width=<W>' or '% geometry <W>x<H>' header line, "
      r"and the sensor is not recognised from \{'plugin_name': 'hal_plugin_mystery'\} \(known sensors: IMX636")),
    ("% evt 3.0\n% end\n", r"sensor size unknown: .*from no sensor_name/plugin_name/generation line"),
    ("% date 2024\n% geometry 1280x720\n% end\n",
     r"h\.raw: no '% evt <version>' or '% format <encoding>;\.\.\.' header line"),
    ("% evt 2.1\n% geometry 1280x720\n% end\n", r"'% evt 2\.1' is not a supported encoding"),
    ("% format EVT21;height=720;width=1280\n% end\n", r"'% format EVT21;height=720;width=1280' is not a supported"),
    ("% evt 2.0\n% format EVT3;height=720;width=1280\n% end\n", r"disagree on the encoding"),
    ("% evt 3.0\n% format EVT3;height=720;width=1280\n% geometry 640x480\n% end\n",
     r"disagree on the sensor size: .* gives 1280x720 but '% geometry 640x480'"),
    ("% evt 3.0\n% geometry 1280 by 720\n% end\n", r"'% geometry 1280 by 720' is not '<width>x<height>'"),
    ("% evt 3.0\n% format EVT3;height=4096;width=1280\n% end\n", r"format height is 4096, expected 1 <= "),
])
def test_header_errors_name_the_file_and_the_keys(tmp_path, gen4, header, message):
    path = write_raw(tmp_path / "h.raw", "evt3", *_head(gen4), header=header.encode())
    with pytest.raises(RecordingError, match=message):
        open_recording(path)


def test_cli_info_without_evt_key_is_one_line_exit_2(tmp_path, gen4):
    path = write_raw(tmp_path / "noevt.raw", "evt3", *_head(gen4), header=b"% geometry 1280x720\n% end\n")
    proc = subprocess.run([str(BIN / "evdet-data"), "info", str(path)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"evdet-data: error: {path}: no '% evt <version>'") and proc.stderr.count("\n") == 1


def test_not_a_raw_file_and_missing_file(tmp_path):
    (tmp_path / "bin.raw").write_bytes(b"\x00\x80" * 10)
    with pytest.raises(RecordingError, match=r"bin\.raw: does not start with a '% <key> <value>' text header"):
        open_recording(tmp_path / "bin.raw")
    with pytest.raises(RecordingError, match=r"gone\.raw: no such file"):
        open_recording(tmp_path / "gone.raw")


# ---------------------------------------------------------------------------------------------------------------
# truncation, bad events


@pytest.mark.parametrize("encoding, cut", [("evt3", 1), ("evt2", 3), ("evt2", 2)])
def test_truncated_mid_word_is_refused(tmp_path, gen4, encoding, cut):
    path = write_raw(tmp_path / "cut.raw", encoding, *_head(gen4))
    path.write_bytes(path.read_bytes()[:-cut])
    size = 4 if encoding == "evt2" else 2
    with pytest.raises(RecordingError, match=rf"cut\.raw: the {encoding.upper()} data after the header are \d+ bytes, "
                                             rf"expected a multiple of {size} \(file truncated mid-word; "
                                             rf"{size - cut} trailing bytes\)"):
        open_recording(path)


def test_cut_at_a_word_boundary_reads_the_events_before_the_cut(tmp_path, gen4):
    t, x, y, p = _head(gen4)
    header = raw_header("evt3")
    words = encode_evt3(t, x, y, p)
    path = tmp_path / "short.raw"
    path.write_bytes(header + words[: len(words) // 2 // 2 * 2])
    with open_recording(path) as reader:
        ev = reader.read()
    assert 0 < len(ev) < len(t)
    np.testing.assert_array_equal(ev.t, t[: len(ev)])
    np.testing.assert_array_equal(ev.x, x[: len(ev)])


def test_events_outside_the_header_geometry_raise_or_are_dropped(tmp_path, gen4):
    t, x, y, p = _head(gen4)
    path = write_raw(tmp_path / "small.raw", "evt2", t, x, y, p, width=640, height=480)
    with pytest.raises(RecordingError, match=r"small\.raw: event \d+ has x=\d+, expected 0 <= x < 640"):
        open_recording(path).read()
    with open_recording(path, on_bad_events="drop") as reader:
        ev = reader.read()
    inside = (x < 640) & (y < 480)
    np.testing.assert_array_equal(ev.t, t[inside])
    assert reader.bad_events.total == int((~inside).sum())


def test_empty_recording(tmp_path):
    path = tmp_path / "empty.raw"
    path.write_bytes(raw_header("evt2"))
    with open_recording(path) as reader:
        assert reader.num_events == 0 and reader.time_range() is None and len(reader.read()) == 0
        assert list(reader.iter_chunks()) == [] and len(reader.read_window(0, 10**9)) == 0


# ---------------------------------------------------------------------------------------------------------------
# preprocess and detect


def test_preprocess_pairs_a_td_raw_and_gives_the_shard_of_the_same_events_as_h5(tmp_path):
    rng = np.random.default_rng(7)
    width, height, n = 96, 64, 30_000
    # 16.0 .. 17.3 s: across the EVT 3.0 time-high wrap at 2**24 µs
    events = {"t": np.sort(rng.integers(16_000_000, 17_300_000, n)), "x": rng.integers(0, width, n),
              "y": rng.integers(0, height, n), "p": rng.integers(0, 2, n)}
    label_t = 16_021_111 + np.round(np.arange(36) * 1e6 / 30).astype(np.int64)
    boxes = np.zeros(len(label_t) * 2, BBOX_DTYPE)
    boxes["t"] = np.repeat(label_t, 2)
    boxes["x"], boxes["y"], boxes["w"], boxes["h"] = 10, 8, 14, 12
    boxes["class_id"], boxes["track_id"], boxes["class_confidence"] = np.tile([0, 1], 36), np.tile([1, 2], 36), 1
    for kind in ("raw", "h5"):
        split = tmp_path / kind / "train"
        split.mkdir(parents=True)
        if kind == "raw":
            write_raw(split / "seq_td.raw", "evt3", events["t"], events["x"], events["y"], events["p"], width, height)
        else:
            write_td_h5(split / "seq_td.h5", events, width, height)
        save_boxes(split / "seq_bbox.npy", boxes)
    found, unpaired = scan_split(tmp_path / "raw" / "train")
    assert [(name, path.name) for name, path, _ in found] == [("seq", "seq_td.raw")]
    assert not any(unpaired.values())
    shards = {}
    for kind in ("raw", "h5"):
        report = preprocess_dataset(tmp_path / kind, tmp_path / f"out_{kind}", splits=["train"], progress=False,
                                    options=PreprocessOptions(class_names="a,b"))
        assert report["totals"]["sequences_done"] == 1
        shards[kind] = Shard(tmp_path / f"out_{kind}" / "train" / "seq.h5")
    np.testing.assert_array_equal(shards["raw"].window_end_us, shards["h5"].window_end_us)
    n = shards["raw"].num_windows
    assert n > 10 and shards["raw"].read_representation(0, n).any()
    np.testing.assert_array_equal(shards["raw"].read_representation(0, n), shards["h5"].read_representation(0, n))
    np.testing.assert_array_equal(shards["raw"].labels, shards["h5"].labels)
    for shard in shards.values():
        shard.close()


def test_misnamed_raw_is_listed_as_unpaired(tmp_path, gen4):
    write_raw(tmp_path / "seq.raw", "evt3", *_head(gen4, 10))
    _, unpaired = scan_split(tmp_path)
    assert unpaired["misnamed_recordings"] == ["seq.raw"]


def test_detect_on_raw_gives_the_boxes_of_the_dat(tiny_run, raw_files, tmp_path):
    from evdet.data.labels import load_boxes
    from evdet.model.inference.detect import detect_recording

    checkpoint = Path(tiny_run["last_checkpoint"])
    reports = {}
    for name, path in (("dat", GEN4), ("raw", raw_files["spec_evt3"][0])):
        # threshold 0: the few-step model's scores are tiny; every box after NMS is compared
        reports[name] = detect_recording(checkpoint, path, tmp_path / name, confidence_threshold=0.0, max_images=0,
                                         max_windows=3)
    assert reports["raw"]["windows"] == 3 and reports["raw"]["format"] == "prophesee-raw-evt3"
    dat, raw = load_boxes(reports["dat"]["boxes"]), load_boxes(reports["raw"]["boxes"])
    assert len(raw) == len(dat) > 0
    np.testing.assert_array_equal(raw["t"], dat["t"] + SHIFT_US)
    for field in ("x", "y", "w", "h", "class_id", "class_confidence"):
        np.testing.assert_array_equal(raw[field], dat[field])
