"""Circuit arithmetic of the DPI neuron and synapses in DynapSim's physical parametrisation.

Currents are in A, capacitances in F, times in s. A DPI with leak current ``I_tau`` on a
capacitor ``C`` has the time constant ``tau = C U_T / (kappa I_tau)``, with
``kappa = (kappa_n + kappa_p) / 2``. One input spike charges a synapse by
``(1 - exp(-t_pulse / tau)) (I_gain / I_tau) I_w``.

The membrane's exponential (AdEx) positive feedback is ``I_fb = I0 (I_mem / I0)^(kappa / (kappa + 1))``
(DynapSim writes it as ``I0 exp(kappa^2 / (kappa + 1) V_mem / U_T)`` with
``V_mem = U_T / kappa ln(I_mem / I0)``). At rest (``I_ahp = I0``) a neuron driven with a
constant input has a fixed point where

    g x = h(I) = I (1 + I0 / I_tau) - I_fb(I) (I + I_gain) / (I_tau + I0)

(``g = I_gain / I_tau``, ``x`` the drive after the leak has been taken off twice, see
``kernel``). ``h`` rises, peaks where the feedback overtakes the leak (the *ignition*
current) and falls: above ``max h / g`` no fixed point is left below threshold and the
neuron fires. That is the rheobase the compiler maps the LIF threshold to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.chips.profile import AdexCoreProfile


@dataclass(frozen=True, slots=True)
class Constants:
    io_a: float
    ut_v: float
    kappa: float
    c_mem_f: float
    c_syn_f: tuple[float, float, float]
    """AMPA, NMDA, GABA."""
    c_ahp_f: float

    @property
    def feedback_exponent(self) -> float:
        return self.kappa / (self.kappa + 1.0)

    def itau(self, c_f: float, tau_s: float) -> float:
        """Leak current that gives ``tau_s`` on ``c_f``."""
        return self.ut_v * c_f / (self.kappa * tau_s)

    def feedback(self, i_mem: float) -> float:
        return float(self.io_a * (i_mem / self.io_a) ** self.feedback_exponent)


def constants(profile: AdexCoreProfile) -> Constants:
    c = profile.circuit
    return Constants(
        io_a=c.io_a.value,
        ut_v=c.ut_v.value,
        kappa=(c.kappa_n.value + c.kappa_p.value) / 2.0,
        c_mem_f=c.c_mem_f.value,
        c_syn_f=(c.c_ampa_f.value, c.c_nmda_f.value, c.c_gaba_f.value),
        c_ahp_f=c.c_ahp_f.value,
    )


@dataclass(frozen=True, slots=True)
class Ignition:
    current_a: float
    """Where ``h`` peaks: above it the exponential feedback runs away."""
    drive_a: float
    """``max h / g`` over ``[I0, i_max]``: the rheobase in units of the drive ``x``."""


def ignition(k: Constants, itau_mem_a: float, igain_mem_a: float, i_max_a: float) -> Ignition:
    """Ignition current and rheobase of a membrane, searched on a log grid up to ``i_max_a``."""
    i = np.geomspace(k.io_a, max(i_max_a, k.io_a * 1.0001), 4000)
    fb = k.io_a * (i / k.io_a) ** k.feedback_exponent
    h = i * (1.0 + k.io_a / itau_mem_a) - fb * (i + igain_mem_a) / (itau_mem_a + k.io_a)
    j = int(np.argmax(h))
    g = igain_mem_a / itau_mem_a
    return Ignition(float(i[j]), float(max(h[j], 0.0)) / g)


def charge_per_iw(tau_s: float, pulse_s: float, gain_ratio: float) -> float:
    """Synapse current added by one spike per ampere of weight current."""
    return float((1.0 - np.exp(-pulse_s / tau_s)) * gain_ratio)
