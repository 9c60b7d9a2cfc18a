"""The membrane's exponential feedback ``I_fb = I0 (I / I0)^p`` over a whole core at once (numba).

``I0 exp(p ln(I / I0))`` through libm costs ~15 ns per neuron (two scalar calls that do not
vectorise), more than the whole rest of the neuron update. ``feedback`` computes the same power
with SIMD-friendly integer and float loops: ``y = I / I0 = m 2^e`` with ``m`` in
``[1/sqrt 2, sqrt 2)`` taken from the bits, ``ln m = 2 atanh((m - 1)/(m + 1))`` by its series
(9 terms, truncation < 1e-17), ``t = p (e ln 2 + ln m)``, ``e^t = 2^k e^r`` with ``|r| <= ln(2)/2`` by a
degree-13 Taylor polynomial (truncation < 1e-17) and ``2^k`` added to the exponent bits.
Every step is plain IEEE arithmetic (no fastmath, no FMA contraction), so results do not depend
on the CPU. Accuracy: a few ulp of the exact power (``y`` up to ``I_sat / I0`` ~ 2e7 gives
``t`` up to ~7, and ``e^t`` inherits ``ulp(t)`` as relative error, as it does through libm);
``tests/chip_tests/test_dynapse2_fast.py`` bounds it against libm.

Valid for finite ``y >= 2^-1000`` (the kernel's ``y >= 1``) and ``p y`` such that
``|t| < 700``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_E_MAGIC = 4503601774854144.0  # 2^52 + 2^31: its low mantissa bits hold an integer offset by 2^31
_E_MAGIC_BITS = 0x4330000080000000
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer held in the low bits
_SHIFTER_BITS = 0x4338000000000000
_LN2_HI = 0.6931471803691238  # 0x3fe62e42fee00000: few enough bits that k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634
# 2 / (2 j + 1), j = 1..9: ln m = s (2 + z P(z)), s = (m - 1)/(m + 1), z = s^2 <= 0.0295; the
# terms left out sum to < 2 |s| z^10 / 21 < 1e-17, a tenth of an ulp of t.
_L1, _L2, _L3, _L4 = 2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0
_L5, _L6, _L7, _L8 = 2.0 / 11.0, 2.0 / 13.0, 2.0 / 15.0, 2.0 / 17.0
_L9 = 2.0 / 19.0
# 1 / j!, j = 2..13
_E2, _E3, _E4, _E5 = 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0
_E6, _E7, _E8, _E9 = 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0, 1.0 / 362880.0
_E10, _E11, _E12, _E13 = 1.0 / 3628800.0, 1.0 / 39916800.0, 1.0 / 479001600.0, 1.0 / 6227020800.0

N_SCRATCH = 4
"""Rows of the float64 scratch array ``feedback`` needs, shape ``(N_SCRATCH, n)``."""


# error_model="numpy": no zero-division checks (m + 1 > 1), which would keep the loops scalar.
@njit(nogil=True, cache=True, error_model="numpy")
def feedback(src, io, p, out, W):  # type: ignore[no-untyped-def]
    """``out[j] = io * (src[j] / io) ** p`` for every ``j``; ``W`` is scratch of shape ``(N_SCRATCH, n)``."""
    n = src.shape[0]
    f0, f1, f2, f3 = W[0], W[1], W[2], W[3]
    i0, i1, i2, i3 = f0.view(np.int64), f1.view(np.int64), f2.view(np.int64), f3.view(np.int64)
    for j in range(n):
        f0[j] = src[j] / io
    for j in range(n):
        b = i0[j]
        e = (b - _SQRT_HALF_BITS) >> 52
        i1[j] = b - (e << 52)  # mantissa m in [1/sqrt 2, sqrt 2)
        i2[j] = e + _E_MAGIC_BITS  # e as a float, without a (non-SIMD) int64 -> float64 conversion
    for j in range(n):
        m = f1[j]
        e = f2[j] - _E_MAGIC
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        # Estrin's scheme: short dependency chains, so consecutive vectors overlap (Horner is 3x slower).
        z2 = z * z
        z4 = z2 * z2
        q = (_L1 + z * _L2) + z2 * (_L3 + z * _L4) + z4 * ((_L5 + z * _L6) + z2 * (_L7 + z * _L8))
        q += (z4 * z4) * _L9
        t = p * (e * _LN2_HI + (e * _LN2_LO + s * (2.0 + z * q)))
        kd = t * _INV_LN2 + _SHIFTER
        k = kd - _SHIFTER
        r = (t - k * _LN2_HI) - k * _LN2_LO
        r2 = r * r
        r4 = r2 * r2
        lo = ((_E2 + r * _E3) + r2 * (_E4 + r * _E5)) + r4 * ((_E6 + r * _E7) + r2 * (_E8 + r * _E9))
        hi = (_E10 + r * _E11) + r2 * (_E12 + r * _E13)
        f0[j] = 1.0 + (r + r2 * (lo + (r4 * r4) * hi))
        f3[j] = kd
    for j in range(n):
        i0[j] += (i3[j] - _SHIFTER_BITS) << 52
    for j in range(n):
        out[j] = io * f0[j]
