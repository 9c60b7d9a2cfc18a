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

Speed notes (each measured on W2; at 1 us steps there is about one step per input event):

* a layer that receives a single event in a step (the usual case) adds and checks each
  position in one pass (``_scatter_check``): no touched list, the state is touched once;
* the 8 channels of a position are one vector operation (``simd``), channels padded to 8;
* helpers are inlined at numba level and compiled with ``error_model="numpy"`` (a helper
  that may raise takes a reference count, two atomics, on every array argument per call);
* layer parameters are loaded once per step into a tuple of scalars (numba gives LLVM no
  aliasing facts, so values read from ``LP`` are reloaded after every store to the state);
* nothing is allocated, and no array view is made, inside the step loop.
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
from runtime.chips.dynapcnn.simd import LANES, add8, add_check8, check8

C_INPUT_EVENTS = 0
C_SOPS = 1
C_UPDATES = 2
C_SPIKES = 3
C_STEPS = 4
C_N_OUT = 5
C_LAYER_SPIKES = 6


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
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
            for g in range(0, fp, LANES):
                add8(V, vb + g, W, wb + g, m)
    return m * n_r * n_c * q[P_F]


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _emit(V, vb, f_n, theta, vmin, qy, qx, bufs, b, n):  # type: ignore[no-untyped-def]
    """Spike pass over one position that crossed: reset by subtraction, floor, buffer the spikes.

    ``qy`` / ``qx`` are its pooled row and column (-1: cut off, the map is not a multiple of
    the pool): such spikes count but are not passed on. Returns (entries, spikes).
    """
    spikes = 0
    passes = qy >= 0 and qx >= 0
    for f in range(f_n):
        v = V[vb + f]
        if v >= theta:
            s = v // theta
            spikes += s
            V[vb + f] = max(v - s * theta, vmin)
            if passes:
                bufs[b, n] = f
                bufs[b + 1, n] = qy
                bufs[b + 2, n] = qx
                bufs[b + 3, n] = s
                n += 1
    return n, spikes


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
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
        vb = voff + p * fp
        # Vector pass first: saturate, apply the floor, note any crossing (a neuron at or
        # above threshold keeps its saturated value, above the floor, for the spike pass).
        hit = 0
        for g in range(0, fp, LANES):
            hit |= check8(V, vb + g, theta, vmin)
        if hit:
            n, s = _emit(V, vb, f_n, theta, vmin, pool_y[poff + p], pool_x[poff + p], bufs, b, n)
            spikes += s
    C[C_UPDATES] += nt[L] * f_n
    C[C_SPIKES] += spikes
    C[C_LAYER_SPIKES + L] += spikes
    nt[L] = 0
    return n


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _scatter_check(q, L, c, y, x, m, W, V, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k, pool_y, pool_x, bufs, b, C):  # type: ignore[no-untyped-def]
    """A step's only event into layer L: add and check each position at once.

    Exactly what ``_scatter`` then ``_check`` do (one event reaches each position once, in
    the same order), without the touched bookkeeping or a second pass over the state.
    Returns (entries written to the buffer at row ``b``, synaptic operations).
    """
    fp, k, wo, poff, voff, f_n = q[P_FP], q[P_K], q[P_WO], q[P_POFF], q[P_VOFF], q[P_F]
    theta, vmin = q[P_THETA], q[P_VMIN]
    wbase = q[P_WOFF] + c * k * k * fp
    ri = q[P_ROFF] + y
    ci = q[P_COFF] + x
    n_r = rows_n[ri]
    n_c = cols_n[ci]
    n = 0
    spikes = 0
    for i in range(n_r):
        oy = rows_o[ri, i]
        wrow = wbase + rows_k[ri, i] * k * fp
        for j in range(n_c):
            p = oy * wo + cols_o[ci, j]
            vb = voff + p * fp
            wb = wrow + cols_k[ci, j] * fp
            hit = 0
            for g in range(0, fp, LANES):
                hit |= add_check8(V, vb + g, W, wb + g, m, theta, vmin)
            if hit:
                n, s = _emit(V, vb, f_n, theta, vmin, pool_y[poff + p], pool_x[poff + p], bufs, b, n)
                spikes += s
    C[C_UPDATES] += n_r * n_c * f_n
    C[C_SPIKES] += spikes
    C[C_LAYER_SPIKES + L] += spikes
    return n, m * n_r * n_c * f_n


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _params(LP, L):  # type: ignore[no-untyped-def]
    """Row L of LP as a tuple of scalars, loaded once (no array view: views are reference counted)."""
    a = (LP[L, 0], LP[L, 1], LP[L, 2], LP[L, 3], LP[L, 4], LP[L, 5], LP[L, 6], LP[L, 7], LP[L, 8])
    return (*a, LP[L, 9], LP[L, 10], LP[L, 11], LP[L, 12], LP[L, 13], LP[L, 14], LP[L, 15], LP[L, 16], LP[L, 17])


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _decode(a, pow2, hw, w_in, sh_hw, sh_w):  # type: ignore[no-untyped-def]
    """Input address (c * h + y) * w + x -> (c, y, x); shifts when h * w and w are powers of two."""
    if pow2:
        return a >> sh_hw, (a & (hw - 1)) >> sh_w, a & (w_in - 1)
    c = a // hw
    y = (a - c * hw) // w_in
    return c, y, a - c * hw - y * w_in


