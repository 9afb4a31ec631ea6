"""A small EVT 2.0 / EVT 3.0 encoder written from Prophesee's format pages, for the RAW reader tests.

Independent of evdet's decoder and of faery: it writes what the spec says, event by event, vectorised with numpy.

* EVT 2.0 (docs.prophesee.ai/stable/data/encoding_formats/evt2.html): a ``TIME_HIGH`` word ``0x8 << 28 | t >> 6``
  (28 bits, masked) before every event whose ``t >> 6`` differs from the previous event's, then one ``CD_OFF`` /
  ``CD_ON`` word ``p << 28 | (t & 63) << 22 | x << 11 | y`` per event.
* EVT 3.0 (docs.prophesee.ai/stable/data/encoding_formats/evt3.html): per event, ``TIME_HIGH`` (``0x8 << 12 |
  (t >> 12) & 0xFFF``) when the high 12 bits change, ``TIME_LOW`` (``0x6 << 12 | t & 0xFFF``) when ``t`` changes,
  ``EVT_ADDR_Y`` (``y``) when ``y`` changes, then ``EVT_ADDR_X`` (``0x2 << 12 | p << 11 | x``). No vectors (the faery
  encoder writes ``VECT_12`` / ``VECT_8``; the reader tests use both).

``noise_every`` inserts words a decoder must skip (EVT 2.0: ``EXT_TRIGGER``, ``OTHERS``; EVT 3.0: ``EXT_TRIGGER``,
``OTHERS`` + ``CONTINUED_12``, ``CONTINUED_4``) before every ``noise_every``-th event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["encode_evt2", "encode_evt3", "raw_header", "write_raw"]


def raw_header(encoding: str, width: int = 1280, height: int = 720, end: bool = True, extra: str = "") -> bytes:
    """A Metavision-style header: ``% evt``, ``% format ...;height=;width=``, ``% geometry``, optional ``% end``."""
    version, name = {"evt2": ("2.0", "EVT2"), "evt3": ("3.0", "EVT3")}[encoding]
    text = (f"% camera_integrator_name Prophesee\n% date 2024-01-01 00:00:00\n% evt {version}\n"
            f"% format {name};height={height};width={width}\n% geometry {width}x{height}\n"
            f"% plugin_name hal_plugin_imx636_evk4\n{extra}")
    return (text + ("% end\n" if end else "")).encode()


def _interleave(parts: list[tuple[np.ndarray, np.ndarray]], n_events: int, dtype) -> np.ndarray:
    """Words before each event: ``parts`` is ``[(flag per event, word per event), ...]`` in output order; the last
    part must be the event word itself (flag all true)."""
    counts = sum(flag.astype(np.int64) for flag, _ in parts)
    end = np.cumsum(counts)
    start = end - counts
    out = np.zeros(int(end[-1]) if n_events else 0, dtype)
    offset = start.copy()
    for flag, word in parts:
        out[offset[flag]] = word[flag]
        offset += flag
    return out


def _noise_flags(n: int, every: int | None) -> np.ndarray:
    flags = np.zeros(n, bool)
    if every:
        flags[every // 2::every] = True
    return flags


def encode_evt2(t, x, y, p, noise_every: int | None = None) -> bytes:
    """EVT 2.0 words (little-endian bytes) of events ``t`` (µs, non-decreasing), ``x``, ``y`` (px), ``p`` (0/1)."""
    t, x, y, p = (np.asarray(a, np.int64) for a in (t, x, y, p))
    n = len(t)
    high = t >> 6
    new_high = np.ones(n, bool)
    new_high[1:] = high[1:] != high[:-1]
    noise = _noise_flags(n, noise_every)
    trigger = (0xA << 28) | ((t & 0x3F) << 22) | (3 << 8) | 1
    others = np.full(n, (0xE << 28) | 0x12345, np.int64)
    parts = [
        (new_high, (0x8 << 28) | (high & 0x0FFFFFFF)),
        (noise, trigger),
        (noise, others),
        (np.ones(n, bool), (p << 28) | ((t & 0x3F) << 22) | (x << 11) | y),
    ]
    return _interleave(parts, n, "<u4").tobytes()


def encode_evt3(t, x, y, p, noise_every: int | None = None) -> bytes:
    """EVT 3.0 words (little-endian bytes) of events ``t`` (µs, non-decreasing), ``x``, ``y`` (px), ``p`` (0/1)."""
    t, x, y, p = (np.asarray(a, np.int64) for a in (t, x, y, p))
    n = len(t)
    high = (t >> 12) & 0xFFF
    first = np.zeros(n, bool)
    first[:1] = True
    new_high = first.copy()
    new_high[1:] = (t[1:] >> 12) != (t[:-1] >> 12)
    new_t = first.copy()
    new_t[1:] = t[1:] != t[:-1]
    new_y = first.copy()
    new_y[1:] = y[1:] != y[:-1]
    noise = _noise_flags(n, noise_every)
    full = np.ones(n, bool)
    parts = [
        (new_high, (0x8 << 12) | high),
        (new_t, (0x6 << 12) | (t & 0xFFF)),
        (noise, np.full(n, (0xA << 12) | (1 << 8) | 1)),  # EXT_TRIGGER id 1, value 1
        (noise, np.full(n, (0xE << 12) | 0x014)),  # OTHERS (master event type) ...
        (noise, np.full(n, (0xF << 12) | 0xABC)),  # ... with a CONTINUED_12 payload
        (noise, np.full(n, (0x7 << 12) | 0x5)),  # CONTINUED_4
        (new_y | noise, y),  # EVT_ADDR_Y (repeated after the noise words; harmless)
        (full, (0x2 << 12) | (p << 11) | x),
    ]
    return _interleave(parts, n, "<u2").tobytes()


def write_raw(path: Path, encoding: str, t, x, y, p, width: int = 1280, height: int = 720,
              noise_every: int | None = None, header: bytes | None = None) -> Path:
    """Write a RAW file: ``header`` (default :func:`raw_header`) and the encoded events."""
    words = (encode_evt2 if encoding == "evt2" else encode_evt3)(t, x, y, p, noise_every)
    path.write_bytes((raw_header(encoding, width, height) if header is None else header) + words)
    return path
