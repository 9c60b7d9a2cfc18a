"""Compile a CubaLIF ``Network`` onto DYNAP-SE2 cores: check, place, fit weights, draw mismatch.

Every limit is checked before anything runs and all violations are reported together
(``CompileError``), each naming the population or neuron and the numbers. The mapping of
LIF parameters to core biases is in ``mapping``, the weight fit in ``fit``, the placement
and hop counting in ``placement``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.network import Network
from runtime.chips.compile import CompileError
from runtime.chips.dynapse2 import kernel as kn
from runtime.chips.dynapse2.checks import connection_problems, resource_problems
from runtime.chips.dynapse2.circuit import Constants, constants
from runtime.chips.dynapse2.fit import fit_base_weights
from runtime.chips.dynapse2.mapping import MISMATCHED, PHYS, CoreBiases, core_biases, range_problems, settings
from runtime.chips.dynapse2.placement import Placement, place, source_routes
from runtime.chips.dynapse2.report import CoreReport, Dynapse2Report
from runtime.chips.dynapse2.synapses import Synapses, collect_synapses
from runtime.chips.profile import AdexCoreProfile

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dynapse2Compiled:
    """What the kernel runs on, plus what the rest of the runtime needs to know."""

    profile: AdexCoreProfile
    n_in: int
    n_neurons: int
    phys: dict[str, F64]
    """Per-neuron physical parameters (``mapping.PHYS``), mismatch applied."""
    consts: Constants
    KP: F64
    """Kernel factors (``kernel.K_*``) computed from ``phys``."""
    G: F64
    ptr: I64
    tgt: I64
    typ: I64
    dly: I64
    w: F64
    """Weight current of each synapse (A), fitted to its core's base weights, mismatch applied."""
    hops: I64
    ring: int
    out_lo: int
    out_hi: int
    out_spiking: bool
    tick_us: int
    latency_us: float
    n_chips: int
    report: Dynapse2Report

    def report_lines(self) -> list[str]:
        return self.report.lines()


