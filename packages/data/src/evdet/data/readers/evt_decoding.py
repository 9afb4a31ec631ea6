"""Compiled (numba) decoders of Prophesee EVT 2.0 and EVT 3.0 words, with a block index for random access.

**EVT 2.0** (Prophesee, "EVT 2.0 Format", docs.prophesee.ai/stable/data/encoding_formats/evt2.html): little-endian
32-bit words, type in bits 31-28. ``CD_OFF`` (0x0) / ``CD_ON`` (0x1): timestamp LSB in bits 27-22 (6 bits), x in bits
21-11, y in bits 10-0, polarity = type. ``EVT_TIME_HIGH`` (0x8): bits 27-0 are the 28 MSB of the timestamp, so
``t = time_high << 6 | lsb`` (34 bits, wraps after 2**34 µs = 4.77 h). ``EXT_TRIGGER`` (0xA), ``OTHERS`` (0xE),
``CONTINUED`` (0xF) and reserved types are skipped.

**EVT 3.0** (Prophesee, "EVT 3.0 Format", docs.prophesee.ai/stable/data/encoding_formats/evt3.html): little-endian
16-bit words, type in bits 15-12, decoded against a state. ``EVT_ADDR_Y`` (0x0): y in bits 10-0 (bit 11: master/slave
system type). ``EVT_ADDR_X`` (0x2): one event at x = bits 10-0, polarity bit 11, at the current y and time.
``VECT_BASE_X`` (0x3): base x (bits 10-0) and polarity (bit 11) of the following vectors. ``VECT_12`` (0x4) /
``VECT_8`` (0x5): bit ``i`` of the 12 / 8-bit mask set = one event at ``base_x + i``; then ``base_x`` advances by 12 /
8. ``EVT_TIME_LOW`` (0x6) / ``EVT_TIME_HIGH`` (0x8): the low / high 12 bits of a 24-bit µs time base, which wraps after
2**24 µs = 16.78 s. ``CONTINUED_4`` (0x7), ``EXT_TRIGGER`` (0xA), ``OTHERS`` (0xE), ``CONTINUED_12`` (0xF) and
reserved types are skipped. Type 0x1 (EM y address of older sensors) stops CD decoding until the next ``EVT_ADDR_Y``,
as Metavision's decoder does (OpenEB ``hal/cpp/include/metavision/hal/decoders/evt3/evt3_decoder.h``, ``is_cd``).

**Time-high wrap** (both formats): a ``TIME_HIGH`` value that is at least half the counter range below the previous
one (2**11 for EVT 3.0's 12-bit field, 2**27 for EVT 2.0's 28-bit field) is the counter wrapping, and one period
(2**24 / 2**34 µs) is added from there on; this is OpenEB's EVT 3.0 rule (``loop += high >= 2**11 + new_high``). A
smaller step back is kept as decoded (the reader's bad-event policy then reports it). Timestamps are the file's own
time line (no shift to zero): the first ``TIME_HIGH`` is taken as is, later ones count wraps from it. When ``TIME_HIGH``
changes, EVT 3.0's time low is reset to 0 until the next ``TIME_LOW`` (as in OpenEB). Words before the first
``TIME_HIGH`` are skipped (their time is unknown; Metavision's decoders skip them too).

**Index.** :func:`evt2_index` / :func:`evt3_index` pass over all words once and record, every ``block_words``
words, the complete decoder state, the number of events before the block and the first/last timestamp in it; the
``*_decode`` functions start at any block from its saved state, skip events up to a wanted event index and fill
preallocated columns. Decoding from a block's state gives exactly the events of a decode from the file start.

All functions run on one thread; like :mod:`evdet.data.histogram_kernel` they are cached on disk when numba finds a
writable cache location.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "EVT2_STATE_SIZE",
    "EVT3_STATE_SIZE",
    "evt2_decode",
    "evt2_index",
    "evt3_decode",
    "evt3_index",
]

#: EVT 2.0 decoder state: ``[loops, time_high, time_set]``.
EVT2_STATE_SIZE = 3
#: EVT 3.0 decoder state: ``[loops, time_high, time_low, y, base_x, polarity, is_cd, time_set]``.
EVT3_STATE_SIZE = 8


def _jit(function):
    """``numba.njit(nogil=True, cache=True)``, without the on-disk cache where numba finds no writable location."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True, cache=False)(function)


