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

Speed: every neuron is updated every tick by short branch-free loops that vectorise (a core of
~200 neurons costs a few ns per neuron); the exponential feedback comes from ``feedback``, a
SIMD power within a few ulp of libm's ``exp(p log y)`` (not bit-identical to it). Work
skipping, exact: when every neuron had nothing due and its update left its state bitwise
unchanged (no spike, not refractory), another update would return the same state, so when
nothing is scheduled either the clock jumps to the next input event.

Arrays: ``KP`` float64 (NK, N) per-neuron factors (``K_*``), ``G`` float64 (2,) = (I0, kappa/(kappa+1)),
``S`` float64 (6, N) state (``S_*``), ``Z`` int64 (2, N) (refractory ticks left, spiked last tick),
``Q`` float64 (R, 3, N) ring of due weight currents (slot ``k % R``), synapses by source
in CSR form (``ptr``, ``tgt``, ``typ``, ``dly`` in ticks, ``w`` in A), ``hops`` per source.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.chips.dynapse2.feedback import N_SCRATCH, feedback

(K_DEC_A, K_DEC_N, K_DEC_G, K_CHG_A, K_CHG_N, K_CHG_G, K_DEC_AHP, K_CHG_AHP) = range(8)
(K_ITAU, K_IGAIN, K_IDC, K_ISPK, K_IFN, K_RATE, K_ISAT, K_NREF, K_RONORM) = range(8, 17)
(K_FLOOR_A, K_FLOOR_N, K_FLOOR_G) = range(17, 20)
NK = 20
S_AMPA, S_NMDA, S_GABA, S_AHP, S_MEM, S_FB = range(6)
Z_REFR, Z_SPIKED = range(2)
W_IFB, W_SPIKE, W_X, W_MEM, W_NREF, W_GAIN, W_INV_ITAU, W_FB_SCRATCH = range(8)
W_ROWS = W_FB_SCRATCH + N_SCRATCH

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
    # One integer division per source, not per synapse (~40 cycles each): delays are < r - 1.
    base = k % r
    d_max = 0
    for j in range(ptr[src], ptr[src + 1]):
        d = dly[j]
        slot = base + d
        if slot >= r:
            slot -= r
        Q[slot, typ[j], tgt[j]] += w[j]
        d_max = max(d_max, d)
    if k + d_max > C[C_DUE_UNTIL] and ptr[src + 1] > ptr[src]:
        C[C_DUE_UNTIL] = k + d_max
    C[C_SOPS] += ptr[src + 1] - ptr[src]
    C[C_HOPS] += hops[src]


# The update is split into short branch-free loops over neurons, each touching at most ~8 arrays:
# LLVM then vectorises every one (more arrays exceed its budget of runtime alias checks and the
# loop stays scalar, ~3x slower). error_model="numpy" drops numba's zero-division checks, which
# also keep a loop scalar; no divisor here can be zero (every current is clipped at I0 > 0).
# Every float expression is the one of the original scalar form, in the same order.
@njit(nogil=True, cache=True, error_model="numpy")
def _synapses(slot, KP, G, S, Z, Q):  # type: ignore[no-untyped-def]
    """AMPA, NMDA, GABA and AHP in place; returns whether any input was due or any of them moved."""
    moved = False
    for j in range(3):
        cur, q = S[S_AMPA + j], Q[slot, j]
        dec, chg, floor = KP[K_DEC_A + j], KP[K_CHG_A + j], KP[K_FLOOR_A + j]
        for n in range(S.shape[1]):
            # DynapSim's DPI: the charge target never goes below I0, the current itself may.
            new = cur[n] * dec[n] + max(chg[n] * q[n], floor[n])
            moved |= (new != cur[n]) | (q[n] != 0.0)
            cur[n] = new
        q[:] = 0.0
    io = G[0]
    cur, spiked = S[S_AHP], Z[Z_SPIKED]
    dec, chg = KP[K_DEC_AHP], KP[K_CHG_AHP]
    for n in range(S.shape[1]):
        # chg * spiked for spiked in {0, 1} (chg finite), without a non-SIMD int -> float conversion.
        new = max(cur[n] * dec[n] + (chg[n] if spiked[n] == 1 else 0.0), io)
        moved |= new != cur[n]
        cur[n] = new
    return moved


