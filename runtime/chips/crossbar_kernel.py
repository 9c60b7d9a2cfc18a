"""Event-driven kernel of a current-based LIF crossbar (numba, releases the GIL).

Per tick ``k`` of length ``dt`` ending at ``t_k`` (stream time), for every neuron ``n``::

    I_n[k] = alpha_n * I_n[k-1] + A_n[k]               alpha_n = exp(-dt / tau_syn_n)
    v_n[k] = beta_n * v_n[k-1] + g_n * I_n[k] + l_n     beta_n  = exp(-dt / tau_mem_n)
                                                        g_n = (1 - beta_n) r_n, l_n = (1 - beta_n) v_leak_n
    if v_n[k] >= theta_n: spike at t_k, v_n[k] = v_reset_n

``A[k]`` accumulates crossbar rows: ``W[c, :]`` for every input event on channel ``c`` with
``t_{k-1} <= t < t_k``, and ``W[n_in + m, :]`` for every neuron ``m`` that spiked at tick
``k-1`` (recurrent and feed-forward projections share the one crossbar). Synaptic
operations are counted as NeuroBench does: each event adds the fan-out of its row.

Event-driven: work is proportional to events and to ticks in which the network is not at
rest. When no spike happened, nothing is pending and every state is within ``eps`` of rest
(``I = 0``, ``v = v_leak``), the state is set exactly to rest and the clock jumps to the
tick of the next input event, so silence costs nothing.

Array layout (one array per role keeps numba's dispatch cheap at 10 ms chunks):

* ``P`` float32 (8, N): alpha, beta, g, l, theta, v_reset, v_rest, eps (eps in column 0)
* ``S`` float32 (3, N): I, v, A
* ``C`` int64 (16,): see the ``C_*`` indices below; ``C[C_TICKS:C_INPUT_EVENTS + 1]`` are
  per-call counters that the caller zeroes
"""

from __future__ import annotations

import numpy as np
from numba import njit

C_NEXT_TICK_END = 0
C_TICK_US = 1
C_TICKS = 2
C_SOPS = 3
C_UPDATES = 4
C_SPIKES = 5
C_INPUT_EVENTS = 6
C_OUT_LO = 7
C_OUT_HI = 8
C_REC_LO = 9
C_REC_HI = 10
C_N_REC = 11
C_QUIET = 12
C_N_IN = 13
C_SIZE = 16

P_ALPHA, P_BETA, P_GAIN, P_LEAK, P_THETA, P_RESET, P_REST, P_EPS = range(8)
S_I, S_V, S_A = range(3)


@njit(nogil=True, cache=True, inline="always")
def _tick(W, fanout, P, S, C, out, ro, spk):  # type: ignore[no-untyped-def]
    # 1-D row views let LLVM vectorise the per-neuron loops.
    cur, v, acc = S[S_I], S[S_V], S[S_A]
    alpha, beta, gain, leak = P[P_ALPHA], P[P_BETA], P[P_GAIN], P[P_LEAK]
    theta, reset = P[P_THETA], P[P_RESET]
    n_neurons = P.shape[1]
    n_in = C[C_N_IN]
    # Three narrow loops rather than one: each touches few enough arrays for LLVM's
    # runtime alias checks, so each is vectorised (one fused loop was not, and ran 4x slower).
    for n in range(n_neurons):
        cur[n] = alpha[n] * cur[n] + acc[n]
    acc[:] = 0.0
    for n in range(n_neurons):
        v[n] = beta[n] * v[n] + gain[n] * cur[n] + leak[n]
    # Count first (an integer sum vectorises), scan only when something crossed.
    n_cross = 0
    for n in range(n_neurons):
        n_cross += v[n] >= theta[n]
    n_spk = 0
    if n_cross:
        for n in range(n_neurons):
            if v[n] >= theta[n]:
                spk[n_spk] = n
                n_spk += 1
    lo = C[C_OUT_LO]
    t_end = C[C_NEXT_TICK_END]
    for j in range(n_spk):
        n = spk[j]
        v[n] = reset[n]
        row = W[n_in + n]
        for m in range(n_neurons):
            acc[m] += row[m]
        C[C_SOPS] += fanout[n_in + n]
        if C[C_REC_LO] <= n < C[C_REC_HI]:
            out[0, C[C_N_REC]] = t_end
            out[1, C[C_N_REC]] = n - C[C_REC_LO]
            C[C_N_REC] += 1
    for k in range(C[C_OUT_HI] - lo):
        vk = v[lo + k]
        ro[0, k] += vk
        if vk > ro[1, k]:
            ro[1, k] = vk
    C[C_SPIKES] += n_spk
    C[C_UPDATES] += n_neurons
    C[C_TICKS] += 1
    C[C_NEXT_TICK_END] = t_end + C[C_TICK_US]
    if n_spk == 0 and _at_rest(cur, v, P[P_REST], P[P_EPS, 0]):
        cur[:] = 0.0
        v[:] = P[P_REST]
        C[C_QUIET] = 1


