"""Tests for evdet.data.readers on the real recordings in data/real and on small synthetic files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import aedat
import h5py
import hdf5plugin
import numpy as np
import pytest

from evdet.data.events import Events
from evdet.data.readers import (
    Aedat4Reader,
    DatReader,
    EventReader,
    Hdf5Reader,
    RecordingError,
    open_recording,
)
from evdet.data.readers.time_search import first_index_at_or_after

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
GEN4 = REAL / "gen4.dat"
DAVIS = REAL / "davis346.aedat4"
# sha256 listed in data/real/README.md
SHA256 = {
    GEN4: "9d77a38da198c44fc4e79695ea93715c05ee0303bb2bc30226d91243c200624f",
    DAVIS: "b383462d72122c69fd96ebf095c384e3f1a2f092cc1b2681be52ebc1d260cf8a",
}
GEN4_EVENTS = 1_218_618
DAVIS_EVENTS = 78_830


# ---------------------------------------------------------------------------------------------------------------
# helpers


def write_dat(path: Path, t, x, y, p, header: str = "% Version 2\n% Width 1280\n% Height 720\n",
              type_size: bytes = b"\x0c\x08") -> Path:
    """Write a Prophesee DAT v2 file from plain arrays (the layout of the module docstring of readers.dat)."""
    rec = np.zeros(len(t), dtype=[("t", "<u4"), ("word", "<u4")])
    rec["t"] = np.asarray(t, dtype=np.uint64).astype(np.uint32)
    rec["word"] = (np.asarray(x, np.uint32) | (np.asarray(y, np.uint32) << 14)
                   | (np.asarray(p, np.uint32) << 28))
    path.write_bytes(header.encode() + type_size + rec.tobytes())
    return path


def reference_dat_decode(path: Path) -> dict[str, np.ndarray]:
    """Independent decode of a DAT file: split at the first line not starting with '%'."""
    raw = path.read_bytes()
    pos = 0
    while raw[pos:pos + 1] == b"%":
        pos = raw.index(b"\n", pos) + 1
    rec = np.frombuffer(raw[pos + 2:], dtype=[("t", "<u4"), ("word", "<u4")])
    return {"t": rec["t"].astype(np.int64), "x": rec["word"] & 0x3FFF,
            "y": (rec["word"] >> 14) & 0x3FFF, "p": rec["word"] >> 28}


def write_etram_h5(path: Path, events: Events, ms_to_idx: np.ndarray | None = None,
                   p: np.ndarray | None = None, skip: str | None = None) -> Path:
    """Write ``events`` in the eTraM ``_td.h5`` layout with Blosc compression; omit dataset ``skip``."""
    blosc = hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    columns = {"x": events.x, "y": events.y, "t": events.t, "p": events.p if p is None else p}
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        for name, data in columns.items():
            if f"events/{name}" != skip:
                g.create_dataset(name, data=data, chunks=(min(16384, max(len(data), 1)),), **blosc)
        for name, value in (("width", events.width), ("height", events.height)):
            if f"events/{name}" != skip:
                g.create_dataset(name, data=np.int64(value))
        g.create_dataset("divider", data=np.int64(1))
        if ms_to_idx is not None:
            f.create_dataset("ms_to_idx", data=ms_to_idx)
    return path


def assert_same_events(a: Events, b: Events) -> None:
    assert (a.width, a.height) == (b.width, b.height)
    for name in "xytp":
        got, want = getattr(a, name), getattr(b, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def assert_contract(ev: Events, width: int, height: int) -> None:
    assert (ev.width, ev.height) == (width, height)
    assert (ev.x.dtype, ev.y.dtype, ev.t.dtype, ev.p.dtype) == (np.uint16, np.uint16, np.int64, np.uint8)
    assert ev.x.max() < width and ev.y.max() < height
    assert set(np.unique(ev.p).tolist()) == {0, 1}
    assert np.all(np.diff(ev.t) >= 0)


def windows_for(t: np.ndarray) -> list[tuple[int, int]]:
    """Windows inside, across, before and after ``t``, including bounds equal to event timestamps."""
    t0, t1 = int(t[0]), int(t[-1])
    mid = int(t[len(t) // 2])
    quarter = int(t[len(t) // 4])
    return [
        (t0, t1 + 1),             # everything
        (t0, t1),                 # end is exclusive: drops the last timestamp
        (mid, mid),               # empty
        (mid, mid + 1),           # exactly one timestamp
        (quarter, mid),           # bounds on event timestamps
        (quarter + 17, quarter + 50_017),
        (t0 - 10_000, t0 + 1000),  # starts before the recording
        (t1 - 1000, t1 + 10_000),  # ends after it
        (t1 + 1, t1 + 100),       # after the end: empty
        (t0 - 100, t0 - 1),       # before the start: empty
    ]


@pytest.fixture(scope="module")
def gen4_events() -> Events:
    with open_recording(GEN4) as reader:
        return reader.read()


@pytest.fixture(scope="module")
def davis_events() -> Events:
    with open_recording(DAVIS) as reader:
        return reader.read()


@pytest.fixture(scope="module")
def etram_h5(tmp_path_factory, gen4_events) -> Path:
    return write_etram_h5(tmp_path_factory.mktemp("h5") / "gen4_td.h5", gen4_events)


# ---------------------------------------------------------------------------------------------------------------
# open_recording


def test_open_recording_picks_reader_by_suffix(etram_h5):
    for path, cls, fmt, size in ((GEN4, DatReader, "prophesee-dat", (1280, 720)),
                                 (DAVIS, Aedat4Reader, "aedat4", (346, 260)),
                                 (etram_h5, Hdf5Reader, "etram-hdf5", (1280, 720))):
        with open_recording(path) as reader:
            assert isinstance(reader, cls) and isinstance(reader, EventReader)
            assert reader.format == fmt and (reader.width, reader.height) == size
            assert reader.path == path


def test_hdf5_suffix_is_accepted(tmp_path, etram_h5):
    copy = shutil.copy(etram_h5, tmp_path / "rec.HDF5")
    with open_recording(copy) as reader:
        assert isinstance(reader, Hdf5Reader)


def test_unknown_suffix_names_file_and_supported(tmp_path):
    path = tmp_path / "recording.bin"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(RecordingError, match="recording.bin") as err:
        open_recording(path)
    for suffix in (".dat", ".h5", ".hdf5", ".aedat4", ".raw"):
        assert suffix in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file_raises(tmp_path):
    for name in ("nothing.dat", "nothing_td.h5", "nothing.aedat4"):
        with pytest.raises(RecordingError, match=name):
            open_recording(tmp_path / name)


# ---------------------------------------------------------------------------------------------------------------
# Prophesee DAT on the real gen4.dat


def test_gen4_counts_size_and_contract(gen4_events):
    ev = gen4_events
    assert len(ev) == GEN4_EVENTS
    assert round((int(ev.t[-1]) - int(ev.t[0])) / 1e6, 2) == 10.77
    assert_contract(ev, 1280, 720)


def test_gen4_matches_independent_decode(gen4_events):
    ref = reference_dat_decode(GEN4)
    for name in "xytp":
        np.testing.assert_array_equal(getattr(gen4_events, name), ref[name], err_msg=name)


def test_gen4_header(gen4_events):
    with DatReader(GEN4) as reader:
        assert reader.header["Version"] == "2" and reader.event_type == 12
        assert reader.num_events == GEN4_EVENTS


def test_gen4_read_window_matches_slice(gen4_events):
    with open_recording(GEN4) as reader:
        for start, end in windows_for(gen4_events.t):
            assert_same_events(reader.read_window(start, end), gen4_events.time_slice(start, end))


def test_gen4_iter_chunks_concatenate_to_read(gen4_events):
    with open_recording(GEN4) as reader:
        chunks = list(reader.iter_chunks(max_events=300_000))
    assert [len(c) for c in chunks] == [300_000] * 4 + [GEN4_EVENTS - 1_200_000]
    assert_same_events(Events.concatenate(chunks, 1280, 720), gen4_events)


# ---------------------------------------------------------------------------------------------------------------
# synthetic DAT files


def test_dat_timestamp_wrap_is_unwrapped(tmp_path):
    period = 1 << 32
    t = np.array([period - 300, period - 200, period - 200, period - 1, period, period + 5, period + 900])
    x = np.arange(len(t)) % 7
    path = write_dat(tmp_path / "wrap.dat", t, x, x + 1, x % 2, header="% Version 2\n% Width 8\n% Height 9\n")
    with open_recording(path) as reader:
        ev = reader.read()
        np.testing.assert_array_equal(ev.t, t)
        for start, end in windows_for(t) + [(period - 250, period + 6), (period - 1, period)]:
            assert_same_events(reader.read_window(start, end), ev.time_slice(start, end))
        assert_same_events(Events.concatenate(list(reader.iter_chunks(2)), 8, 9), ev)


@pytest.mark.parametrize("tail", ["zeroed", "stepped_back"])
def test_dat_tail_below_the_first_timestamp_is_no_wrap(tmp_path, tail):
    t = np.arange(1_000_000, 3_000_000, 100, dtype=np.int64)  # 20 000 events from t = 1 s
    t[-500:] = 0 if tail == "zeroed" else t[-500:] // 4  # the last 500 lie before the first event
    x = np.arange(len(t)) % 8
    path = write_dat(tmp_path / f"{tail}.dat", t, x, x, x % 2, header="% Version 2\n% Width 8\n% Height 8\n")
    with pytest.raises(RecordingError, match=rf"{tail}\.dat: timestamps decrease at event 19500 .* 500 of the 500 "
                                             r"events from there on lie before an earlier event.*no 2\*\*32 µs wrap"):
        open_recording(path)
    with open_recording(path, on_bad_events="drop") as reader:
        assert reader.time_range() == (1_000_000, int(t[19_499]))  # not 2**32 µs later
        events = reader.read()
        log = reader.bad_events.as_dict()
    np.testing.assert_array_equal(events.t, t[:19_500])
    assert log["t"] == {"count": 500, "first_index": 19_500, "first_value": int(t[19_500])}


def test_dat_wrap_needs_timestamps_that_continue(tmp_path):
    period = 1 << 32
    # jumps from 2**32 - 300 µs to 2 s after the wrap: not a continuation (> 1 s step), so not unwrapped
    t = np.array([period - 500, period - 300, period + 2_000_000, period + 2_000_100])
    path = write_dat(tmp_path / "gap.dat", t, [0] * 4, [0] * 4, [1] * 4, header="% Version 2\n% Width 8\n% Height 8\n")
    with pytest.raises(RecordingError, match=r"gap\.dat: timestamps decrease at event 2 .*2 of the 2 events"):
        open_recording(path)
    # a wrap 1 s or less apart is proven, also with a zeroed tail after it (which then fails as going backwards)
    t = np.array([period - 500, period - 300, period + 999_000, period + 999_100, 0, 0])
    raw = write_dat(tmp_path / "wrap_then_zero.dat", t, [0] * 6, [0] * 6, [1] * 6,
                    header="% Version 2\n% Width 8\n% Height 8\n")
    with open_recording(raw) as reader:
        chunks = reader.iter_chunks(4)
        np.testing.assert_array_equal(next(chunks).t, t[:4])
        with pytest.raises(RecordingError, match=r"wrap_then_zero\.dat: timestamps decrease at event 4 .*2 of the 2"):
            next(chunks)


def test_dat_backwards_step_in_the_middle_names_index_and_count(tmp_path):
    t = np.arange(0, 10_000, 10, dtype=np.int64)
    t[400:450] -= 3_000  # 50 events step back inside the file, the end is fine
    path = write_dat(tmp_path / "step.dat", t, [0] * len(t), [0] * len(t), [1] * len(t),
                     header="% Version 2\n% Width 8\n% Height 8\n")
    with open_recording(path) as reader:
        with pytest.raises(RecordingError, match=r"step\.dat: timestamps decrease at event 400 \(3990 -> 1000 µs\) and "
                                                 r"50 of the 600 events"):
            list(reader.iter_chunks(100))


def test_time_range_of_every_format(etram_h5, gen4_events, davis_events):
    for path, events in ((GEN4, gen4_events), (etram_h5, gen4_events), (DAVIS, davis_events)):
        with open_recording(path) as reader:
            assert reader.time_range() == (int(events.t[0]), int(events.t[-1]))


def test_dat_out_of_order_timestamps_raise(tmp_path):
    path = write_dat(tmp_path / "unordered.dat", [10, 20, 15, 30], [0] * 4, [0] * 4, [1] * 4)
    with open_recording(path) as reader:
        with pytest.raises(RecordingError, match="unordered.dat.*decrease"):
            reader.read()
        with pytest.raises(RecordingError, match="unordered.dat"):
            list(reader.iter_chunks(2))


def test_dat_pixel_outside_sensor_raises(tmp_path):
    path = write_dat(tmp_path / "outside.dat", [1, 2], [3, 12], [0, 0], [0, 1],
                     header="% Version 2\n% Width 10\n% Height 10\n")
    with open_recording(path) as reader, pytest.raises(RecordingError, match=r"outside.dat.*event 1 has x=12"):
        reader.read()


def test_dat_empty_record_area_is_empty(tmp_path):
    path = write_dat(tmp_path / "empty.dat", [], [], [], [])
    with open_recording(path) as reader:
        assert len(reader.read()) == 0 and reader.read().width == 1280
        assert len(reader.read_window(0, 10**9)) == 0
        assert list(reader.iter_chunks()) == []


# ---------------------------------------------------------------------------------------------------------------
# AEDAT 4 on the real davis346.aedat4


def test_davis_counts_size_and_contract(davis_events):
    assert len(davis_events) == DAVIS_EVENTS
    assert_contract(davis_events, 346, 260)


def test_davis_matches_aedat_packets(davis_events):
    packets = [pkt["events"] for pkt in aedat.Decoder(str(DAVIS)) if "events" in pkt]
    rec = np.concatenate(packets)
    np.testing.assert_array_equal(davis_events.t, rec["t"].astype(np.int64))
    np.testing.assert_array_equal(davis_events.x, rec["x"])
    np.testing.assert_array_equal(davis_events.y, rec["y"])
    np.testing.assert_array_equal(davis_events.p, rec["on"].astype(np.uint8))


def test_davis_read_window_matches_slice(davis_events):
    with open_recording(DAVIS) as reader:
        for start, end in windows_for(davis_events.t):
            assert_same_events(reader.read_window(start, end), davis_events.time_slice(start, end))


@pytest.mark.parametrize("max_events", [1, 997, 30_000, 10**6])
def test_davis_iter_chunks_concatenate_to_read(davis_events, max_events):
    if max_events == 1:  # one event per chunk: check only the first chunks, streaming must stop early
        with open_recording(DAVIS) as reader:
            it = reader.iter_chunks(1)
            first = [next(it) for _ in range(5)]
        assert [len(c) for c in first] == [1] * 5
        head = Events(davis_events.x[:5], davis_events.y[:5], davis_events.t[:5], davis_events.p[:5], 346, 260)
        assert_same_events(Events.concatenate(first, 346, 260), head)
        return
    with open_recording(DAVIS) as reader:
        chunks = list(reader.iter_chunks(max_events))
    sizes = [len(c) for c in chunks]
    assert all(s == max_events for s in sizes[:-1]) and 0 < sizes[-1] <= max_events
    assert_same_events(Events.concatenate(chunks, 346, 260), davis_events)


# ---------------------------------------------------------------------------------------------------------------
# eTraM HDF5


def test_h5_round_trip_is_identical(etram_h5, gen4_events):
    with h5py.File(etram_h5, "r") as f:  # the test file really is Blosc-compressed
        plist = f["events/t"].id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [hdf5plugin.BLOSC_ID]
    with open_recording(etram_h5) as reader:
        assert reader.num_events == GEN4_EVENTS and not reader.has_ms_index
        assert_same_events(reader.read(), gen4_events)


def test_h5_read_window_matches_slice(etram_h5, gen4_events):
    with open_recording(etram_h5) as reader:
        for start, end in windows_for(gen4_events.t):
            assert_same_events(reader.read_window(start, end), gen4_events.time_slice(start, end))


def test_h5_iter_chunks_concatenate_to_read(etram_h5, gen4_events):
    with open_recording(etram_h5) as reader:
        chunks = list(reader.iter_chunks(500_000))
    assert [len(c) for c in chunks] == [500_000, 500_000, GEN4_EVENTS - 1_000_000]
    assert_same_events(Events.concatenate(chunks, 1280, 720), gen4_events)


def _ms_to_idx(t: np.ndarray) -> np.ndarray:
    """DSEC convention: entry k = index of the first event with t >= 1000 k µs."""
    return np.searchsorted(t, np.arange(0, int(t[-1]) // 1000 + 2) * 1000, side="left").astype(np.uint64)


@pytest.mark.parametrize("index_kind", ["dsec", "shifted", "garbage"])
def test_h5_ms_to_idx_used_when_valid_and_ignored_otherwise(tmp_path, gen4_events, index_kind):
    part = gen4_events.time_slice(0, 2_000_000)
    index = _ms_to_idx(part.t)
    if index_kind == "shifted":   # a different convention (e.g. relative to a t_offset): must not break slicing
        index = np.roll(index, 37)
    elif index_kind == "garbage":
        index = np.random.default_rng(0).integers(0, 2**40, len(index)).astype(np.uint64)
    path = write_etram_h5(tmp_path / f"{index_kind}_td.h5", part, ms_to_idx=index)
    with open_recording(path) as reader:
        assert reader.has_ms_index
        for start, end in windows_for(part.t) + [(999, 1000), (1000, 2001), (1_500_000, 1_500_999)]:
            assert_same_events(reader.read_window(start, end), part.time_slice(start, end))


def test_h5_signed_polarity_is_mapped(tmp_path, gen4_events):
    part = gen4_events.time_slice(0, 200_000)
    signed = np.where(part.p == 1, 1, -1).astype(np.int8)
    with open_recording(write_etram_h5(tmp_path / "signed_td.h5", part, p=signed)) as reader:
        assert_same_events(reader.read(), part)
    bad = signed.copy()
    bad[3] = 2
    with open_recording(write_etram_h5(tmp_path / "badp_td.h5", part, p=bad)) as reader:
        with pytest.raises(RecordingError, match="badp_td.h5.*event 3 has events/p=2"):
            reader.read()


def test_h5_context_manager_closes_file(etram_h5):
    with open_recording(etram_h5) as reader:
        handle = reader._file
        assert handle
    assert reader.closed and not handle  # h5py File is falsy once closed
    with pytest.raises(RecordingError, match="gen4_td.h5.*closed"):
        reader.read()


# ---------------------------------------------------------------------------------------------------------------
# binary search helper


def test_first_index_at_or_after_matches_searchsorted_with_few_reads():
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 10**6, 200_000))
    read = {"calls": 0, "elements": 0}

    def read_t(a, b):
        read["calls"] += 1
        read["elements"] += b - a
        return t[a:b]

    for target in [-5, 0, int(t[0]), int(t[1234]), 500_000, int(t[-1]), int(t[-1]) + 1]:
        read.update(calls=0, elements=0)
        assert first_index_at_or_after(read_t, target, 0, len(t)) == np.searchsorted(t, target, side="left")
        assert read["calls"] <= 20 and read["elements"] <= 4096 + 20
    assert first_index_at_or_after(read_t, 10, 7, 7) == 7
    with pytest.raises(ValueError, match="lo <= hi"):
        first_index_at_or_after(read_t, 10, 8, 7)


# ---------------------------------------------------------------------------------------------------------------
# bad arguments and closed readers


@pytest.mark.parametrize("path", [GEN4, DAVIS])
def test_bad_arguments_and_closed_reader(path):
    reader = open_recording(path)
    with pytest.raises(ValueError, match="t_end_us >= t_start_us"):
        reader.read_window(10, 5)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_events"):
            reader.iter_chunks(bad)
    reader.close()
    reader.close()
    for call in (reader.read, lambda: reader.read_window(0, 1), lambda: reader.iter_chunks(10)):
        with pytest.raises(RecordingError, match=f"{path.name}.*closed"):
            call()


# ---------------------------------------------------------------------------------------------------------------
# corrupt and truncated files


def _copy_with(tmp_path: Path, src: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


GEN4_HEADER_END = GEN4.read_bytes().index(b"\n% date") + 1
GEN4_DATA_START = GEN4.read_bytes().index(b"\n", GEN4_HEADER_END) + 1


def _garbage(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


DAT_DAMAGE = {
    # name: (function of the original bytes, expected message fragment)
    "cut_mid_record.dat": (lambda b: b[:-3], "expected a multiple of 8"),
    "cut_in_header.dat": (lambda b: b[:30], "cut off"),
    "cut_after_header.dat": (lambda b: b[:GEN4_DATA_START], "no binary part"),
    "cut_after_size_byte.dat": (lambda b: b[:GEN4_DATA_START + 5], "expected a multiple of 8"),
    "garbage_header.dat": (lambda b: _garbage(64) + b[64:], "does not start with a '% <Keyword> <value>' text header"),
    "event_size_16.dat": (lambda b: b[:GEN4_DATA_START + 1] + b"\x10" + b[GEN4_DATA_START + 2:],
                          "event size byte is 16, expected 8"),
    "event_type_14.dat": (lambda b: b[:GEN4_DATA_START] + b"\x0e" + b[GEN4_DATA_START + 1:], "event type byte is 14"),
    "no_width.dat": (lambda b: b.replace(b"% Width 1280\n", b""), "missing header key 'Width'"),
    "version_1.dat": (lambda b: b.replace(b"% Version 2\n", b"% Version 1\n"), "'Version' is 1, expected 2"),
}


@pytest.mark.parametrize("name", sorted(DAT_DAMAGE))
def test_damaged_dat_raises_naming_file(tmp_path, name):
    damage, fragment = DAT_DAMAGE[name]
    path = _copy_with(tmp_path, GEN4, name, damage(GEN4.read_bytes()))
    with pytest.raises(RecordingError, match=fragment) as err:
        open_recording(path)
    assert name in str(err.value)


def test_dat_garbage_records_raise_when_read(tmp_path):
    raw = bytearray(GEN4.read_bytes())
    raw[5_000_000:5_004_000] = _garbage(4000, seed=3)  # inside the record area, 8-byte aligned length
    path = _copy_with(tmp_path, GEN4, "garbage_records.dat", bytes(raw))
    with open_recording(path) as reader:
        with pytest.raises(RecordingError, match="garbage_records.dat"):
            reader.read()
        with pytest.raises(RecordingError, match="garbage_records.dat"):
            list(reader.iter_chunks(100_000))


@pytest.mark.parametrize("key", ["events/x", "events/y", "events/p", "events/t", "events/width", "events/height"])
def test_h5_missing_key_raises_naming_file_and_key(tmp_path, gen4_events, key):
    path = write_etram_h5(tmp_path / "missing_td.h5", gen4_events.time_slice(0, 100_000), skip=key)
    with pytest.raises(RecordingError, match=f"missing_td.h5: missing dataset '{key}'"):
        open_recording(path)


def test_h5_truncated_at_half_raises(tmp_path, etram_h5):
    raw = etram_h5.read_bytes()
    path = _copy_with(tmp_path, etram_h5, "half_td.h5", raw[: len(raw) // 2])
    with pytest.raises(RecordingError, match="half_td.h5"):
        with open_recording(path) as reader:
            reader.read()


def test_h5_not_hdf5_raises(tmp_path):
    path = _copy_with(tmp_path, GEN4, "notreally_td.h5", _garbage(4096))
    with pytest.raises(RecordingError, match="notreally_td.h5.*cannot open as HDF5"):
        open_recording(path)


def test_h5_corrupt_chunk_raises_when_read(tmp_path, etram_h5):
    raw = bytearray(etram_h5.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 20_000] = _garbage(20_000, seed=5)
    path = _copy_with(tmp_path, etram_h5, "corrupt_td.h5", bytes(raw))
    with pytest.raises(RecordingError, match="corrupt_td.h5"):
        with open_recording(path) as reader:
            reader.read()


@pytest.mark.parametrize("cut", [0.5, 0.001])
def test_aedat4_truncated_raises(tmp_path, cut):
    raw = DAVIS.read_bytes()
    path = _copy_with(tmp_path, DAVIS, "cut.aedat4", raw[: int(len(raw) * cut)])
    with pytest.raises(RecordingError, match="cut.aedat4"):
        with open_recording(path) as reader:
            reader.read()


def test_aedat4_garbage_raises(tmp_path):
    raw = bytearray(DAVIS.read_bytes())
    raw[5000:5400] = _garbage(400, seed=7)
    path = _copy_with(tmp_path, DAVIS, "garbage.aedat4", bytes(raw))
    with pytest.raises(RecordingError, match="garbage.aedat4"):
        with open_recording(path) as reader:
            list(reader.iter_chunks(10_000))


def test_originals_untouched_after_reading(etram_h5):
    h5_before = hashlib.sha256(etram_h5.read_bytes()).hexdigest()
    stats = {p: p.stat().st_mtime_ns for p in (GEN4, DAVIS, etram_h5)}
    for path in (GEN4, DAVIS, etram_h5):
        with open_recording(path) as reader:
            reader.read()
            reader.read_window(0, 2**62)
            sum(len(c) for c in reader.iter_chunks(400_000))
    for path, digest in SHA256.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
    assert hashlib.sha256(etram_h5.read_bytes()).hexdigest() == h5_before
    assert {p: p.stat().st_mtime_ns for p in stats} == stats


@pytest.mark.parametrize("suffix", [".h5"])
def test_bad_events_dropped_and_counted_with_policy_drop(tmp_path, suffix):
    from evdet.data.readers import BadEventLog
    from evdet.data.synthetic import write_td_h5

    t = np.arange(0, 10_000, 10, dtype=np.int64)
    t[500] = 3  # goes back in time
    y = np.full(len(t), 5)
    y[[7, 800]] = 33_014  # outside a 48 px high sensor, as in two eTraM files
    path = tmp_path / f"bad{suffix}"
    write_td_h5(path, {"x": np.ones(len(t)), "y": y, "p": np.ones(len(t)), "t": t}, 64, 48)
    with pytest.raises(RecordingError, match=r"bad\.h5: event 7 has y=33014"):
        with open_recording(path) as reader:
            reader.read()
    with open_recording(path, on_bad_events="drop") as reader:
        chunks = list(reader.iter_chunks(max_events=300))
        log = reader.bad_events
    events = np.concatenate([c.t for c in chunks])
    assert len(events) == len(t) - 3 and np.all(np.diff(events) >= 0)
    assert isinstance(log, BadEventLog) and log.total == 3
    assert log.as_dict()["y"] == {"count": 2, "first_index": 7, "first_value": 33014}
    assert log.as_dict()["t"] == {"count": 1, "first_index": 500, "first_value": 3}
    assert "field 'y' outside [0, 48)" in log.describe(64, 48)
    with pytest.raises(ValueError, match="on_bad_events"):
        open_recording(path, on_bad_events="ignore")
