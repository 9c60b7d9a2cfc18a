"""Event-driven kernel of a chain of conv -> IAF -> sum-pool cores (numba, releases the GIL).

Input events are grouped into steps of ``step_us`` (same ``t // step_us``, same step). Per
step, layer by layer:

1. every event of the step (address ``(c, y, x)``, multiplicity ``m``) adds
   ``m * W[:, c, ky, kx]`` to each output position it reaches: these positions are *touched*;
2. each touched neuron is checked once: its state saturates to the 16-bit range, then
   ``s = v // theta`` if ``v >= theta``, ``v -= s * theta``, ``v = max(v, v_min)``;
3. spikes (with multiplicity ``s``) are sum-pooled, i.e. sent to address
   ``(f, oy // pool, ox // pool)`` of the next layer, which runs in the same step.

The last layer's spikes are the chip's output: entries (step time, class, count), one per
spiking neuron of the last layer (several when it pools). Untouched neurons are never
visited, so silence and sparse input cost nothing. Checking only touched neurons is exact:
an untouched neuron's state is already in ``[v_min, theta)``.

The state is int32 while a step's input is summed (the saturation to 16 bits is applied at
the check), so one neuron's input within one step must stay within +-2^31: with 8-bit
weights that is over 16 million synaptic events on one neuron in one step.

Counters ``C`` (int64): see ``C_*``; ``C[C_LAYER_SPIKES + L]`` counts layer L's spikes.

Speed notes (measured; at 1 us steps there is one step per input event): helpers are
inlined at numba level and compiled with ``error_model="numpy"`` (a helper that may raise
takes a reference count on every array argument, two atomics each, per call); the
innermost loops run over a view with the loop variable as index (numba's negative-index
wrap-around on a computed index stops LLVM from vectorising them); nothing is allocated
and no array variable is reassigned inside the step loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.chips.dynapcnn.layout import (
    P_C,
    P_COFF,
    P_F,
    P_FP,
    P_H,
    P_HO,
    P_K,
    P_POFF,
    P_ROFF,
    P_THETA,
    P_VMIN,
    P_VOFF,
    P_W,
    P_WO,
    P_WOFF,
)

C_INPUT_EVENTS = 0
C_SOPS = 1
C_UPDATES = 2
C_SPIKES = 3
C_STEPS = 4
C_N_OUT = 5
C_LAYER_SPIKES = 6

STATE_MAX = 2**15 - 1
STATE_MIN = -(2**15)

_OPTS = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(inline="always", **_OPTS)
def _scatter(q, L, c, y, x, m, W, V, flags, touched, nt, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k):  # type: ignore[no-untyped-def]
    """Add one event to layer L (its parameters ``q``); returns the synaptic operations it cost."""
    fp, k, wo, poff, voff = q[P_FP], q[P_K], q[P_WO], q[P_POFF], q[P_VOFF]
    wbase = q[P_WOFF] + c * k * k * fp
    ri = q[P_ROFF] + y
    ci = q[P_COFF] + x
    n_r = rows_n[ri]
    n_c = cols_n[ci]
    for i in range(n_r):
        oy = rows_o[ri, i]
        wrow = wbase + rows_k[ri, i] * k * fp
        for j in range(n_c):
            p = oy * wo + cols_o[ci, j]
            if flags[poff + p] == 0:
                flags[poff + p] = 1
                touched[poff + nt[L]] = p
                nt[L] += 1
            vb = voff + p * fp
            wb = wrow + cols_k[ci, j] * fp
            vv = V[vb : vb + fp]
            ww = W[wb : wb + fp]
            if m == 1:
                for f in range(fp):
                    vv[f] += ww[f]
            else:
                for f in range(fp):
                    vv[f] += m * ww[f]
    return m * n_r * n_c * q[P_F]


@njit(inline="always", **_OPTS)
def _check(L, LP, V, flags, touched, nt, pool_y, pool_x, bufs, b, C):  # type: ignore[no-untyped-def]
    """Threshold layer L's touched neurons; pooled spikes go to the buffer. Returns entries written."""
    f_n = LP[L, P_F]
    fp = LP[L, P_FP]
    theta = LP[L, P_THETA]
    vmin = LP[L, P_VMIN]
    poff = LP[L, P_POFF]
    voff = LP[L, P_VOFF]
    n = 0
    spikes = 0
    for t in range(nt[L]):
        p = touched[poff + t]
        flags[poff + p] = 0
        vv = V[voff + p * fp : voff + (p + 1) * fp]
        # Branch-free pass first (it vectorises): saturate, apply the floor, note any crossing.
        # A neuron at or above threshold keeps its saturated value (> floor) for the second pass.
        hit = 0
        for f in range(fp):
            v = min(max(vv[f], STATE_MIN), STATE_MAX)
            hit |= v >= theta
            vv[f] = max(v, vmin)
        if hit == 0:
            continue
        qy = pool_y[poff + p]  # -1: cut off by the pooling (map not a multiple of pool)
        qx = pool_x[poff + p]
        for f in range(f_n):
            v = vv[f]
            if v >= theta:
                s = v // theta
                spikes += s
                vv[f] = max(v - s * theta, vmin)
                if qy >= 0 and qx >= 0:
                    bufs[b, n] = f
                    bufs[b + 1, n] = qy
                    bufs[b + 2, n] = qx
                    bufs[b + 3, n] = s
                    n += 1
    C[C_UPDATES] += nt[L] * f_n
    C[C_SPIKES] += spikes
    C[C_LAYER_SPIKES + L] += spikes
    nt[L] = 0
    return n


