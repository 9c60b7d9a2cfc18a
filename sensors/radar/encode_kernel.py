"""Numba kernels of the radar encoder: per-point features with clutter removal, and the delta modulator.

Both keep their state in arrays owned by the caller, so a stream cut into blocks anywhere
gives the same spikes: every frame goes through the same operations in the same order.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

# Entries of the per-stream scalar state.
S_REF_POWER, S_STARTED = 0, 1


@njit(nogil=True, cache=True)
def point_features(
    m: npt.NDArray[np.complex128],
    var: npt.NDArray[np.float64],
    alpha: npt.NDArray[np.float64],
    n_sweeps: int,
    clutter: npt.NDArray[np.complex128],
    prev: npt.NDArray[np.complex128],
    state: npt.NDArray[np.float64],
    wavelength_mm: float,
    gate: float,
    use_phase: bool,
    motion: npt.NDArray[np.float64],
    doppler: npt.NDArray[np.float64],
    disp_mm: npt.NDArray[np.float64],
    ref_power: npt.NDArray[np.float64],
) -> None:
    """Features of ``n`` frames, per range point, averaged over channels.

    ``m`` (n, C, P): sweep-mean of each frame; ``var`` (n, C, P): variance over its sweeps;
    ``alpha`` (n,): clutter update weight of each frame, ``1 - exp(-dt / tau)``. State:
    ``clutter`` and ``prev`` (C, P), ``state`` (reference power, started flag). Outputs
    ``motion``, ``doppler``, ``disp_mm`` (n, P) and ``ref_power`` (n,), the static reflection
    power each frame's powers are relative to.
    """
    n, n_ch, n_pt = m.shape
    for i in range(n):
        if state[S_STARTED] == 0.0:
            # Settle on the first frame: it is all static reflection, nothing has moved yet.
            p_sum = 0.0
            for c in range(n_ch):
                for p in range(n_pt):
                    clutter[c, p] = m[i, c, p]
                    prev[c, p] = m[i, c, p]
                    p_sum += m[i, c, p].real ** 2 + m[i, c, p].imag ** 2 + var[i, c, p]
            state[S_REF_POWER] = p_sum / (n_ch * n_pt)
            state[S_STARTED] = 1.0
        a = alpha[i]
        p_sum = 0.0
        for p in range(n_pt):
            mot = 0.0
            dop = 0.0
            dsp = 0.0
            for c in range(n_ch):
                x = m[i, c, p]
                d = x - clutter[c, p]
                mot += d.real**2 + d.imag**2
                dop += var[i, c, p]
                power = x.real**2 + x.imag**2
                p_sum += power + var[i, c, p]
                if use_phase:
                    # The sweep-mean's noise power is var / n_sweeps; weight the phase by its SNR.
                    snr = power * n_sweeps / (var[i, c, p] + 1e-12)
                    w = snr / (snr + gate)
                    z = x * np.conj(prev[c, p])
                    dsp += w * math.atan2(z.imag, z.real) * wavelength_mm / (4.0 * math.pi)
                clutter[c, p] += a * d
                prev[c, p] = x
            motion[i, p] = mot / n_ch
            doppler[i, p] = dop / n_ch
            disp_mm[i, p] = dsp / n_ch
        state[S_REF_POWER] += a * (p_sum / (n_ch * n_pt) - state[S_REF_POWER])
        ref_power[i] = state[S_REF_POWER]


@njit(nogil=True, cache=True)
def delta_modulate(
    values: npt.NDArray[np.float64],
    t_us: npt.NDArray[np.int64],
    ref: npt.NDArray[np.float64],
    threshold: npt.NDArray[np.float64],
    max_spikes: int,
    out_t: npt.NDArray[np.int64],
    out_ch: npt.NDArray[np.int32],
    dropped: npt.NDArray[np.int64],
) -> int:
    """Level crossing of ``values`` (n, K) against ``ref`` (K,), steps ``threshold`` (K,).

    Value ``k`` spikes on channel ``2k`` (UP) or ``2k + 1`` (DOWN) at its frame's time, at
    most ``max_spikes`` per frame; the reference moves one step per crossing whether or not
    the spike was kept (``dropped[0]`` counts the others). ``out_*`` hold at least
    ``n * K * max_spikes`` entries; returns how many were written.
    """
    n, k_count = values.shape
    n_out = 0
    for i in range(n):
        for k in range(k_count):
            diff = values[i, k] - ref[k]
            steps = int(abs(diff) / threshold[k])
            if steps == 0:
                continue
            down = diff < 0
            ref[k] += -steps * threshold[k] if down else steps * threshold[k]
            kept = min(steps, max_spikes)
            dropped[0] += steps - kept
            for _ in range(kept):
                out_t[n_out] = t_us[i]
                out_ch[n_out] = 2 * k + (1 if down else 0)
                n_out += 1
    return n_out