# -- EVT 2.0 ------------------------------------------------------------------------------------------------------

@_jit
def evt2_index(words, block_words, states, block_events, block_t_first, block_t_last):
    """Index EVT 2.0 words in blocks of ``block_words`` words.

    Args:
        words: ``(W,)`` ``uint32`` words.
        block_words: words per block, >= 1.
        states: ``(B, EVT2_STATE_SIZE)`` ``int64`` output, ``B = ceil(W / block_words)``: state at each block start.
        block_events: ``(B,)`` ``int64`` output: events decoded in each block.
        block_t_first, block_t_last: ``(B,)`` ``int64`` outputs: first / last event timestamp (µs) in each block,
            ``-1`` for a block without events.

    Returns:
        Total number of events ``N``.
    """
    loops = np.int64(0)
    high = np.int64(0)
    time_set = np.int64(0)
    total = np.int64(0)
    n = words.shape[0]
    for b in range(states.shape[0]):
        states[b, 0] = loops
        states[b, 1] = high
        states[b, 2] = time_set
        count = np.int64(0)
        first = np.int64(-1)
        last = np.int64(-1)
        for i in range(b * block_words, min((b + 1) * block_words, n)):
            w = np.int64(words[i])
            kind = w >> 28
            if kind == 8:
                new = w & 0x0FFFFFFF
                if time_set == 1 and new + (1 << 27) <= high:
                    loops += 1
                high = new
                time_set = 1
            elif kind <= 1 and time_set == 1:
                t = (loops << 34) + (high << 6) + ((w >> 22) & 0x3F)
                if count == 0:
                    first = t
                last = t
                count += 1
        block_events[b] = count
        block_t_first[b] = first
        block_t_last[b] = last
        total += count
    return total


@_jit
def evt2_decode(words, start_word, state, skip, x, y, t, p):
    """Decode EVT 2.0 events from word ``start_word`` with decoder ``state``, dropping the first ``skip`` events and
    filling the ``len(t)`` next ones.

    Args:
        words: ``(W,)`` ``uint32`` words.
        start_word: first word to decode (a block start of :func:`evt2_index`).
        state: ``(EVT2_STATE_SIZE,)`` ``int64`` state at ``start_word``.
        skip: events to drop first.
        x, y: ``(M,)`` ``uint16`` outputs (px); t: ``(M,)`` ``int64`` output (µs); p: ``(M,)`` ``uint8`` output
            (0 = OFF, 1 = ON).

    Returns:
        Number of events written (``M`` unless the words end first).
    """
    loops = state[0]
    high = state[1]
    time_set = state[2]
    wanted = t.shape[0]
    k = 0
    seen = np.int64(0)
    if wanted == 0:
        return 0
    for i in range(start_word, words.shape[0]):
        w = np.int64(words[i])
        kind = w >> 28
        if kind == 8:
            new = w & 0x0FFFFFFF
            if time_set == 1 and new + (1 << 27) <= high:
                loops += 1
            high = new
            time_set = 1
        elif kind <= 1 and time_set == 1:
            if seen >= skip:
                t[k] = (loops << 34) + (high << 6) + ((w >> 22) & 0x3F)
                x[k] = (w >> 11) & 0x7FF
                y[k] = w & 0x7FF
                p[k] = kind
                k += 1
                if k == wanted:
                    return k
            seen += 1
    return k


# -- EVT 3.0 ------------------------------------------------------------------------------------------------------

