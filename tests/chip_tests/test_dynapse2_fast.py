"""The dynapse2 kernel's fast paths: the SIMD feedback power and the exact jump over quiet stretches."""

from __future__ import annotations

import numpy as np
from dynapse2_util import D2, batch
from netutil import poisson, random_network

from runtime.chips.dynapse2 import kernel as kn
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.compile import compile_dynapse2
from runtime.chips.dynapse2.feedback import N_SCRATCH, feedback

IO_A = 5e-13
P = 0.705 / 1.705


def _power(y: np.ndarray, p: float = P) -> np.ndarray:
    src = y * IO_A
    out = np.empty_like(src)
    feedback(src, IO_A, p, out, np.empty((N_SCRATCH, len(src))))
    return out


def test_feedback_is_within_a_few_ulp_of_libm() -> None:
    # I_mem / I0 spans 1 (the floor) .. I_sat / I0 (~2e7); include the range-reduction edges.
    rng = np.random.default_rng(0)
    edges = [1.0, np.nextafter(1.0, 2.0), np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 0.0), 2.0, 0.75, 1e8]
    y = np.concatenate((edges, np.exp(rng.uniform(0.0, np.log(1e8), 50_000))))
    for p in (P, 0.3, 0.5):
        got = _power(y, p)
        libm = IO_A * np.exp(p * np.log(y * IO_A / IO_A))
        ulp = np.abs(got - libm) / np.spacing(libm)
        assert ulp.max() <= 4, (p, ulp.max())
    # At the floor the feedback is exactly I0, as through libm.
    assert _power(np.ones(3))[0] == IO_A


def _run_ticks(chip: Dynapse2Chip, t: np.ndarray, ch: np.ndarray, n_in: int, t_end_us: int, dense: bool) -> tuple:
    """Tick by tick; ``dense`` clears the quiet flag before each tick so that no tick is jumped over."""
    chip.reset()
    tick = chip.compiled.tick_us
    spikes, v_sum, updates = [], np.zeros(chip.n_outputs), 0
    for k in range(t_end_us // tick):
        if dense:
            chip.C[kn.C_QUIET] = 0
        lo, hi = np.searchsorted(t, [k * tick, (k + 1) * tick])
        r = chip.run(batch(t[lo:hi], ch[lo:hi], n_in, (k + 1) * tick, k * tick))
        spikes.append(np.flatnonzero(chip.Z[kn.Z_SPIKED]) + k * chip.compiled.n_neurons)
        v_sum += r.stats.readout_v_sum
        updates += r.stats.neuron_updates
    return np.concatenate(spikes), chip.S.copy(), chip.Z.copy(), v_sum, updates


def test_jumping_over_quiet_stretches_equals_stepping_through_them() -> None:
    # Bursts of input separated by long silences: the network settles on its fixed point in between
    # (bitwise, which takes a DC-driven membrane ~2 s of silence).
    net = random_network(3, hidden=30, n_out=4, rec_scale=0.3)
    c = compile_dynapse2(net, D2, mismatch=True, seed=3)
    t_end = 10_000_000
    bursts = [poisson(s, 16, 30_000, 400) for s in range(3)]
    t = np.concatenate([bt + 3_500_000 * i for i, (bt, _) in enumerate(bursts)])
    ch = np.concatenate([bc for _, bc in bursts])
    jumped = _run_ticks(Dynapse2Chip(c), t, ch, 16, t_end, dense=False)
    dense = _run_ticks(Dynapse2Chip(c), t, ch, 16, t_end, dense=True)
    ticks = t_end // c.tick_us
    assert dense[4] == ticks * c.n_neurons
    assert jumped[4] < 0.8 * dense[4]  # the jump did happen, over a good part of the silences
    assert len(dense[0]) > 20
    np.testing.assert_array_equal(jumped[0], dense[0])
    np.testing.assert_array_equal(jumped[1], dense[1])
    np.testing.assert_array_equal(jumped[2], dense[2])
    np.testing.assert_array_equal(jumped[3], dense[3])  # same per-tick sums in the same order
