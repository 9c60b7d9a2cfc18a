"""The dynapse2 kernel against golden vectors recorded with rockpool's DynapSim (fixtures/DYNAPSIM_GOLDEN.md).

The kernel runs each fixture's own per-neuron parameters (as DynapSim used them). Compared: the
cases where DynapSim's lumped synapse and our separate AMPA/NMDA/GABA DPIs are the same
equations (a DC-driven neuron, AMPA input, strong AHP). Not compared, by design: GABA (case c:
DynapSim's inhibition only cancels excitation of the same step, ours is a decaying DPI) and the
mixed-gate network (case e: one lumped synapse there, four here).

Tolerance: DynapSim runs in float32, the kernel in float64; the recorder's notes report that a
float64 re-implementation of the same steps reproduces the spikes of a and b exactly and
shifts case d's later spikes (float32 drift accumulated through I_ahp) by 1-2 steps. Our
separate NMDA and GABA synapses sit at their floor (1% of I0) and shift the drive by ~1e-15 A.
So: spike steps equal in a and b, within 3 steps in d; I_mem traces within 1e-3 relative
(float32 rounding over hundreds of steps) wherever both are above 10 I0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dynapse2_util import D2, batch

from runtime.chips.dynapse2 import kernel as kn
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.circuit import Constants
from runtime.chips.dynapse2.compile import Dynapse2Compiled, kernel_factors
from runtime.chips.dynapse2.report import Dynapse2Report

FIX = Path(__file__).parent / "fixtures"


def _compiled(z: np.lib.npyio.NpzFile) -> Dynapse2Compiled:
    n, n_in = int(z["n_neurons"]), int(z["n_inputs"])
    dt = float(z["dt_s"])
    k = Constants(
        io_a=float(z["p_Io"][0]),
        ut_v=float(z["p_Ut"][0]),
        kappa=float((z["p_kappa_n"][0] + z["p_kappa_p"][0]) / 2),
        c_mem_f=float(z["p_C_mem"][0]),
        c_syn_f=(float(z["p_C_syn"][0]),) * 3,
        c_ahp_f=float(z["p_C_ahp"][0]),
    )
    phys = {
        "itau_mem": z["p_Itau_mem"],
        "igain_mem": z["p_Igain_mem"],
        "ispk": z["p_Ispkthr"],
        "idc": z["p_Idc"],
        "if_nmda": z["p_If_nmda"],
        "itau_ahp": z["p_Itau_ahp"],
        "igain_ahp": z["p_Igain_ahp"],
        "iw_ahp": z["p_Iw_ahp"],
        "t_pulse": z["d_t_pulse_s"],
        "t_pulse_ahp": z["d_t_pulse_ahp_s"],
        "t_ref": z["d_t_ref_s"],
        "isat": np.full(n, np.inf),
        "ro_norm": np.ones(n),
    }
    for syn in ("ampa", "nmda", "gaba"):
        phys[f"itau_{syn}"] = z["p_Itau_syn"]
        phys[f"igain_{syn}"] = z["p_Igain_syn"]
    w_in = z["w_in"] * float(z["iscale_a"])
    src, tgt = np.nonzero(w_in)
    assert (w_in[src, tgt] > 0).all() and not z["w_rec"].any()
    ptr = np.zeros(n_in + n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n_in + n), out=ptr[1:])
    report = Dynapse2Report("golden", n, n_in, len(src), 1, (), 0.0, 0, (), False, 0)
    return Dynapse2Compiled(
        profile=D2, n_in=n_in, n_neurons=n, phys=phys, consts=k, KP=kernel_factors(phys, k, dt),
        G=np.array([k.io_a, k.feedback_exponent]), ptr=ptr, tgt=tgt.astype(np.int64),
        typ=np.zeros(len(src), np.int64), dly=np.zeros(len(src), np.int64), w=w_in[src, tgt],
        hops=np.zeros(n_in + n, np.int64), ring=2, out_lo=0, out_hi=n, out_spiking=True,
        tick_us=round(dt * 1e6), latency_us=0.0, n_chips=1, report=report,
    )  # fmt: skip


@pytest.mark.parametrize(("case", "step_tol"), [("a_dc", 0), ("b_ampa", 0), ("d_ahp", 3)])
def test_kernel_reproduces_dynapsim(case: str, step_tol: int) -> None:
    z = np.load(FIX / f"dynapsim_{case}.npz")
    c = _compiled(z)
    chip = Dynapse2Chip(c)
    tick = c.tick_us
    ev_t = z["in_step"].astype(np.int64) * tick
    ev_ch = z["in_channel"].astype(np.int32)
    imem = np.zeros(int(z["n_steps"]))
    steps: list[int] = []
    for s in range(int(z["n_steps"])):
        lo, hi = np.searchsorted(ev_t, [s * tick, (s + 1) * tick])
        r = chip.run(batch(ev_t[lo:hi], ev_ch[lo:hi], c.n_in, (s + 1) * tick, s * tick))
        steps += [int(t) // tick - 1 for t in r.spike_t_us]
        imem[s] = chip.S[kn.S_MEM, 0]
    golden = z["out_step"].tolist()
    assert len(steps) == len(golden) and len(golden) >= 3
    assert np.max(np.abs(np.array(steps) - np.array(golden))) <= step_tol
    if step_tol == 0:
        io = c.consts.io_a
        ref = z["imem"][:, 0].astype(np.float64)
        both = (ref > 10 * io) & (imem > 10 * io)
        assert both.sum() > 100
        np.testing.assert_allclose(imem[both], ref[both], rtol=1e-3)
