"""Fit a core's four base weights to float weights: each synapse stores a 4-bit mask.

A DYNAP-SE2 synapse does not store a number: its 4-bit mask selects which of its core's four
base weight currents ``Iw_0..Iw_3`` it sums. A core therefore offers at most 15 non-zero
weights, ``mask . Iw``, shared by all its synapses. Fitting alternates two exact steps, each
of which lowers the squared error (the clip at 0 aside):

1. assign every synapse the mask whose sum is nearest its target;
2. with the masks fixed, refit the four base weights by least squares (clipped at 0: a
   current cannot be negative).

It starts from binary-weighted bases (``Iw_k = max * 2^k / 15``), so weights on a uniform
grid of 15 levels are represented exactly after the first assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

N_BASES = 4
_MASKS = np.arange(1, 2**N_BASES, dtype=np.int64)
_BITS = ((_MASKS[:, None] >> np.arange(N_BASES)[None, :]) & 1).astype(np.float64)
"""(15, 4): row m-1 = the bases that mask m selects."""


@dataclass(frozen=True, slots=True)
class WeightFit:
    bases: F64
    """The core's base weights, shape (4,), same unit as the targets."""
    masks: I64
    """Per synapse, 1..15."""
    fitted: F64
    """Per synapse, ``masks . bases``."""
    rms_error_rel: float
    """``sqrt(sum (fitted - target)^2 / sum target^2)``; 0 when there is nothing to fit."""
    iterations: int


def mask_sums(bases: F64) -> F64:
    """The 15 non-zero weights a core with these base weights can store, indexed by mask - 1."""
    return _BITS @ bases


def fit_base_weights(targets: F64, *, max_iter: int = 50) -> WeightFit:
    """Fit 4 base weights and one mask per synapse to non-negative ``targets``."""
    t = np.asarray(targets, np.float64)
    if t.size == 0:
        return WeightFit(np.zeros(N_BASES), np.zeros(0, np.int64), np.zeros(0), 0.0, 0)
    if (t < 0).any() or not np.isfinite(t).all():
        msg = "weight targets must be finite and non-negative (the sign is the synapse type)"
        raise ValueError(msg)
    peak = float(t.max())
    if peak == 0.0:
        return WeightFit(np.zeros(N_BASES), np.ones(t.size, np.int64), np.zeros(t.size), 0.0, 0)
    x = t / peak  # fit in units of the largest weight: least squares stays well conditioned
    bases: F64 = np.power(2.0, np.arange(N_BASES, dtype=np.float64)) / 15.0
    masks = _assign(x, bases)
    it = 0
    while it < max_iter:
        it += 1
        bases = _refit(x, masks, bases)
        new = _assign(x, bases)
        if np.array_equal(new, masks):
            break
        masks = new
    fitted = _BITS[masks - 1] @ bases * peak
    err = float(np.sqrt(np.sum((fitted - t) ** 2) / np.sum(t**2)))
    return WeightFit(bases * peak, masks, fitted, err, it)


def _assign(x: F64, bases: F64) -> I64:
    sums = mask_sums(bases)
    order = np.argsort(sums, kind="stable")
    s = sums[order]
    # Nearest of the sorted sums: compare each target's two neighbours.
    hi = np.clip(np.searchsorted(s, x), 1, len(s) - 1)
    lo = hi - 1
    pick = np.where(np.abs(x - s[lo]) <= np.abs(s[hi] - x), lo, hi)
    return order[pick].astype(np.int64) + 1


def _refit(x: F64, masks: I64, bases: F64) -> F64:
    A = _BITS[masks - 1]
    used = A.any(axis=0)
    new = bases.copy()
    if used.any():
        sol, *_ = np.linalg.lstsq(A[:, used], x, rcond=None)
        new[used] = np.clip(sol, 0.0, None)
    return new
