"""Small networks and inputs for the dynapse2 tests."""

from __future__ import annotations

import numpy as np

from models.network import Network, Population, Projection
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.compile import compile_dynapse2
from runtime.chips.profile import AdexCoreProfile, load_profile
from sensors.blocks import SpikeBatch

D2 = load_profile("dynapse2")
assert isinstance(D2, AdexCoreProfile)


def pop(name: str, n: int, *, v_leak: float = 0.0, v_th: float = 1.0, tau_mem_s: float = 20e-3) -> Population:
    def full(v: float) -> np.ndarray:
        return np.full(n, float(v))

    return Population(name, n, full(5e-3), full(tau_mem_s), full(1.0), full(v_leak), full(v_th), full(0.0))


def driven(v_leak: float, n: int = 1, n_in: int = 1, weight: float = 0.5) -> Network:
    """``n`` neurons driven by a DC current (``v_leak`` in units of the threshold) and ``n_in`` inputs."""
    return Network(
        n_in, (pop("p", n, v_leak=v_leak),), (Projection("in", "input", "p", np.full((n, n_in), weight)),), "p"
    )


def batch(t_us: np.ndarray, ch: np.ndarray, n_in: int, t_end_us: int, t_start_us: int = 0) -> SpikeBatch:
    return SpikeBatch("test", t_us.astype(np.int64), ch.astype(np.int32), n_in, t_start_us, t_end_us, 0)


def silence(t_end_us: int, n_in: int = 1) -> SpikeBatch:
    # No events at all: the chip must still evolve a DC-driven neuron.
    return batch(np.zeros(0), np.zeros(0), n_in, t_end_us)


def spike_count(net: Network, b: SpikeBatch, **kw: object) -> int:
    chip = Dynapse2Chip(compile_dynapse2(net, D2, **kw))  # type: ignore[arg-type]
    return chip.run(b).stats.spikes
