"""dynapse2 profile, compile checks (all at once, with names and numbers), weight fit, placement."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from dynapse2_util import D2, pop

from models.network import Network, Projection
from runtime.chips.compile import CompileError
from runtime.chips.dynapse2.compile import compile_dynapse2
from runtime.chips.dynapse2.fit import fit_base_weights, mask_sums
from runtime.chips.profile import AdexCoreProfile, builtin_profiles, load_profile
from runtime.config import ConfigError

TOML = Path(__file__).parents[2] / "runtime" / "chips" / "profiles" / "dynapse2.toml"


def test_profile_loads_with_provenance() -> None:
    p = load_profile("dynapse2")
    assert isinstance(p, AdexCoreProfile) and "dynapse2" in builtin_profiles()
    lim = p.limits
    assert (lim.chips.value, lim.cores_per_chip.value, lim.neurons_per_core.value) == (4, 4, 256)
    assert (lim.synapses_per_neuron.value, lim.destinations_per_neuron.value, lim.base_weights.value) == (64, 4, 4)
    assert len(lim.delay_classes_us.values) == 4
    assert p.energy.static_mw.value == 5.0 and p.energy.static_mw.source == "seed datasheet"
    assert p.mismatch.bias_sigma.value == pytest.approx(0.3 / 3)


def test_bad_profile_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TOML.read_text().replace("[routing]\n", "[routing]\nspeed = 3\n"))
    with pytest.raises(ConfigError, match=r"bad\.toml: 1 problem.*\n  routing\.speed: Extra inputs"):
        load_profile(str(bad))


def test_every_violation_reported_at_once() -> None:
    rng = np.random.default_rng(0)
    big = pop("big", 1100)
    fast = pop("fast", 3, tau_mem_s=1e-4)
    net = Network(
        1500,
        (big, fast),
        (
            Projection("fc_in", "input", "big", rng.normal(size=(1100, 1500)) * (rng.random((1100, 1500)) < 0.05)),
            Projection("fc_fast", "big", "fast", np.ones((3, 1100))),
        ),
        output="fast",
    )
    with pytest.raises(CompileError) as info:
        compile_dynapse2(net, D2)
    problems = info.value.problems
    assert "input: 1500 channels > 1024 (limit 'inputs', assumed)" in problems
    assert any(re.fullmatch(r"population fast: tau_mem_s = 0\.0001 outside \[0\.002, 0\.2\] .*", p) for p in problems)
    assert any(
        re.fullmatch(r"population big neuron \d+: \d+ synapses > 64 \(limit 'synapses_per_neuron'.*", p)
        for p in problems
    )
    assert any(p.startswith("population fast neuron 0: 1100 synapses > 64") for p in problems)
    assert any(p.startswith("population big: ... and ") and "more neurons with synapses > 64" in p for p in problems)


def test_too_many_neurons_and_cores() -> None:
    net = Network(2, (pop("a", 4200),), (Projection("in", "input", "a", np.ones((4200, 2))),), output="a")
    with pytest.raises(CompileError) as info:
        compile_dynapse2(net, D2)
    assert info.value.problems == [
        "neurons: 4200 (a 4200) > 4096 (4 chips x 4 cores x 256 neurons; limit 'chips', seed datasheet)",
        "cores: 17 needed (a 4200 neurons -> 17 core(s)) > 16 (4 chips x 4 cores)",
    ]


def test_too_many_parameter_sets() -> None:
    p = pop("a", 20)
    hetero = type(p)("a", 20, p.tau_syn_s, np.linspace(10e-3, 30e-3, 20), p.r, p.v_leak, p.v_threshold, p.v_reset)
    net = Network(1, (hetero,), (Projection("in", "input", "a", np.ones((20, 1))),), output="a")
    with pytest.raises(CompileError, match=r"parameter sets: 20 distinct neuron parameter sets need a core each > 16"):
        compile_dynapse2(net, D2)


def test_destinations_per_neuron(tmp_path: Path) -> None:
    variant = tmp_path / "d2-1dest.toml"
    text = TOML.read_text().replace('name = "dynapse2"', 'name = "d2-1dest"')
    text = text.replace("destinations_per_neuron = { value = 4,", "destinations_per_neuron = { value = 1,")
    prof = load_profile(str(variant.write_text(text) and variant))
    assert isinstance(prof, AdexCoreProfile)
    a, b = pop("a", 900), pop("b", 600, v_th=2.0)  # b has other parameters: cores 4.. on chip 1
    net = Network(
        1,
        (a, b),
        (
            Projection("in", "input", "a", np.ones((900, 1))),
            Projection("ab", "a", "b", np.eye(600, 900) * 0.5),
            Projection("aa", "a", "a", np.eye(900, 900, 1) * 0.5),
        ),
        output="b",
    )
    with pytest.raises(CompileError) as info:
        compile_dynapse2(net, prof)
    # Neurons 1..599 of a (cores 0..3 on chip 0) reach chip 0 (aa: i+1 -> i) and chip 1 (b).
    assert info.value.problems[0] == (
        "population a neuron 1: 2 destination chips > 1 (limit 'destinations_per_neuron', seed datasheet)"
    )


def test_delay_and_option_errors_name_the_projection() -> None:
    net = Network(2, (pop("a", 3),), (Projection("in", "input", "a", np.ones((3, 2))),), output="a")
    with pytest.raises(CompileError) as info:
        compile_dynapse2(
            net,
            D2,
            delays={"in": np.full((3, 2), 4), "nope": np.zeros((1, 1), np.int64)},
            nmda=["missing"],
            refractory_s={"ghost": 0.0},
        )
    assert info.value.problems == [
        "refractory_s: no population named 'ghost'",
        "delays: no projection named 'nope'",
        "nmda: no projection named 'missing'",
        "delays['in']: classes 4..4 outside 0..3 (2-bit delay classes [0, 1000, 2000, 4000] us)",
    ]


def test_fit_is_exact_for_representable_weights() -> None:
    rng = np.random.default_rng(3)
    levels = rng.integers(1, 16, 200).astype(float)
    fit = fit_base_weights(levels * 2.5e-9)
    assert fit.rms_error_rel < 1e-12
    np.testing.assert_allclose(np.sort(fit.bases), 2.5e-9 * np.array([1, 2, 4, 8]), rtol=1e-9)
    np.testing.assert_allclose(mask_sums(fit.bases)[fit.masks - 1], fit.fitted)


def test_fit_error_reported_for_arbitrary_weights() -> None:
    rng = np.random.default_rng(4)
    t = rng.lognormal(0.0, 1.0, 500)
    fit = fit_base_weights(t)
    assert 0.0 < fit.rms_error_rel < 0.2
    # The iterations only improve on the first assignment with binary bases.
    first = fit_base_weights(t, max_iter=0)
    assert fit.rms_error_rel <= first.rms_error_rel
    direct = np.sqrt(np.sum((fit.fitted - t) ** 2) / np.sum(t**2))
    assert fit.rms_error_rel == pytest.approx(direct)


def test_compile_reports_fit_per_core_and_overall() -> None:
    rng = np.random.default_rng(5)
    net = Network(
        8,
        (pop("h", 30), pop("out", 2, v_th=np.inf)),
        (
            Projection("in", "input", "h", rng.normal(0, 0.5, (30, 8))),
            Projection("ho", "h", "out", rng.normal(0, 0.3, (2, 30))),
        ),
        output="out",
    )
    c = compile_dynapse2(net, D2, mismatch=False)
    rep = c.report
    assert len(rep.cores) == 2 and rep.chips == 1 and rep.synapses == 8 * 30 + 2 * 30
    assert 0.0 < rep.weight_rms_error_rel < 0.2
    assert all(0.0 <= core.rms_error_rel < 0.2 for core in rep.cores)
    lines = c.report_lines()
    assert lines[0].startswith("chip dynapse2: 32 neurons on 2 core(s) of 1 chip(s), 300 synapses")
    assert "I_spkthr none (readout)" in lines[2]


def test_network_larger_than_a_chip_spans_chips_and_counts_hops() -> None:
    net = Network(
        4,
        (pop("h", 1500), pop("out", 2, v_th=2.0)),
        (
            Projection("in", "input", "h", np.ones((1500, 4)) * 0.3),
            Projection("ho", "h", "out", np.eye(2, 1500) * 0.5),
        ),
        output="out",
    )
    c = compile_dynapse2(net, D2, mismatch=False)
    assert c.n_chips == 2 and len(c.report.cores) == 7
    assert [core.chip for core in c.report.cores] == [0, 0, 0, 0, 1, 1, 1]
    # Input channel 0 enters at chip 0 and reaches chips 0 and 1 (1 hop); h neuron 0 (chip 0) -> out (chip 1).
    assert c.hops[0] == 1 and c.hops[4] == 1
    assert c.report.routed_hops_per_event_max == 1
    assert c.latency_us == 2 * D2.timing.layer_latency_us.value + D2.routing.hop_latency_us.value