# Two divisions per neuron instead of the five of the equations as written (a vector division
# costs as much as ~10 multiplications): nm / (1 + I_f / I) = nm I / (I + I_f), h / I_tau uses
# 1 / I_tau from the run's constants, and the Euler step's two quotients share the denominator
# I + I_gain. Each rewrite moves the result by float64 rounding only (a few ulp).
@njit(nogil=True, cache=True, error_model="numpy")
def _membrane(KP, G, S, Z, W):  # type: ignore[no-untyped-def]
    """``W[W_MEM]`` = the membrane after the Euler step, clipped, before any reset (the feedback source)."""
    io = G[0]
    a, nm, g, h, x, fb = S[S_AMPA], S[S_NMDA], S[S_GABA], S[S_AHP], W[W_X], W[W_MEM]
    i_old, i_fb, refr = S[S_MEM], W[W_IFB], Z[Z_REFR]
    itau, igain, ifn, idc = KP[K_ITAU], KP[K_IGAIN], KP[K_IFN], KP[K_IDC]
    for n in range(S.shape[1]):
        i = i_old[n]
        x[n] = a[n] + nm[n] * i / (i + ifn[n]) - g[n] + idc[n] - (itau[n] + h[n])
    gain, inv_itau = W[W_GAIN], W[W_INV_ITAU]  # igain / itau and 1 / itau, divided once per run
    for n in range(S.shape[1]):
        xr = 0.0 if refr[n] > 0 else x[n]  # the refractory period gates all input
        # I_inf - I (1 + I_ahp / I_tau): the Euler step's drive without the feedback term.
        x[n] = gain[n] * (max(xr, io) - (itau[n] + h[n])) - i_old[n] * (1.0 + h[n] * inv_itau[n])
    rate, isat = KP[K_RATE], KP[K_ISAT]
    for n in range(S.shape[1]):
        # I + I I_leak rate / (I + I_gain) (x + I_fb (I + I_gain) / I_leak), over one denominator.
        i = i_old[n]
        ig = i + igain[n]
        step = i * rate[n] * ((itau[n] + h[n]) * x[n] + i_fb[n] * ig) / ig
        fb[n] = min(max(i + step, io), isat[n])


@njit(nogil=True, cache=True, error_model="numpy")
def _commit(KP, G, S, Z, W):  # type: ignore[no-untyped-def]
    """Spike flags (``W[W_SPIKE]``), reset, refractory timers; returns whether any of them moved."""
    io = G[0]
    spk, nref = W[W_SPIKE].view(np.int64), W[W_NREF].view(np.int64)
    fb, ispk, i_mem, f_old, refr, spiked = W[W_MEM], KP[K_ISPK], S[S_MEM], S[S_FB], Z[Z_REFR], Z[Z_SPIKED]
    moved = False
    for n in range(S.shape[1]):
        s = fb[n] > ispk[n]
        spk[n] = s
        # A neuron that spikes, was or is refractory, or whose I_mem moves is not on a fixed point.
        moved |= s | (refr[n] != 0) | (spiked[n] != 0) | (fb[n] != i_mem[n]) | (fb[n] != f_old[n])
    for n in range(S.shape[1]):
        i_mem[n] = io if spk[n] else fb[n]
    f_old[:] = fb
    for n in range(S.shape[1]):
        refr[n] = nref[n] if spk[n] else max(refr[n] - 1, 0)
    spiked[:] = spk
    return moved


@njit(nogil=True, cache=True)
def _neurons(k, KP, G, S, Z, Q, spk, W):  # type: ignore[no-untyped-def]
    """Update every neuron; returns (spike count, every neuron on a fixed point).

    A neuron is on a fixed point when it had nothing due and its update left every state variable
    bitwise unchanged, without spike or refractoriness: updating it again with nothing due gives
    the same state, which is what lets ``run_pieces`` jump over quiet stretches exactly.
    ``W`` is scratch from ``new_scratch``, ``(W_ROWS, N)`` float64 with the run's constants
    ``W[W_NREF]`` (``int64(K_NREF)``), ``W[W_GAIN]`` (``K_IGAIN / K_ITAU``), ``W[W_INV_ITAU]``.
    """
    feedback(S[S_FB], G[0], G[1], W[W_IFB], W[W_FB_SCRATCH:])
    moved = _synapses(k % Q.shape[0], KP, G, S, Z, Q)
    _membrane(KP, G, S, Z, W)
    moved |= _commit(KP, G, S, Z, W)
    flags = W[W_SPIKE].view(np.int64)
    n_spk = 0
    for n in range(S.shape[1]):
        if flags[n]:
            spk[n_spk] = n
            n_spk += 1
    return n_spk, not moved


