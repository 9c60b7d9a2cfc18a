# mypy: disable-error-code="assignment,arg-type,return-value,no-any-return"
# (numba kernels: int annotations document intent; the arithmetic is on numpy int64 scalars)
"""numba decoders for N-MNIST ``.bin``, jAER AEDAT 2.0 and cAER AEDAT 3.1 data.

Same calling convention as ``sensors.dvs.prophesee_kernel`` (see ``sensors.dvs.eventfile``).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from sensors.dvs.eventfile import ERR_X, ERR_Y, NEED_INPUT, OUT_FULL, Events

ERR_PACKET = -3
"""AEDAT 3.1 packet header with impossible fields; aux = the header field index (see PACKET_FIELDS)."""
ERR_TIMESTAMP = -4
"""AEDAT 3.1 valid polarity event with a negative 32-bit timestamp; aux = the value."""
PACKET_FIELDS = (
    "eventType",
    "eventSource",
    "eventSize",
    "eventTSOffset",
    "eventTSOverflow",
    "eventCapacity",
    "eventNumber",
    "eventValid",
)

# AEDAT 2.0 state slots.
AE2_LAYOUT = 0  # LAYOUT_DVS128 or LAYOUT_DAVIS
AE2_LAST_T = 1  # raw uint32 timestamp of the previous record, -1 before the first
AE2_WRAP = 2
AE2_APS = 3
AE2_IMU = 4
AE2_TRIGGER = 5
AE2_STATE_SIZE = 6
LAYOUT_DVS128 = 0
LAYOUT_DAVIS = 1

# AEDAT 3.1 state slots.
AE3_MODE = 0  # MODE_HEADER, MODE_POLARITY or MODE_SKIP
AE3_REMAINING = 1  # events left in a polarity packet, or bytes left to skip
AE3_OVERFLOW = 2  # eventTSOverflow of the current packet
AE3_INVALID = 3
AE3_SPECIAL = 4
AE3_FRAME = 5
AE3_IMU = 6
AE3_OTHER = 7
AE3_STATE_SIZE = 8
MODE_HEADER = 0
MODE_POLARITY = 1
MODE_SKIP = 2
PACKET_HEADER_BYTES = 28
POLARITY_EVENT = 1


@numba.njit(nogil=True, cache=True)
def _be32(buf: npt.NDArray[np.uint8], pos: int) -> int:
    return (np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16) | (np.int64(buf[pos + 2]) << 8) | buf[pos + 3]


@numba.njit(nogil=True, cache=True)
def _le32(buf: npt.NDArray[np.uint8], pos: int) -> int:
    return (
        np.int64(buf[pos])
        | (np.int64(buf[pos + 1]) << 8)
        | (np.int64(buf[pos + 2]) << 16)
        | (np.int64(buf[pos + 3]) << 24)
    )


@numba.njit(nogil=True, cache=True)
def _le32_signed(buf: npt.NDArray[np.uint8], pos: int) -> int:
    value = _le32(buf, pos)
    return value - (np.int64(1) << 32) if value >= (np.int64(1) << 31) else value


@numba.njit(nogil=True, cache=True)
def decode_nmnist(
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
    status = NEED_INPUT
    aux = 0
    while pos + 5 <= end:
        if n >= cap:
            status = OUT_FULL
            break
        x = np.int64(buf[pos])
        y = np.int64(buf[pos + 1])
        b2 = np.int64(buf[pos + 2])
        if x >= width:
            status, aux = ERR_X, x
            break
        if y >= height:
            status, aux = ERR_Y, y
            break
        rec = out[n]
        rec.t = ((b2 & 0x7F) << 16) | (np.int64(buf[pos + 3]) << 8) | np.int64(buf[pos + 4])
        rec.x = x
        rec.y = y
        rec.p = b2 >= 0x80
        n += 1
        pos += 5
    return pos, n, status, aux


@numba.njit(nogil=True, cache=True)
def decode_aedat2(
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
    davis = state[AE2_LAYOUT] == LAYOUT_DAVIS
    last_t = state[AE2_LAST_T]
    wrap = state[AE2_WRAP]
    status = NEED_INPUT
    aux = 0
    while pos + 8 <= end:
        addr = _be32(buf, pos)
        raw_t = _be32(buf, pos + 4)
        # jAER timestamps are int32 that keep counting through 2**31; read as uint32, a drop of more than
        # half the range is a wrap and a small drop an out-of-order sample. Committed only with the record.
        record_wrap = wrap + (np.int64(1) << 32) if last_t - raw_t > (np.int64(1) << 31) else wrap
        skip_slot = -1
        if davis:
            if addr & 0x80000000:  # APS sample, or IMU sample when bits 10-11 are both set
                skip_slot = AE2_IMU if (addr & 0xC00) == 0xC00 else AE2_APS
            elif addr & 0x400:  # external input (special) event
                skip_slot = AE2_TRIGGER
            x = (addr >> 12) & 0x3FF
            y = (addr >> 22) & 0x1FF
            pol = ((addr >> 11) & 1) == 1
        else:
            if addr & 0x8000:  # DVS128 sync / external event
                skip_slot = AE2_TRIGGER
            x = (addr >> 1) & 0x7F
            y = (addr >> 8) & 0x7F
            pol = (addr & 1) == 0  # jAER: bit 0 set = OFF
        if skip_slot >= 0:
            state[skip_slot] += 1
        else:
            if n >= cap:
                status = OUT_FULL
                break
            if x >= width:
                status, aux = ERR_X, x
                break
            if y >= height:
                status, aux = ERR_Y, y
                break
            rec = out[n]
            rec.t = record_wrap + raw_t
            rec.x = x
            rec.y = y
            rec.p = pol
            n += 1
        wrap = record_wrap
        last_t = raw_t
        pos += 8
    state[AE2_LAST_T] = last_t
    state[AE2_WRAP] = wrap
    return pos, n, status, aux


@numba.njit(nogil=True, cache=True)
def _aedat31_header(buf: npt.NDArray[np.uint8], pos: int, state: npt.NDArray[np.int64]) -> int:
    """Parse one 28-byte packet header into the state; returns -1 if valid, else the bad field index."""
    event_type = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
    event_type = event_type - 65536 if event_type >= 32768 else event_type
    size = _le32_signed(buf, pos + 4)
    ts_offset = _le32_signed(buf, pos + 8)
    overflow = _le32_signed(buf, pos + 12)
    number = _le32_signed(buf, pos + 20)
    valid = _le32_signed(buf, pos + 24)
    bad = -1
    if size <= 0:
        bad = 2
    elif ts_offset < 0 or ts_offset + 4 > size:
        bad = 3
    elif overflow < 0:
        bad = 4
    elif number < 0:
        bad = 6
    elif valid < 0 or valid > number:
        bad = 7
    elif event_type == POLARITY_EVENT and (size != 8 or ts_offset != 4):
        bad = 2 if size != 8 else 3
    if bad >= 0:
        return bad
    if event_type == POLARITY_EVENT:
        state[AE3_MODE] = MODE_POLARITY
        state[AE3_REMAINING] = number
        state[AE3_OVERFLOW] = overflow
    else:
        slot = AE3_OTHER
        if event_type == 0:
            slot = AE3_SPECIAL
        elif event_type == 2:
            slot = AE3_FRAME
        elif event_type == 3 or event_type == 4:
            slot = AE3_IMU
        state[slot] += number
        state[AE3_MODE] = MODE_SKIP
        state[AE3_REMAINING] = number * size
    return -1


@numba.njit(nogil=True, cache=True)
def _aedat31_polarity(
    buf: npt.NDArray[np.uint8],
    pos: int,
    end: int,
    out: Events,
    n: int,
    state: npt.NDArray[np.int64],
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    """Decode the polarity events left in the current packet, as far as input and output allow."""
    cap = out.shape[0]
    remaining = state[AE3_REMAINING]
    overflow = state[AE3_OVERFLOW] << 31
    status = NEED_INPUT
    aux = 0
    while remaining > 0 and pos + 8 <= end:
        data = _le32(buf, pos)
        if (data & 1) == 0:  # invalidated event: kept in the packet, not an event
            state[AE3_INVALID] += 1
        else:
            if n >= cap:
                status = OUT_FULL
                break
            ts = _le32_signed(buf, pos + 4)
            x = data >> 17
            y = (data >> 2) & 0x7FFF
            if ts < 0:
                status, aux = ERR_TIMESTAMP, ts
                break
            if x >= width:
                status, aux = ERR_X, x
                break
            if y >= height:
                status, aux = ERR_Y, y
                break
            rec = out[n]
            rec.t = overflow | ts
            rec.x = x
            rec.y = y
            rec.p = ((data >> 1) & 1) == 1
            n += 1
        pos += 8
        remaining -= 1
    state[AE3_REMAINING] = remaining
    return pos, n, status, aux


@numba.njit(nogil=True, cache=True)
def decode_aedat31(
    buf: npt.NDArray[np.uint8],
    pos: int,
    end: int,
    out: Events,
    n: int,
    state: npt.NDArray[np.int64],
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    status = NEED_INPUT
    aux = 0
    while True:
        mode = state[AE3_MODE]
        remaining = state[AE3_REMAINING]
        if mode != MODE_HEADER and remaining == 0:
            state[AE3_MODE] = MODE_HEADER
            continue
        if mode == MODE_HEADER:
            if pos + PACKET_HEADER_BYTES > end:
                break
            bad = _aedat31_header(buf, pos, state)
            if bad >= 0:
                status, aux = ERR_PACKET, bad
                break
            pos += PACKET_HEADER_BYTES
        elif mode == MODE_SKIP:
            step = min(remaining, end - pos)
            if step == 0:
                break
            pos += step
            state[AE3_REMAINING] = remaining - step
        else:
            pos, n, status, aux = _aedat31_polarity(buf, pos, end, out, n, state, width, height)
            if status != NEED_INPUT or state[AE3_REMAINING] > 0:
                break
    return pos, n, status, aux
