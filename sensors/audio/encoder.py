"""Audio spike encoder: mel-spaced band-pass filterbank, envelopes, AGC, integrate-and-fire.

Per channel: band-pass (RBJ cookbook, 0 dB peak; ``n_stages`` identical sections in
cascade) -> full-wave rectify -> one-pole low-pass (the envelope). Every ``frame_us`` of
stream time the envelopes are read out:

* AGC: ``peak = max(peak * exp(-frame/release), max_c env_c, floor)``; instant attack,
  exponential release, and an absolute floor so that silence is not amplified without
  bound (the floor is the envelope of a sine at ``agc_floor_dbfs``).
* feature: ``max(0, 1 + ln(env_c / peak) / ln(10^(dr_db/20)))`` in [0, 1]: log level
  relative to the loudest channel over ``dr_db`` of dynamic range.
* spikes: ``acc += feature * max_rate_hz * frame_s``; a spike when ``acc >= 1``
  (``acc -= 1``). ``max_rate_hz * frame_s <= 1`` is enforced, so at most one spike per
  channel per frame.

Frame ``f`` spans stream time ``[f * frame_us, (f + 1) * frame_us)`` and its spikes are
stamped with its end, ``(f + 1) * frame_us``. Its last sample is the last one whose
time ``n * 1e6 / rate_hz`` falls inside it; all of this is integer arithmetic on the
absolute sample index, so there is no float drift however long the stream runs.

State (filters, envelopes, AGC, accumulators, position in the current frame) carries
across blocks: any split of a stream into blocks gives bit-identical spikes. A trailing
partial frame at the end of a stream is never read out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from sensors.blocks import InputError, SampleBlock, SpikeBatch

_US_PER_S = 1_000_000


def hz_to_mel(f_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@dataclass(frozen=True, slots=True)
class AudioEncoderConfig:
    rate_hz: float = 8000.0
    """Sample rate of the input; must be a whole number of Hz (exact frame arithmetic)."""
    n_channels: int = 32
    f_lo_hz: float = 100.0
    """Centre of the lowest channel."""
    f_hi_hz: float = 3800.0
    """Centre of the highest channel; below Nyquist."""
    q: float | None = None
    """-3 dB quality factor of each channel's whole cascade; None: centre / mel spacing."""
    n_stages: int = 2
    """Band-pass sections per channel (1 or 2); two give steeper skirts at equal Q."""
    env_tau_ms: float = 8.0
    """Time constant of the envelope low-pass."""
    frame_us: int = 1000
    """Spike-generation tick: envelopes are read out once per frame."""
    agc_release_s: float = 1.0
    agc_floor_dbfs: float = -60.0
    """The AGC never assumes a quieter peak than a sine at this level."""
    dr_db: float = 40.0
    """Levels more than this below the AGC peak give no spikes."""
    max_rate_hz: float = 200.0
    """Spike rate of a channel at the AGC peak."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (self.rate_hz > 0 and float(self.rate_hz).is_integer()):
            problems.append(f"rate_hz must be a positive whole number, got {self.rate_hz}")
        if self.n_channels < 1:
            problems.append(f"n_channels must be at least 1, got {self.n_channels}")
        if not 0 < self.f_lo_hz < self.f_hi_hz:
            problems.append(f"need 0 < f_lo_hz < f_hi_hz, got {self.f_lo_hz} and {self.f_hi_hz}")
        if self.f_hi_hz >= self.rate_hz / 2:
            problems.append(
                f"f_hi_hz {self.f_hi_hz} must be below Nyquist ({self.rate_hz / 2} Hz at {self.rate_hz} Hz)"
            )
        if self.q is not None and not self.q > 0:
            problems.append(f"q must be positive, got {self.q}")
        if self.n_stages not in (1, 2):
            problems.append(f"n_stages must be 1 or 2, got {self.n_stages}")
        if not self.env_tau_ms > 0:
            problems.append(f"env_tau_ms must be positive, got {self.env_tau_ms}")
        if not self.frame_us > 0 or int(self.frame_us) != self.frame_us:
            problems.append(f"frame_us must be a positive integer, got {self.frame_us}")
        elif self.rate_hz > 0 and self.frame_us * self.rate_hz < _US_PER_S:
            problems.append(f"frame_us {self.frame_us} is shorter than one sample at {self.rate_hz} Hz")
        if not self.agc_release_s > 0:
            problems.append(f"agc_release_s must be positive, got {self.agc_release_s}")
        if not self.agc_floor_dbfs < 0:
            problems.append(f"agc_floor_dbfs must be below 0 dBFS, got {self.agc_floor_dbfs}")
        if not self.dr_db > 0:
            problems.append(f"dr_db must be positive, got {self.dr_db}")
        if not self.max_rate_hz > 0:
            problems.append(f"max_rate_hz must be positive, got {self.max_rate_hz}")
        elif self.max_rate_hz * self.frame_us > _US_PER_S:
            problems.append(
                f"max_rate_hz {self.max_rate_hz} exceeds one spike per frame ({_US_PER_S / self.frame_us:g} Hz)"
            )
        if problems:
            msg = "invalid AudioEncoderConfig: " + "; ".join(problems)
            raise ValueError(msg)

    def centre_frequencies_hz(self) -> npt.NDArray[np.float64]:
        """Channel centres, equally spaced on the mel scale from f_lo_hz to f_hi_hz."""
        if self.n_channels == 1:
            return np.array([self.f_lo_hz], dtype=np.float64)
        return mel_to_hz(np.linspace(hz_to_mel(self.f_lo_hz), hz_to_mel(self.f_hi_hz), self.n_channels))

    def channel_q(self) -> npt.NDArray[np.float64]:
        """-3 dB Q of each channel's cascade: centre over the mean distance to its neighbours."""
        fc = self.centre_frequencies_hz()
        if self.q is not None or self.n_channels == 1:
            return np.full(self.n_channels, self.q if self.q is not None else 2.0)
        mel = hz_to_mel(fc)
        step = mel[1] - mel[0]
        edges = mel_to_hz(np.concatenate(([mel[0] - step], mel, [mel[-1] + step])))
        bandwidth = 0.5 * (edges[2:] - edges[:-2])
        return fc / bandwidth


