"""The numba crossbar kernel against the plain numpy reference of the same equations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netutil import poisson, random_network, split

from runtime.chips.compile import compile_network
from runtime.chips.crossbar import CrossbarChip
from runtime.chips.profile import load_profile
from runtime.chips.reference import run_reference
from sensors.blocks import SpikeBatch

SNP = load_profile("snp")


def run_whole(chip: CrossbarChip, t: np.ndarray, ch: np.ndarray, t_end_us: int):
    chip.reset()
    return chip.run(SpikeBatch("test", t, ch, chip.n_inputs, 0, t_end_us, 0))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("spiking_out", [False, True])
def test_kernel_matches_reference(seed: int, spiking_out: bool) -> None:
    net = random_network(seed, spiking_out=spiking_out)
    compiled = compile_network(net, SNP)
    t, ch = poisson(seed, net.n_inputs, 1_500_000, 3000)
    res = run_whole(CrossbarChip(compiled), t, ch, 1_500_000)
    ref = run_reference(t, ch, 1_500_000, compiled.W, compiled.P, compiled.n_in, compiled.tick_us)
    hidden_ref = int(np.sum(ref.spike_n < compiled.out_lo))
    assert res.stats.spikes == len(ref.spike_t_us) > 50, "the test network must be active"
    assert hidden_ref > 0
    # Readout membrane summed over every tick: same within float32 rounding of the flush-to-rest.
    np.testing.assert_allclose(
        res.stats.readout_v_sum, ref.v[:, compiled.out_lo : compiled.out_hi].sum(0), rtol=1e-4, atol=1e-2
    )
    if spiking_out:
        out = ref.spike_n >= compiled.out_lo
        np.testing.assert_array_equal(res.spike_t_us, ref.spike_t_us[out])
        np.testing.assert_array_equal(res.spike_ch, ref.spike_n[out] - compiled.out_lo)


def test_counters_follow_neurobench_definitions() -> None:
    net = random_network(5)
    compiled = compile_network(net, SNP)
    t, ch = poisson(5, net.n_inputs, 500_000, 800)
    res = run_whole(CrossbarChip(compiled), t, ch, 500_000)
    ref = run_reference(t, ch, 500_000, compiled.W, compiled.P, compiled.n_in, compiled.tick_us)
    # Synaptic operations = every event (input or neuron spike) times the fan-out of its row.
    expected_sops = int(compiled.fanout[ch].sum() + compiled.fanout[compiled.n_in + ref.spike_n].sum())
    assert res.stats.sops == expected_sops
    assert res.stats.input_events == len(t)
    assert res.stats.ticks == 500


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 799_999), max_size=12, unique=True))
def test_any_chunking_gives_the_same_result(cuts: list[int]) -> None:
    """State carries across batches: chunk boundaries, aligned to ticks or not, change nothing."""
    net = random_network(7, spiking_out=True)
    compiled = compile_network(net, SNP)
    t, ch = poisson(7, net.n_inputs, 800_000, 1500)
    whole = run_whole(CrossbarChip(compiled), t, ch, 800_000)
    chip = CrossbarChip(compiled)
    v_sum = np.zeros(compiled.out_hi - compiled.out_lo)
    v_max = np.full(compiled.out_hi - compiled.out_lo, -np.inf)
    spikes_t: list[np.ndarray] = []
    sops = 0
    for batch in split(t, ch, net.n_inputs, [0, *sorted(cuts), 800_000]):
        r = chip.run(batch)
        v_sum += r.stats.readout_v_sum
        v_max = np.maximum(v_max, r.stats.readout_v_max)
        spikes_t.append(r.spike_t_us)
        sops += r.stats.sops
    np.testing.assert_allclose(v_sum, whole.stats.readout_v_sum, rtol=1e-9)
    np.testing.assert_array_equal(v_max, whole.stats.readout_v_max)
    np.testing.assert_array_equal(np.concatenate(spikes_t), whole.spike_t_us)
    assert sops == whole.stats.sops


def test_silence_costs_no_neuron_updates() -> None:
    """Event-driven: once the network is at rest, ticks without input are skipped."""
    net = random_network(3)
    compiled = compile_network(net, SNP)
    chip = CrossbarChip(compiled)
    t = np.array([1000, 2000, 3000], np.int64)
    ch = np.array([0, 1, 2], np.int32)
    res = chip.run(SpikeBatch("s", t, ch, net.n_inputs, 0, 10_000_000, 0))
    assert res.stats.ticks == 10_000
    # Activity dies out within a few hundred ms (tau 5/20 ms); 10 s of ticks are not all computed.
    assert res.stats.neuron_updates < 1000 * compiled.P.shape[1]
    assert res.stats.neuron_updates >= 3 * compiled.P.shape[1]


def test_spike_record_buffer_refills_without_loss() -> None:
    """A long batch with a busy spiking readout overflows the record buffer; nothing is lost."""
    net = random_network(11, spiking_out=True, out_scale=2.0)
    compiled = compile_network(net, SNP)
    t, ch = poisson(11, net.n_inputs, 5_000_000, 20_000)
    res = run_whole(CrossbarChip(compiled), t, ch, 5_000_000)
    ref = run_reference(t, ch, 5_000_000, compiled.W, compiled.P, compiled.n_in, compiled.tick_us)
    out = ref.spike_n >= compiled.out_lo
    assert out.sum() > 64 * (compiled.out_hi - compiled.out_lo), "must exceed one buffer fill"
    np.testing.assert_array_equal(res.spike_t_us, ref.spike_t_us[out])


def test_channel_outside_inputs_is_an_error_naming_it() -> None:
    compiled = compile_network(random_network(0), SNP)
    chip = CrossbarChip(compiled)
    bad = SpikeBatch("mic", np.array([10, 20], np.int64), np.array([3, 99], np.int32), 100, 0, 1000, 0)
    with pytest.raises(ValueError, match=r"mic: spike at t=20 us has channel 99, the chip has inputs 0\.\.15"):
        chip.run(bad)


def test_energy_is_static_plus_per_operation() -> None:
    compiled = compile_network(random_network(2), SNP)
    t, ch = poisson(2, 16, 1_000_000, 2000)
    res = run_whole(CrossbarChip(compiled), t, ch, 1_000_000)
    e = SNP.energy
    static_uj = e.static_mw.value * 1.0 * 1e3  # 1 s of stream time
    expected = static_uj + res.stats.sops * e.sop_pj.value * 1e-6 + res.stats.neuron_updates * e.update_pj.value * 1e-6
    assert res.stats.static_energy_uj == pytest.approx(static_uj)
    assert res.stats.energy_uj == pytest.approx(expected)
    assert res.stats.energy_uj > static_uj