@njit(nogil=True, cache=True, error_model="numpy")
def _shift_of(n):  # type: ignore[no-untyped-def]
    """log2(n) if n is a power of two, else -1 (addresses then decode by division)."""
    if n <= 0 or n & (n - 1) != 0:
        return -1
    s = 0
    while (1 << s) < n:
        s += 1
    return s


@njit(nogil=True, cache=True, error_model="numpy")
def run_conv(  # type: ignore[no-untyped-def]
    ev_t,
    ev_ch,
    pos,
    t_done,
    step_us,
    LP,
    W,
    V,
    flags,
    touched,
    pool_y,
    pool_x,
    rows_n,
    rows_o,
    rows_k,
    cols_n,
    cols_o,
    cols_k,
    bufs,
    out,
    C,
):
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
    q0 = _params(LP, 0)
    while pos < n_ev and ev_t[pos] < t_done:
        if C[C_N_OUT] + room > out.shape[1]:
            break
        k = ev_t[pos] if step_us == 1 else ev_t[pos] // step_us
        step_end = (k + 1) * step_us
        first = pos
        while pos < n_ev and ev_t[pos] < step_end:
            pos += 1
        # Layer 0 takes the step's events; then each layer passes its spikes on. A layer that
        # receives a single event (the usual case at 1 us steps) takes the fused path.
        if pos - first == 1:
            c, y, x = _decode(ev_ch[first], pow2, hw, w_in, sh_hw, sh_w)
            n, sops = _scatter_check(
                q0, 0, c, y, x, 1, W, V, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k, pool_y, pool_x, bufs, 0, C
            )
        else:
            sops = 0
            for e in range(first, pos):
                c, y, x = _decode(ev_ch[e], pow2, hw, w_in, sh_hw, sh_w)
                sops += _scatter(
                    q0, 0, c, y, x, 1, W, V, flags, touched, nt, rows_n, rows_o, rows_k, cols_n, cols_o, cols_k
                )
            n = _check(0, LP, V, flags, touched, nt, pool_y, pool_x, bufs, 0, C)
        cur = 0  # the buffer holding the entries of the layer just checked
        for L in range(1, n_layers):
            if n == 0:
                break  # nothing passed on, so nothing reaches the layers after it
            q = _params(LP, L)
            b_in = 4 * cur
            b_out = 4 - b_in
            if n == 1:
                n, s_ops = _scatter_check(
                    q,
                    L,
                    bufs[b_in, 0],
                    bufs[b_in + 1, 0],
                    bufs[b_in + 2, 0],
                    bufs[b_in + 3, 0],
                    W,
                    V,
                    rows_n,
                    rows_o,
                    rows_k,
                    cols_n,
                    cols_o,
                    cols_k,
                    pool_y,
                    pool_x,
                    bufs,
                    b_out,
                    C,
                )
                sops += s_ops
            else:
                for e in range(n):
                    sops += _scatter(
                        q,
                        L,
                        bufs[b_in, e],
                        bufs[b_in + 1, e],
                        bufs[b_in + 2, e],
                        bufs[b_in + 3, e],
                        W,
                        V,
                        flags,
                        touched,
                        nt,
                        rows_n,
                        rows_o,
                        rows_k,
                        cols_n,
                        cols_o,
                        cols_k,
                    )
                n = _check(L, LP, V, flags, touched, nt, pool_y, pool_x, bufs, b_out, C)
            cur = 1 - cur
        else:
            # The loop ran through the last layer: its entries are the chip's output.
            b_in = 4 * cur
            m = C[C_N_OUT]
            for e in range(n):
                out[0, m] = k * step_us
                out[1, m] = bufs[b_in, e]
                out[2, m] = bufs[b_in + 3, e]
                m += 1
            C[C_N_OUT] = m
        C[C_SOPS] += sops
        C[C_STEPS] += 1
    C[C_INPUT_EVENTS] += pos - start
    return pos, 1 if pos < n_ev and ev_t[pos] < t_done else 0
