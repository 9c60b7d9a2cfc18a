"""The numba kernel against the independent numpy reference of the same discrete equations.

Tolerance: both run in float64 from the same physical parameters. They differ in the order
of floating-point sums (dense matrix products against sequential adds), in how the factors
are derived (e.g. ``-expm1`` against ``1 - exp``, the feedback via ``V_mem`` against a power)
and in work skipping (exact by construction). Each step therefore differs by a few ulp, and
the dynamics between spikes are contracting, so traces agree to ~1e-12 relative; we allow
1e-8 relative (plus 1e-6 I0 absolute for currents at the I0 floor). A spike decided by a
margin smaller than that could flip; random inputs do not produce one, so spike times must
be equal.
"""

from __future__ import annotations

import numpy as np
import pytest
from dynapse2_util import D2, batch, pop
from netutil import poisson, random_network

from models.network import Network, Projection
from runtime.chips.dynapse2 import kernel as kn
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.compile import Dynapse2Compiled, compile_dynapse2
from runtime.chips.dynapse2.reference import run_reference

RTOL = 1e-8


def _kernel_trace(c: Dynapse2Compiled, t: np.ndarray, ch: np.ndarray, t_end_us: int) -> tuple:
    chip = Dynapse2Chip(c)
    n_ticks = t_end_us // c.tick_us
    trace = np.zeros((n_ticks, c.n_neurons))
    syn = np.zeros((n_ticks, 3, c.n_neurons))
    spikes_t: list[np.ndarray] = []
    spikes_n: list[np.ndarray] = []
    for k in range(n_ticks):
        lo, hi = np.searchsorted(t, [k * c.tick_us, (k + 1) * c.tick_us])
        r = chip.run(batch(t[lo:hi], ch[lo:hi], c.n_in, (k + 1) * c.tick_us, k * c.tick_us))
        trace[k] = chip.S[kn.S_MEM]
        syn[k] = chip.S[kn.S_AMPA : kn.S_GABA + 1]
        spk = np.flatnonzero(chip.Z[kn.Z_SPIKED] == 1)
        spikes_t.append(np.full(len(spk), (k + 1) * c.tick_us))
        spikes_n.append(spk)
        assert len(r.spike_t_us) == np.sum((spk >= c.out_lo) & (spk < c.out_hi)) * int(c.out_spiking)
    return trace, syn, np.concatenate(spikes_t), np.concatenate(spikes_n)


def _compare(c: Dynapse2Compiled, t: np.ndarray, ch: np.ndarray, t_end_us: int) -> int:
    ref = run_reference(c, t, ch, t_end_us)
    trace, syn, st, sn = _kernel_trace(c, t, ch, t_end_us)
    np.testing.assert_array_equal(st, ref.spike_t_us)
    np.testing.assert_array_equal(sn, ref.spike_n)
    io = c.consts.io_a
    np.testing.assert_allclose(trace, ref.i_mem, rtol=RTOL, atol=1e-6 * io)
    np.testing.assert_allclose(syn, ref.i_syn, rtol=RTOL, atol=1e-6 * io)
    return len(st)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_matches_reference_on_random_networks(seed: int) -> None:
    net = random_network(seed, hidden=30, n_out=4, spiking_out=True, rec_scale=0.4, out_scale=1.5)
    c = compile_dynapse2(net, D2, mismatch=True, seed=seed, refractory_s={"hidden": 0.003})
    t, ch = poisson(seed + 10, 16, 300_000, 4000)
    assert _compare(c, t, ch, 300_000) > 20


def test_kernel_matches_reference_with_delays_nmda_and_adaptation() -> None:
    rng = np.random.default_rng(9)
    net = Network(
        6,
        (pop("a", 12), pop("b", 5, v_leak=0.5)),
        (
            Projection("in", "input", "a", rng.normal(0.8, 0.8, (12, 6))),
            Projection("ab", "a", "b", rng.normal(0.5, 0.6, (5, 12))),
            Projection("ba", "b", "a", -np.abs(rng.normal(0, 0.5, (12, 5)))),
        ),
        output="b",
    )
    delays = {"in": rng.integers(0, 4, (12, 6)), "ab": rng.integers(0, 4, (5, 12))}
    c = compile_dynapse2(
        net, D2, mismatch=True, seed=4, delays=delays, nmda=["ab"], ahp_weight_a={"a": 5e-8, "b": 1e-7}
    )
    assert set(c.typ.tolist()) == {0, 1, 2} and len(set(c.dly.tolist())) == 4
    t, ch = poisson(3, 6, 250_000, 2500)
    assert _compare(c, t, ch, 250_000) > 20
