"""The in-memory event type every reader returns.

An event camera reports per-pixel brightness changes as events ``(x, y, t, p)``: pixel column ``x`` and row
``y`` (px, ``uint16``), timestamp ``t`` (µs, ``int64``) and polarity ``p`` (``uint8``, 1 = brightness increase,
0 = decrease). :class:`Events` keeps the four fields as parallel 1-D NumPy arrays together with the sensor size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Events"]


@dataclass(frozen=True)
class Events:
    """A time-ordered batch of events from one sensor.

    Attributes:
        x: ``(N,)`` ``uint16`` pixel column, ``0 <= x < width`` (px).
        y: ``(N,)`` ``uint16`` pixel row, ``0 <= y < height`` (px).
        t: ``(N,)`` ``int64`` timestamp (µs), non-decreasing.
        p: ``(N,)`` ``uint8`` polarity, 0 (OFF) or 1 (ON).
        width: sensor width (px).
        height: sensor height (px).

    Raises:
        ValueError: on construction, if the arrays differ in length or have the wrong dtype.
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        expected = {"x": np.uint16, "y": np.uint16, "t": np.int64, "p": np.uint8}
        n = len(self.t)
        for name, dtype in expected.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1:
                raise ValueError(f"Events.{name}: expected a 1-D numpy array, got {type(arr).__name__}")
            if arr.dtype != dtype:
                raise ValueError(f"Events.{name}: expected dtype {np.dtype(dtype)}, got {arr.dtype}")
            if len(arr) != n:
                raise ValueError(f"Events.{name}: expected length {n} (as t), got {len(arr)}")

    @classmethod
    def empty(cls, width: int, height: int) -> "Events":
        """Return zero events for a ``width`` x ``height`` sensor."""
        return cls(
            x=np.zeros(0, np.uint16),
            y=np.zeros(0, np.uint16),
            t=np.zeros(0, np.int64),
            p=np.zeros(0, np.uint8),
            width=int(width),
            height=int(height),
        )

    @classmethod
    def concatenate(cls, parts: list["Events"], width: int, height: int) -> "Events":
        """Join time-ordered parts (each of the same sensor) into one :class:`Events`."""
        if not parts:
            return cls.empty(width, height)
        return cls(
            x=np.concatenate([e.x for e in parts]),
            y=np.concatenate([e.y for e in parts]),
            t=np.concatenate([e.t for e in parts]),
            p=np.concatenate([e.p for e in parts]),
            width=int(width),
            height=int(height),
        )

    def __len__(self) -> int:
        return len(self.t)

    def time_slice(self, t_start_us: int, t_end_us: int) -> "Events":
        """Events with ``t_start_us <= t < t_end_us`` (µs), found by binary search on ``t``."""
        lo, hi = np.searchsorted(self.t, [t_start_us, t_end_us], side="left")
        return Events(self.x[lo:hi], self.y[lo:hi], self.t[lo:hi], self.p[lo:hi], self.width, self.height)
