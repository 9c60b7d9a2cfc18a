"""ECG spike encoder: band-pass (+ optional mains notch), optional amplitude normalisation, level crossing.

This is the delta-modulator encoding of the published DYNAP-SE ECG work (Bauer et al. 2019,
"Real-time ultra-low power ECG anomaly detection using an event-driven neuromorphic
processor"; Corradi et al. 2019): per lead and threshold a reference level follows the
filtered signal in steps of the threshold, and each step is an UP or DOWN spike. Several
thresholds give a coarse-to-fine set of channel pairs. Channel layout: see
``sensors.ecg.encoder_config``.

Filters: Butterworth high-pass (``highpass_hz``) and low-pass (``lowpass_hz``), each of
``filter_order``, then an optional IIR notch at ``notch_hz``, all designed once with
scipy.signal as one cascade of second-order sections. At the first sample of a stream the
filter state is *settled* on that sample (scipy's ``sosfilt_zi`` scaled by it: the steady
state of a signal that had always been at that level), and every reference level starts at
the filtered first sample. A record that starts at a DC offset therefore gives no burst of
spikes at t = 0; only changes after the first sample are encoded.

Normalisation (``normalise``): per lead, a peak hold of ``|y|`` that decays with
``HOLD_TAU_S`` (long enough to bridge an RR interval down to ~40 bpm) is averaged by a
one-pole low-pass of time constant ``normalise_tau_s``; the signal is divided by that
estimate (at least ``normalise_floor_mv``) before level crossing. It starts at 1 mV. For a
regular rhythm at 75 bpm the estimate sits at about 0.8 of the largest QRS deflection
(the peak hold decays between beats), so thresholds are then fractions of that.

Timing: every spike carries the exact stream time of the sample at which the crossing
happened, ``sample_time_us(n, rate_hz)``. State carries across blocks, so any split of a
stream gives bit-identical spikes. A gap in ``first_sample`` (a live source that lost
blocks) is spliced: filters and references continue, and spikes keep absolute times.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy import signal

from sensors.audio.encoder import check_next_block
from sensors.audio.resample import sample_time_us
from sensors.blocks import InputError, SampleBlock, SpikeBatch
from sensors.ecg.encode_kernel import (
    NO_SPIKE_YET,
    NORM_AMP,
    P_AMP_ALPHA,
    P_FLOOR,
    P_HOLD_DECAY,
    first_non_finite,
    level_cross,
    normalise_block,
    sos_cascade,
)
from sensors.ecg.encoder_config import EcgEncoderConfig

HOLD_TAU_S = 2.0
"""Decay time constant of the normalisation's peak hold."""
MAX_SPIKES_PER_SAMPLE = 100_000
"""A sample that would need more spikes than this is bad input (a jump of thousands of mV)."""


