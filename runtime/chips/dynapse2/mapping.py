"""From a CubaLIF population to the bias currents of a DYNAP-SE2 core.

The network's neurons follow (``models.network``)::

    tau_syn dI/dt = -I + sum W s          tau_mem dv/dt = v_leak - v + r I,  spike at v_threshold

A core's DPI neuron follows (``kernel``), with the drive ``x = I_syn + I_dc - 2 I_leak``::

    tau (1 + I_gain / I_mem) dI_mem/dt ~= g x - I_mem + feedback,    g = I_gain / I_tau

so ``I_mem`` plays ``v`` and ``x`` plays ``v_leak + r I`` (times ``g``). The mapping:

- ``tau_mem`` -> ``I_tau = U_T C_mem / (kappa tau_mem)``, ``I_gain = gain_ratio_mem I_tau``;
- ``tau_syn`` -> the AMPA, NMDA and GABA synapses' ``I_tau`` (one value: the network has one);
- ``v_threshold`` -> the rheobase: ``A = drive_rh / v_threshold`` amperes of drive per unit of
  ``v`` make a constant input fire exactly when the LIF's would (steady state, see
  ``circuit.ignition``); ``I_spkthr`` = ``spike_threshold_factor`` x the ignition current
  (below it, so the threshold acts like the LIF's and the rheobase is the drive that holds
  ``I_mem`` at ``I_spkthr``);
- ``v_leak`` -> ``I_dc = 2 (I_tau + I0) + A v_leak`` (the first term cancels the leak);
- a weight ``W`` -> a jump ``A r |W|`` of the synapse current, i.e. a weight current
  ``I_w = A r |W| / ((1 - exp(-t_pulse / tau_syn)) gain_ratio_syn)``; positive weights drive
  AMPA (or NMDA where asked), negative ones GABA.

Where the chip differs from the LIF (documented, not corrected): currents cannot go below
``I0``, so ``v`` cannot go below ~0 (inhibition saturates and ``v_reset`` is always ~0); below
``I_gain`` the membrane integrates in the log domain (slower); the exponential feedback makes
the spike upswing take a few ticks once the rheobase is crossed; AHP and refractory period have
no LIF counterpart (the refractory period defaults to the simulator's 2 ms).

A non-spiking readout (``v_threshold = inf``) gets ``I_spkthr = inf`` and ``A`` chosen so
``v = 1`` sits ``readout_headroom`` times below the rheobase; its ``I_mem / (g A)`` is
the readout (dimensionless, ~``v``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.network import Population
from runtime.chips.dynapse2.circuit import Constants, charge_per_iw, ignition
from runtime.chips.profile import AdexCoreProfile

F64 = npt.NDArray[np.float64]

SYN_AMPA, SYN_NMDA, SYN_GABA = 0, 1, 2
SYN_NAMES = ("AMPA", "NMDA", "GABA")

PHYS = (
    "itau_mem",
    "igain_mem",
    "ispk",
    "idc",
    "if_nmda",
    "itau_ampa",
    "itau_nmda",
    "itau_gaba",
    "igain_ampa",
    "igain_nmda",
    "igain_gaba",
    "itau_ahp",
    "igain_ahp",
    "iw_ahp",
    "t_pulse",
    "t_pulse_ahp",
    "t_ref",
    "isat",
    "ro_norm",
)
"""Per-neuron physical parameters (A or s) the kernel's factors are computed from."""

MISMATCHED = PHYS[:14]
"""Bias currents that mismatch perturbs (pulse widths, refractory and readout scale are not)."""


@dataclass(frozen=True, slots=True)
class NeuronSetting:
    """What a neuron asks of its core; neurons with equal settings can share one."""

    tau_syn_s: float
    tau_mem_s: float
    r: float
    v_leak: float
    v_threshold: float
    v_reset: float
    refractory_s: float
    ahp_weight_a: float


@dataclass(frozen=True, slots=True)
class CoreBiases:
    setting: NeuronSetting
    values: dict[str, float]
    """One value per name in ``PHYS``."""
    amp_per_unit: float
    """``A``: drive (A) per unit of the LIF's ``v``."""
    charge: tuple[float, float, float]
    """Synapse current per ampere of weight current, AMPA/NMDA/GABA."""


