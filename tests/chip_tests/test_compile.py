"""Compile checks: every violation reported before anything runs, naming layer, limit, numbers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from netutil import population, random_network
from profile_util import SNP_TOML, snp_variant

from models.network import Network, Projection
from runtime.chips.compile import CompileError, compile_network
from runtime.chips.profile import builtin_profiles, load_profile
from runtime.config import ConfigError

SNP = load_profile("snp")


def too_big() -> Network:
    rng = np.random.default_rng(0)
    return Network(
        n_inputs=300,
        populations=(population("hidden", 290), population("out", 10, spiking=False)),
        projections=(
            Projection("fc_in", "input", "hidden", rng.normal(size=(290, 300))),
            Projection("fc_rec", "hidden", "hidden", rng.normal(size=(290, 290))),
            Projection("fc_out", "hidden", "out", rng.normal(size=(10, 290))),
        ),
        output="out",
    )


def test_all_violations_reported_at_once_with_numbers() -> None:
    with pytest.raises(CompileError) as info:
        compile_network(too_big(), SNP)
    problems = info.value.problems
    assert len(problems) == 3
    assert problems[0] == "input: 300 channels > 256 (limit 'inputs', assumed)"
    assert problems[1] == "neurons: 300 (hidden 290 + out 10) > 256 (limit 'neurons', seed datasheet)"
    assert problems[2].startswith("synapses: ")
    assert re.fullmatch(
        r"synapses: \d+ \(layer fc_in \d+, layer fc_rec \d+, layer fc_out \d+\) "
        r"> 65536 \(limit 'synapses', seed datasheet\)",
        problems[2],
    )
    assert "does not fit chip 'snp'" in str(info.value)


def test_model_size_is_a_warning_unless_strict() -> None:
    net = random_network(0, n_in=32, hidden=100)
    compiled = compile_network(net, SNP)
    assert any(w.startswith("model size: ") and "> 3072 (limit 'model_bytes'" in w for w in compiled.report.warnings)
    with pytest.raises(CompileError, match=r"model size: \d+ bytes of 6-bit weights > 3072"):
        compile_network(net, SNP, strict=True)


def test_quantisation_to_six_bits_and_its_error_report() -> None:
    net = random_network(1)
    compiled = compile_network(net, SNP)
    for layer, proj in zip(compiled.report.layers, net.projections, strict=True):
        assert layer.scale == pytest.approx(np.abs(proj.weight).max() / 31)
        assert 0 < layer.rms_error_rel < 0.05
        assert layer.max_error_steps <= 0.5 + 1e-9
    w_in = compiled.W[: net.n_inputs, :40]
    steps = w_in / compiled.report.layers[0].scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
    assert np.abs(steps).max() <= 31


def test_mismatch_is_frozen_per_seed_and_switchable() -> None:
    net = random_network(2)
    off = compile_network(net, SNP, mismatch=False)
    a = compile_network(net, SNP, mismatch=True, seed=1)
    b = compile_network(net, SNP, mismatch=True, seed=1)
    c = compile_network(net, SNP, mismatch=True, seed=2)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.P, b.P)
    assert not np.array_equal(a.W, c.W)
    assert not np.array_equal(a.W, off.W)
    rel = (a.W[off.W != 0] / off.W[off.W != 0]) - 1
    assert 0.02 < rel.std() < 0.08  # the profile's 5 % per synapse
    assert (a.W[off.W == 0] == 0).all(), "mismatch never creates synapses"


def test_user_profile_file(tmp_path: Path) -> None:
    prof = load_profile(str(snp_variant(tmp_path, "snp-xl", 512)))
    assert prof.name == "snp-xl" and prof.limits.neurons.value == 512
    assert "snp" in builtin_profiles()


def test_bad_profile_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SNP_TOML.read_text().replace('source = "paper"', 'source = "rumour"'))
    with pytest.raises(ConfigError, match=r"(?s)bad\.toml: 1 problem.*energy\.sop_pj\.source: Input should be"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="neither a built-in profile"):
        load_profile("no-such-chip")
