"""Streaming rational resampler: up by L, low-pass, down by M, as one polyphase FIR.

The low-pass is a Kaiser-windowed sinc designed here with numpy only. Its pass band ends
at ``passband`` x the lower of the two Nyquist frequencies and its stop band starts at
that Nyquist frequency, so nothing above the output Nyquist folds back stronger than
``-stopband_db`` (80 dB by default; the tests check at least 60 dB).

Output sample ``k`` is the band-limited input evaluated at time ``k / rate_out_hz``:
the filter's group delay is compensated by looking ahead, so the output is time-aligned
with the input. The look-ahead is held back until more input arrives, and ``flush()``
pads zeros at the end of the stream to release it, so a whole stream yields exactly
``ceil(n_in * rate_out / rate_in)`` samples.

Each output sample is computed from the same input samples in the same order however
the input was split into blocks, so a block-wise run is bit-identical to a one-shot run.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from numba import njit

MAX_PHASES = 2048
"""Largest up factor L accepted; larger ratios need an impractically long filter."""
MAX_DECIMATION = 16384
"""Largest down factor M accepted: the filter has ~100 * max(L, M) taps, so a file whose header claims
an odd rate (e.g. 1515328 Hz -> M = 23677) would otherwise allocate hundreds of MB for its filter."""


@functools.lru_cache(maxsize=64)
def _exact_rate(rate_hz: float) -> Fraction:
    return Fraction(rate_hz).limit_denominator(1000)


def sample_time_us(n: int, rate_hz: float) -> int:
    """Stream time of sample ``n``: ``n * 1_000_000 // rate_hz`` in exact integer arithmetic.

    Non-integral rates are read as exact decimals (to 1/1000 Hz) so that the result never
    drifts, however large ``n`` grows.
    """
    rate = _exact_rate(rate_hz)
    return n * 1_000_000 * rate.denominator // rate.numerator


def rate_ratio(rate_in_hz: float, rate_out_hz: float) -> tuple[int, int]:
    """``(L, M)`` in lowest terms with ``rate_out / rate_in == L / M``.

    Rates may be non-integral (e.g. 11025.0 or 44100/2); they are read as exact decimals
    limited to 1/1000 Hz, which covers every rate a sound card or file format uses.
    """
    if not (math.isfinite(rate_in_hz) and math.isfinite(rate_out_hz)):
        msg = f"rates must be finite, got {rate_in_hz} -> {rate_out_hz} Hz"
        raise ValueError(msg)
    if rate_in_hz <= 0 or rate_out_hz <= 0:
        msg = f"rates must be positive, got {rate_in_hz} -> {rate_out_hz} Hz"
        raise ValueError(msg)
    ratio = _exact_rate(rate_out_hz) / _exact_rate(rate_in_hz)
    up, down = ratio.numerator, ratio.denominator
    if up > MAX_PHASES:
        msg = (
            f"resampling {rate_in_hz} -> {rate_out_hz} Hz needs L/M = {up}/{down}; "
            f"L above {MAX_PHASES} is not supported"
        )
        raise ValueError(msg)
    if down > MAX_DECIMATION:
        msg = (
            f"resampling {rate_in_hz} -> {rate_out_hz} Hz needs L/M = {up}/{down}; "
            f"M above {MAX_DECIMATION} is not supported"
        )
        raise ValueError(msg)
    return up, down


def design_lowpass(up: int, down: int, passband: float = 0.9, stopband_db: float = 80.0) -> npt.NDArray[np.float64]:
    """Polyphase low-pass, shape ``(up, taps_per_phase)``, for the up-sampled rate.

    ``h[p, j]`` is tap ``p + j * up`` of the prototype, scaled by ``up`` so that each
    phase has unit DC gain (zero stuffing divides the level by ``up``). The prototype
    has odd length, so its group delay is a whole number of up-sampled samples.
    """
    if not 0.5 <= passband < 1.0:
        msg = f"passband must be in [0.5, 1), got {passband}"
        raise ValueError(msg)
    if stopband_db < 20:
        msg = f"stopband_db must be at least 20, got {stopband_db}"
        raise ValueError(msg)
    # Frequencies in cycles per up-sampled sample; 0.5 / max(up, down) is the lower Nyquist.
    f_stop = 0.5 / max(up, down)
    f_pass = passband * f_stop
    f_cut = 0.5 * (f_pass + f_stop)
    # Kaiser's empirical formulas for window length and beta.
    width_rad = 2.0 * math.pi * (f_stop - f_pass)
    n_taps = math.ceil((stopband_db - 7.95) / (2.285 * width_rad)) + 1
    if stopband_db > 50:
        beta = 0.1102 * (stopband_db - 8.7)
    else:
        beta = 0.5842 * (stopband_db - 21) ** 0.4 + 0.07886 * (stopband_db - 21)
    taps_per_phase = max(2, math.ceil(n_taps / up))
    n_total = taps_per_phase * up
    n_odd = n_total if n_total % 2 == 1 else n_total - 1
    centre = (n_odd - 1) / 2
    t = np.arange(n_odd, dtype=np.float64) - centre
    proto = 2.0 * f_cut * np.sinc(2.0 * f_cut * t) * np.kaiser(n_odd, beta)
    proto *= up / proto.sum()
    padded = np.zeros(n_total, dtype=np.float64)
    padded[:n_odd] = proto
    # padded[p + j * up] -> poly[p, j]
    return np.ascontiguousarray(padded.reshape(taps_per_phase, up).T)


@njit(nogil=True, cache=True)
def _polyphase(
    buf: npt.NDArray[np.float32],
    buf_start: int,
    poly_rev: npt.NDArray[np.float64],
    up: int,
    down: int,
    delay: int,
    k_start: int,
    k_end: int,
    out: npt.NDArray[np.float32],
) -> None:
    """Output samples ``k_start..k_end-1`` into ``out`` (rows are samples).

    ``buf[c, i]`` holds input sample ``buf_start + i`` of channel ``c``; every sample the
    range needs is in it. ``poly_rev`` has the taps of each phase oldest-first, so the
    dot product walks memory forwards. Four fixed accumulators give the CPU independent
    chains while keeping the summation order fixed (no fastmath): results never depend
    on how the input was split.
    """
    taps = poly_rev.shape[1]
    n_ch = buf.shape[0]
    for k in range(k_start, k_end):
        pos = k * down + delay
        phase = pos % up
        first = pos // up - buf_start - (taps - 1)
        for c in range(n_ch):
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            j = 0
            while j + 4 <= taps:
                a0 += poly_rev[phase, j] * buf[c, first + j]
                a1 += poly_rev[phase, j + 1] * buf[c, first + j + 1]
                a2 += poly_rev[phase, j + 2] * buf[c, first + j + 2]
                a3 += poly_rev[phase, j + 3] * buf[c, first + j + 3]
                j += 4
            while j < taps:
                a0 += poly_rev[phase, j] * buf[c, first + j]
                j += 1
            out[k - k_start, c] = (a0 + a1) + (a2 + a3)


class StreamingResampler:
    """Resamples ``(n, channels)`` float32 blocks from ``rate_in_hz`` to ``rate_out_hz``.

    Call ``process`` per block and ``flush`` once at the end of the stream; ``reset``
    starts a new stream. Equal rates pass blocks through unchanged.
    """

    def __init__(
        self,
        rate_in_hz: float,
        rate_out_hz: float,
        channels: int = 1,
        *,
        passband: float = 0.9,
        stopband_db: float = 80.0,
    ) -> None:
        if channels < 1:
            msg = f"channels must be at least 1, got {channels}"
            raise ValueError(msg)
        self.rate_in_hz = float(rate_in_hz)
        self.rate_out_hz = float(rate_out_hz)
        self.channels = channels
        self.up, self.down = rate_ratio(rate_in_hz, rate_out_hz)
        self.identity = self.up == self.down == 1
        if self.identity:
            self.poly = np.ones((1, 1), dtype=np.float64)
        else:
            self.poly = design_lowpass(self.up, self.down, passband, stopband_db)
        self.taps_per_phase = int(self.poly.shape[1])
        self._poly_rev = np.ascontiguousarray(self.poly[:, ::-1])
        n_proto = self.taps_per_phase * self.up
        # Group delay of the odd-length prototype, in up-sampled samples.
        self.delay = (n_proto - (1 if n_proto % 2 == 0 else 0) - 1) // 2
        self.reset()

    @property
    def latency_samples_in(self) -> int:
        """Input samples held back for look-ahead: released only by later input or flush."""
        return -(-self.delay // self.up)

    def reset(self) -> None:
        history = self.taps_per_phase - 1
        # Zeros before the stream start; _buf[c, i] is input sample _buf_start + i.
        self._buf = np.zeros((self.channels, history), dtype=np.float32)
        self._buf_start = -history
        self._n_in = 0
        self._k_next = 0
        self._flushed = False

    def output_length(self, n_in: int) -> int:
        """Samples a whole stream of ``n_in`` input samples yields: ``ceil(n_in * L / M)``."""
        return -(-n_in * self.up // self.down)

    def process(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Resample the next block; returns every output sample it makes available."""
        if self._flushed:
            msg = "process() after flush(): call reset() to start a new stream"
            raise RuntimeError(msg)
        x = self._check(x)
        if self.identity:
            self._n_in += x.shape[0]
            self._k_next += x.shape[0]
            return x.copy()
        self._n_in += x.shape[0]
        return self._run(x, self._ready_end(self._n_in))

    def flush(self) -> npt.NDArray[np.float32]:
        """Release the held-back tail; the stream has ended after this."""
        if self._flushed:
            return np.empty((0, self.channels), dtype=np.float32)
        self._flushed = True
        if self.identity:
            return np.empty((0, self.channels), dtype=np.float32)
        k_total = self.output_length(self._n_in)
        if k_total <= self._k_next:
            return np.empty((0, self.channels), dtype=np.float32)
        # Zeros past the end stand in for the look-ahead of the last outputs.
        newest_needed = ((k_total - 1) * self.down + self.delay) // self.up
        pad = max(0, newest_needed - (self._buf_start + self._buf.shape[1]) + 1)
        return self._run(np.zeros((pad, self.channels), dtype=np.float32), k_total)

    def _check(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if x.ndim != 2 or x.shape[1] != self.channels:
            msg = f"expected an (n, {self.channels}) block, got shape {x.shape}"
            raise ValueError(msg)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _ready_end(self, n_in: int) -> int:
        # Output k needs input up to (k*M + delay) // L, i.e. k*M + delay < n_in * L.
        return max(self._k_next, -((self.delay - n_in * self.up) // self.down))

    def _run(self, x: npt.NDArray[np.float32], k_end: int) -> npt.NDArray[np.float32]:
        # Channel-major so that each channel's dot product reads contiguous memory.
        buf = np.concatenate((self._buf, x.T), axis=1) if x.shape[0] else self._buf
        out = np.empty((max(0, k_end - self._k_next), self.channels), dtype=np.float32)
        if out.shape[0]:
            _polyphase(
                buf, self._buf_start, self._poly_rev, self.up, self.down, self.delay,
                self._k_next, k_end, out,
            )  # fmt: skip
        self._k_next = k_end
        # Keep only what the next output can reach back to (taps-1 before its newest input).
        oldest_needed = (self._k_next * self.down + self.delay) // self.up - (self.taps_per_phase - 1)
        drop = max(0, oldest_needed - self._buf_start)
        drop = min(drop, buf.shape[1])
        self._buf = buf[:, drop:].copy()
        self._buf_start += drop
        return out
