"""Place neurons on cores and cores on chips; count the chip-to-chip hops of every source.

Neurons that share a parameter set share cores (a core's biases are common to its 256
neurons); a set larger than a core spans several. Cores are filled in order, four per chip,
and chips sit on a 2x2 grid (chip ``i`` at ``(i % 2, i // 2)``): an event from chip ``a`` to
chip ``b`` crosses ``|dx| + |dy|`` links. Input events enter at chip 0 (the host link).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Placement:
    core_of: I64
    """Per neuron (global index), its core."""
    chip_of_core: I64
    set_of_core: I64
    """Per core, the parameter set it holds."""
    n_chips: int

    @property
    def n_cores(self) -> int:
        return len(self.chip_of_core)

    def chip_of(self) -> I64:
        return self.chip_of_core[self.core_of]


def cores_needed(set_sizes: list[int], neurons_per_core: int) -> list[int]:
    return [-(-n // neurons_per_core) for n in set_sizes]


def place(set_of_neuron: I64, n_sets: int, neurons_per_core: int, cores_per_chip: int) -> Placement:
    core_of = np.zeros(len(set_of_neuron), np.int64)
    chip_of_core: list[int] = []
    set_of_core: list[int] = []
    for s in range(n_sets):
        members = np.flatnonzero(set_of_neuron == s)
        first = len(chip_of_core)
        for j in range(-(-len(members) // neurons_per_core)):
            core = first + j
            chip_of_core.append(core // cores_per_chip)
            set_of_core.append(s)
            core_of[members[j * neurons_per_core : (j + 1) * neurons_per_core]] = core
    n_chips = (max(chip_of_core) + 1) if chip_of_core else 1
    return Placement(core_of, np.array(chip_of_core, np.int64), np.array(set_of_core, np.int64), n_chips)


def grid_distance(a: int, b: int) -> int:
    return abs(a % 2 - b % 2) + abs(a // 2 - b // 2)


def source_routes(src_chip: I64, dest_chips: list[set[int]]) -> tuple[I64, I64, I64]:
    """Per source: destination chips, total hops (one copy per destination chip), farthest hop."""
    n = len(dest_chips)
    n_dest = np.zeros(n, np.int64)
    hops = np.zeros(n, np.int64)
    far = np.zeros(n, np.int64)
    for i, dests in enumerate(dest_chips):
        d = [grid_distance(int(src_chip[i]), b) for b in dests]
        n_dest[i] = len(dests)
        hops[i] = sum(d)
        far[i] = max(d, default=0)
    return n_dest, hops, far
