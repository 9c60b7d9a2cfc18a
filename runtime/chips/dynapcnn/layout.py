"""Flat arrays the ``dynapcnn`` kernel runs on, built once from a ``CompiledConv``.

One array per role, all layers concatenated, with per-layer offsets in ``LP`` (int64,
``(n_layers, P_SIZE)``): numba dispatches cheaply on a handful of plain arrays.

* weights ``W`` int32, per layer ``[c][ky][kx][f]``, and state ``V`` int32, per layer
  ``[oy][ox][f]``: the ``f`` values one input event adds to one output position are
  contiguous. ``f`` is padded to a multiple of ``LANES`` (zero weights, so padded neurons
  stay at 0 and never spike) and the kernel handles each group of ``LANES`` channels as one
  vector operation (``simd``);
* fan-out tables per input row ``y``: the output rows ``oy`` it reaches and the kernel row
  ``ky`` that connects them (``oy * sy - py + ky = y``), padding and map edges already cut;
  the same per input column. An event's fan-out is their product, so no bounds test runs
  per synaptic operation;
* per conv output position, its row and column in the pooled map (-1: cut off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.chips.dynapcnn.compile import ChipLayer, CompiledConv
from runtime.chips.dynapcnn.simd import LANES

(P_C, P_H, P_W, P_F, P_FP, P_HO, P_WO, P_K, P_POOL, P_HP, P_WP, P_THETA, P_VMIN) = range(13)
(P_WOFF, P_VOFF, P_POFF, P_ROFF, P_COFF) = range(13, 18)
P_SIZE = 18

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Layout:
    LP: I64
    W: I32
    rows_n: I32
    rows_o: I32
    """(input rows of all layers, table width)."""
    rows_k: I32
    cols_n: I32
    cols_o: I32
    cols_k: I32
    pool_y: I32
    """Per conv output position: its row in the pooled map (-1: cut off by the pooling)."""
    pool_x: I32
    n_states: int
    """Size of the state array (neurons, padded to LANES per position)."""
    n_positions: int
    """Total conv output positions (size of the touched flags and lists)."""
    buffer: int
    """Most events one layer can pass on in one step (entries, each with a multiplicity)."""


def padded(f: int) -> int:
    return -(-f // LANES) * LANES


def fanout_table(size_in: int, size_out: int, k: int, stride: int, pad: int) -> tuple[I32, I32, I32]:
    """For each input index: how many outputs it reaches, which, and through which kernel index."""
    width = -(-k // stride)
    n = np.zeros(size_in, np.int32)
    out = np.zeros((size_in, width), np.int32)
    kern = np.zeros((size_in, width), np.int32)
    for i in range(size_in):
        for kk in range(k):
            num = i + pad - kk
            if num % stride == 0 and 0 <= num // stride < size_out:
                out[i, n[i]] = num // stride
                kern[i, n[i]] = kk
                n[i] += 1
    return n, out, kern


def _pooled_index(size: int, pool: int) -> I32:
    """Pooled index of each conv output row (or column); -1 past the last whole pooling window."""
    q = np.arange(size) // pool
    return np.where(q < size // pool, q, -1).astype(np.int32)


def _params(lay: ChipLayer) -> list[int]:
    c, h, w = lay.in_shape
    f, ho, wo = lay.conv_shape
    _, hp, wp = lay.out_shape
    return [c, h, w, f, padded(f), ho, wo, lay.kernel, lay.pool, hp, wp, lay.threshold, lay.v_min]


def _weights(lay: ChipLayer) -> I32:
    f = lay.weight.shape[0]
    w = np.zeros((*lay.weight.shape[1:], padded(f)), np.int32)
    w[..., :f] = lay.weight.transpose(1, 2, 3, 0)
    return w.ravel()


def _stack(tables: list[I32]) -> I32:
    """Stack per-layer (size, width) tables, padding every width to the widest."""
    width = max(t.shape[1] for t in tables)
    return np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1]))) for t in tables]).astype(np.int32)


def build_layout(compiled: CompiledConv) -> Layout:
    lp = np.zeros((len(compiled.layers), P_SIZE), np.int64)
    weights, rows, cols, pool_y, pool_x = [], [], [], [], []
    w_off = v_off = p_off = r_off = c_off = 0
    buffer = 1
    for i, lay in enumerate(compiled.layers):
        _, h, w = lay.in_shape
        f, ho, wo = lay.conv_shape
        (sy, sx), (py, px) = lay.stride, lay.padding
        rows.append(fanout_table(h, ho, lay.kernel, sy, py))
        cols.append(fanout_table(w, wo, lay.kernel, sx, px))
        lp[i, :P_WOFF] = _params(lay)
        lp[i, P_WOFF:] = [w_off, v_off, p_off, r_off, c_off]
        weights.append(_weights(lay))
        qy, qx = _pooled_index(ho, lay.pool), _pooled_index(wo, lay.pool)
        pool_y.append(np.repeat(qy, wo))
        pool_x.append(np.tile(qx, ho))
        w_off += weights[-1].size
        v_off += padded(f) * ho * wo
        p_off += ho * wo
        r_off += h
        c_off += w
        buffer = max(buffer, f * ho * wo)
    return Layout(
        LP=lp,
        W=np.concatenate(weights),
        rows_n=np.concatenate([r[0] for r in rows]),
        rows_o=_stack([r[1] for r in rows]),
        rows_k=_stack([r[2] for r in rows]),
        cols_n=np.concatenate([t[0] for t in cols]),
        cols_o=_stack([t[1] for t in cols]),
        cols_k=_stack([t[2] for t in cols]),
        pool_y=np.concatenate(pool_y).astype(np.int32),
        pool_x=np.concatenate(pool_x).astype(np.int32),
        n_states=v_off,
        n_positions=p_off,
        buffer=buffer,
    )
