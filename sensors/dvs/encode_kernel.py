# mypy: disable-error-code="assignment,arg-type,return-value,no-any-return"
# (numba kernels: int annotations document intent; the arithmetic is on numpy int64 scalars)
"""numba encoders of canonical events into Prophesee EVT 2.0 / 3.0 words (used by ``sensors.dvs.writers``).

The encoders take sorted events (checked by the caller) and write into a preallocated word array large
enough for the worst case; they return the number of words written.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

EVT2_HIGH_STEP = np.int64(1) << 33  # half the 34-bit range: a TIME_HIGH at least this often shows every wrap
EVT3_HIGH_STEP = np.int64(1) << 23  # half the 24-bit range


@numba.njit(nogil=True, cache=True)
def encode_evt2(
    t: npt.NDArray[np.int64],
    x: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.int64],
    time_high_every: int,
    trigger_every: int,
    words: npt.NDArray[np.uint32],
) -> int:
    k = 0
    last_t = -1
    last_high = -1
    since_high = 0
    for i in range(t.shape[0]):
        ti = t[i]
        # Long silences get intermediate TIME_HIGH words so that the reader sees each 34-bit wrap.
        while last_t >= 0 and ti - last_t >= EVT2_HIGH_STEP:
            last_t += EVT2_HIGH_STEP
            words[k] = (np.uint32(0x8) << 28) | np.uint32((last_t >> 6) & 0xFFFFFFF)
            k += 1
        high = (ti >> 6) & 0xFFFFFFF
        if high != last_high or (time_high_every > 0 and since_high >= time_high_every):
            words[k] = (np.uint32(0x8) << 28) | np.uint32(high)
            k += 1
            last_high = high
            since_high = 0
        words[k] = np.uint32((p[i] << 28) | ((ti & 0x3F) << 22) | (x[i] << 11) | y[i])
        k += 1
        since_high += 1
        last_t = ti
        if trigger_every > 0 and (i + 1) % trigger_every == 0:
            words[k] = (np.uint32(0xA) << 28) | np.uint32(i & 1)
            k += 1
    return k


@numba.njit(nogil=True, cache=True)
def _run_end(
    t: npt.NDArray[np.int64],
    x: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.int64],
    start: int,
    base: int,
    span: int,
) -> int:
    """End of the run from ``start`` that one vector word at ``base`` can hold: same t/y/p, rising x."""
    j = start
    while (
        j < t.shape[0]
        and t[j] == t[start - 1]
        and y[j] == y[start - 1]
        and p[j] == p[start - 1]
        and x[j] > x[j - 1]
        and base <= x[j] < base + span
    ):
        j += 1
    return j


@numba.njit(nogil=True, cache=True)
def _mask(x: npt.NDArray[np.int64], start: int, end: int, base: int) -> int:
    mask = 0
    for j in range(start, end):
        mask |= 1 << (x[j] - base)
    return mask


@numba.njit(nogil=True, cache=True)
def _emit_vectors(
    t: npt.NDArray[np.int64],
    x: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.int64],
    i: int,
    words: npt.NDArray[np.uint16],
    k: int,
) -> tuple[int, int]:
    """VECT_BASE_X then VECT_12/VECT_8 words for the row run starting at event ``i``; returns (i, k)."""
    base = x[i]
    words[k] = np.uint16((0x3 << 12) | (p[i] << 11) | base)
    k += 1
    end = _run_end(t, x, y, p, i + 1, base, 12)
    words[k] = np.uint16((0x4 << 12) | _mask(x, i, end, base))
    k += 1
    base += 12
    i = end
    while True:  # the run may go on past base + 12: one more word per 12 (or last 8) columns
        end = _run_end(t, x, y, p, i, base, 12)
        if end == i:
            break
        span = 8 if _run_end(t, x, y, p, i, base, 8) == end else 12
        words[k] = np.uint16(((0x5 if span == 8 else 0x4) << 12) | _mask(x, i, end, base))
        k += 1
        base += span
        i = end
    return i, k


@numba.njit(nogil=True, cache=True)
def encode_evt3(
    t: npt.NDArray[np.int64],
    x: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    p: npt.NDArray[np.int64],
    vectorize: bool,
    time_high_every: int,
    trigger_every: int,
    words: npt.NDArray[np.uint16],
) -> int:
    k = 0
    last_t = -1
    last_high = -1
    last_low = -1
    last_y = -1
    since_high = 0
    i = 0
    n = t.shape[0]
    while i < n:
        ti = t[i]
        while last_t >= 0 and ti - last_t >= EVT3_HIGH_STEP:
            last_t += EVT3_HIGH_STEP
            last_high = (last_t >> 12) & 0xFFF
            words[k] = np.uint16((0x8 << 12) | last_high)
            k += 1
        high = (ti >> 12) & 0xFFF
        if high != last_high or (time_high_every > 0 and since_high >= time_high_every):
            words[k] = np.uint16((0x8 << 12) | high)
            k += 1
            last_high = high
            since_high = 0
        if (ti & 0xFFF) != last_low:
            last_low = ti & 0xFFF
            words[k] = np.uint16((0x6 << 12) | last_low)
            k += 1
        if y[i] != last_y:
            last_y = y[i]
            words[k] = np.uint16(last_y)
            k += 1
        start = i
        if vectorize and _run_end(t, x, y, p, i + 1, x[i], 12) > i + 1:
            i, k = _emit_vectors(t, x, y, p, i, words, k)
        else:
            words[k] = np.uint16((0x2 << 12) | (p[i] << 11) | x[i])
            k += 1
            i += 1
        since_high += i - start
        last_t = ti
        if trigger_every > 0 and i // trigger_every > start // trigger_every:
            words[k] = np.uint16((0xA << 12) | (i & 1))
            k += 1
    return k