@njit(nogil=True, cache=True)
def _at_rest(cur, v, rest, eps):  # type: ignore[no-untyped-def]
    # Early exit: an active network fails on its first neurons, so this is nearly free.
    for n in range(cur.shape[0]):
        if abs(cur[n]) >= eps or abs(v[n] - rest[n]) >= eps:
            return False
    return True


@njit(nogil=True, cache=True)
def run_crossbar(ev_t, ev_ch, pos, t_end_us, W, fanout, P, S, C, out, ro, fresh):  # type: ignore[no-untyped-def]
    """Advance the chip to ``t_end_us``, consuming events from index ``pos``.

    ``ro`` (float64, (2, n_out)) accumulates each readout neuron's membrane over the ticks
    run: row 0 the sum, row 1 the maximum. ``fresh`` (first call for a batch) zeroes the
    per-call counters and ``ro`` here, where it costs nothing next to numpy calls.

    Returns ``(pos, status, n_rec)``: 0 done; 1 when the spike record buffer cannot take another
    tick (the caller drains ``out[0]`` times and ``out[1]`` neurons (``C[C_N_REC]`` entries), resets the count
    and calls again with the returned ``pos``; nothing is dropped); 2 when event ``pos``
    names a channel the chip does not have.
    """
    if fresh:
        for k in range(C_TICKS, C_INPUT_EVENTS + 1):
            C[k] = 0
        for j in range(ro.shape[1]):
            ro[0, j] = 0.0
            ro[1, j] = -np.inf
    n_ev = ev_t.shape[0]
    tick_us = C[C_TICK_US]
    rec_width = C[C_REC_HI] - C[C_REC_LO]
    lo = C[C_OUT_LO]
    n_out = C[C_OUT_HI] - lo
    n_cols = W.shape[1]
    acc = S[S_A]
    spk = np.empty(n_cols, np.int64)
    while True:
        tick_end = C[C_NEXT_TICK_END]
        while pos < n_ev and ev_t[pos] < tick_end:
            c = ev_ch[pos]
            if c < 0 or c >= C[C_N_IN]:
                return pos, 2, C[C_N_REC]
            row = W[c]
            for m in range(n_cols):
                acc[m] += row[m]
            C[C_SOPS] += fanout[c]
            C[C_INPUT_EVENTS] += 1
            C[C_QUIET] = 0
            pos += 1
        if tick_end > t_end_us:
            return pos, 0, C[C_N_REC]
        if C[C_QUIET] == 1:
            limit = t_end_us if pos >= n_ev else min(t_end_us, ev_t[pos])
            k = (limit - tick_end) // tick_us + 1
            C[C_NEXT_TICK_END] = tick_end + k * tick_us
            C[C_TICKS] += k
            for j in range(n_out):
                rest = P[P_REST, lo + j]
                ro[0, j] += k * rest
                if rest > ro[1, j]:
                    ro[1, j] = rest
            continue
        if C[C_N_REC] + rec_width > out.shape[1]:
            return pos, 1, C[C_N_REC]
        _tick(W, fanout, P, S, C, out, ro, spk)


def new_state(P: np.ndarray) -> np.ndarray:
    S = np.zeros((3, P.shape[1]), np.float32)
    S[S_V] = P[P_REST]
    return S
