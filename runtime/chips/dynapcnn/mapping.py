"""Core memory of a layer and the assignment of layers to cores.

A DynapCNN core holds one conv -> IAF -> pool layer. Its kernel and neuron memories are
addressed by powers of two, so a layer needs (SynSense's formulas, as in sinabs)::

    kernel memory = c * 2^(ceil(log2(kx * ky)) + ceil(log2 f))
    neuron memory = f * 2^(ceil(log2 fy) + ceil(log2 fx))

with ``c`` input channels, ``f`` output channels and ``fy x fx`` the conv output map (before
pooling). The cores differ in size, so which layer goes where is a bipartite matching: a
greedy first fit can fail where a valid mapping exists (a small layer taking the only core
a large one fits). Augmenting paths find a mapping whenever one exists, and when none does
they yield the set of layers that compete for too few cores (Hall's condition), which is
what the error message names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def ceil_log2(n: int) -> int:
    """ceil(log2(n)) for n >= 1, exactly (no floating point)."""
    return (n - 1).bit_length()


def kernel_memory(in_channels: int, ky: int, kx: int, out_channels: int) -> int:
    return in_channels << (ceil_log2(kx * ky) + ceil_log2(out_channels))


def neuron_memory(out_channels: int, fy: int, fx: int) -> int:
    return out_channels << (ceil_log2(fy) + ceil_log2(fx))


@dataclass(frozen=True, slots=True)
class Need:
    """What one layer needs from a core."""

    kernel: int
    neuron: int


@dataclass(frozen=True, slots=True)
class Capacity:
    kernel: int
    neuron: int

    def fits(self, need: Need) -> bool:
        return need.kernel <= self.kernel and need.neuron <= self.neuron


@dataclass(frozen=True, slots=True)
class Mapping:
    """``core[i]`` is layer i's core, or -1; ``short`` lists Hall violations (layers, cores)."""

    core: tuple[int, ...]
    short: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]

    @property
    def complete(self) -> bool:
        return all(c >= 0 for c in self.core)


def assign_cores(needs: Sequence[Need], cores: Sequence[Capacity]) -> Mapping:
    """Maximum bipartite matching of layers to cores (Kuhn's augmenting paths).

    Each layer takes the lowest-numbered free core it fits; only when none is free does it
    move earlier layers along an augmenting path, so a mapping is found whenever one exists.
    """
    options = [[j for j in range(len(cores)) if cores[j].fits(n)] for n in needs]
    owner = [-1] * len(cores)  # layer on each core

    def augment(layer: int, seen: set[int]) -> bool:
        for j in options[layer]:
            if owner[j] < 0:
                seen.add(j)
                owner[j] = layer
                return True
        for j in options[layer]:
            if j in seen:
                continue
            seen.add(j)
            if augment(owner[j], seen):
                owner[j] = layer
                return True
        return False

    short: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for layer in range(len(needs)):
        seen: set[int] = set()
        if not augment(layer, seen) and options[layer]:
            # The failed search visited exactly the cores reachable from this layer by
            # alternating paths; they are all taken by the layers listed with it.
            group = sorted({layer} | {owner[j] for j in seen})
            short.append((tuple(group), tuple(sorted(seen))))
    core = [-1] * len(needs)
    for j, layer in enumerate(owner):
        if layer >= 0:
            core[layer] = j
    return Mapping(tuple(core), tuple(short))