def design_filterbank(cfg: AudioEncoderConfig) -> npt.NDArray[np.float64]:
    """Coefficients ``[b0, a1, a2]`` (normalised by a0) per channel, shape ``(3, n_channels)``.

    RBJ band-pass with constant 0 dB peak gain: ``b1 = 0`` and ``b2 = -b0``. With ``n``
    sections in cascade, each gets ``Q_stage = Q * sqrt(2^(1/n) - 1)`` so that the
    cascade's -3 dB bandwidth is the one asked for. ``alpha`` uses the cookbook's
    bandwidth form, which undoes the bilinear warping: with the plain ``sin(w0)/(2Q)``
    the channels near Nyquist came out several times too narrow.
    """
    fc = cfg.centre_frequencies_hz()
    q_stage = cfg.channel_q() * math.sqrt(2.0 ** (1.0 / cfg.n_stages) - 1.0)
    w0 = 2.0 * np.pi * fc / cfg.rate_hz
    bw_octaves = 2.0 / math.log(2.0) * np.arcsinh(1.0 / (2.0 * q_stage))
    alpha = np.sin(w0) * np.sinh(math.log(2.0) / 2.0 * bw_octaves * w0 / np.sin(w0))
    a0 = 1.0 + alpha
    return np.stack((alpha / a0, -2.0 * np.cos(w0) / a0, (1.0 - alpha) / a0))


_LN2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
_MANTISSA_BITS = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000  # exponent field of 1.0
_MAGIC_BITS = 0x4330000000000000  # 2**52: its low bits hold an integer exactly
_EXP_OFFSET = 4503599627370496.0 + 1023.0  # 2**52 + exponent bias


@njit(nogil=True, cache=True, error_model="numpy")
def _ln_positive(
    x: npt.NDArray[np.float64],
    mant: npt.NDArray[np.float64],
    expo: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:
    """``out = ln(x)`` for ``x > 0``, to about 1e-10, in loops that vectorise.

    libm's log is a scalar call per channel per frame and cost twice the whole filterbank;
    this splits x into exponent and mantissa with integer ops (AVX2 has no int64 -> double
    conversion, hence the 2**52 trick) and evaluates ln(m) = 2 atanh((m-1)/(m+1)) as a
    short odd series on m in [sqrt(1/2), sqrt(2)). x == 0 gives about -709 (no -inf).
    """
    xb = x.view(np.int64)
    mb = mant.view(np.int64)
    eb = expo.view(np.int64)
    for c in range(x.shape[0]):
        bits = xb[c]
        mb[c] = (bits & _MANTISSA_BITS) | _ONE_BITS
        eb[c] = (bits >> 52) | _MAGIC_BITS
    for c in range(x.shape[0]):
        m = mant[c]
        e = expo[c] - _EXP_OFFSET
        big = m > _SQRT2
        m = m * 0.5 if big else m
        e = e + 1.0 if big else e
        s = (m - 1.0) / (m + 1.0)
        s2 = s * s
        series = 1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 / 11.0))))
        out[c] = e * _LN2 + 2.0 * s * series


