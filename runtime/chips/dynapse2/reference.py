"""Plain numpy reference of the DYNAP-SE2 equations (for tests only), written apart from ``kernel``.

It starts from the physical parameters (``Dynapse2Compiled.phys``: currents, pulse widths,
refractory period; capacitances, ``U_T``, ``kappa`` from ``consts``) and derives every factor
itself; it steps every tick densely over all neurons (no skipping), keeps the membrane
voltage ``V = U_T / kappa ln(I_mem / I0)`` as DynapSim does and gets the feedback as
``I0 exp(kappa^2 / (kappa + 1) V / U_T)``, and gathers due weight currents from dense
per-delay matrices and the history of spikes instead of a ring buffer. Only the synapse list
(the compiled connectivity) is shared with the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.chips.dynapse2.compile import Dynapse2Compiled

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReferenceResult:
    spike_t_us: npt.NDArray[np.int64]
    spike_n: npt.NDArray[np.int64]
    i_mem: F64
    """Membrane current of every neuron after every tick, shape (ticks, N)."""
    i_syn: F64
    """AMPA, NMDA, GABA currents after every tick, shape (ticks, 3, N)."""


def _dense(c: Dynapse2Compiled) -> tuple[list[int], F64, F64]:
    """Delays present, and weight currents as (delay, type, source, target) for inputs and neurons."""
    src = np.repeat(np.arange(len(c.ptr) - 1), np.diff(c.ptr))
    delays = sorted({int(d) for d in c.dly})
    w_in = np.zeros((len(delays), 3, c.n_in, c.n_neurons))
    w_rec = np.zeros((len(delays), 3, c.n_neurons, c.n_neurons))
    for j in range(len(c.w)):
        d = delays.index(int(c.dly[j]))
        s = int(src[j])
        if s < c.n_in:
            w_in[d, c.typ[j], s, c.tgt[j]] += c.w[j]
        else:
            w_rec[d, c.typ[j], s - c.n_in, c.tgt[j]] += c.w[j]
    return delays, w_in, w_rec


def run_reference(
    c: Dynapse2Compiled, ev_t_us: npt.NDArray[np.int64], ev_ch: npt.NDArray[np.int32], t_end_us: int
) -> ReferenceResult:
    p, k = c.phys, c.consts
    dt = c.tick_us * 1e-6
    io, ut, kap = k.io_a, k.ut_v, k.kappa
    n = c.n_neurons
    n_ticks = t_end_us // c.tick_us
    # Synapse factors, per type (rows) and neuron (columns).
    caps = np.array(k.c_syn_f)[:, None]
    itau_s = np.maximum(np.stack([p["itau_ampa"], p["itau_nmda"], p["itau_gaba"]]), io)
    igain_s = np.maximum(np.stack([p["igain_ampa"], p["igain_nmda"], p["igain_gaba"]]), io)
    tau_s = caps * ut / (kap * itau_s)
    syn_decay = np.exp(-dt / tau_s)
    itau_ahp = np.maximum(p["itau_ahp"], io)
    tau_ahp = k.c_ahp_f * ut / (kap * itau_ahp)
    ahp_decay = np.exp(-dt / tau_ahp)
    ahp_charge = -np.expm1(-p["t_pulse_ahp"] / tau_ahp) * np.maximum(p["igain_ahp"], io) / itau_ahp * p["iw_ahp"]
    itau = np.maximum(p["itau_mem"], io)
    igain = np.maximum(p["igain_mem"], io)
    n_ref = np.ceil(p["t_ref"] / dt - 1e-9).astype(np.int64)
    delays, w_in, w_rec = _dense(c)

    counts = np.zeros((n_ticks, c.n_in))
    keep = ev_t_us < n_ticks * c.tick_us
    np.add.at(counts, (ev_t_us[keep] // c.tick_us, ev_ch[keep]), 1.0)
    spikes = np.zeros((n_ticks, n))
    isyn = np.full((3, n), io)
    iahp = np.full(n, io)
    imem = np.full(n, io)
    vmem = np.zeros(n)
    blocked = np.zeros(n, np.int64)
    trace = np.zeros((n_ticks, n))
    syn_trace = np.zeros((n_ticks, 3, n))
    for t in range(n_ticks):
        iw = np.zeros((3, n))
        for di, d in enumerate(delays):
            if t - d >= 0:
                iw += np.einsum("c,scn->sn", counts[t - d], w_in[di])
            if t - 1 - d >= 0:
                iw += np.einsum("m,smn->sn", spikes[t - 1 - d], w_rec[di])
        isyn = syn_decay * isyn - np.expm1(-p["t_pulse"] / tau_s) * np.maximum(igain_s / itau_s * iw, io)
        iahp = np.maximum(ahp_decay * iahp + ahp_charge * (spikes[t - 1] if t else 0.0), io)
        ileak = itau + iahp
        refractory = blocked > 0
        i_in = isyn[0] + isyn[1] / (1.0 + p["if_nmda"] / imem) - isyn[2] + p["idc"] - ileak
        i_in = np.maximum(np.where(refractory, 0.0, i_in), io)
        blocked = np.maximum(blocked - 1, 0)
        i_fb = io * np.exp(kap**2 / (kap + 1.0) * vmem / ut)
        tau_m = k.c_mem_f * ut / (kap * ileak)
        rhs = igain / itau * (i_in - ileak) + i_fb / ileak * (imem + igain) - imem * (1.0 + iahp / itau)
        imem = imem + dt * imem / (tau_m * (imem + igain)) * rhs
        imem = np.minimum(np.maximum(imem, io), p["isat"])
        vmem = ut / kap * np.log(imem / io)
        fired = imem > p["ispk"]
        spikes[t] = fired
        imem = np.where(fired, io, imem)
        blocked = np.where(fired, n_ref, blocked)
        trace[t] = imem
        syn_trace[t] = isyn
    tk, nk = np.nonzero(spikes)
    return ReferenceResult(((tk + 1) * c.tick_us).astype(np.int64), nk.astype(np.int64), trace, syn_trace)