def compile_dynapse2(
    net: Network,
    profile: AdexCoreProfile,
    *,
    mismatch: bool | None = None,
    seed: int = 0,
    delays: Mapping[str, npt.NDArray[np.int64]] | None = None,
    nmda: Collection[str] = (),
    refractory_s: Mapping[str, float] | None = None,
    ahp_weight_a: Mapping[str, float] | None = None,
) -> Dynapse2Compiled:
    """Check ``net`` against ``profile`` and build the kernel's arrays.

    ``delays`` gives a delay class (0..3) per weight of the named projections; ``nmda`` names
    projections whose positive weights use NMDA rather than AMPA synapses; ``refractory_s``
    and ``ahp_weight_a`` set a population's refractory period and adaptation strength (the
    LIF network has neither; defaults: the profile's refractory period, no adaptation).
    """
    lim = profile.limits
    k = constants(profile)
    tick_us = int(profile.timing.tick_us.value)
    refr = dict(refractory_s or {})
    ahp = dict(ahp_weight_a or {})
    problems: list[str] = []
    for opt, names in (("refractory_s", refr), ("ahp_weight_a", ahp)):
        problems += [f"{opt}: no population named {n!r}" for n in names if n not in {p.name for p in net.populations}]

    # Parameter sets: one per distinct neuron setting, in population order.
    set_index: dict[object, int] = {}
    biases: list[CoreBiases] = []
    set_of: list[int] = []
    set_pops: list[list[str]] = []
    for pop in net.populations:
        r_s = refr.get(pop.name, profile.defaults.refractory_s.value)
        for s in settings(pop, r_s, ahp.get(pop.name, 0.0)):
            if s not in set_index:
                set_index[s] = len(biases)
                b = core_biases(s, k, profile)
                biases.append(b)
                set_pops.append([pop.name])
                problems += range_problems(pop.name, b, k, profile)
            elif pop.name not in set_pops[set_index[s]]:
                set_pops[set_index[s]].append(pop.name)
            set_of.append(set_index[s])
    set_arr = np.array(set_of, np.int64)
    npc, cpc = int(lim.neurons_per_core.value), int(lim.cores_per_chip.value)
    placement = place(set_arr, len(biases), npc, cpc)
    set_sizes = np.bincount(set_arr, minlength=len(biases)).tolist()
    problems += resource_problems(net, profile, placement, set_sizes, set_pops)

    syn, syn_problems = collect_synapses(net, profile, delays, set(nmda))
    problems += syn_problems
    chip_of = placement.chip_of()
    problems += connection_problems(net, profile, syn, chip_of)
    if problems:
        raise CompileError(profile.name, problems)

    # Weight currents each synapse needs, fitted per core to 4 base weights.
    amp = np.array([b.amp_per_unit for b in biases])[set_arr]
    r = np.concatenate([p.r for p in net.populations])
    charge = np.array([b.charge for b in biases])[set_arr]
    need = amp[syn.tgt] * r[syn.tgt] * np.abs(syn.weight) / charge[syn.tgt, syn.typ]
    w = np.zeros_like(need)
    cores: list[CoreReport] = []
    wrange = profile.ranges.weight_a
    for core in range(placement.n_cores):
        sel = np.flatnonzero(placement.core_of[syn.tgt] == core)
        fit = fit_base_weights(need[sel])
        w[sel] = fit.fitted
        s_idx = int(placement.set_of_core[core])
        used = np.unique(fit.masks)
        bad = [b for b in fit.bases if b > 0 and not wrange.holds(float(b))] if used.size else []
        if bad:
            problems.append(
                f"core {core} ({', '.join(set_pops[s_idx])}): base weight(s) "
                f"{', '.join(f'{b:.3g}' for b in bad)} A outside [{wrange.min:.3g}, {wrange.max:.3g}] "
                f"(range 'weight_a', {wrange.source})"
            )
        cores.append(
            CoreReport(
                core,
                int(placement.chip_of_core[core]),
                tuple(set_pops[s_idx]),
                int(np.sum(placement.core_of == core)),
                len(sel),
                tuple(float(b) for b in fit.bases),
                fit.rms_error_rel,
                biases[s_idx].values["ispk"],
                biases[s_idx].values["itau_mem"],
            )
        )
    if problems:
        raise CompileError(profile.name, problems)

    fit_rms = float(np.sqrt(np.sum((w - need) ** 2) / np.sum(need**2))) if need.size else 0.0
    use_mm = profile.mismatch.enabled if mismatch is None else mismatch
    phys = {name: np.array([b.values[name] for b in biases])[set_arr] for name in PHYS}
    if use_mm:
        # Frozen per-device draw, in a fixed order: the same seed is the same chip, run after run.
        rng = np.random.default_rng(seed)
        sig = profile.mismatch.bias_sigma.value
        for name in MISMATCHED:
            phys[name] = phys[name] * _factor(rng, sig, len(set_arr))
        w = w * _factor(rng, profile.mismatch.weight_sigma.value, len(w))
    routes = _routes(net, syn, placement)
    report = Dynapse2Report(
        chip=profile.name,
        neurons=net.n_neurons,
        inputs=net.n_inputs,
        synapses=len(syn.tgt),
        chips=placement.n_chips,
        cores=tuple(cores),
        weight_rms_error_rel=fit_rms,
        routed_hops_per_event_max=int(routes[2].max(initial=0)),
        warnings=tuple(_warnings(net)),
        mismatch=use_mm,
        seed=seed,
    )
    depth = net.depth()
    latency = depth * profile.timing.layer_latency_us.value + int(routes[2].max(initial=0)) * (
        profile.routing.hop_latency_us.value
    )
    out = net.population(net.output)
    out_lo = sum(p.size for p in net.populations[: [q.name for q in net.populations].index(net.output)])
    order = np.lexsort((syn.tgt, syn.src))
    n_src = net.n_inputs + net.n_neurons
    ptr = np.zeros(n_src + 1, np.int64)
    np.cumsum(np.bincount(syn.src, minlength=n_src), out=ptr[1:])
    dt_s = tick_us * 1e-6
    return Dynapse2Compiled(
        profile=profile,
        n_in=net.n_inputs,
        n_neurons=net.n_neurons,
        phys=phys,
        consts=k,
        KP=kernel_factors(phys, k, dt_s),
        G=np.array([k.io_a, k.feedback_exponent]),
        ptr=ptr,
        tgt=syn.tgt[order].astype(np.int64),
        typ=syn.typ[order].astype(np.int64),
        dly=syn.dly[order].astype(np.int64),
        w=w[order],
        hops=routes[1],
        ring=int(syn.dly.max(initial=0)) + 2,
        out_lo=out_lo,
        out_hi=out_lo + out.size,
        out_spiking=out.spiking,
        tick_us=tick_us,
        latency_us=latency,
        n_chips=placement.n_chips,
        report=report,
    )


