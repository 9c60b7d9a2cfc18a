"""Resource checks of a DYNAP-SE2 mapping; each message names the population or neuron and the numbers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.network import Network
from runtime.chips.dynapse2.placement import Placement
from runtime.chips.dynapse2.synapses import Synapses
from runtime.chips.profile import AdexCoreProfile, Sourced

I64 = npt.NDArray[np.int64]
_LISTED = 8
"""Neurons named per population and check; the rest are counted."""


def _lim(s: Sourced, name: str) -> str:
    return f"{s.value:.0f} (limit '{name}', {s.source})"


def resource_problems(
    net: Network, profile: AdexCoreProfile, placement: Placement, set_sizes: list[int], set_pops: list[list[str]]
) -> list[str]:
    lim = profile.limits
    chips, cpc, npc = int(lim.chips.value), int(lim.cores_per_chip.value), int(lim.neurons_per_core.value)
    out: list[str] = []
    if net.n_inputs > lim.inputs.value:
        out.append(f"input: {net.n_inputs} channels > {_lim(lim.inputs, 'inputs')}")
    if net.n_neurons > chips * cpc * npc:
        parts = " + ".join(f"{p.name} {p.size}" for p in net.populations)
        out.append(
            f"neurons: {net.n_neurons} ({parts}) > {chips * cpc * npc} "
            f"({chips:.0f} chips x {cpc} cores x {npc} neurons; limit 'chips', {lim.chips.source})"
        )
    if len(set_sizes) > chips * cpc:
        out.append(
            f"parameter sets: {len(set_sizes)} distinct neuron parameter sets need a core each > {chips * cpc} cores "
            f"({chips} chips x {cpc}); neurons of a core share its parameters"
        )
    elif placement.n_cores > chips * cpc:
        parts = ", ".join(
            f"{'/'.join(pops)} {n} neurons -> {-(-n // npc)} core(s)"
            for pops, n in zip(set_pops, set_sizes, strict=True)
        )
        out.append(f"cores: {placement.n_cores} needed ({parts}) > {chips * cpc} ({chips} chips x {cpc} cores)")
    return out


def _listed(net: Network, idx: I64, counts: I64, what: str, limit: str) -> list[str]:
    """One line per offending neuron (up to ``_LISTED`` per population, the rest counted)."""
    out: list[str] = []
    base = 0
    for pop in net.populations:
        sel = (idx >= base) & (idx < base + pop.size)
        for i, c in zip(idx[sel][:_LISTED], counts[sel][:_LISTED], strict=True):
            out.append(f"population {pop.name} neuron {int(i) - base}: {int(c)} {what} > {limit}")
        if int(sel.sum()) > _LISTED:
            out.append(f"population {pop.name}: ... and {int(sel.sum()) - _LISTED} more neurons with {what} > {limit}")
        base += pop.size
    return out


def connection_problems(net: Network, profile: AdexCoreProfile, syn: Synapses, chip_of: I64) -> list[str]:
    lim = profile.limits
    out: list[str] = []
    fan_in = np.bincount(syn.tgt, minlength=net.n_neurons)
    over = np.flatnonzero(fan_in > lim.synapses_per_neuron.value)
    out += _listed(net, over, fan_in[over], "synapses", _lim(lim.synapses_per_neuron, "synapses_per_neuron"))
    # Destinations: distinct chips a neuron's spikes go to (one routing entry each).
    rec = syn.src >= net.n_inputs
    if rec.any() and len(chip_of):
        pairs = np.unique(np.stack([syn.src[rec] - net.n_inputs, chip_of[syn.tgt[rec]]]), axis=1)
        n_dest = np.bincount(pairs[0], minlength=net.n_neurons)
        over = np.flatnonzero(n_dest > lim.destinations_per_neuron.value)
        limit = _lim(lim.destinations_per_neuron, "destinations_per_neuron")
        out += _listed(net, over, n_dest[over], "destination chips", limit)
    return out