# Rows of the per-channel state array.
_ZA, _ZB, _ZC, _ZD, _ENV, _ACC = range(6)
# Entries of the scalar parameter array.
_P_ENV_ALPHA, _P_AGC_DECAY, _P_AGC_FLOOR, _P_INV_LN_DR, _P_STEP = range(5)


@njit(nogil=True, cache=True, error_model="numpy")
def _encode_kernel(
    x: npt.NDArray[np.float32],
    n0: int,
    frame_units: int,
    frame_us: int,
    coef: npt.NDArray[np.float64],
    stage2: bool,
    state: npt.NDArray[np.float64],
    agc: npt.NDArray[np.float64],
    params: npt.NDArray[np.float64],
    out_t: npt.NDArray[np.int64],
    out_ch: npt.NDArray[np.int32],
) -> tuple[int, int, int]:
    """Run one block whose first sample is absolute sample ``n0``.

    Returns ``(n_spikes, t_end_us, bad)``: spikes written, end time of the last frame
    read out (-1 if none), and the index of the first non-finite sample (-1 if none; the
    state is then left untouched). Frame ``f`` ends after the last sample ``n`` with
    ``n * 1e6 < (f + 1) * frame_units``. ``state`` rows: transposed-direct-form-II
    states of section 1 (za, zb) and 2 (zc, zd), envelope, accumulator. The two
    sections are unrolled and the channel loop is innermost so it vectorises.
    """
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return 0, -1, i
    b0 = coef[0]
    a1 = coef[1]
    a2 = coef[2]
    za = state[_ZA]
    zb = state[_ZB]
    zc = state[_ZC]
    zd = state[_ZD]
    env = state[_ENV]
    acc = state[_ACC]
    env_alpha = params[_P_ENV_ALPHA]
    agc_decay = params[_P_AGC_DECAY]
    agc_floor = params[_P_AGC_FLOOR]
    inv_ln_dr = params[_P_INV_LN_DR]
    step = params[_P_STEP]
    n_ch = b0.shape[0]
    # Scratch for the frame read-out, vectorised across channels.
    level = np.empty(n_ch, dtype=np.float64)
    mant = np.empty(n_ch, dtype=np.float64)
    expo = np.empty(n_ch, dtype=np.float64)
    ln_level = np.empty(n_ch, dtype=np.float64)
    n_spikes = 0
    t_end_us = -1
    # 1-based number of the frame holding n0, and the block index just past its end.
    frame_no = n0 * 1_000_000 // frame_units + 1
    next_end = -((-frame_no * frame_units) // 1_000_000) - n0
    for i in range(x.shape[0]):
        xi = np.float64(x[i])
        if stage2:
            for c in range(n_ch):
                y = b0[c] * xi + za[c]
                za[c] = zb[c] - a1[c] * y
                zb[c] = -b0[c] * xi - a2[c] * y
                y2 = b0[c] * y + zc[c]
                zc[c] = zd[c] - a1[c] * y2
                zd[c] = -b0[c] * y - a2[c] * y2
                env[c] += env_alpha * (abs(y2) - env[c])
        else:
            for c in range(n_ch):
                y = b0[c] * xi + za[c]
                za[c] = zb[c] - a1[c] * y
                zb[c] = -b0[c] * xi - a2[c] * y
                env[c] += env_alpha * (abs(y) - env[c])
        if i + 1 != next_end:
            continue
        # Frame end: AGC, features, integrate-and-fire.
        peak = agc[0] * agc_decay
        for c in range(n_ch):
            peak = max(peak, env[c])
        peak = max(peak, agc_floor)
        agc[0] = peak
        inv_peak = 1.0 / peak
        for c in range(n_ch):
            level[c] = env[c] * inv_peak
        _ln_positive(level, mant, expo, ln_level)
        for c in range(n_ch):
            acc[c] += max(0.0, 1.0 + ln_level[c] * inv_ln_dr) * step
        t_end_us = frame_no * frame_us
        for c in range(n_ch):
            if acc[c] >= 1.0:
                acc[c] -= 1.0
                out_t[n_spikes] = t_end_us
                out_ch[n_spikes] = c
                n_spikes += 1
        frame_no += 1
        next_end = -((-frame_no * frame_units) // 1_000_000) - n0
    return n_spikes, t_end_us, -1


class AudioEncoder:
    """Streaming encoder of mono ``SampleBlock``s into ``SpikeBatch``es; one stream at a time.

    Blocks must follow each other: ``first_sample`` equal to the end of the previous
    block, or later after a gap (a live source that dropped blocks: the filters continue
    across the splice and the skipped frames give no spikes). Call ``reset()`` before
    the next stream.
    """

    def __init__(self, cfg: AudioEncoderConfig | None = None) -> None:
        self.cfg = cfg or AudioEncoderConfig()
        self._rate = int(self.cfg.rate_hz)
        self._frame_us = int(self.cfg.frame_us)
        # Frames end where n * 1e6 >= (f + 1) * frame_us * rate: scaled integer units.
        self._frame_units = self._frame_us * self._rate
        self._coef = np.ascontiguousarray(design_filterbank(self.cfg))
        self._stage2 = self.cfg.n_stages == 2
        frame_s = self._frame_us / _US_PER_S
        # The floor is the mean rectified level of a sine at agc_floor_dbfs.
        self._agc_floor = 10.0 ** (self.cfg.agc_floor_dbfs / 20.0) * 2.0 / math.pi
        params = np.empty(5, dtype=np.float64)
        params[_P_ENV_ALPHA] = 1.0 - math.exp(-1.0 / (self.cfg.env_tau_ms * 1e-3 * self._rate))
        params[_P_AGC_DECAY] = math.exp(-frame_s / self.cfg.agc_release_s)
        params[_P_AGC_FLOOR] = self._agc_floor
        params[_P_INV_LN_DR] = 1.0 / math.log(10.0 ** (self.cfg.dr_db / 20.0))
        params[_P_STEP] = self.cfg.max_rate_hz * frame_s
        self._params = params
        self.reset()

    def reset(self) -> None:
        """Fresh state for a new stream."""
        self._state = np.zeros((6, self.cfg.n_channels), dtype=np.float64)
        self._agc = np.array([self._agc_floor], dtype=np.float64)
        self._pos = 0
        self._t_end_us = 0
        self._stream: str | None = None

    @property
    def t_end_us(self) -> int:
        """End of the last frame read out so far."""
        return self._t_end_us

    def encode(self, block: SampleBlock) -> SpikeBatch:
        x = self._check(block)
        n0 = block.first_sample
        # At most one spike per channel per frame; a block touches at most this many frames.
        n_max = (x.shape[0] * _US_PER_S // self._frame_units + 1) * self.cfg.n_channels
        out_t = np.empty(n_max, dtype=np.int64)
        out_ch = np.empty(n_max, dtype=np.int32)
        n_spikes, t_end_us, bad = _encode_kernel(
            x, n0, self._frame_units, self._frame_us, self._coef, self._stage2,
            self._state, self._agc, self._params, out_t, out_ch,
        )  # fmt: skip
        if bad >= 0:
            msg = f"{block.stream}: non-finite sample ({x[bad]}) at sample {n0 + bad}"
            raise InputError(msg)
        t_start_us = self._t_end_us
        if t_end_us >= 0:
            self._t_end_us = t_end_us
        self._pos = n0 + x.shape[0]
        return SpikeBatch(
            block.stream,
            out_t[:n_spikes].copy(),
            out_ch[:n_spikes].copy(),
            self.cfg.n_channels,
            t_start_us,
            self._t_end_us,
            block.captured_ns,
        )

    def _check(self, block: SampleBlock) -> npt.NDArray[np.float32]:
        if block.rate_hz != self.cfg.rate_hz:
            msg = f"{block.stream}: block rate {block.rate_hz} Hz, encoder expects {self.cfg.rate_hz} Hz"
            raise ValueError(msg)
        if block.data.shape[1] != 1:
            msg = f"{block.stream}: encoder needs mono blocks, got {block.data.shape[1]} channels"
            raise ValueError(msg)
        if self._stream is None:
            self._stream = block.stream
        check_next_block(block, self._stream, self._pos, "encoder")
        return np.ascontiguousarray(block.data[:, 0], dtype=np.float32)


def check_next_block(block: SampleBlock, stream: str, pos: int, encoder: str) -> None:
    """Raise ``ValueError`` unless ``block`` goes on with ``stream`` at or after sample ``pos``.

    An encoder's filters carry state from block to block: a block of another stream, or one
    that goes back in its stream, must follow a ``reset()``.
    """
    if block.stream != stream:
        msg = f"{encoder} is on stream {stream!r}, got a block of {block.stream!r}: reset() first"
        raise ValueError(msg)
    if block.first_sample < pos:
        msg = (
            f"{block.stream}: block starts at sample {block.first_sample}, before the end of "
            f"the previous block ({pos}); reset() before replaying a stream"
        )
        raise ValueError(msg)


def encode_signal(
    x: npt.NDArray[np.float32], cfg: AudioEncoderConfig | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Encode a whole 1-D signal at once (training, offline); same spikes as streaming it."""
    cfg = cfg or AudioEncoderConfig()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 1:
        msg = f"encode_signal needs a 1-D signal, got shape {arr.shape}"
        raise ValueError(msg)
    block = SampleBlock("signal", 0, cfg.rate_hz, arr[:, None], 0, 0)
    batch = AudioEncoder(cfg).encode(block)
    return batch.t_us, batch.ch