def kernel_factors(phys: Mapping[str, F64], k: Constants, dt_s: float) -> F64:
    """Per-neuron factors of the discrete equations (``kernel.K_*``)."""
    n = len(phys["itau_mem"])
    KP = np.zeros((kn.NK, n), np.float64)
    io = k.io_a
    for j, (name, c) in enumerate(zip(("ampa", "nmda", "gaba"), k.c_syn_f, strict=True)):
        itau = np.maximum(phys[f"itau_{name}"], io)
        tau = k.ut_v * c / (k.kappa * itau)
        KP[kn.K_DEC_A + j] = np.exp(-dt_s / tau)
        pulse = 1.0 - np.exp(-phys["t_pulse"] / tau)
        KP[kn.K_CHG_A + j] = pulse * np.maximum(phys[f"igain_{name}"], io) / itau
        KP[kn.K_FLOOR_A + j] = pulse * io
    itau_ahp = np.maximum(phys["itau_ahp"], io)
    tau_ahp = k.ut_v * k.c_ahp_f / (k.kappa * itau_ahp)
    KP[kn.K_DEC_AHP] = np.exp(-dt_s / tau_ahp)
    gain_ahp = np.maximum(phys["igain_ahp"], io) / itau_ahp
    KP[kn.K_CHG_AHP] = (1.0 - np.exp(-phys["t_pulse_ahp"] / tau_ahp)) * gain_ahp * phys["iw_ahp"]
    KP[kn.K_ITAU] = np.maximum(phys["itau_mem"], io)
    KP[kn.K_IGAIN] = np.maximum(phys["igain_mem"], io)
    KP[kn.K_IDC] = phys["idc"]
    KP[kn.K_ISPK] = phys["ispk"]
    KP[kn.K_IFN] = phys["if_nmda"]
    KP[kn.K_RATE] = dt_s * k.kappa / (k.ut_v * k.c_mem_f)
    KP[kn.K_ISAT] = phys["isat"]
    KP[kn.K_NREF] = np.ceil(phys["t_ref"] / dt_s - 1e-9)
    KP[kn.K_RONORM] = phys["ro_norm"]
    return KP


def _factor(rng: np.random.Generator, sigma: float, n: int) -> F64:
    # Clipped so that no bias current turns negative at extreme draws.
    return np.clip(1.0 + sigma * rng.standard_normal(n), 0.05, None)


def _routes(net: Network, syn: Synapses, placement: Placement) -> tuple[I64, I64, I64]:
    chip_of = placement.chip_of()
    n_src = net.n_inputs + net.n_neurons
    src_chip = np.concatenate([np.zeros(net.n_inputs, np.int64), chip_of])
    dests: list[set[int]] = [set() for _ in range(n_src)]
    for s, c in set(zip(syn.src.tolist(), chip_of[syn.tgt].tolist(), strict=True)):
        dests[s].add(c)
    return source_routes(src_chip, dests)


def _warnings(net: Network) -> list[str]:
    out = []
    for pop in net.populations:
        nz = np.unique(pop.v_reset[pop.v_reset != 0])
        if nz.size:
            out.append(
                f"population {pop.name}: v_reset {', '.join(f'{v:.3g}' for v in nz[:3])} ignored: "
                "the chip resets I_mem to I0 (v = 0)"
            )
    return out
