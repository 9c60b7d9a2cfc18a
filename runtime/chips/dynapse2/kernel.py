"""Tick kernel of DYNAP-SE2 cores: DPI neurons with AMPA/NMDA/GABA DPI synapses (numba).

Per tick ``k`` (length ``dt``, ending at ``t_k``) and neuron ``n``, in DynapSim's form (rockpool's
DynapSim documents these equations; this is our own implementation of them)::

    I_s   = I_s e^(-dt/tau_s) + b_s max(g_s Iw_s[k], I0)    s = AMPA, NMDA, GABA    (exact DPI decay)
    I_ahp = max(I_ahp e^(-dt/tau_ahp) + c_ahp spiked[k-1], I0)
    I_leak = I_tau + I_ahp
    x = I_ampa + I_nmda / (1 + I_f / I_mem) - I_gaba + I_dc - I_leak   (0 while refractory)
    I_inf = (I_gain / I_tau) (max(x, I0) - I_leak)
    I_fb  = I0 (I_fb_src / I0)^(kappa / (kappa + 1))               (exponential feedback)
    I_mem += dt I_mem I_leak kappa / (U_T C (I_mem + I_gain))
             * (I_inf + I_fb (I_mem + I_gain) / I_leak - I_mem (1 + I_ahp / I_tau))   (forward Euler)
    I_mem = min(max(I_mem, I0), I_sat);  I_fb_src = I_mem
    if I_mem > I_spkthr: spike at t_k, I_mem = I0, refractory for n_ref ticks

``b_s = 1 - e^(-t_pulse/tau_s)``, ``g_s = I_gain_s / I_tau_s`` and ``Iw_s[k]`` sums the weight currents of
the events due at tick ``k``: input events with ``t_{k-1} <= t < t_k`` of delay class ``d`` are due
at tick ``k + d``, spikes of tick ``k`` at ``k + 1 + d``. The leak subtracted twice (in ``x`` and
in ``I_inf``) and the feedback computed from the pre-reset membrane are DynapSim's; the membrane
is a forward-Euler step as in DynapSim (stable while ``dt`` is short against the effective
time constant: see the profile's ``tau_mem_s`` range), the synapses are exact exponentials.
Unlike DynapSim (one lumped synapse whose sign comes from the weight, inhibition cancelling only
same-step excitation, spike *counts* ``ceil(ln(I_mem / I_spkthr))``), AMPA, NMDA and GABA are
separate DPIs as on the chip, NMDA is voltage-gated and a tick emits at most one spike.

Work skipping, exact: a neuron whose state was a fixed point of its last update (every state
variable bitwise unchanged, not refractory, no spike) and that receives nothing is not updated
(the update would return the same state). When every neuron is settled and nothing is
scheduled, the clock jumps to the next input event.

Arrays: ``KP`` float64 (NK, N) per-neuron factors (``K_*``), ``G`` float64 (2,) = (I0, kappa/(kappa+1)),
``S`` float64 (6, N) state (``S_*``), ``Z`` int64 (3, N) (refractory ticks left, spiked last tick,
settled), ``Q`` float64 (R, 3, N) ring of due weight currents (slot ``k % R``), synapses by source
in CSR form (``ptr``, ``tgt``, ``typ``, ``dly`` in ticks, ``w`` in A), ``hops`` per source.
"""

from __future__ import annotations

import numpy as np
from numba import njit

(K_DEC_A, K_DEC_N, K_DEC_G, K_CHG_A, K_CHG_N, K_CHG_G, K_DEC_AHP, K_CHG_AHP) = range(8)
(K_ITAU, K_IGAIN, K_IDC, K_ISPK, K_IFN, K_RATE, K_ISAT, K_NREF, K_RONORM) = range(8, 17)
(K_FLOOR_A, K_FLOOR_N, K_FLOOR_G) = range(17, 20)
NK = 20
S_AMPA, S_NMDA, S_GABA, S_AHP, S_MEM, S_FB = range(6)
Z_REFR, Z_SPIKED, Z_SETTLED = range(3)

