"""``dynapcnn`` against SynSense's own simulator: golden vectors recorded with sinabs.

``fixtures/record_sinabs_golden.py`` (run by hand in a throw-away venv, see its docstring;
sinabs is no dependency and is never imported here) ran three small conv -> IAF -> sum-pool
networks in sinabs, with integer weights whose max |w| is 127, integer thresholds and floors.
So our compiler's quantisation is the identity and every number must agree bit for bit:

* the numpy reference: every layer's spikes at every step, the pooled spikes passed on, the
  final states;
* ``DynapcnnChip`` fed one event per count at ``step * step_us``: the output spikes per step
  and class, each layer's spike total and final state;
* the compiler's kernel / neuron memory per layer and its core mapping, against
  ``sinabs.backend.dynapcnn``'s ``memory_summary`` and its layer-to-core mapping.

A failure names the network, what differs, the first differing entry and both values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from netutil import split

from models.convnet import ConvLayer, ConvNet
from runtime.chips.dynapcnn import DynapcnnChip, compile_convnet
from runtime.chips.dynapcnn.compile import CompiledConv
from runtime.chips.dynapcnn.reference import run_raster
from runtime.chips.profile import ConvCoreProfile, load_profile

I64 = npt.NDArray[np.int64]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NETS = ("a_floor_17x17", "b_nofloor_strides", "c_big_cores")
_PROFILE = load_profile("dynapcnn")
assert isinstance(_PROFILE, ConvCoreProfile)
PROFILE: ConvCoreProfile = _PROFILE
CHIP_FLOOR = -(2**15)


@dataclass(frozen=True)
class Golden:
    name: str
    versions: str
    net: ConvNet
    raster: I64
    """(steps, c, h, w) input event counts."""
    spikes: tuple[I64, ...]
    """Per layer, the IAF spikes (steps, f, fy, fx)."""
    pooled: tuple[I64, ...]
    """Per layer, what it passes on (steps, f, fy // pool, fx // pool)."""
    states: tuple[I64, ...]
    """Per layer, the final state (f, fy, fx)."""
    kernel_memory: tuple[int, ...]
    neuron_memory: tuple[int, ...]
    cores: tuple[int, ...]


def _dense(z: np.lib.npyio.NpzFile, key: str, shape: tuple[int, ...]) -> I64:
    out = np.zeros(shape, np.int64)
    out[tuple(z[f"{key}_idx"].astype(np.intp).T)] = z[f"{key}_n"]
    return out


def load_golden(name: str) -> Golden:
    path = FIXTURES / f"sinabs_{name}.npz"
    with np.load(path) as z:
        steps = int(z["steps"])
        shape = tuple(int(v) for v in z["input_shape"])
        raster = _dense(z, "input", (steps, *shape))
        layers, spikes, pooled, states = [], [], [], []
        k = 0
        while f"weight{k}" in z:
            lay = ConvLayer(
                name=f"L{k}",
                in_shape=shape,  # type: ignore[arg-type]
                weight=z[f"weight{k}"].astype(np.float64),
                stride=(int(z[f"stride{k}"][0]), int(z[f"stride{k}"][1])),
                padding=(int(z[f"padding{k}"][0]), int(z[f"padding{k}"][1])),
                threshold=float(z[f"threshold{k}"]),
                v_min=float(z[f"v_min{k}"]),
                pool=int(z[f"pool{k}"]),
            )
            s = _dense(z, f"spikes{k}", (steps, *lay.conv_shape))
            layers.append(lay)
            spikes.append(s)
            pooled.append(_dense(z, f"pooled{k}", (steps, *lay.out_shape)) if lay.pool > 1 else s)
            states.append(z[f"v{k}"].astype(np.int64))
            shape = lay.out_shape
            k += 1
        return Golden(
            name=name,
            versions=str(z["versions"]),
            net=ConvNet(tuple(int(v) for v in z["input_shape"]), tuple(layers)),  # type: ignore[arg-type]
            raster=raster,
            spikes=tuple(spikes),
            pooled=tuple(pooled),
            states=tuple(states),
            kernel_memory=tuple(int(v) for v in z["sinabs_kernel_memory"]),
            neuron_memory=tuple(int(v) for v in z["sinabs_neuron_memory"]),
            cores=tuple(int(v) for v in z["sinabs_cores"]),
        )


@pytest.fixture(scope="module", params=NETS)
def golden(request: pytest.FixtureRequest) -> Golden:
    return load_golden(request.param)


@pytest.fixture(scope="module")
def compiled(golden: Golden) -> CompiledConv:
    return compile_convnet(golden.net, PROFILE)


def mismatch(what: str, ours: I64, theirs: I64, axes: str) -> list[str]:
    """[] when equal, else one line: how many entries differ, the first one, both values."""
    if ours.shape != theirs.shape:
        return [f"{what}: shape {ours.shape}, sinabs {theirs.shape}"]
    diff = np.argwhere(ours != theirs)
    if not len(diff):
        return []
    first = tuple(int(i) for i in diff[0])
    return [f"{what}: {len(diff)} entries differ, first ({axes}) = {first}: ours {ours[first]}, sinabs {theirs[first]}"]


def sum_pool(s: I64, p: int) -> I64:
    """(steps, f, fy, fx) -> (steps, f, fy // p, fx // p); rows and columns past the last full window dropped."""
    t, f, fy, fx = s.shape
    hp, wp = fy // p, fx // p
    pooled: I64 = s[:, :, : hp * p, : wp * p].reshape(t, f, hp, p, wp, p).sum(axis=(3, 5))
    return pooled


def test_quantisation_is_the_identity(golden: Golden, compiled: CompiledConv) -> None:
    q = compiled.quantised_net()
    for ours, theirs, rep in zip(q.layers, golden.net.layers, compiled.report.layers, strict=True):
        assert rep.scale == 1.0, f"{golden.name} {theirs.name}"
        np.testing.assert_array_equal(ours.weight, theirs.weight)
        assert (ours.stride, ours.padding, ours.pool) == (theirs.stride, theirs.padding, theirs.pool)
        assert ours.threshold == theirs.threshold
        # No floor in sinabs (None) is the chip's own floor, -2^15: the recorder kept states above it.
        assert ours.v_min == (theirs.v_min if np.isfinite(theirs.v_min) else CHIP_FLOOR)


def test_reference_matches_sinabs_in_every_layer(golden: Golden) -> None:
    ref = run_raster(golden.net, golden.raster)
    problems: list[str] = []
    for k, lay in enumerate(golden.net.layers):
        where = f"{golden.name} layer {k}"
        problems += mismatch(f"{where} spikes", ref.layer_spikes[k], golden.spikes[k], "step, f, y, x")
        pooled = sum_pool(ref.layer_spikes[k], lay.pool)
        problems += mismatch(f"{where} pooled spikes", pooled, golden.pooled[k], "step, f, y, x")
        problems += mismatch(f"{where} final state", ref.states[k], golden.states[k], "f, y, x")
    steps, n_out = len(golden.raster), golden.net.n_outputs
    out = np.zeros((steps, n_out), np.int64)
    np.add.at(out, (ref.out_t_us, ref.out_ch), 1)
    problems += mismatch(f"{golden.name} output", out, golden.pooled[-1].reshape(steps, n_out), "step, class")
    assert not problems, "\n".join(problems)
    assert golden.spikes[-1].sum() > 0, "the golden output must not be silent"


def input_events(raster: I64, step_us: int) -> tuple[I64, npt.NDArray[np.int32]]:
    """Frame k's counts -> that many events at k * step_us, address (c * h + y) * w + x."""
    t, c, y, x = np.nonzero(raster)
    _, _, h, w = raster.shape
    n = raster[t, c, y, x]
    ch = ((c * h + y) * w + x).astype(np.int32)
    return np.repeat(t.astype(np.int64) * step_us, n), np.repeat(ch, n)


def test_chip_matches_sinabs(golden: Golden, compiled: CompiledConv) -> None:
    chip = DynapcnnChip(compiled)
    steps, n_out = len(golden.raster), golden.net.n_outputs
    step_us = compiled.step_us
    t_us, ch = input_events(golden.raster, step_us)
    # Three batches with uneven edges: the state must carry across them as in one run.
    edges = [0, 7 * step_us, (steps // 2 + 3) * step_us, steps * step_us]
    out = np.zeros((steps, n_out), np.int64)
    for batch in split(t_us, ch, compiled.n_in, edges):
        res = chip.run(batch)
        np.add.at(out, (res.spike_t_us // step_us, res.spike_ch), 1)
    problems = mismatch(f"{golden.name} output", out, golden.pooled[-1].reshape(steps, n_out), "step, class")
    for k in range(len(golden.net.layers)):
        where = f"{golden.name} layer {k}"
        if chip.layer_spikes[k] != golden.spikes[k].sum():
            problems.append(f"{where}: {chip.layer_spikes[k]} spikes, sinabs {golden.spikes[k].sum()}")
        state = chip.layer_state(k).astype(np.int64)
        problems += mismatch(f"{where} final state", state, golden.states[k], "f, y, x")
    assert not problems, "\n".join(problems)


def test_memory_and_core_mapping_match_sinabs(golden: Golden, compiled: CompiledConv) -> None:
    rows = {r.layer: r for r in compiled.report.cores if r.layer}
    kernel = tuple(rows[lay.name].kernel_used for lay in golden.net.layers)
    neuron = tuple(rows[lay.name].neuron_used for lay in golden.net.layers)
    assert kernel == golden.kernel_memory, f"{golden.name}: kernel memory"
    assert neuron == golden.neuron_memory, f"{golden.name}: neuron memory"
    assert compiled.cores == golden.cores, f"{golden.name}: layer -> core mapping"


def test_the_big_network_needs_the_big_cores() -> None:
    """The mapping comparison means something only if some layer fits few cores."""
    g = load_golden("c_big_cores")
    caps = [(int(c.kernel_memory.value), int(c.neuron_memory.value)) for c in PROFILE.cores]
    fits = [
        [j for j, (km, nm) in enumerate(caps) if k <= km and n <= nm]
        for k, n in zip(g.kernel_memory, g.neuron_memory, strict=True)
    ]
    assert min(len(f) for f in fits) <= 3
    assert fits[0] == [0, 1, 2] and fits[2] == [5, 6]
