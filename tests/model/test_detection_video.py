"""``evdet-detect --video``: a detection video over every window of a real recording, at real-time speed."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from evdet.data.readers import open_recording
from evdet.data.windows import grid_window_ends
from evdet.model.cli.detect import main
from evdet.model.inference.detect import detect_recording
from evdet.model.inference.detection_video import (VIDEO_ENCODERS, DetectionVideoWriter, VideoChoice, available_video_encoders,
                                         choose_video_format, draw_time_stamp)

BIN = Path(sys.executable).parent
REAL = Path(__file__).resolve().parents[2] / "data" / "real"
WINDOW_S = 0.05  # the run's window (the reference's 50 ms)


def _first_window_end_us(recording: Path) -> int:
    with open_recording(recording) as reader:
        first, _ = reader.time_range()
    return next(grid_window_ends(first, int(WINDOW_S * 1e6)))


def _stamp(size: tuple[int, int], t_end_us: int, index: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The time stamp box and its pixels as drawn on a white frame of ``size``."""
    image = Image.new("RGB", size, (255, 255, 255))
    box = draw_time_stamp(image, t_end_us, index)
    return box, np.asarray(image.crop(box), dtype=np.float32)


def test_encoder_choice_prefers_h264_then_mpeg4_then_gif():
    assert choose_video_format(None, {"mpeg4", "libx264"}) == VideoChoice("mp4", "libx264")
    assert choose_video_format(None, {"mpeg4", "libopenh264"}) == VideoChoice("mp4", "libopenh264")
    assert choose_video_format("mp4", {"mpeg4"}) == VideoChoice("mp4", "mpeg4")
    assert choose_video_format(None, set()) == VideoChoice("gif", None)
    assert choose_video_format("gif", {"libx264"}) == VideoChoice("gif", None)
    assert [c.codec for c in (VideoChoice("mp4", "libx264"), VideoChoice("mp4", "mpeg4"), VideoChoice("gif", None))] \
        == ["h264", "mpeg4", "gif"]
    with pytest.raises(ValueError, match="--video-format mp4: PyAV's FFmpeg has none of the video encoders .* use "
                                         "--video-format gif"):
        choose_video_format("mp4", set())
    with pytest.raises(ValueError, match="--video-format: expected one of mp4, gif, got 'avi'"):
        choose_video_format("avi", {"libx264"})
    available = available_video_encoders()
    assert available <= set(VIDEO_ENCODERS) and "mpeg4" in available  # FFmpeg's own encoder, in every PyAV build


@pytest.mark.parametrize("choice", [VideoChoice("mp4", "mpeg4"), VideoChoice("gif", None)])
def test_writer_times_frames_by_the_window_and_deletes_an_unfinished_file(tmp_path, choice):
    window_us = 25_000  # 40 fps; GIF delays of 2.5 cs alternate 3 and 2 cs
    overlays = [Image.new("RGB", (101, 57), (255, 255 - 20 * i, 255)) for i in range(8)]
    path = tmp_path / f"v.{choice.format}"
    with DetectionVideoWriter(path, choice, window_us) as video:
        for i, overlay in enumerate(overlays):
            video.write(overlay, 1_000_000 + i * window_us, i)
    summary = video.summary
    assert summary["frames"] == 8 and summary["fps"] == 40.0 and summary["time_base_s"] == "1/40"
    assert summary["duration_s"] == pytest.approx(0.2) and summary["bytes"] == path.stat().st_size > 0
    assert np.asarray(overlays[3]).min() == 255 - 60  # the caller's overlay is not stamped
    if choice.format == "gif":
        with Image.open(path) as gif:
            delays = []
            for i in range(gif.n_frames):
                gif.seek(i)
                delays.append(gif.info["duration"])
            assert gif.size == (101, 57)  # no padding for GIF
        assert delays == [30, 20] * 4
    else:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            times = [frame.time for frame in container.decode(stream)]
            assert (stream.codec_context.name, stream.width, stream.height) == ("mpeg4", 102, 58)  # padded to even
            assert float(stream.duration * stream.time_base) == pytest.approx(0.2)
        assert times == pytest.approx([i * 0.025 for i in range(8)])
    broken = tmp_path / f"broken.{choice.format}"
    with (pytest.raises(ValueError, match="frame 1 is 50x50 px, the video's frames are"),
          DetectionVideoWriter(broken, choice, window_us) as video):
        video.write(overlays[0], 0, 0)
        video.write(Image.new("RGB", (50, 50)), window_us, 1)
    assert not broken.exists()


