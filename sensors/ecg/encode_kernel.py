"""Numba kernels of the ECG encoder: a second-order-section cascade and the level-crossing modulator.

Both work on one block at a time and keep their state in arrays owned by the caller, so a
stream split into blocks anywhere gives bit-identical output: every sample goes through the
same floating-point operations in the same order whatever the split.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

NO_SPIKE_YET = -(2**62)
"""Initial "last kept spike" time of a channel: far enough back that no refractory period covers t >= 0."""

# Entries of the per-lead normalisation state.
NORM_ENV, NORM_AMP = 0, 1
# Entries of the normalisation parameter array.
P_HOLD_DECAY, P_AMP_ALPHA, P_FLOOR = 0, 1, 2


@njit(nogil=True, cache=True)
def first_non_finite(x: npt.NDArray[np.float32], n_leads: int) -> int:
    """Row of the first sample with a NaN or inf in columns ``0..n_leads-1``; -1 if none."""
    for i in range(x.shape[0]):
        for lead in range(n_leads):
            if not np.isfinite(x[i, lead]):
                return i
    return -1


@njit(nogil=True, cache=True)
def sos_cascade(
    x: npt.NDArray[np.float32],
    sos: npt.NDArray[np.float64],
    z: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
) -> None:
    """Filter ``x`` (samples, >= leads) through the cascade ``sos`` into ``y`` (leads, samples).

    ``sos`` rows are scipy's ``[b0, b1, b2, 1, a1, a2]``; ``z`` (leads, sections, 2) holds the
    transposed-direct-form-II state (scipy.signal.sosfilt's, so its ``sosfilt_zi`` applies),
    updated in place. Sections run one after the other over the whole block: the recurrence
    of each section is sequential anyway, and this keeps the inner loop tight.
    """
    n = x.shape[0]
    for lead in range(y.shape[0]):
        row = y[lead]
        for i in range(n):
            row[i] = np.float64(x[i, lead])
        for s in range(sos.shape[0]):
            b0 = sos[s, 0]
            b1 = sos[s, 1]
            b2 = sos[s, 2]
            a1 = sos[s, 4]
            a2 = sos[s, 5]
            z0 = z[lead, s, 0]
            z1 = z[lead, s, 1]
            for i in range(n):
                xi = row[i]
                yi = b0 * xi + z0
                z0 = b1 * xi - a1 * yi + z1
                z1 = b2 * xi - a2 * yi
                row[i] = yi
            z[lead, s, 0] = z0
            z[lead, s, 1] = z1


@njit(nogil=True, cache=True)
def normalise_block(
    y: npt.NDArray[np.float64], state: npt.NDArray[np.float64], params: npt.NDArray[np.float64]
) -> None:
    """Divide each lead of ``y`` (leads, samples) in place by its running QRS amplitude estimate.

    Per sample: ``env = max(|y|, env * hold_decay)`` (a peak hold that bridges the RR
    interval), ``amp += amp_alpha * (env - amp)`` (its slow running mean), then
    ``y /= max(amp, floor)``. ``state`` (leads, 2) holds ``env`` and ``amp``.
    """
    hold_decay = params[P_HOLD_DECAY]
    amp_alpha = params[P_AMP_ALPHA]
    floor = params[P_FLOOR]
    for lead in range(y.shape[0]):
        row = y[lead]
        env = state[lead, NORM_ENV]
        amp = state[lead, NORM_AMP]
        for i in range(row.shape[0]):
            env = max(abs(row[i]), env * hold_decay)
            amp += amp_alpha * (env - amp)
            row[i] = row[i] / max(amp, floor)
        state[lead, NORM_ENV] = env
        state[lead, NORM_AMP] = amp


@njit(nogil=True, cache=True)
def _emit(
    t: int,
    ch: int,
    last_t: npt.NDArray[np.int64],
    refractory_us: int,
    dropped: npt.NDArray[np.int64],
    out_t: npt.NDArray[np.int64],
    out_ch: npt.NDArray[np.int32],
    n_out: int,
) -> int:
    """Write one spike unless the channel is refractory (then count it); returns the new ``n_out``."""
    if refractory_us != 0 and t - last_t[ch] < refractory_us:
        dropped[0] += 1
        return n_out
    last_t[ch] = t
    out_t[n_out] = t
    out_ch[n_out] = ch
    return n_out + 1


@njit(nogil=True, cache=True)
def level_cross(
    y: npt.NDArray[np.float64],
    start: int,
    n0: int,
    rate_num: int,
    rate_den: int,
    thresholds: npt.NDArray[np.float64],
    ref: npt.NDArray[np.float64],
    last_t: npt.NDArray[np.int64],
    refractory_us: int,
    dropped: npt.NDArray[np.int64],
    out_t: npt.NDArray[np.int64],
    out_ch: npt.NDArray[np.int32],
) -> tuple[int, int, float]:
    """Delta-modulate ``y`` (leads, samples) from block sample ``start``; returns ``(stop, n_out, need)``.

    For each lead and threshold ``k``: while ``y > ref + thr`` emit UP and ``ref += thr``;
    while ``y < ref - thr`` emit DOWN and ``ref -= thr``; all spikes of one sample carry
    that sample's stream time ``(n0 + i) * 1e6 * rate_den // rate_num`` (exact integers).
    Channels are visited in increasing order within a sample, so output is sorted by
    ``(t, ch)``. A spike closer than ``refractory_us`` to the channel's last kept spike is
    dropped and counted in ``dropped[0]``, but ``ref`` still moves: the reference keeps
    tracking the signal, so a drop loses that step only instead of releasing a late burst.

    Stops before sample ``stop`` when its spikes might not fit into ``out_t``; ``need`` is
    then the bound on that sample's spikes (float: an absurd jump must not overflow an int).
    ``stop == y.shape[1]`` when the block is done. State is committed sample by sample, so
    the caller grows the buffers and resumes at ``stop``.
    """
    n_leads = y.shape[0]
    n_thr = thresholds.shape[0]
    cap = out_t.shape[0]
    n_out = 0
    for i in range(start, y.shape[1]):
        # Bound this sample's spikes first, so that a sample is either done whole or not at all.
        need = 0.0
        for lead in range(n_leads):
            for k in range(n_thr):
                need += abs(y[lead, i] - ref[lead, k]) / thresholds[k] + 2.0
        if n_out + need > cap:
            return i, n_out, need
        t = (n0 + i) * 1_000_000 * rate_den // rate_num
        for lead in range(n_leads):
            yi = y[lead, i]
            for k in range(n_thr):
                thr = thresholds[k]
                r = ref[lead, k]
                up = (lead * n_thr + k) * 2
                while yi > r + thr:
                    r += thr
                    n_out = _emit(t, up, last_t, refractory_us, dropped, out_t, out_ch, n_out)
                while yi < r - thr:
                    r -= thr
                    n_out = _emit(t, up + 1, last_t, refractory_us, dropped, out_t, out_ch, n_out)
                ref[lead, k] = r
    return y.shape[1], n_out, 0.0
