"""dynapcnn compiler and chip, beyond test_dynapcnn_chip.py: the remaining rule messages, the
Hall-violation message, a network that needs the matching, the report table, quantisation
figures, the profile union, the W2 workload and the readout state of a pooled last layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.convnet import ConvLayer, ConvNet
from runtime.chips.compile import CompileError
from runtime.chips.dynapcnn import DynapcnnChip, compile_convnet
from runtime.chips.dynapcnn.bench import bench_w2
from runtime.chips.dynapcnn.compile import layer_need
from runtime.chips.dynapcnn.reference import run_events
from runtime.chips.profile import ConvCoreProfile, CrossbarProfile, load_profile
from runtime.config import ConfigError
from sensors.blocks import SpikeBatch

DYNAPCNN_TOML = Path(__file__).parents[2] / "runtime" / "chips" / "profiles" / "dynapcnn.toml"


def profile() -> ConvCoreProfile:
    p = load_profile("dynapcnn")
    assert isinstance(p, ConvCoreProfile)
    return p


def layer(name: str, in_shape: tuple[int, int, int], f: int, k: int, stride: int = 1, pad: int = 0,
          pool: int = 1, threshold: float = 1.0, v_min: float = -1.0, seed: int = 0) -> ConvLayer:  # fmt: skip
    w = np.random.default_rng(seed).normal(0.0, 1.0, (f, in_shape[0], k, k))
    return ConvLayer(name, in_shape, w, (stride, stride), (pad, pad), threshold, v_min, pool)


def test_map_readout_channel_and_threshold_rules_reported_together() -> None:
    conv1 = layer("conv1", (2, 128, 128), 4, 3, stride=2, pad=3)  # (128 + 6 - 3) // 2 + 1 = 66
    conv2 = layer("conv2", conv1.out_shape, 2048, 1, stride=4, pool=4)  # 2048 channels, 17x17 -> 4x4
    conv3 = layer("conv3", conv2.out_shape, 3, 3, threshold=1e-9)  # 2x2 out; threshold rounds to 0
    with pytest.raises(CompileError) as info:
        compile_convnet(ConvNet((2, 128, 128), (conv1, conv2, conv3)), profile())
    problems = info.value.problems
    assert "layer conv1: output map 66x66 > 64x64" in problems
    assert "layer conv2: 2048 output channels > 1024" in problems
    assert "layer conv3: output map 2x2 cannot be read out (the last layer must output 1x1)" in problems
    assert any(
        p.startswith("layer conv3: threshold 1e-09 is 0 steps of ") and p.endswith("(must be >= 1)") for p in problems
    )
    assert "does not fit chip 'dynapcnn'" in str(info.value)


def test_kernel_memory_over_every_core() -> None:
    conv = layer("conv1", (2, 64, 64), 32, 3, stride=2, pad=1, pool=2)  # 32 x 16 x 16
    fc = layer("fc", conv.out_shape, 10, 16)  # 32 * 2^(8 + 4) = 131072 kernel entries
    with pytest.raises(CompileError) as info:
        compile_convnet(ConvNet((2, 64, 64), (conv, fc)), profile())
    assert info.value.problems == ["layer fc: kernel memory 131072 > 65536 on any free core"]


def test_too_many_layers_for_the_big_cores_names_the_group() -> None:
    # Four layers with 16 x 64 x 64 = 65536 neuron entries: only cores 0, 1, 2 hold one.
    layers = [layer("in", (2, 128, 128), 16, 3, stride=2, pad=1)]
    for name in ("b", "c", "d"):
        layers.append(layer(name, layers[-1].out_shape, 16, 3, pad=1, pool=4 if name == "d" else 1))
    layers.append(layer("fc", layers[-1].out_shape, 10, 16))
    with pytest.raises(CompileError) as info:
        compile_convnet(ConvNet((2, 128, 128), tuple(layers)), profile())
    assert info.value.problems == ["mapping: layers in, b, c, d fit only on cores 0, 1, 2 (4 layers for 3 cores)"]


def _first_fit(needs: list[tuple[int, int]], cores: list[tuple[int, int]]) -> list[int] | None:
    free = list(range(len(cores)))
    out = []
    for k, n in needs:
        fit = [j for j in free if k <= cores[j][0] and n <= cores[j][1]]
        if not fit:
            return None
        out.append(fit[0])
        free.remove(fit[0])
    return out


def test_a_network_that_first_fit_cannot_place_is_mapped() -> None:
    # A small first layer fits every core; first fit puts it on core 0 and then one of the
    # three 64Ki-neuron layers finds no core. The matching moves the small layer elsewhere.
    l1 = layer("small", (2, 128, 128), 2, 3, stride=2, pad=1)
    l2 = layer("big1", l1.out_shape, 16, 3, pad=1)
    l3 = layer("big2", l2.out_shape, 16, 3, pad=1)
    l4 = layer("big3", l3.out_shape, 16, 3, pad=1, pool=4)
    fc = layer("fc", l4.out_shape, 10, 16)
    net = ConvNet((2, 128, 128), (l1, l2, l3, l4, fc))
    p = profile()
    caps = [(int(c.kernel_memory.value), int(c.neuron_memory.value)) for c in p.cores]
    needs = [(layer_need(lay).kernel, layer_need(lay).neuron) for lay in net.layers]
    assert _first_fit(needs, caps) is None
    compiled = compile_convnet(net, p)
    assert len(set(compiled.cores)) == len(net.layers)
    for (k, n), core in zip(needs, compiled.cores, strict=True):
        assert k <= caps[core][0] and n <= caps[core][1]
    assert {compiled.cores[i] for i in (1, 2, 3)} == {0, 1, 2}


def test_report_table_lists_every_core() -> None:
    conv = layer("conv1", (2, 32, 32), 8, 3, stride=2, pad=1, pool=2)
    fc = layer("fc", conv.out_shape, 10, 8)
    compiled = compile_convnet(ConvNet((2, 32, 32), (conv, fc)), profile())
    lines = compiled.report.lines()
    assert lines[0].startswith("chip dynapcnn: 2 layers on 2 of 9 cores, step 1 us")
    rows = {r.layer: r for r in compiled.report.cores if r.layer}
    assert (rows["conv1"].kernel_used, rows["conv1"].neuron_used) == (2 * 16 * 8, 8 * 16 * 16)
    assert (rows["fc"].kernel_used, rows["fc"].neuron_used) == (8 * 64 * 16, 10)
    table = lines[2:11]
    assert len(table) == 9 and sum("(free)" in row for row in table) == 7
    core = compiled.cores[0]
    assert f"{2 * 16 * 8}/{int(profile().cores[core].kernel_memory.value)}" in table[core]
    summary = compiled.report.summary()
    assert summary["cores_used"] == 2 and summary["kernel_memory"] == 2 * 16 * 8 + 8 * 64 * 16


def test_quantisation_figures() -> None:
    conv = layer("conv1", (1, 8, 8), 4, 3, threshold=0.77, v_min=-np.inf, seed=3)
    fc = layer("fc", conv.out_shape, 3, 6, threshold=2.5, v_min=-1.3, seed=4)
    net = ConvNet((1, 8, 8), (conv, fc))
    compiled = compile_convnet(net, profile())
    for lay, chip, rep in zip(net.layers, compiled.layers, compiled.report.layers, strict=True):
        s = np.abs(lay.weight).max() / 127
        assert rep.scale == pytest.approx(s) and chip.scale == pytest.approx(s)
        assert np.abs(chip.weight).max() == 127
        err = chip.weight * s - lay.weight
        assert rep.rms_error_rel == pytest.approx(np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(lay.weight**2)))
        assert 0 < rep.max_error_steps <= 0.5
        assert chip.threshold == rep.threshold_steps == round(lay.threshold / s)
        assert rep.threshold_error_rel == pytest.approx((chip.threshold * s - lay.threshold) / lay.threshold)
    assert compiled.layers[0].v_min == -(2**15)
    assert compiled.layers[1].v_min == round(-1.3 / compiled.layers[1].scale)
    q = compiled.quantised_net()
    assert all(np.array_equal(ql.weight, np.round(ql.weight)) for ql in q.layers)
    assert [ql.threshold for ql in q.layers] == [float(cl.threshold) for cl in compiled.layers]


def test_profile_union_and_its_errors(tmp_path: Path) -> None:
    assert isinstance(load_profile("snp"), CrossbarProfile)
    p = profile()
    assert [int(c.neuron_memory.value) // 1024 for c in p.cores] == [64, 64, 64, 32, 32, 16, 16, 16, 16]
    assert [int(c.kernel_memory.value) // 1024 for c in p.cores] == [16, 16, 16, 32, 32, 64, 64, 16, 16]
    assert p.limits.strides.values == (1, 2, 4, 8) and p.limits.pools.values == (1, 2, 4)
    bad = tmp_path / "bad.toml"
    bad.write_text(DYNAPCNN_TOML.read_text().replace('kernel = "iaf_conv_cores"', 'kernel = "magic"'))
    with pytest.raises(ConfigError, match=r"bad\.toml: 1 problem.*\n  kernel: must be one of 'cuba_lif_crossbar'"):
        load_profile(str(bad))
    bad.write_text(DYNAPCNN_TOML.read_text().replace("values = [1, 2, 4, 8]", "values = []"))
    with pytest.raises(ConfigError, match=r"\n  limits\.strides\.values: "):
        load_profile(str(bad))


def test_w2_workload_fires_in_every_layer() -> None:
    out = bench_w2(seconds=1.0, rate_hz=200_000)
    assert out["input_events"] > 150_000 and out["sops"] > out["input_events"]
    assert all(rate > 0 for rate in out["layer_spike_rates_hz"])


def test_readout_state_of_a_pooled_last_layer() -> None:
    conv = layer("conv1", (2, 12, 12), 6, 3, stride=2, pad=1, threshold=2.0, v_min=-3.0, seed=5)  # 6x6x6
    last = layer("out", conv.out_shape, 4, 5, threshold=3.0, v_min=-2.0, pool=2, seed=6)  # 2x2 -> pool -> 1x1
    net = ConvNet((2, 12, 12), (conv, last))
    compiled = compile_convnet(net, profile(), step_us=10)
    rng = np.random.default_rng(7)
    t = np.sort(rng.integers(0, 50_000, 4000)).astype(np.int64)
    ch = rng.integers(0, compiled.n_in, 4000).astype(np.int32)
    chip = DynapcnnChip(compiled)
    res = chip.run(SpikeBatch("s", t, ch, compiled.n_in, 0, 50_000, 0))
    ref = run_events(compiled.quantised_net(), t, ch.astype(np.int64), 10)
    np.testing.assert_array_equal(res.spike_t_us, ref.out_t_us)
    np.testing.assert_array_equal(res.spike_ch, ref.out_ch)
    assert len(res.spike_ch) > 0
    expected = ref.states[1][:, :2, :2].reshape(4, -1).max(axis=1) * compiled.layers[1].scale
    np.testing.assert_allclose(res.stats.readout_v_max, expected)
    np.testing.assert_array_equal(res.stats.readout_v_sum, np.zeros(4))
    assert res.stats.ticks == 50_000 // 10
