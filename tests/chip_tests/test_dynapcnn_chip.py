"""The dynapcnn emulator: event-driven kernel against the dense numpy reference, compile
checks (all violations at once), core matching, quantisation, clock and energy."""

from __future__ import annotations

import numpy as np
import pytest

from models.convnet import ConvLayer, ConvNet
from runtime.chips.base import ChipResult
from runtime.chips.compile import CompileError
from runtime.chips.dynapcnn import DynapcnnChip, compile_convnet
from runtime.chips.dynapcnn.mapping import Capacity, Need, assign_cores, kernel_memory, neuron_memory
from runtime.chips.dynapcnn.reference import run_events
from runtime.chips.profile import ConvCoreProfile, load_profile
from runtime.readout import Readout, ReadoutSettings
from sensors.blocks import SpikeBatch


def profile() -> ConvCoreProfile:
    p = load_profile("dynapcnn")
    assert isinstance(p, ConvCoreProfile)
    return p


def int_layer(rng: np.random.Generator, name: str, in_shape, f: int, k: int, stride: int, pad: int, pool: int,
              theta: int, v_min: float) -> ConvLayer:  # fmt: skip
    w = rng.integers(-60, 100, (f, in_shape[0], k, k)).astype(np.float64)
    w.flat[0] = 127  # max |w| = 127: quantisation is the identity
    return ConvLayer(name, in_shape, w, (stride, stride), (pad, pad), float(theta), v_min, pool)


def random_net(seed: int) -> ConvNet:
    rng = np.random.default_rng(seed)
    l1 = int_layer(rng, "c1", (2, 17, 17), 4, 3, 1 + seed % 2, 1, 2, 150, -300.0)  # 17 or 9: not a multiple of 2
    l2 = int_layer(rng, "c2", l1.out_shape, 6, 3, 1, seed % 2, 1 + (seed % 3 == 0), 200, -np.inf)
    c, h, w = l2.out_shape
    l3 = int_layer(rng, "fc", (c, h, w), 5, h, 1, 0, 1, 250, -500.0) if h == w else None
    layers = (l1, l2) if l3 is None else (l1, l2, l3)
    return ConvNet((2, 17, 17), layers)