def design_filter(cfg: EcgEncoderConfig) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The cascade ``sos`` (sections, 6) and its unit-step steady state ``zi`` (sections, 2)."""
    parts = [
        signal.butter(cfg.filter_order, cfg.highpass_hz, btype="highpass", fs=cfg.rate_hz, output="sos"),
        signal.butter(cfg.filter_order, cfg.lowpass_hz, btype="lowpass", fs=cfg.rate_hz, output="sos"),
    ]
    if cfg.notch_hz is not None:
        b, a = signal.iirnotch(cfg.notch_hz, cfg.notch_q, fs=cfg.rate_hz)
        parts.append(signal.tf2sos(b, a))
    sos = np.ascontiguousarray(np.vstack(parts), dtype=np.float64)
    zi = np.ascontiguousarray(signal.sosfilt_zi(sos), dtype=np.float64)
    return sos, zi


class EcgEncoder:
    """Streaming encoder of ECG ``SampleBlock``s (mV) into ``SpikeBatch``es; one stream at a time.

    Uses the first ``cfg.n_leads`` columns of each block. Blocks must follow each other
    (``first_sample`` at or after the end of the previous block). Call ``reset()`` before
    the next stream. ``dropped`` counts spikes lost to the refractory period since the
    encoder was built (a telemetry counter: ``reset()`` does not clear it).
    """

    def __init__(self, cfg: EcgEncoderConfig) -> None:
        self.cfg = cfg
        self._sos, self._zi = design_filter(cfg)
        rate = Fraction(cfg.rate_hz).limit_denominator(1000)  # as sample_time_us reads rates
        self._rate_num, self._rate_den = rate.numerator, rate.denominator
        self._thresholds = np.asarray(cfg.thresholds_mv, dtype=np.float64)
        params = np.empty(3, dtype=np.float64)
        params[P_HOLD_DECAY] = math.exp(-1.0 / (HOLD_TAU_S * cfg.rate_hz))
        params[P_AMP_ALPHA] = 1.0 - math.exp(-1.0 / (cfg.normalise_tau_s * cfg.rate_hz))
        params[P_FLOOR] = cfg.normalise_floor_mv
        self._norm_params = params
        self._dropped = np.zeros(1, dtype=np.int64)
        self.reset()

    @property
    def n_channels(self) -> int:
        return self.cfg.n_channels

    def drops(self) -> dict[str, int]:
        """What the pipeline reports in telemetry ``drops`` (as ``encoder_refractory``)."""
        return self.dropped

    @property
    def dropped(self) -> dict[str, int]:
        """Spikes dropped by reason (only ``refractory``), cumulative over the encoder's life."""
        return {"refractory": int(self._dropped[0])}

    def reset(self) -> None:
        """Fresh state for a new stream: the filters settle again on its first sample."""
        n_leads = self.cfg.n_leads
        self._z: npt.NDArray[np.float64] | None = None
        self._ref = np.zeros((n_leads, self.cfg.n_thresholds), dtype=np.float64)
        self._last_t = np.full(self.cfg.n_channels, NO_SPIKE_YET, dtype=np.int64)
        self._norm = np.zeros((n_leads, 2), dtype=np.float64)
        self._norm[:, NORM_AMP] = 1.0
        self._pos = 0
        self._t_end_us: int | None = None
        self._stream: str | None = None

    def encode(self, block: SampleBlock) -> SpikeBatch:
        """Spikes of one block; the batch covers ``[end of the previous batch, end of this block)``."""
        x = self._check(block)
        n0 = block.first_sample
        t_start_us = self._t_end_us if self._t_end_us is not None else block.t0_us
        t_end_us = sample_time_us(n0 + x.shape[0], self.cfg.rate_hz)
        if x.shape[0] == 0:
            return self._batch(block, np.empty(0, np.int64), np.empty(0, np.int32), t_start_us, t_end_us)
        bad = first_non_finite(x, self.cfg.n_leads)
        if bad >= 0:
            t_bad_us = sample_time_us(n0 + bad, self.cfg.rate_hz)
            msg = (
                f"{block.stream}: non-finite sample at t = {t_bad_us} us (sample {n0 + bad}); "
                "the source's NaN policy must repair or split the stream before the encoder"
            )
            raise InputError(msg)
        y = self._filter(x)
        t_us, ch = self._modulate(block.stream, y, n0)
        self._pos = n0 + x.shape[0]
        self._t_end_us = t_end_us
        return self._batch(block, t_us, ch, t_start_us, t_end_us)

    def _filter(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        first = self._z is None
        if self._z is None:
            # Settle on the first sample: steady state of a signal that was always at x[0].
            lead0 = x[0].astype(np.float64)
            self._z = np.ascontiguousarray(self._zi[None, :, :] * lead0[:, None, None])
        y = np.empty((self.cfg.n_leads, x.shape[0]), dtype=np.float64)
        sos_cascade(x, self._sos, self._z, y)
        if self.cfg.normalise:
            normalise_block(y, self._norm, self._norm_params)
        if first:
            self._ref[:] = y[:, :1]
        return y

    def _modulate(
        self, stream: str, y: npt.NDArray[np.float64], n0: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        n = y.shape[1]
        cap = n * self.cfg.n_channels // 4 + 64
        parts_t: list[npt.NDArray[np.int64]] = []
        parts_ch: list[npt.NDArray[np.int32]] = []
        start = 0
        while True:
            out_t = np.empty(cap, dtype=np.int64)
            out_ch = np.empty(cap, dtype=np.int32)
            stop, n_out, need = level_cross(
                y, start, n0, self._rate_num, self._rate_den, self._thresholds, self._ref,
                self._last_t, self.cfg.refractory_us, self._dropped, out_t, out_ch,
            )  # fmt: skip
            parts_t.append(out_t[:n_out])
            parts_ch.append(out_ch[:n_out])
            if stop == n:
                break
            if need > MAX_SPIKES_PER_SAMPLE:
                t_bad_us = sample_time_us(n0 + stop, self.cfg.rate_hz)
                msg = (
                    f"{stream}: filtered signal jumps by about {need:.3g} thresholds at t = {t_bad_us} us "
                    f"(sample {n0 + stop}); more than {MAX_SPIKES_PER_SAMPLE} spikes in one sample: "
                    "is the input in mV?"
                )
                raise InputError(msg)
            start = stop
            cap = max(2 * cap, int(need) + 1)
        return np.concatenate(parts_t), np.concatenate(parts_ch)

    def _batch(
        self,
        block: SampleBlock,
        t_us: npt.NDArray[np.int64],
        ch: npt.NDArray[np.int32],
        t_start_us: int,
        t_end_us: int,
    ) -> SpikeBatch:
        return SpikeBatch(block.stream, t_us, ch, self.cfg.n_channels, t_start_us, t_end_us, block.captured_ns)

    def _check(self, block: SampleBlock) -> npt.NDArray[np.float32]:
        cfg = self.cfg
        if block.rate_hz != cfg.rate_hz:
            msg = (
                f"{block.stream}: block rate {block.rate_hz} Hz, the ECG encoder expects {cfg.rate_hz} Hz "
                "(the rate its model was trained at; the source must resample)"
            )
            raise InputError(msg)
        if block.data.shape[1] < cfg.n_leads:
            msg = f"{block.stream}: block has {block.data.shape[1]} channels, the ECG encoder needs {cfg.n_leads} leads"
            raise InputError(msg)
        if block.t0_us != sample_time_us(block.first_sample, cfg.rate_hz):
            msg = (
                f"{block.stream}: block t0_us {block.t0_us} is not the time of its first_sample "
                f"{block.first_sample} ({sample_time_us(block.first_sample, cfg.rate_hz)} us at {cfg.rate_hz} Hz)"
            )
            raise InputError(msg)
        if self._stream is None:
            self._stream = block.stream
        check_next_block(block, self._stream, self._pos, "ECG encoder")
        return np.ascontiguousarray(block.data[:, : cfg.n_leads], dtype=np.float32)


def encode_signal(
    x_mv: npt.ArrayLike, rate_hz: float, cfg: EcgEncoderConfig
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Encode a whole signal at once (training, offline): the same spikes as streaming it.

    ``x_mv`` is 1-D (one lead) or (samples, leads); ``rate_hz`` must be ``cfg.rate_hz``.
    """
    arr = np.asarray(x_mv, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        msg = f"encode_signal needs a 1-D or (samples, leads) signal, got shape {arr.shape}"
        raise ValueError(msg)
    block = SampleBlock("signal", 0, rate_hz, arr, 0, 0)
    batch = EcgEncoder(cfg).encode(block)
    return batch.t_us, batch.ch