@pytest.mark.slow
def test_detect_video_of_gen4_covers_every_window_in_real_time(tiny_run, tmp_path):
    out = tmp_path / "det"
    proc = subprocess.run([str(BIN / "evdet-detect"), tiny_run["last_checkpoint"], str(REAL / "gen4.dat"),
                           "--output", str(out), "--device", "cpu", "--video", "--max-images", "2",
                           "--confidence", "0.01"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "gen4_detect.json").read_text())
    windows = report["windows"]
    assert windows == 216  # 10.77 s: window ends 0.05 s ... 10.80 s
    video = report["video"]
    path = out / "gen4_detections.mp4"
    assert video["path"] == str(path) and video["bytes"] == path.stat().st_size
    assert (video["format"], video["codec"], video["encoder"]) == ("mp4", "h264", "libx264")
    assert (video["frames"], video["fps"], video["time_base_s"]) == (windows, 20.0, "1/20")
    assert video["duration_s"] == pytest.approx(windows * WINDOW_S) and video["ms_per_window"] > 0
    assert json.loads(proc.stdout)["recordings"][0]["video"] == video  # printed too
    assert json.loads((out / ".evdet-manifest.json").read_text())["files"] == sorted(
        ["gen4_000000.png", "gen4_000215.png", "gen4_bbox.npy", "gen4_detect.json", "gen4_detections.mp4"])

    first_end = _first_window_end_us(REAL / "gen4.dat")
    first_box, first_stamp = _stamp((1280, 720), first_end, 0)
    last_box, _ = _stamp((1280, 720), first_end + (windows - 1) * 50_000, windows - 1)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1280, 720)
        assert stream.average_rate == Fraction(20)
        assert float(stream.duration * stream.time_base) == pytest.approx(windows * WINDOW_S, abs=WINDOW_S)
        count, largest_change, previous = 0, 0.0, None
        for frame in container.decode(stream):  # streamed: 216 frames of 1280x720 are not kept
            assert frame.time == pytest.approx(count * WINDOW_S)
            pixels = frame.to_ndarray(format="rgb24").astype(np.float32)
            if previous is not None:
                largest_change = max(largest_change, float(np.abs(pixels - previous).mean()))
            else:
                first = pixels
            previous, count = pixels, count + 1
        last = previous
    assert count == windows and largest_change > 1.0  # the event frames change from window to window

    def first_stamp_area(pixels):
        return pixels[first_box[1]:first_box[3], first_box[0]:first_box[2]]

    assert np.abs(first_stamp_area(first) - first_stamp_area(last)).mean() > 8  # the time stamp changes
    assert np.abs(first_stamp_area(first) - first_stamp).mean() < 8  # t = 0.050 s, window 0 (H.264 is lossy)
    below_stamp = slice(max(first_box[3], last_box[3]), None)
    pngs = [np.asarray(Image.open(out / f"gen4_{i:06d}.png").convert("RGB"), dtype=np.float32)[below_stamp]
            for i in (0, windows - 1)]
    assert np.abs(first[below_stamp] - pngs[0]).mean() < 0.5 < np.abs(first[below_stamp] - pngs[1]).mean()
    assert np.abs(last[below_stamp] - pngs[1]).mean() < 0.5  # each frame is its window's PNG overlay


def test_detect_video_falls_back_to_gif_without_an_encoder(tiny_run, tmp_path):
    report = detect_recording(Path(tiny_run["last_checkpoint"]), REAL / "davis346.aedat4", tmp_path, max_images=1,
                              video=choose_video_format(None, frozenset()))  # as on a machine without encoders
    video, windows = report["video"], report["windows"]
    assert windows == 48 and video["path"] == str(tmp_path / "davis346_detections.gif")
    assert (video["format"], video["codec"], video["encoder"], video["frames"]) == ("gif", "gif", "Pillow", windows)
    with Image.open(video["path"]) as gif:
        assert report["scale_factor"] == 3 and gif.n_frames == windows
        assert gif.size == (345, 258) == (video["width"], video["height"])  # the 115x86 histogram, enlarged 3x
        delays, frames = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            delays.append(gif.info["duration"])
            if i in (0, windows - 1):
                frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    assert delays == [50] * windows  # real time: 50 ms per window
    assert np.abs(frames[0] - frames[1]).mean() > 0.5


def test_detect_video_refuses_to_overwrite_and_overwrite_replaces_it(tiny_run, tmp_path, capsys):
    out = tmp_path / "det"
    args = [tiny_run["last_checkpoint"], str(REAL / "davis346.aedat4"), "--output", str(out), "--device", "cpu",
            "--max-images", "0", "--video"]
    assert main([*args, "--max-windows", "6"]) == 0, capsys.readouterr().err
    video = out / "davis346_detections.mp4"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert video.name in before
    capsys.readouterr()
    assert main([*args, "--max-windows", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert err.startswith(f"evdet-detect: error: {out}: output folder is not empty")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the video is unchanged
    assert main([*args, "--max-windows", "4", "--overwrite"]) == 0, capsys.readouterr().err
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    assert json.loads((out / "davis346_detect.json").read_text())["video"]["frames"] == 4
    capsys.readouterr()

    for flags, message in ((["--video-format", "gif"], "--video-format gif: only with --video"),
                           (["--video", "--video-format", "avi"],
                            "--video-format: expected one of mp4, gif, got 'avi'")):
        other = tmp_path / "other"
        code = main([tiny_run["last_checkpoint"], str(REAL / "davis346.aedat4"), "--output", str(other), *flags])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"evdet-detect: error: {message}") and err.count("\n") == 1, err
        assert not other.exists()  # checked before anything is loaded or written
