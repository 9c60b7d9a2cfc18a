# mypy: disable-error-code="assignment,arg-type,return-value,no-any-return"
# (numba kernels: int annotations document intent; the arithmetic is on numpy int64 scalars)
"""numba decoders for Prophesee EVT 2.0, EVT 3.0 and DAT data (bit layouts: shared/data/PROVENANCE.md).

Every kernel has the signature ``(buf, pos, end, out, n, state, width, height) -> (pos, n, status, aux)``
described in ``sensors.dvs.eventfile``: it decodes whole records of ``buf[pos:end]`` into ``out[n:]``, keeps
its decoder state in the int64 vector ``state`` between calls, and stops when the input has no whole record
left (NEED_INPUT), when ``out`` is full (OUT_FULL) or at a bad record (negative status, ``pos`` at the record).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from sensors.dvs.eventfile import ERR_X, ERR_Y, NEED_INPUT, OUT_FULL, Events

ERR_WORD_TYPE = -3
"""A word type the format does not define; aux = the type nibble."""
ERR_POLARITY = -4
"""DAT polarity nibble other than 0/1; aux = the value."""

# EVT 2.0 state slots.
EVT2_TIME = 0  # unwrapped TIME_HIGH << 6, or -1 before the first TIME_HIGH word
EVT2_LAST_HIGH = 1  # raw 28-bit value of the previous TIME_HIGH word
EVT2_WRAP = 2  # multiple of 2**34 added for each decrease of TIME_HIGH
EVT2_NO_TIME = 3
EVT2_TRIGGER = 4
EVT2_OTHERS = 5
EVT2_CONTINUED = 6
EVT2_STATE_SIZE = 7

# EVT 3.0 state slots.
EVT3_Y = 0  # current row, -1 before the first EVT_ADDR_Y
EVT3_BASE_X = 1
EVT3_VECT_POL = 2
EVT3_TIME_LOW = 3
EVT3_TIME_HIGH = 4  # raw 12-bit TIME_HIGH, -1 before the first one
EVT3_WRAP = 5  # multiple of 2**24 added for each decrease of TIME_HIGH
EVT3_NO_TIME = 6
EVT3_NO_Y = 7
EVT3_TRIGGER = 8
EVT3_OTHERS = 9
EVT3_CONTINUED = 10
EVT3_STATE_SIZE = 11

# DAT state slots.
DAT_LAST_T = 0  # raw 32-bit timestamp of the previous event, -1 before the first
DAT_WRAP = 1
DAT_STATE_SIZE = 2


_DEBRUIJN = 0x077CB531
_BIT_INDEX = np.zeros(32, np.int64)
"""Index of the single set bit b of a 32-bit word: _BIT_INDEX[(b * _DEBRUIJN mod 2**32) >> 27]."""
for _bit in range(32):
    _BIT_INDEX[((1 << _bit) * _DEBRUIJN & 0xFFFFFFFF) >> 27] = _bit


def new_state(size: int, unset: tuple[int, ...]) -> npt.NDArray[np.int64]:
    """A zeroed state vector with the ``unset`` slots at -1 (not seen yet)."""
    state = np.zeros(size, np.int64)
    state[list(unset)] = -1
    return state


@numba.njit(nogil=True, cache=True)
def decode_evt2(
    buf: npt.NDArray[np.uint8],
    pos: int,
    end: int,
    out: Events,
    n: int,
    state: npt.NDArray[np.int64],
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    cap = out.shape[0]
    time_high = state[EVT2_TIME]
    status = NEED_INPUT
    aux = 0
    while pos + 4 <= end:
        word = (
            np.int64(buf[pos])
            | (np.int64(buf[pos + 1]) << 8)
            | (np.int64(buf[pos + 2]) << 16)
            | (np.int64(buf[pos + 3]) << 24)
        )
        kind = word >> 28
        if kind <= 1:  # CD_OFF / CD_ON
            if time_high < 0:
                state[EVT2_NO_TIME] += 1
            else:
                if n >= cap:
                    status = OUT_FULL
                    break
                x = (word >> 11) & 0x7FF
                y = word & 0x7FF
                if x >= width:
                    status, aux = ERR_X, x
                    break
                if y >= height:
                    status, aux = ERR_Y, y
                    break
                rec = out[n]
                rec.t = time_high | ((word >> 22) & 0x3F)
                rec.x = x
                rec.y = y
                rec.p = kind == 1
                n += 1
        elif kind == 0x8:  # EV_TIME_HIGH: timestamp bits 6..33
            raw = word & 0xFFFFFFF
            if time_high >= 0 and raw < state[EVT2_LAST_HIGH]:
                state[EVT2_WRAP] += np.int64(1) << 34
            state[EVT2_LAST_HIGH] = raw
            time_high = state[EVT2_WRAP] + (raw << 6)
        elif kind == 0xA:
            state[EVT2_TRIGGER] += 1
        elif kind == 0xE:
            state[EVT2_OTHERS] += 1
        elif kind == 0xF:
            state[EVT2_CONTINUED] += 1
        else:
            status, aux = ERR_WORD_TYPE, kind
            break
        pos += 4
    state[EVT2_TIME] = time_high
    return pos, n, status, aux


@numba.njit(nogil=True, cache=True)
def _evt3_rare_word(word: int, state: npt.NDArray[np.int64]) -> tuple[int, int]:
    """Counters for EXT_TRIGGER / OTHERS / CONTINUED words; (status, aux) for undefined types."""
    kind = word >> 12
    if kind == 0xA:
        state[EVT3_TRIGGER] += 1
    elif kind == 0xE:
        state[EVT3_OTHERS] += 1
    elif kind == 0x7 or kind == 0xF:  # CONTINUED_4 / CONTINUED_12 payloads of non-CD events
        state[EVT3_CONTINUED] += 1
    else:
        return ERR_WORD_TYPE, kind
    return NEED_INPUT, 0


@numba.njit(nogil=True, cache=True)
def _evt3_until_ready(
    buf: npt.NDArray[np.uint8], pos: int, end: int, state: npt.NDArray[np.int64]
) -> tuple[int, int, int]:
    """Consume words until a TIME_HIGH and an ADDR_Y have been seen; events before that are counted only.

    Returns (pos, status, aux); the state slots are updated in place.
    """
    while pos + 2 <= end and (state[EVT3_TIME_HIGH] < 0 or state[EVT3_Y] < 0):
        word = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
        kind = word >> 12
        skipped = EVT3_NO_TIME if state[EVT3_TIME_HIGH] < 0 else EVT3_NO_Y
        if kind == 0x0:
            state[EVT3_Y] = word & 0x7FF
        elif kind == 0x2:
            state[skipped] += 1
        elif kind == 0x3:
            state[EVT3_BASE_X] = word & 0x7FF
            state[EVT3_VECT_POL] = (word >> 11) & 1
        elif kind == 0x4 or kind == 0x5:
            count = 12 if kind == 0x4 else 8
            state[skipped] += _popcount12(word & ((1 << count) - 1))
            state[EVT3_BASE_X] += count
        elif kind == 0x6:
            state[EVT3_TIME_LOW] = word & 0xFFF
        elif kind == 0x8:
            if 0 <= (word & 0xFFF) < state[EVT3_TIME_HIGH]:  # a decrease is a wrap, even before the first row
                state[EVT3_WRAP] += np.int64(1) << 24
            state[EVT3_TIME_HIGH] = word & 0xFFF
        else:
            status, aux = _evt3_rare_word(word, state)
            if status != NEED_INPUT:
                return pos, status, aux
        pos += 2
    return pos, NEED_INPUT, 0


@numba.njit(nogil=True, cache=True)
def _highest_bit(mask: int) -> int:
    index = -1
    while mask:
        mask >>= 1
        index += 1
    return index


@numba.njit(nogil=True, cache=True)
def decode_evt3(
    buf: npt.NDArray[np.uint8],
    pos: int,
    end: int,
    out: Events,
    n: int,
    state: npt.NDArray[np.int64],
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    # Word types come in data-dependent order, so a branch per type mispredicts often. The common words
    # (ADDR_Y, TIME_LOW, ADDR_X: ~85% of a real recording) take no branch: state updates are selects and
    # every word writes a candidate event at out[n] that only an ADDR_X word keeps. The state lives in
    # locals (stores to `out` could alias `state` for LLVM) and is written back at the end.
    pos, status, aux = _evt3_until_ready(buf, pos, end, state)
    if status != NEED_INPUT:
        return pos, n, status, aux
    cap = out.shape[0]
    y = state[EVT3_Y]
    base_x = state[EVT3_BASE_X]
    vect_pol = state[EVT3_VECT_POL] == 1
    time_low = state[EVT3_TIME_LOW]
    time_high = state[EVT3_TIME_HIGH]
    wrap = state[EVT3_WRAP]
    ready = time_high >= 0 and y >= 0  # else the input ended before the time base was complete
    while ready and pos + 2 <= end:
        if n >= cap:
            status = OUT_FULL
            break
        word = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
        kind = word >> 12
        low11 = word & 0x7FF
        y = low11 if kind == 0x0 else y  # EVT_ADDR_Y (bit 11 is the master/slave flag, not part of y)
        time_low = (word & 0xFFF) if kind == 0x6 else time_low  # EVT_TIME_LOW
        t = wrap + (time_high << 12) + time_low
        rec = out[n]
        rec.t = t
        rec.x = low11
        rec.y = y
        rec.p = (word & 0x800) != 0
        is_x = kind == 0x2  # EVT_ADDR_X: one event at x, polarity bit 11
        if is_x & ((low11 >= width) | (y >= height)):
            status, aux = (ERR_X, low11) if low11 >= width else (ERR_Y, y)
            break
        n += is_x
        if (kind & 0x9) != 0 or kind == 0x4:  # any type but 0x0, 0x2, 0x6
            if kind == 0x4 or kind == 0x5:  # VECT_12 / VECT_8: bitmask of events at base_x + i
                count = 12 if kind == 0x4 else 8
                mask = word & ((1 << count) - 1)
                if n + count > cap:
                    status = OUT_FULL
                    break
                if mask != 0 and (y >= height or base_x + count > width):  # rare: look closer
                    top_x = base_x + _highest_bit(mask)
                    if y >= height or top_x >= width:
                        status, aux = (ERR_Y, y) if y >= height else (ERR_X, top_x)
                        break
                while mask:  # one pass per set bit (bit positions are data: a test per bit mispredicts)
                    low = mask & -mask
                    rec = out[n]
                    rec.t = t
                    rec.x = base_x + _BIT_INDEX[((low * _DEBRUIJN) & 0xFFFFFFFF) >> 27]
                    rec.y = y
                    rec.p = vect_pol
                    n += 1
                    mask ^= low
                base_x += count
            elif kind == 0x3:  # VECT_BASE_X
                base_x = low11
                vect_pol = (word & 0x800) != 0
            elif kind == 0x8:  # EVT_TIME_HIGH: repeats are normal, only a decrease is a 24-bit wrap
                raw = word & 0xFFF
                if raw < time_high:
                    wrap += np.int64(1) << 24
                time_high = raw
            else:
                status, aux = _evt3_rare_word(word, state)
                if status != NEED_INPUT:
                    break
        pos += 2
    if ready:
        state[EVT3_Y] = y
        state[EVT3_BASE_X] = base_x
        state[EVT3_VECT_POL] = 1 if vect_pol else 0
        state[EVT3_TIME_LOW] = time_low
        state[EVT3_TIME_HIGH] = time_high
        state[EVT3_WRAP] = wrap
    return pos, n, status, aux


@numba.njit(nogil=True, cache=True)
def _popcount12(mask: int) -> int:
    count = 0
    for i in range(12):
        count += (mask >> i) & 1
    return count


@numba.njit(nogil=True, cache=True)
def decode_dat(
    buf: npt.NDArray[np.uint8],
    pos: int,
    end: int,
    out: Events,
    n: int,
    state: npt.NDArray[np.int64],
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    cap = out.shape[0]
    last_t = state[DAT_LAST_T]
    wrap = state[DAT_WRAP]
    status = NEED_INPUT
    aux = 0
    while pos + 8 <= end:
        if n >= cap:
            status = OUT_FULL
            break
        raw_t = (
            np.int64(buf[pos])
            | (np.int64(buf[pos + 1]) << 8)
            | (np.int64(buf[pos + 2]) << 16)
            | (np.int64(buf[pos + 3]) << 24)
        )
        addr = (
            np.int64(buf[pos + 4])
            | (np.int64(buf[pos + 5]) << 8)
            | (np.int64(buf[pos + 6]) << 16)
            | (np.int64(buf[pos + 7]) << 24)
        )
        x = addr & 0x3FFF
        y = (addr >> 14) & 0x3FFF
        pol = addr >> 28
        if pol > 1:
            status, aux = ERR_POLARITY, pol
            break
        if x >= width:
            status, aux = ERR_X, x
            break
        if y >= height:
            status, aux = ERR_Y, y
            break
        # A drop of more than half the 32-bit range is a wrap; a small drop is an out-of-order event.
        if last_t - raw_t > (np.int64(1) << 31):
            wrap += np.int64(1) << 32
        last_t = raw_t
        rec = out[n]
        rec.t = wrap + raw_t
        rec.x = x
        rec.y = y
        rec.p = pol == 1
        n += 1
        pos += 8
    state[DAT_LAST_T] = last_t
    state[DAT_WRAP] = wrap
    return pos, n, status, aux
