"""Binary search for a timestamp in a time-ordered column that is only read piecewise.

Readers of indexed formats (Prophesee DAT through ``np.memmap``, eTraM HDF5 through h5py) must find the event
index of a window boundary without loading the whole ``t`` column: :func:`first_index_at_or_after` bisects with
single-element reads and finishes with one small block read and ``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["first_index_at_or_after"]

#: Below this many candidates the search reads the remaining block at once (one HDF5 chunk or a few pages).
FINAL_BLOCK_EVENTS = 4096


def first_index_at_or_after(
    read_t: Callable[[int, int], np.ndarray],
    target_us: int,
    lo: int,
    hi: int,
    final_block: int = FINAL_BLOCK_EVENTS,
) -> int:
    """Return the first index ``i`` in ``[lo, hi]`` with ``t[i] >= target_us`` (``hi`` if none).

    Same result as ``lo + np.searchsorted(t[lo:hi], target_us, side="left")`` on a non-decreasing ``t``, but
    reads only ``O(log2(hi - lo))`` single timestamps plus one block of at most ``final_block`` timestamps.

    Args:
        read_t: ``read_t(a, b)`` returns ``t[a:b]`` as an ``(b - a,)`` integer array (µs).
        target_us: timestamp searched for (µs).
        lo, hi: index range to search, ``0 <= lo <= hi``.
        final_block: switch to a block read below this many candidates; >= 1.

    Raises:
        ValueError: if ``lo > hi`` or ``final_block < 1``.
    """
    if lo > hi:
        raise ValueError(f"first_index_at_or_after: expected lo <= hi, got lo={lo}, hi={hi}")
    if final_block < 1:
        raise ValueError(f"first_index_at_or_after: expected final_block >= 1, got {final_block}")
    while hi - lo > final_block:
        mid = (lo + hi) // 2
        if int(read_t(mid, mid + 1)[0]) < target_us:
            lo = mid + 1
        else:
            hi = mid
    if hi == lo:
        return lo
    return lo + int(np.searchsorted(np.asarray(read_t(lo, hi)), target_us, side="left"))
