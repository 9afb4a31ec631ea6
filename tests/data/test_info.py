"""Tests for evdet.data.info.recording_info on the real recordings in data/real."""

from __future__ import annotations

import json
from pathlib import Path

import aedat
import numpy as np
import pytest

from evdet.data.info import recording_info
from evdet.data.readers import Aedat4Reader, DatReader, EventReader, RecordingError

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
GEN4 = REAL / "gen4.dat"
DAVIS = REAL / "davis346.aedat4"
KEYS = {"path", "format", "width", "height", "events", "t_first_us", "t_last_us", "positive_events"}


def _gen4_reference() -> dict:
    """Independent count from the raw bytes: header lines start with '%', then 2 bytes, then 8-byte records."""
    raw = GEN4.read_bytes()
    pos = 0
    while raw[pos:pos + 1] == b"%":
        pos = raw.index(b"\n", pos) + 1
    rec = np.frombuffer(raw[pos + 2:], dtype=[("t", "<u4"), ("word", "<u4")])
    return {"t_first_us": int(rec["t"][0]), "t_last_us": int(rec["t"][-1]),
            "positive_events": int(np.count_nonzero(rec["word"] >> 28 == 1))}


def _davis_reference() -> dict:
    rec = np.concatenate([pkt["events"] for pkt in aedat.Decoder(str(DAVIS)) if "events" in pkt])
    return {"t_first_us": int(rec["t"][0]), "t_last_us": int(rec["t"][-1]),
            "positive_events": int(np.count_nonzero(rec["on"]))}


def test_gen4_info():
    info = recording_info(GEN4)
    assert set(info) == KEYS
    assert info["path"] == str(GEN4) and info["format"] == "prophesee-dat"
    assert (info["width"], info["height"], info["events"]) == (1280, 720, 1_218_618)
    assert round((info["t_last_us"] - info["t_first_us"]) / 1e6, 2) == 10.77
    assert {k: info[k] for k in ("t_first_us", "t_last_us", "positive_events")} == _gen4_reference()
    assert 0 < info["positive_events"] < info["events"]


def test_davis_info():
    info = recording_info(DAVIS)
    assert set(info) == KEYS and info["format"] == "aedat4"
    assert (info["width"], info["height"], info["events"]) == (346, 260, 78_830)
    assert round((info["t_last_us"] - info["t_first_us"]) / 1e6, 2) == 2.36
    assert {k: info[k] for k in ("t_first_us", "t_last_us", "positive_events")} == _davis_reference()


@pytest.mark.parametrize("path, reader_cls, max_events", [(GEN4, DatReader, 50_000), (DAVIS, Aedat4Reader, 777)])
def test_info_streams_with_iter_chunks(monkeypatch, path, reader_cls, max_events):
    """Small chunks give the same totals, and the whole file is never read at once."""
    full = recording_info(path)
    seen: list[int] = []
    original = reader_cls.iter_chunks

    def spying_iter_chunks(self, max_events=10**6):
        for chunk in original(self, max_events):
            seen.append(len(chunk))
            yield chunk

    def forbidden_read(self):
        raise AssertionError("recording_info must stream with iter_chunks, not read()")

    monkeypatch.setattr(reader_cls, "iter_chunks", spying_iter_chunks)
    monkeypatch.setattr(reader_cls, "read", forbidden_read)
    monkeypatch.setattr(EventReader, "read", forbidden_read)
    assert recording_info(path, max_events=max_events) == full
    assert max(seen) <= max_events and sum(seen) == full["events"]
    assert len(seen) >= full["events"] // max_events


def test_info_is_json_serialisable_and_empty_recording(tmp_path):
    assert json.loads(json.dumps(recording_info(GEN4, max_events=400_000)))["events"] == 1_218_618
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"% Version 2\n% Width 640\n% Height 480\n\x0c\x08")
    info = recording_info(empty)
    assert info == {"path": str(empty), "format": "prophesee-dat", "width": 640, "height": 480, "events": 0,
                    "t_first_us": None, "t_last_us": None, "positive_events": 0}
    json.dumps(info)


def test_info_errors(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(RecordingError, match="notes.txt"):
        recording_info(bad)
    truncated = tmp_path / "short.dat"
    truncated.write_bytes(GEN4.read_bytes()[:1001])
    with pytest.raises(RecordingError, match="short.dat"):
        recording_info(truncated)
    with pytest.raises(ValueError, match="max_events"):
        recording_info(GEN4, max_events=0)