@njit(nogil=True, cache=True)
def _tick(ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, spk, W):  # type: ignore[no-untyped-def]
    k = C[C_TICK_INDEX]
    t_end = C[C_NEXT_TICK_END]
    n_spk, all_settled = _neurons(k, KP, G, S, Z, Q, spk, W)
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
def _advance(ev_t, ev_ch, pos, n_ev, t_end_us, ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, spk, W):  # type: ignore[no-untyped-def]
    """Run the complete ticks up to ``t_end_us`` with the events ``pos:n_ev``; returns ``(pos, status)``."""
    tick_us = C[C_TICK_US]
    lo = C[C_OUT_LO]
    n_out = C[C_OUT_HI] - lo
    rec_width = n_out if C[C_REC] == 1 else 0
    while True:
        tick_end = C[C_NEXT_TICK_END]
        k = C[C_TICK_INDEX]
        while pos < n_ev and ev_t[pos] < tick_end:
            c = ev_ch[pos]
            if c < 0 or c >= C[C_N_IN]:
                return pos, 2
            _deliver(c, k, ptr, tgt, typ, dly, w, hops, Q, C)
            C[C_INPUT_EVENTS] += 1
            C[C_QUIET] = 0
            pos += 1
        if tick_end > t_end_us:
            return pos, 0
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
            return pos, 1
        _tick(ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, spk, W)


@njit(nogil=True, cache=True)
def _fresh(C, ro):  # type: ignore[no-untyped-def]
    for c in COUNTERS:
        C[c] = 0
    for j in range(ro.shape[1]):
        ro[0, j] = 0.0
        ro[1, j] = -np.inf


P_TICKS, P_SOPS, P_UPDATES, P_SPIKES, P_INPUT_EVENTS, P_HOPS, P_N_REC = range(7)
P_SIZE = 7


@njit(nogil=True, cache=True)
def run_pieces(ev_t, ev_ch, pos, ends, piece, ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, R, P, fresh, spk, W):  # type: ignore[no-untyped-def]
    """Advance the chip piece by piece (complete ticks only): piece ``i`` runs to ``ends[i]`` with the
    events before it; the last piece takes the rest. ``Dynapse2Chip.run`` is the one-piece case.

    Each piece gets its own counters and readout accumulators, exactly as separate calls on the
    pieces' events would: ``P[i]`` the counters (``P_*``, ``P_N_REC`` the spikes recorded in
    ``out`` up to the end of the piece, cumulative), ``R[i]`` the readout sum and maximum.
    Starts at piece ``piece`` (``fresh`` False: continue it); returns ``(pos, piece, status)``,
    status 0 done, 1 ``out`` (the spike record) is full: grow it and call again (nothing is drained),
    2 event ``pos`` names a channel the chip does not have. ``spk`` and ``W`` (``new_scratch``) are
    scratch.
    """
    n_all = ev_t.shape[0]
    for i in range(piece, ends.shape[0]):
        ro = R[i]
        if fresh:
            _fresh(C, ro)
        fresh = True
        t_end = ends[i]
        n_ev = pos
        if i == ends.shape[0] - 1:
            n_ev = n_all  # the last piece takes every event left, as the last slice would
        while n_ev < n_all and ev_t[n_ev] < t_end:  # this piece's events (they are sorted)
            n_ev += 1
        pos, status = _advance(
            ev_t, ev_ch, pos, n_ev, t_end, ptr, tgt, typ, dly, w, hops, KP, G, S, Z, Q, C, out, ro, spk, W
        )
        if status != 0:
            return pos, i, status
        p = P[i]
        p[P_TICKS] = C[C_TICKS]
        p[P_SOPS] = C[C_SOPS]
        p[P_UPDATES] = C[C_UPDATES]
        p[P_SPIKES] = C[C_SPIKES]
        p[P_INPUT_EVENTS] = C[C_INPUT_EVENTS]
        p[P_HOPS] = C[C_HOPS]
        p[P_N_REC] = C[C_N_REC]
    return pos, ends.shape[0], 0


def new_scratch(KP: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(spk, W)``: scratch of the tick, with ``W``'s per-run constant rows filled in once."""
    n = KP.shape[1]
    W = np.empty((W_ROWS, n), np.float64)
    W[W_NREF].view(np.int64)[:] = KP[K_NREF].astype(np.int64)  # refractory ticks, converted once
    W[W_GAIN] = KP[K_IGAIN] / KP[K_ITAU]
    W[W_INV_ITAU] = 1.0 / KP[K_ITAU]
    return np.empty(n, np.int64), W


def new_state(n: int, io_a: float, ring: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S, Z, Q)`` at rest: every current at I0, nothing due."""
    S = np.full((6, n), io_a, np.float64)
    Z = np.zeros((2, n), np.int64)
    Q = np.zeros((ring, 3, n), np.float64)
    return S, Z, Q