@_jit
def evt3_index(words, block_words, states, block_events, block_t_first, block_t_last):
    """Index EVT 3.0 words in blocks of ``block_words`` words (arguments as :func:`evt2_index`, ``words`` ``uint16``,
    ``states`` ``(B, EVT3_STATE_SIZE)``).

    Returns:
        Total number of events ``N``.
    """
    loops = np.int64(0)
    high = np.int64(0)
    low = np.int64(0)
    ypos = np.int64(0)
    base_x = np.int64(0)
    pol = np.int64(0)
    is_cd = np.int64(1)
    time_set = np.int64(0)
    total = np.int64(0)
    n = words.shape[0]
    for b in range(states.shape[0]):
        states[b, 0] = loops
        states[b, 1] = high
        states[b, 2] = low
        states[b, 3] = ypos
        states[b, 4] = base_x
        states[b, 5] = pol
        states[b, 6] = is_cd
        states[b, 7] = time_set
        count = np.int64(0)
        first = np.int64(-1)
        last = np.int64(-1)
        for i in range(b * block_words, min((b + 1) * block_words, n)):
            w = np.int64(words[i])
            kind = w >> 12
            if kind == 8:
                new = w & 0xFFF
                if time_set == 1:
                    if new + (1 << 11) <= high:
                        loops += 1
                    if new != high:
                        low = 0
                high = new
                time_set = 1
                continue
            if time_set == 0:
                continue
            n_new = 0
            if kind == 0:
                ypos = w & 0x7FF
                is_cd = 1
            elif kind == 1:
                is_cd = 0
            elif kind == 2:
                if is_cd == 1:
                    n_new = 1
            elif kind == 3:
                base_x = w & 0x7FF
                pol = (w >> 11) & 1
            elif kind == 4:
                if is_cd == 1:
                    m = w & 0xFFF
                    while m:
                        n_new += m & 1
                        m >>= 1
                base_x += 12
            elif kind == 5:
                if is_cd == 1:
                    m = w & 0xFF
                    while m:
                        n_new += m & 1
                        m >>= 1
                base_x += 8
            elif kind == 6:
                low = w & 0xFFF
            if n_new > 0:
                tt = (loops << 24) + (high << 12) + low
                if count == 0:
                    first = tt
                last = tt
                count += n_new
        block_events[b] = count
        block_t_first[b] = first
        block_t_last[b] = last
        total += count
    return total


@_jit
def evt3_decode(words, start_word, state, skip, x, y, t, p):
    """Decode EVT 3.0 events (arguments and result as :func:`evt2_decode`, ``words`` ``uint16``, ``state``
    ``(EVT3_STATE_SIZE,)``)."""
    loops = state[0]
    high = state[1]
    low = state[2]
    ypos = state[3]
    base_x = state[4]
    pol = state[5]
    is_cd = state[6]
    time_set = state[7]
    wanted = t.shape[0]
    k = 0
    seen = np.int64(0)
    if wanted == 0:
        return 0
    for i in range(start_word, words.shape[0]):
        w = np.int64(words[i])
        kind = w >> 12
        if kind == 8:
            new = w & 0xFFF
            if time_set == 1:
                if new + (1 << 11) <= high:
                    loops += 1
                if new != high:
                    low = 0
            high = new
            time_set = 1
            continue
        if time_set == 0:
            continue
        if kind == 0:
            ypos = w & 0x7FF
            is_cd = 1
        elif kind == 1:
            is_cd = 0
        elif kind == 2:
            if is_cd == 1:
                if seen >= skip:
                    t[k] = (loops << 24) + (high << 12) + low
                    x[k] = w & 0x7FF
                    y[k] = ypos
                    p[k] = (w >> 11) & 1
                    k += 1
                    if k == wanted:
                        return k
                seen += 1
        elif kind == 3:
            base_x = w & 0x7FF
            pol = (w >> 11) & 1
        elif kind == 4 or kind == 5:
            width = 12 if kind == 4 else 8
            if is_cd == 1:
                m = w & ((1 << width) - 1)
                tt = (loops << 24) + (high << 12) + low
                for j in range(width):
                    if (m >> j) & 1:
                        if seen >= skip:
                            t[k] = tt
                            x[k] = min(base_x + j, 0xFFFF)  # a corrupt run of vectors stays out of range
                            y[k] = ypos
                            p[k] = pol
                            k += 1
                            if k == wanted:
                                return k
                        seen += 1
            base_x += width
        elif kind == 6:
            low = w & 0xFFF
    return k
