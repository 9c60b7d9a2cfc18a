"""A chip-independent description of a spiking network: populations joined by projections.

This is what a model bundle loads into and what a chip compiles from. Units are SI
(seconds); weights are in "current jump per spike" units of the discrete model::

    I[k] = alpha * I[k-1] + sum_j W[n, j] * s_j[k]          alpha = exp(-dt / tau_syn)
    v[k] = beta * v[k-1] + (1 - beta) * (v_leak + r * I[k])  beta = exp(-dt / tau_mem)
    spike when v[k] >= v_threshold, then v[k] = v_reset

which is the exact-decay discretisation of NIR's CubaLIF with Dirac input spikes when the
NIR weight is ``W * tau_syn`` (see ``models.nir_io``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class ModelError(ValueError):
    """A model that cannot be loaded: names the file or node and the problem."""


@dataclass(frozen=True, slots=True)
class Population:
    name: str
    size: int
    tau_syn_s: F64
    tau_mem_s: F64
    r: F64
    v_leak: F64
    v_threshold: F64
    """``inf`` for a non-spiking (leaky integrator) readout population."""
    v_reset: F64

    @property
    def spiking(self) -> bool:
        return bool(np.isfinite(self.v_threshold).any())


@dataclass(frozen=True, slots=True)
class Projection:
    name: str
    source: str
    """``"input"`` or the name of a population."""
    target: str
    weight: F64
    """Shape ``(target.size, source size)``, like NIR's Affine."""


@dataclass(frozen=True, slots=True)
class Network:
    n_inputs: int
    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    output: str
    """The population read out for decisions."""

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        msg = f"no population named {name!r}"
        raise KeyError(msg)

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations)

    def depth(self) -> int:
        """Synaptic layers on the longest feed-forward path from the input to the output."""
        best: dict[str, int] = {"input": 0}
        changed = True
        # Relax over projections; recurrent edges cannot lengthen a path beyond the count.
        for _ in range(len(self.populations) + 1):
            if not changed:
                break
            changed = False
            for proj in self.projections:
                if proj.source in best and proj.source != proj.target:
                    d = best[proj.source] + 1
                    if d > best.get(proj.target, 0) and d <= len(self.populations):
                        best[proj.target] = d
                        changed = True
        return best.get(self.output, 1)