def settings(pop: Population, refractory_s: float, ahp_weight_a: float) -> list[NeuronSetting]:
    return [
        NeuronSetting(
            float(pop.tau_syn_s[i]),
            float(pop.tau_mem_s[i]),
            float(pop.r[i]),
            float(pop.v_leak[i]),
            float(pop.v_threshold[i]),
            float(pop.v_reset[i]),
            refractory_s,
            ahp_weight_a,
        )
        for i in range(pop.size)
    ]


def core_biases(s: NeuronSetting, k: Constants, profile: AdexCoreProfile) -> CoreBiases:
    d = profile.defaults
    itau = k.itau(k.c_mem_f, s.tau_mem_s)
    igain = d.gain_ratio_mem.value * itau
    ign = ignition(k, itau, igain, d.saturation_a.value)
    # The threshold sits below the ignition current: the neuron then fires when its steady
    # state would cross I_spkthr (a LIF's hard threshold), not after the slow passage past
    # ignition that a drive just above the rheobase produces.
    ispk = d.spike_threshold_factor.value * ign.current_a
    drive = ignition(k, itau, igain, ispk).drive_a
    if math.isfinite(s.v_threshold):
        amp = drive / s.v_threshold
        ro_norm = ispk
    else:
        amp = drive / d.readout_headroom.value
        ispk = math.inf
        ro_norm = d.gain_ratio_mem.value * amp
    itau_syn = [k.itau(c, s.tau_syn_s) for c in k.c_syn_f]
    ratio_syn = d.gain_ratio_syn.value
    itau_ahp = k.itau(k.c_ahp_f, d.tau_ahp_s.value)
    values = {
        "itau_mem": itau,
        "igain_mem": igain,
        "ispk": ispk,
        "idc": 2.0 * (itau + k.io_a) + amp * s.v_leak,
        "if_nmda": d.nmda_gate_a.value,
        "itau_ampa": itau_syn[SYN_AMPA],
        "itau_nmda": itau_syn[SYN_NMDA],
        "itau_gaba": itau_syn[SYN_GABA],
        "igain_ampa": ratio_syn * itau_syn[SYN_AMPA],
        "igain_nmda": ratio_syn * itau_syn[SYN_NMDA],
        "igain_gaba": ratio_syn * itau_syn[SYN_GABA],
        "itau_ahp": itau_ahp,
        "igain_ahp": d.gain_ratio_ahp.value * itau_ahp,
        "iw_ahp": s.ahp_weight_a,
        "t_pulse": d.pulse_s.value,
        "t_pulse_ahp": d.pulse_ahp_s.value,
        "t_ref": s.refractory_s,
        "isat": d.saturation_a.value,
        "ro_norm": ro_norm,
    }
    ch = charge_per_iw(s.tau_syn_s, d.pulse_s.value, ratio_syn)
    return CoreBiases(s, values, amp, (ch, ch, ch))


def range_problems(name: str, b: CoreBiases, k: Constants, profile: AdexCoreProfile) -> list[str]:
    """Every core parameter of ``b`` outside its range, named with population and numbers."""
    rg = profile.ranges
    s = b.setting
    checks: list[tuple[str, float, str]] = [
        ("tau_mem_s", s.tau_mem_s, "tau_mem_s"),
        ("tau_syn_s", s.tau_syn_s, "tau_syn_s"),
        ("refractory_s", s.refractory_s, "refractory_s"),
        ("dc_a", b.values["idc"], "I_dc (from v_leak)"),
    ]
    if math.isfinite(b.values["ispk"]):
        checks.append(("spike_threshold_a", b.values["ispk"], "I_spkthr"))
    if s.ahp_weight_a > 0:
        checks.append(("tau_ahp_s", profile.defaults.tau_ahp_s.value, "tau_ahp_s"))
    out = []
    for field, value, label in checks:
        r = getattr(rg, field)
        if not r.holds(value):
            out.append(
                f"population {name}: {label} = {value:.4g} outside [{r.min:.4g}, {r.max:.4g}] "
                f"(range '{field}', {r.source})"
            )
    if not (s.v_threshold > 0):
        out.append(f"population {name}: v_threshold = {s.v_threshold:.4g} must be > 0 (or inf for a readout)")
    if not (math.isfinite(s.tau_mem_s) and math.isfinite(s.tau_syn_s) and s.r > 0):
        out.append(f"population {name}: tau_mem_s, tau_syn_s must be finite and r > 0 (r = {s.r:.4g})")
    return out