def random_events(seed: int, n: int, n_in: int, span_us: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    t = np.sort(rng.integers(0, span_us, n)).astype(np.int64)
    # Bursts: many events share a timestamp, as in real recordings.
    t[rng.random(n) < 0.3] //= 50
    t.sort()
    return t, rng.integers(0, n_in, n).astype(np.int32)


def run_chip(chip: DynapcnnChip, t: np.ndarray, ch: np.ndarray, n_in: int, edges: list[int]) -> list[ChipResult]:
    out = []
    idx = np.searchsorted(t, edges)
    for k in range(len(edges) - 1):
        b = SpikeBatch("s", t[idx[k] : idx[k + 1]], ch[idx[k] : idx[k + 1]], n_in, edges[k], edges[k + 1], 0)
        out.append(chip.run(b))
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("step_us", [1, 250, 5000])
def test_kernel_is_bit_exact_with_the_dense_reference(seed: int, step_us: int) -> None:
    net = random_net(seed)
    compiled = compile_convnet(net, profile(), step_us=step_us)
    qnet = compiled.quantised_net()
    for a, b in zip(qnet.layers, net.layers, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
    span = 100_000
    t, ch = random_events(seed, 3000, compiled.n_in, span)
    ref = run_events(qnet, t, ch.astype(np.int64), step_us)
    chip = DynapcnnChip(compiled)
    # Uneven batch edges, some cutting steps in two: results must not depend on them.
    edges = sorted({0, span, *np.random.default_rng(seed).integers(1, span, 7).tolist()})
    results = run_chip(chip, t, ch, compiled.n_in, edges)
    got_t = np.concatenate([r.spike_t_us for r in results])
    got_ch = np.concatenate([r.spike_ch for r in results])
    np.testing.assert_array_equal(got_t, ref.out_t_us)
    np.testing.assert_array_equal(got_ch, ref.out_ch)
    for i in range(len(net.layers)):
        np.testing.assert_array_equal(chip.layer_state(i), ref.states[i])
        assert chip.layer_spikes[i] == int(ref.layer_spikes[i].sum())
    assert sum(r.stats.sops for r in results) == ref.sops
    assert sum(r.stats.input_events for r in results) == len(t)
    assert sum(chip.layer_spikes) > 0  # the test exercises firing, not only silence


def test_every_violation_is_reported_at_once() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (8, 2, 3, 3))
    bad = ConvLayer("conv1", (2, 140, 140), w, (3, 3), (8, 8), 1.0, -1.0, pool=3)
    c, h, wd = bad.out_shape
    fc = ConvLayer("fc", (c, h, wd), rng.normal(0, 1, (20, c, h, wd)), (1, 1), (0, 0), 1.0, -1.0)
    with pytest.raises(CompileError) as info:
        compile_convnet(ConvNet((2, 140, 140), (bad, fc)), profile())
    text = "\n".join(info.value.problems)
    for expected in (
        "layer conv1: stride 3 not in 1/2/4/8",
        "layer conv1: padding 8 > 7",
        "layer conv1: pool 3 not in 1/2/4",
        "input: 2x140x140 > 2x128x128",
        f"layer fc: kernel {h}x{wd} > 16x16",
        "readout: 20 classes > 15",
    ):
        assert expected in text, text
    assert len(info.value.problems) >= 6


def test_too_many_layers_and_non_square_kernels() -> None:
    rng = np.random.default_rng(1)
    layers = []
    shape = (1, 12, 12)
    for i in range(10):
        k = (3, 1) if i == 0 else (1, 1)
        lay = ConvLayer(f"l{i}", shape, rng.normal(0, 1, (2, shape[0], *k)), (1, 1), (0, 0), 1.0, -1.0)
        layers.append(lay)
        shape = lay.out_shape
    with pytest.raises(CompileError) as info:
        compile_convnet(ConvNet((1, 12, 12), tuple(layers)), profile())
    text = "\n".join(info.value.problems)
    assert "network: 10 layers > 9 cores" in text and "layer l0: kernel 3x1 is not square" in text


def test_memory_formulas() -> None:
    assert kernel_memory(2, 3, 3, 8) == 2 * 16 * 8
    assert kernel_memory(16, 16, 16, 10) == 16 * 256 * 16
    assert neuron_memory(8, 64, 64) == 8 * 64 * 64
    assert neuron_memory(10, 17, 17) == 10 * 32 * 32
    assert neuron_memory(3, 1, 1) == 3


def test_matching_finds_a_mapping_where_first_fit_fails() -> None:
    # Layer 0 fits both cores; taking core 0 first (first fit) leaves layer 1, which fits
    # only core 0, without a core. The matching moves layer 0 to core 1.
    cores = [Capacity(kernel=100, neuron=100), Capacity(kernel=100, neuron=50)]
    needs = [Need(kernel=10, neuron=10), Need(kernel=10, neuron=80)]
    m = assign_cores(needs, cores)
    assert m.complete and m.core == (1, 0)
    impossible = assign_cores([Need(10, 80), Need(10, 80)], cores)
    assert not impossible.complete and impossible.short


def test_neuron_memory_over_every_core_names_layer_and_numbers() -> None:
    rng = np.random.default_rng(2)
    big = ConvLayer("conv2", (2, 64, 64), rng.normal(0, 1, (32, 2, 3, 3)), (1, 1), (1, 1), 1.0, -1.0, pool=4)
    c, h, w = big.out_shape
    fc = ConvLayer("fc", (c, h, w), rng.normal(0, 1, (10, c, h, w)), (1, 1), (0, 0), 1.0, -1.0)
    with pytest.raises(CompileError, match=r"layer conv2: neuron memory 131072 > 65536 on any free core"):
        compile_convnet(ConvNet((2, 64, 64), (big, fc)), profile())


def test_quantisation_scale_threshold_and_report() -> None:
    w = np.zeros((3, 2, 3, 3))
    w[0, 0, 0, 0], w[1, 1, 1, 1], w[2, 0, 2, 2] = 0.5, -0.25, 0.1234
    lay = ConvLayer("fc", (2, 3, 3), w, (1, 1), (0, 0), 0.3, -1.0)
    compiled = compile_convnet(ConvNet((2, 3, 3), (lay,)), profile())
    cl = compiled.layers[0]
    assert cl.scale == pytest.approx(0.5 / 127)
    assert cl.weight[0, 0, 0, 0] == 127 and cl.weight[1, 1, 1, 1] == round(-0.25 * 254)
    assert cl.threshold == round(0.3 / cl.scale) and cl.v_min == round(-1.0 / cl.scale)
    lines = "\n".join(compiled.report.lines())
    assert "fc" in lines and "threshold" in lines and "rms error" in lines


def test_clock_advances_on_empty_batches_and_energy_adds_up() -> None:
    compiled = compile_convnet(random_net(0), profile())
    chip = DynapcnnChip(compiled)
    e = profile().energy
    r = chip.run(SpikeBatch("s", np.empty(0, np.int64), np.empty(0, np.int32), compiled.n_in, 0, 20_000, 0))
    assert (r.stats.t_start_us, r.stats.t_end_us, r.stats.input_events, r.stats.sops) == (0, 20_000, 0, 0)
    assert r.stats.energy_uj == pytest.approx(e.static_mw.value * 20_000 * 1e-3)
    t, ch = random_events(0, 500, compiled.n_in, 10_000)
    r = chip.run(SpikeBatch("s", t + 20_000, ch, compiled.n_in, 20_000, 30_000, 0))
    expected = e.static_mw.value * 10_000 * 1e-3 + r.stats.sops * e.sop_pj.value * 1e-6
    expected += r.stats.neuron_updates * e.update_pj.value * 1e-6 + r.stats.spikes * e.spike_pj.value * 1e-6
    assert r.stats.energy_uj == pytest.approx(expected)
    assert r.stats.latency_us == pytest.approx(len(compiled.layers) * profile().timing.layer_latency_us.value)
    chip.reset()
    assert chip.layer_spikes == [0] * len(compiled.layers)
    assert all(not chip.layer_state(i).any() for i in range(len(compiled.layers)))


def test_bad_channel_is_named() -> None:
    compiled = compile_convnet(random_net(0), profile())
    chip = DynapcnnChip(compiled)
    batch = SpikeBatch("cam", np.array([5], np.int64), np.array([compiled.n_in], np.int32), 0, 0, 10, 0)
    with pytest.raises(ValueError, match=rf"cam: event at t=5 us has channel {compiled.n_in}"):
        chip.run(batch)


def test_spike_count_readout_decides_from_chip_results() -> None:
    net = random_net(2)
    compiled = compile_convnet(net, profile())
    chip = DynapcnnChip(compiled)
    t, ch = random_events(2, 4000, compiled.n_in, 100_000)
    results = run_chip(chip, t, ch, compiled.n_in, list(range(0, 100_001, 20_000)))
    settings = ReadoutSettings(mode="stream", kind="spike_count", temperature=1.0, n_inputs=compiled.n_in)
    readout = Readout(settings, compiled.n_out)
    for r in results:
        assert readout.push("s", r, 0) == []
    (decision,) = readout.end_of_stream("s", None)
    counts = np.bincount(np.concatenate([r.spike_ch for r in results]), minlength=compiled.n_out)
    assert counts.sum() > 0 and decision.label_index == int(np.argmax(counts))
