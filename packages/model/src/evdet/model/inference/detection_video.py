"""Detection videos of ``evdet-detect --video``: one frame per window, played back in real time.

Each frame is the overlay of one window (:func:`evdet.model.inference.detect.detection_overlay`: the window's stacked
histogram as an event frame, with the detected boxes, class names and scores) with a time stamp in its top-left
corner (window end ``t`` in s, the same ``t`` the box array holds, and the window index). Frame ``i`` is shown at
``i * window_us`` for ``window_us``: the frame rate is ``1 s / window`` (50 ms windows: 20 fps) as an exact
fraction, so a video of ``n`` windows lasts ``n * window_us``, the span the windows cover.

Formats (:func:`choose_video_format`): an MP4 file with H.264 (``libx264``, else ``libopenh264``; ``yuv420p``, the
frame padded with white to even width and height) or, when PyAV's FFmpeg has no H.264 encoder, MPEG-4 Part 2
(``mpeg4``); an animated GIF written with Pillow when no video encoder is available (or when asked for). Frames
are encoded as they come (:class:`DetectionVideoWriter`); the video is never held in memory.

GIF frames use the 216-colour 6x6x6 cube palette (each channel rounded to a multiple of 51) and frame delays in
centiseconds (the GIF89a unit), rounded so that the delays up to frame ``i`` add up to ``i * window_us`` rounded to
10 ms; windows shorter than 10 ms cannot be played in real time as GIF.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont

__all__ = ["VIDEO_ENCODERS", "VIDEO_FORMATS", "DetectionVideoWriter", "VideoChoice", "available_video_encoders",
           "choose_video_format", "draw_time_stamp", "video_file_name"]

#: MP4 video encoders in order of preference: H.264 (x264, Cisco's OpenH264), then MPEG-4 Part 2 (FFmpeg's own).
VIDEO_ENCODERS = ("libx264", "libopenh264", "mpeg4")
#: ``--video-format`` values.
VIDEO_FORMATS = ("mp4", "gif")

#: Codec name (as decoders report it) of each encoder.
_CODEC = {"libx264": "h264", "libopenh264": "h264", "mpeg4": "mpeg4", None: "gif"}
#: MPEG-4 Part 2 has no constant-quality default in PyAV; bits per pixel and frame of its target bit rate.
_MPEG4_BITS_PER_PIXEL = 0.2


@dataclass(frozen=True)
class VideoChoice:
    """The format and encoder of a detection video.

    Attributes:
        format: ``"mp4"`` or ``"gif"`` (also the file suffix).
        encoder: FFmpeg encoder name for MP4 (one of :data:`VIDEO_ENCODERS`), ``None`` for GIF (Pillow).
    """

    format: str
    encoder: str | None

    @property
    def codec(self) -> str:
        """Codec of the video stream: ``h264``, ``mpeg4`` or ``gif``."""
        return _CODEC[self.encoder]


def available_video_encoders() -> frozenset[str]:
    """The encoders of :data:`VIDEO_ENCODERS` that PyAV's FFmpeg provides (empty when PyAV cannot be imported).

    Returns:
        A subset of :data:`VIDEO_ENCODERS`.
    """
    try:
        import av
    except ImportError:
        return frozenset()
    found = set()
    for name in VIDEO_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        found.add(name)
    return frozenset(found)


def choose_video_format(requested: str | None, available: Iterable[str]) -> VideoChoice:
    """Pick the detection video's format and encoder.

    Args:
        requested: ``--video-format``: ``"mp4"``, ``"gif"`` or ``None`` (MP4 when an encoder is available, else GIF).
        available: the encoders this machine has (:func:`available_video_encoders`).

    Returns:
        MP4 with the first of :data:`VIDEO_ENCODERS` in ``available`` (H.264 before MPEG-4 Part 2); GIF when
        ``requested`` is ``"gif"``, or is ``None`` and no encoder is available.

    Raises:
        ValueError: ``requested`` is not one of :data:`VIDEO_FORMATS`, or is ``"mp4"`` with no encoder available
            (one line naming ``--video-format``).
    """
    if requested is not None and requested not in VIDEO_FORMATS:
        raise ValueError(f"--video-format: expected one of {', '.join(VIDEO_FORMATS)}, got {requested!r}")
    available = set(available)
    encoder = next((name for name in VIDEO_ENCODERS if name in available), None)
    if requested == "gif" or (requested is None and encoder is None):
        return VideoChoice("gif", None)
    if encoder is None:
        raise ValueError(f"--video-format mp4: PyAV's FFmpeg has none of the video encoders "
                         f"{', '.join(VIDEO_ENCODERS)}; use --video-format gif")
    return VideoChoice("mp4", encoder)


def video_file_name(name: str, choice: VideoChoice) -> str:
    """File name of the detection video of the recording with output name ``name``: ``NAME_detections.mp4`` or
    ``NAME_detections.gif``."""
    return f"{name}_detections.{choice.format}"


def _time_stamp_font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at about 1/30 of the frame height (>= 12 px; the bitmap font without FreeType)."""
    return ImageFont.load_default(size=max(12, height // 30))


def draw_time_stamp(image: Image.Image, t_end_us: int, index: int) -> tuple[int, int, int, int]:
    """Draw ``t = <window end in s> s  window <index>`` in white on a black box in the top-left corner of ``image``.

    Args:
        image: RGB frame, modified in place.
        t_end_us: window end (µs), as in the box array's ``t``.
        index: window index (0 = first window of the recording).

    Returns:
        The box ``(x0, y0, x1, y1)`` (px, ``x1``/``y1`` exclusive) the time stamp covers.
    """
    draw = ImageDraw.Draw(image)
    font = _time_stamp_font(image.height)
    text = f"t = {t_end_us / 1e6:.3f} s  window {index}"
    margin = max(2, image.height // 180)
    _, _, right, bottom = draw.textbbox((2 * margin, 2 * margin), text, font=font)
    box = (0, 0, min(image.width, right + 2 * margin), min(image.height, bottom + 2 * margin))
    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(0, 0, 0))
    draw.text((2 * margin, 2 * margin), text, fill=(255, 255, 255), font=font)
    return box


class DetectionVideoWriter:
    """Encode overlays, one per window, into a detection video as they come.

    Usage::

        with DetectionVideoWriter(path, choice, window_us) as video:
            for each window: video.write(overlay, t_end_us, index)
        video.summary  # what the report records

    Leaving the block with an exception (or Ctrl-C) deletes the unfinished file. Frame ``i`` (the ``i``-th call of
    :meth:`write`) has presentation time ``i * window_us``.

    Args:
        path: the video file (its suffix should be ``choice.format``; its folder is created with the first frame).
            An existing file is replaced (the caller's output folder decides whether that is allowed).
        choice: format and encoder (:func:`choose_video_format`).
        window_us: window duration (µs), > 0; one frame per window.

    Attributes:
        frames: frames written so far.
        summary: after closing, the report entry (:meth:`close`).

    Raises:
        ValueError: ``window_us`` <= 0, or an MP4 choice without an encoder.
    """

    def __init__(self, path: str | os.PathLike[str], choice: VideoChoice, window_us: int) -> None:
        if int(window_us) <= 0:
            raise ValueError(f"window_us: expected a window duration > 0 µs, got {window_us}")
        if choice.format == "mp4" and choice.encoder is None:
            raise ValueError("VideoChoice: an MP4 video needs an encoder")
        self.path = Path(path)
        self.choice = choice
        self.window_us = int(window_us)
        self.frame_rate = Fraction(1_000_000, self.window_us)
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the encoded frames, px
        self.summary: dict | None = None
        self._container = None  # MP4: the PyAV output container
        self._stream = None
        self._gif = None  # GIF: the open file

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def write(self, overlay: Image.Image, t_end_us: int, index: int) -> None:
        """Add the frame of one window: ``overlay`` with its time stamp (:func:`draw_time_stamp`).

        Args:
            overlay: RGB image of the window (every frame the same size, px); not modified.
            t_end_us: window end (µs).
            index: window index shown in the time stamp.

        Raises:
            ValueError: ``overlay`` differs in size from the first frame.
        """
        frame = overlay.convert("RGB")  # a copy: the caller's overlay (also saved as PNG) stays unstamped
        draw_time_stamp(frame, t_end_us, index)
        if self.choice.format == "mp4":
            frame = _pad_to_even(frame)
        if self.size is None:
            self.size = frame.size
            self._open()
        elif frame.size != self.size:
            raise ValueError(f"{self.path.name}: frame {self.frames} is {frame.size[0]}x{frame.size[1]} px, the "
                             f"video's frames are {self.size[0]}x{self.size[1]} px")
        if self.choice.format == "mp4":
            self._write_mp4(frame)
        else:
            self._write_gif(frame)
        self.frames += 1

    def close(self) -> dict:
        """Finish the file and return the report entry.

        Returns:
            ``{"path", "format", "codec", "encoder", "frames", "fps", "time_base_s", "duration_s", "width",
            "height", "bytes"}``; ``fps`` = ``1 s / window`` (float; ``time_base_s`` is the exact ``"1/20"``),
            ``duration_s`` = ``frames * window``; ``path`` is ``None`` and nothing is written when no frame came
            (a recording without windows).
        """
        if self.summary is not None:
            return self.summary
        if self._container is not None:
            for packet in self._stream.encode(None):  # flush the encoder's delayed frames
                self._container.mux(packet)
            self._container.close()
        if self._gif is not None:
            self._gif.write(b";")  # GIF trailer
            self._gif.close()
        width, height = self.size if self.size is not None else (0, 0)
        self.summary = {
            "path": str(self.path) if self.frames else None,
            "format": self.choice.format,
            "codec": self.choice.codec,
            "encoder": self.choice.encoder or "Pillow",
            "frames": self.frames,
            "fps": float(self.frame_rate),
            "time_base_s": str(1 / self.frame_rate),
            "duration_s": self.frames * self.window_us / 1e6,
            "width": width,
            "height": height,
            "bytes": self.path.stat().st_size if self.frames else 0,
        }
        return self.summary

    def discard(self) -> None:
        """Stop writing and delete the unfinished file (after an error or Ctrl-C)."""
        try:
            if self._container is not None:
                self._container.close()
            if self._gif is not None:
                self._gif.close()
        finally:
            self._container = self._gif = None
            self.path.unlink(missing_ok=True)

    def _open(self) -> None:
        width, height = self.size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.choice.format == "gif":
            self._gif = open(self.path, "wb")  # noqa: SIM115 - written frame by frame, closed by close()
            return
        import av

        self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream(self.choice.encoder, rate=self.frame_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / self.frame_rate
        stream.codec_context.time_base = 1 / self.frame_rate
        if self.choice.encoder == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}  # x264's default quality, ~2x faster than medium
        elif self.choice.encoder == "mpeg4":
            stream.bit_rate = int(_MPEG4_BITS_PER_PIXEL * width * height * self.frame_rate)
        self._stream = stream

    def _write_mp4(self, frame: Image.Image) -> None:
        import av

        video_frame = av.VideoFrame.from_image(frame)
        video_frame.pts = self.frames
        video_frame.time_base = 1 / self.frame_rate
        video_frame.duration = 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def _write_gif(self, frame: Image.Image) -> None:
        indexed = Image.fromarray(_cube_indices(np.asarray(frame)), mode="P")
        indexed.putpalette(_CUBE_PALETTE)
        if self.frames == 0:
            header, _ = GifImagePlugin.getheader(indexed, None, {"loop": 0})  # loop forever
            for chunk in header:
                self._gif.write(chunk)
        start_cs, end_cs = ((i * self.window_us + 5_000) // 10_000 for i in (self.frames, self.frames + 1))
        for chunk in GifImagePlugin.getdata(indexed, duration=10 * (end_cs - start_cs)):
            self._gif.write(chunk)


#: RGB bytes of the 6x6x6 colour cube, index ``36 r + 6 g + b`` for levels ``0..5`` (value ``51 * level``).
_CUBE_PALETTE = bytes(51 * level for i in range(216) for level in (i // 36, i // 6 % 6, i % 6))


def _cube_indices(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` uint8 index of the nearest colour of the 6x6x6 cube."""
    levels = (rgb.astype(np.uint16) * 5 + 127) // 255
    return (levels[..., 0] * 36 + levels[..., 1] * 6 + levels[..., 2]).astype(np.uint8)


def _pad_to_even(image: Image.Image) -> Image.Image:
    """``image`` padded with white on the right / bottom to even width and height (``yuv420p`` halves both)."""
    width, height = image.width + image.width % 2, image.height + image.height % 2
    if (width, height) == image.size:
        return image
    padded = Image.new("RGB", (width, height), (255, 255, 255))
    padded.paste(image, (0, 0))
    return padded