@njit(inline="always", **_OPTS)
def _params(LP, L):  # type: ignore[no-untyped-def]
    """Row L of LP as a tuple (no array view: a view is reference counted)."""
    a = (LP[L, 0], LP[L, 1], LP[L, 2], LP[L, 3], LP[L, 4], LP[L, 5], LP[L, 6], LP[L, 7], LP[L, 8])
    return a + (LP[L, 9], LP[L, 10], LP[L, 11], LP[L, 12], LP[L, 13], LP[L, 14], LP[L, 15], LP[L, 16], LP[L, 17])


@njit(**_OPTS)
def _shift_of(n):  # type: ignore[no-untyped-def]
    """log2(n) if n is a power of two, else -1 (addresses then decode by division)."""
    if n <= 0 or n & (n - 1) != 0:
        return -1
    s = 0
    while (1 << s) < n:
        s += 1
    return s


@njit(**_OPTS)
def run_conv(ev_t, ev_ch, pos, t_done, step_us, LP, W, V, flags, touched, pool_y, pool_x, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k, bufs, out, C):  # type: ignore[no-untyped-def]
    """Process the events from ``pos`` on with ``t < t_done`` (``t_done`` a multiple of ``step_us``).

    ``W`` and ``V`` are flat int32 (see ``layout``); ``bufs`` int64
    (8, capacity): two ping-pong buffers of (c, y, x, multiplicity) entries; ``out`` int64
    (3, capacity): output entries (step time, class, count), ``C[C_N_OUT]`` of them used.
    Returns ``(pos, status)``: ``pos`` the first event not processed; status 0 done; 1 the
    output buffer cannot take another step (drain it, reset ``C[C_N_OUT]`` and call again
    with ``pos``; nothing is lost); 2 event ``pos`` has an address outside the input (checked
    before anything runs, so nothing was processed).
    """
    n_ev = ev_t.shape[0]
    n_layers = LP.shape[0]
    c_in, h_in, w_in = LP[0, P_C], LP[0, P_H], LP[0, P_W]
    n_in = c_in * h_in * w_in
    hw = h_in * w_in
    for i in range(pos, n_ev):
        if ev_ch[i] < 0 or ev_ch[i] >= n_in:
            return i, 2
    start = pos
    sh_hw = _shift_of(hw)
    sh_w = _shift_of(w_in)
    pow2 = sh_hw >= 0 and sh_w >= 0
    last = n_layers - 1
    # Entries the last layer can emit in one step: one per neuron.
    room = LP[last, P_F] * LP[last, P_HO] * LP[last, P_WO]
    nt = np.zeros(n_layers, np.int64)
    # Layer parameters as tuples of scalars, loaded once: read from LP inside the loops they
    # would be reloaded after every store to the state (numba gives LLVM no aliasing facts).
    q0 = (LP[0, 0], LP[0, 1], LP[0, 2], LP[0, 3], LP[0, 4], LP[0, 5], LP[0, 6], LP[0, 7], LP[0, 8])
    q0 = q0 + (LP[0, 9], LP[0, 10], LP[0, 11], LP[0, 12], LP[0, 13], LP[0, 14], LP[0, 15], LP[0, 16], LP[0, 17])
    while pos < n_ev and ev_t[pos] < t_done:
        if C[C_N_OUT] + room > out.shape[1]:
            break
        k = ev_t[pos] if step_us == 1 else ev_t[pos] // step_us
        step_end = (k + 1) * step_us
        sops = 0
        while pos < n_ev and ev_t[pos] < step_end:
            a = ev_ch[pos]
            if pow2:
                c = a >> sh_hw
                y = (a & (hw - 1)) >> sh_w
                x = a & (w_in - 1)
            else:
                c = a // hw
                y = (a - c * hw) // w_in
                x = a - c * hw - y * w_in
            sops += _scatter(q0, 0, c, y, x, 1, W, V, flags, touched, nt, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k)
            pos += 1
        cur = 0
        for L in range(n_layers):
            if nt[L] == 0:
                break  # nothing touched here, so nothing reaches the layers after it
            b = 4 * cur
            n = _check(L, LP, V, flags, touched, nt, pool_y, pool_x, bufs, b, C)
            if L == last:
                m = C[C_N_OUT]
                for e in range(n):
                    out[0, m] = k * step_us
                    out[1, m] = bufs[b, e]
                    out[2, m] = bufs[b + 3, e]
                    m += 1
                C[C_N_OUT] = m
                break
            q = _params(LP, L + 1)
            for e in range(n):
                sops += _scatter(q, L + 1, bufs[b, e], bufs[b + 1, e], bufs[b + 2, e], bufs[b + 3, e], W, V, flags, touched, nt, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k)
            cur = 1 - cur
        C[C_SOPS] += sops
        C[C_STEPS] += 1
    C[C_INPUT_EVENTS] += pos - start
    return pos, 1 if pos < n_ev and ev_t[pos] < t_done else 0