C_NEXT_TICK_END = 0
C_TICK_US = 1
C_TICKS = 2
C_SOPS = 3
C_UPDATES = 4
C_SPIKES = 5
C_INPUT_EVENTS = 6
C_HOPS = 7
C_OUT_LO = 8
C_OUT_HI = 9
C_REC = 10
C_N_REC = 11
C_QUIET = 12
C_N_IN = 13
C_TICK_INDEX = 14
C_DUE_UNTIL = 15
C_SIZE = 16
COUNTERS = (C_TICKS, C_SOPS, C_UPDATES, C_SPIKES, C_INPUT_EVENTS, C_HOPS)


@njit(nogil=True, cache=True, inline="always")
def _deliver(src, k, ptr, tgt, typ, dly, w, hops, Q, C):  # type: ignore[no-untyped-def]
    r = Q.shape[0]
    for j in range(ptr[src], ptr[src + 1]):
        due = k + dly[j]
        Q[due % r, typ[j], tgt[j]] += w[j]
        if due > C[C_DUE_UNTIL]:
            C[C_DUE_UNTIL] = due
    C[C_SOPS] += ptr[src + 1] - ptr[src]
    C[C_HOPS] += hops[src]


@njit(nogil=True, cache=True)
def _neurons(k, KP, G, S, Z, Q, spk):  # type: ignore[no-untyped-def]
    """Update every neuron that is not settled; returns (spike count, all settled)."""
    io = G[0]
    pfb = G[1]
    slot = k % Q.shape[0]
    n_spk = 0
    all_settled = True
    for n in range(S.shape[1]):
        qa = Q[slot, 0, n]
        qn = Q[slot, 1, n]
        qg = Q[slot, 2, n]
        if Z[Z_SETTLED, n] == 1 and qa == 0.0 and qn == 0.0 and qg == 0.0:
            continue
        Q[slot, 0, n] = 0.0
        Q[slot, 1, n] = 0.0
        Q[slot, 2, n] = 0.0
        i_old = S[S_MEM, n]
        # DynapSim's DPI: the charge target never goes below I0, the current itself may.
        ampa = S[S_AMPA, n] * KP[K_DEC_A, n] + max(KP[K_CHG_A, n] * qa, KP[K_FLOOR_A, n])
        nmda = S[S_NMDA, n] * KP[K_DEC_N, n] + max(KP[K_CHG_N, n] * qn, KP[K_FLOOR_N, n])
        gaba = S[S_GABA, n] * KP[K_DEC_G, n] + max(KP[K_CHG_G, n] * qg, KP[K_FLOOR_G, n])
        ahp = max(S[S_AHP, n] * KP[K_DEC_AHP, n] + KP[K_CHG_AHP, n] * Z[Z_SPIKED, n], io)
        itau = KP[K_ITAU, n]
        igain = KP[K_IGAIN, n]
        ileak = itau + ahp
        refr = Z[Z_REFR, n]
        if refr > 0:
            x = 0.0
            refr -= 1
        else:
            x = ampa + nmda / (1.0 + KP[K_IFN, n] / i_old) - gaba + KP[K_IDC, n] - ileak
        i_inf = igain / itau * (max(x, io) - ileak)
        i_fb = io * np.exp(pfb * np.log(S[S_FB, n] / io))
        drive = i_inf + i_fb * (i_old + igain) / ileak - i_old * (1.0 + ahp / itau)
        i_new = i_old + i_old * ileak * KP[K_RATE, n] / (i_old + igain) * drive
        i_new = min(max(i_new, io), KP[K_ISAT, n])
        fb = i_new
        spiked = 0
        if i_new > KP[K_ISPK, n]:
            spk[n_spk] = n
            n_spk += 1
            i_new = io
            refr = np.int64(KP[K_NREF, n])
            spiked = 1
        settled = (
            spiked == 0
            and refr == 0
            and Z[Z_REFR, n] == 0
            and Z[Z_SPIKED, n] == 0
            and i_new == i_old
            and fb == S[S_FB, n]
            and ampa == S[S_AMPA, n]
            and nmda == S[S_NMDA, n]
            and gaba == S[S_GABA, n]
            and ahp == S[S_AHP, n]
        )
        S[S_AMPA, n] = ampa
        S[S_NMDA, n] = nmda
        S[S_GABA, n] = gaba
        S[S_AHP, n] = ahp
        S[S_MEM, n] = i_new
        S[S_FB, n] = fb
        Z[Z_REFR, n] = refr
        Z[Z_SPIKED, n] = spiked
        Z[Z_SETTLED, n] = 1 if settled else 0
        all_settled = all_settled and settled
    return n_spk, all_settled


