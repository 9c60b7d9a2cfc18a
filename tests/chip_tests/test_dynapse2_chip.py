"""dynapse2 chip behaviour: batch splits, mismatch, delays, adaptation, refractory period, counters."""

from __future__ import annotations

import numpy as np
import pytest
from dynapse2_util import D2, batch, driven, pop, silence, spike_count
from netutil import poisson, random_network, split

from models.network import Network, Projection
from runtime.chips.dynapse2.chip import Dynapse2Chip, compare_mismatch
from runtime.chips.dynapse2.compile import compile_dynapse2


def _run_split(chip: Dynapse2Chip, t: np.ndarray, ch: np.ndarray, n_in: int, edges: list[int]) -> tuple:
    chip.reset()
    parts = [chip.run(b) for b in split(t, ch, n_in, edges)]
    spikes_t = np.concatenate([p.spike_t_us for p in parts])
    spikes_n = np.concatenate([p.spike_ch for p in parts])
    totals = {f: sum(getattr(p.stats, f) for p in parts) for f in ("sops", "spikes", "ticks", "input_events")}
    v_sum = np.sum([p.stats.readout_v_sum for p in parts], axis=0)
    return spikes_t, spikes_n, totals, v_sum


def test_results_do_not_depend_on_batch_boundaries() -> None:
    net = random_network(2, spiking_out=True, out_scale=1.5)
    chip = Dynapse2Chip(compile_dynapse2(net, D2, mismatch=True, seed=3))
    t, ch = poisson(7, 16, 600_000, 6000)
    whole = _run_split(chip, t, ch, 16, [0, 600_000])
    assert whole[2]["spikes"] > 50 and len(whole[0]) > 0
    # Boundaries inside ticks, on tick edges, and a run of empty batches.
    pieces = _run_split(chip, t, ch, 16, [0, 999, 1000, 1001, 57_500, 57_501, 300_000, 300_000, 420_250, 600_000])
    np.testing.assert_array_equal(whole[0], pieces[0])
    np.testing.assert_array_equal(whole[1], pieces[1])
    assert whole[2] == pieces[2]
    np.testing.assert_allclose(whole[3], pieces[3], rtol=1e-12)


def test_mismatch_is_reproducible_and_switchable() -> None:
    net = random_network(4)
    ideal = compile_dynapse2(net, D2, mismatch=False, seed=1)
    again = compile_dynapse2(net, D2, mismatch=False, seed=99)
    a = compile_dynapse2(net, D2, mismatch=True, seed=1)
    b = compile_dynapse2(net, D2, mismatch=True, seed=1)
    c = compile_dynapse2(net, D2, mismatch=True, seed=2)
    np.testing.assert_array_equal(ideal.KP, again.KP)
    np.testing.assert_array_equal(ideal.w, again.w)
    np.testing.assert_array_equal(a.KP, b.KP)
    np.testing.assert_array_equal(a.w, b.w)
    assert not np.array_equal(a.w, c.w) and not np.array_equal(a.KP, ideal.KP)
    # Relative spread of the synapse weights and of a bias current is the profile's sigma (0.1).
    ratio = a.w / ideal.w
    assert np.std(ratio) == pytest.approx(0.1, rel=0.15)
    spread = a.phys["itau_mem"] / ideal.phys["itau_mem"]
    assert np.std(spread) == pytest.approx(0.1, rel=0.4) and np.all(ideal.phys["itau_mem"] == ideal.phys["itau_mem"][0])


def test_mismatch_comparison_runs_both_chips() -> None:
    net = random_network(5, spiking_out=True, out_scale=1.5)
    t, ch = poisson(8, 16, 400_000, 4000)
    cmp = compare_mismatch(net, D2, batch(t, ch, 16, 400_000), seed=11)
    assert cmp.spikes_ideal > 0 and cmp.spikes_mismatch > 0
    assert cmp.spikes_ideal != cmp.spikes_mismatch
    assert len(cmp.output_spikes_ideal) == 5 and len(cmp.lines()) == 3


def test_delay_class_shifts_the_response() -> None:
    # One strong input spike at t=0 makes the neuron fire; class d delays that by the class's ticks.
    firsts = []
    for cls in range(4):
        net = driven(0.0, weight=10.0)
        chip = Dynapse2Chip(compile_dynapse2(net, D2, mismatch=False, delays={"in": np.full((1, 1), cls)}))
        r = chip.run(batch(np.zeros(3), np.zeros(3), 1, 100_000))
        assert len(r.spike_t_us) >= 1
        firsts.append(int(r.spike_t_us[0]))
    shifts = [f - firsts[0] for f in firsts]
    assert shifts == list(D2.limits.delay_classes_us.values)


def test_adaptation_lowers_the_rate_under_constant_drive() -> None:
    net = driven(3.0)
    plain = spike_count(net, silence(1_000_000), mismatch=False)
    adapted = spike_count(net, silence(1_000_000), mismatch=False, ahp_weight_a={"p": 2e-7})
    assert plain > 20
    assert adapted < 0.7 * plain


def test_refractory_period_bounds_the_rate() -> None:
    net = driven(50.0)
    for t_ref_s in (0.0, 0.005, 0.02):
        n = spike_count(net, silence(1_000_000), mismatch=False, refractory_s={"p": t_ref_s})
        # At most one spike per refractory period plus the spike tick itself.
        bound = 1.0 / (t_ref_s + 1e-3)
        assert n <= bound + 1
        if t_ref_s:
            assert n >= 0.5 * bound


def test_counters_energy_and_hops() -> None:
    # h spans chips 0 and 1 (1100 > 1024 neurons); the inputs are too weak to make anything fire,
    # so every count is known: each input event reaches 1100 synapses and crosses one hop to chip 1.
    net = Network(
        2,
        (pop("h", 1100), pop("out", 2, v_th=2.0)),
        (
            Projection("in", "input", "h", np.ones((1100, 2)) * 0.05),
            Projection("ho", "h", "out", np.pad(np.ones((2, 50)) * 0.01, ((0, 0), (1050, 0)))),
        ),
        output="out",
    )
    c = compile_dynapse2(net, D2, mismatch=False)
    assert c.n_chips == 2
    chip = Dynapse2Chip(c)
    r = chip.run(batch(np.array([0, 500, 20_000]), np.array([0, 1, 0]), 2, 100_000))
    s = r.stats
    assert (s.input_events, s.ticks, s.spikes, s.sops, chip.routed_hops) == (3, 100, 0, 3 * 1100, 3)
    e = D2.energy
    static = e.static_mw.value * 2 * 100_000 * 1e-3
    dynamic = (s.sops * e.sop_pj.value + 3 * D2.routing.hop_pj.value) * 1e-6
    assert s.static_energy_uj == pytest.approx(static)
    assert s.energy_uj == pytest.approx(static + dynamic)
    assert s.readout_v_max.shape == (2,) and np.all(s.readout_v_sum >= 0)
    with pytest.raises(ValueError, match=r"channel 7, the chip has inputs 0\.\.1"):
        chip.run(batch(np.array([100_500]), np.array([7]), 2, 200_000, 100_000))