@njit(nogil=True, cache=True)
def _tick(ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, spk):  # type: ignore[no-untyped-def]
    k = C[C_TICK_INDEX]
    t_end = C[C_NEXT_TICK_END]
    n_spk, all_settled = _neurons(k, KP, G, S, Z, Q, spk)
    n_in = C[C_N_IN]
    lo = C[C_OUT_LO]
    hi = C[C_OUT_HI]
    for j in range(n_spk):
        n = spk[j]
        _deliver(n_in + n, k + 1, ptr, tgt, typ, dly, w, hops, Q, C)
        if C[C_REC] == 1 and lo <= n < hi:
            out[0, C[C_N_REC]] = t_end
            out[1, C[C_N_REC]] = n - lo
            C[C_N_REC] += 1
    for j in range(hi - lo):
        v = S[S_MEM, lo + j] / KP[K_RONORM, lo + j]
        ro[0, j] += v
        if v > ro[1, j]:
            ro[1, j] = v
    C[C_SPIKES] += n_spk
    C[C_UPDATES] += S.shape[1]
    C[C_TICKS] += 1
    C[C_NEXT_TICK_END] = t_end + C[C_TICK_US]
    C[C_TICK_INDEX] = k + 1
    if n_spk == 0 and all_settled and C[C_DUE_UNTIL] <= k:
        C[C_QUIET] = 1


@njit(nogil=True, cache=True)
def run_dynapse2(ev_t, ev_ch, pos, t_end_us, ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, fresh):  # type: ignore[no-untyped-def]
    """Advance the chip to ``t_end_us`` (complete ticks only), consuming events from ``pos``.

    Returns ``(pos, status, n_rec)`` like ``crossbar_kernel.run_crossbar``: 0 done; 1 the spike
    record buffer is full (drain ``out[:, :n_rec]``, zero ``C[C_N_REC]``, call again); 2 event
    ``pos`` names a channel the chip does not have. ``fresh`` zeroes the per-call counters and
    ``ro`` (row 0 sum, row 1 max of the readout's normalised membrane over the ticks run).
    """
    if fresh:
        for c in COUNTERS:
            C[c] = 0
        for j in range(ro.shape[1]):
            ro[0, j] = 0.0
            ro[1, j] = -np.inf
    n_ev = ev_t.shape[0]
    tick_us = C[C_TICK_US]
    lo = C[C_OUT_LO]
    n_out = C[C_OUT_HI] - lo
    rec_width = n_out if C[C_REC] == 1 else 0
    spk = np.empty(S.shape[1], np.int64)
    while True:
        tick_end = C[C_NEXT_TICK_END]
        k = C[C_TICK_INDEX]
        while pos < n_ev and ev_t[pos] < tick_end:
            c = ev_ch[pos]
            if c < 0 or c >= C[C_N_IN]:
                return pos, 2, C[C_N_REC]
            _deliver(c, k, ptr, tgt, typ, dly, w, hops, Q, C)
            C[C_INPUT_EVENTS] += 1
            C[C_QUIET] = 0
            pos += 1
        if tick_end > t_end_us:
            return pos, 0, C[C_N_REC]
        if C[C_QUIET] == 1:
            # Every neuron sits on a fixed point and nothing is due: jump to the next event's tick.
            limit = t_end_us if pos >= n_ev else min(t_end_us, ev_t[pos])
            skip = (limit - tick_end) // tick_us + 1
            C[C_NEXT_TICK_END] = tick_end + skip * tick_us
            C[C_TICK_INDEX] = k + skip
            C[C_TICKS] += skip
            for j in range(n_out):
                v = S[S_MEM, lo + j] / KP[K_RONORM, lo + j]
                ro[0, j] += skip * v
                if v > ro[1, j]:
                    ro[1, j] = v
            continue
        if C[C_N_REC] + rec_width > out.shape[1]:
            return pos, 1, C[C_N_REC]
        _tick(ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, spk)


def new_state(n: int, io_a: float, ring: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S, Z, Q)`` at rest: every current at I0, nothing due."""
    S = np.full((6, n), io_a, np.float64)
    Z = np.zeros((3, n), np.int64)
    Q = np.zeros((ring, 3, n), np.float64)
    return S, Z, Q
