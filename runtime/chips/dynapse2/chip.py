"""A running ``dynapse2`` chip: state, clock, counters and energy over the compiled arrays.

``run`` is pure CPU work on numpy arrays (the kernel releases the GIL). One instance serves
one stream at a time; ``reset`` starts a new stream at stream time 0. A tick is run only once
the batch's ``t_end_us`` covers it, so results do not depend on how a stream is split.
Energy: the profile's ``EnergyModel`` with the static power of every chip the network uses,
plus ``hop_pj`` per routed chip-to-chip hop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.network import Network
from runtime.chips.base import ChipResult, ChipStats, CompiledChip, EnergyModel
from runtime.chips.dynapse2 import kernel as kn
from runtime.chips.dynapse2.compile import Dynapse2Compiled, compile_dynapse2
from runtime.chips.profile import AdexCoreProfile
from sensors.blocks import SpikeBatch, batch_ends

_REC_CAPACITY_TICKS = 64
_EMPTY_T = np.empty(0, np.int64)
_EMPTY_N = np.empty(0, np.int32)


class Dynapse2Chip(CompiledChip[Dynapse2Compiled]):
    def __init__(self, compiled: Dynapse2Compiled) -> None:
        self.compiled = compiled
        c = compiled
        e = c.profile.energy
        self._n_out = c.out_hi - c.out_lo
        self._out = np.empty((2, _REC_CAPACITY_TICKS * max(self._n_out, 1)), np.int64)
        self._energy = EnergyModel(
            e.static_mw.value * c.n_chips, e.sop_pj.value * 1e-6, e.update_pj.value * 1e-6, e.spike_pj.value * 1e-6
        )
        self._hop_uj = c.profile.routing.hop_pj.value * 1e-6
        self._latency_us = c.latency_us
        self._net = (c.ptr, c.tgt, c.typ, c.dly, c.w, c.hops, c.KP, c.G)
        self._spk, self._W = kn.new_scratch(c.KP)
        self.reset()

    @property
    def n_outputs(self) -> int:
        return self._n_out

    def reset(self) -> None:
        """Fresh state at stream time 0: a new file must not inherit the previous one's state."""
        c = self.compiled
        self.S, self.Z, self.Q = kn.new_state(c.n_neurons, c.consts.io_a, c.ring)
        C = np.zeros(kn.C_SIZE, np.int64)
        C[kn.C_NEXT_TICK_END] = C[kn.C_TICK_US] = c.tick_us
        C[kn.C_OUT_LO], C[kn.C_OUT_HI] = c.out_lo, c.out_hi
        C[kn.C_REC] = 1 if c.out_spiking else 0
        C[kn.C_N_IN] = c.n_in
        C[kn.C_DUE_UNTIL] = -1
        self.C = C
        self._t_us = 0

    def run(self, batch: SpikeBatch) -> ChipResult:
        return self._run_pieces(batch, np.array([batch.t_end_us], np.int64))[0]

    def run_split(self, batch: SpikeBatch, step_us: int) -> list[ChipResult]:
        """``[self.run(b) for b in split_batch(batch, step_us)]``, the same results, in one kernel call.

        The pieces end where ``sensors.blocks.batch_ends`` cuts (as ``runtime.pipeline.split_batch``
        does); per-piece Python calls would cost more than the kernel does for 20 ms of a small network.
        """
        if step_us <= 0:
            msg = f"{batch.stream}: run_split needs step_us > 0, got {step_us}"
            raise ValueError(msg)
        return self._run_pieces(batch, np.array(batch_ends(batch.t_start_us, batch.t_end_us, step_us), np.int64))

    def _run_pieces(self, batch: SpikeBatch, ends: npt.NDArray[np.int64]) -> list[ChipResult]:
        n = len(ends)
        R = np.empty((n, 2, self._n_out), np.float64)
        P = np.empty((n, kn.P_SIZE), np.int64)
        self.C[kn.C_N_REC] = 0
        pos, piece, fresh, net = 0, 0, True, self._net
        while True:
            pos, piece, status = kn.run_pieces(
                batch.t_us, batch.ch, pos, ends, piece, net[0], net[1], net[2], net[3], net[4], net[5], net[6],
                net[7], self.S, self.Z, self.Q, self.C, self._out, R, P, fresh, self._spk, self._W,
            )  # fmt: skip
            if status == 0:
                break
            if status == 2:
                self.C[kn.C_N_REC] = 0
                raise self._bad_channel(batch, pos)
            fresh = False  # the record buffer is full: double it and carry on with the same piece
            self._out = np.concatenate((self._out, np.empty_like(self._out)), axis=1)
        self.C[kn.C_N_REC] = 0
        return self._results(ends.tolist(), P.tolist(), R)

    def _results(self, ends: list[int], counts: list[list[int]], R: np.ndarray) -> list[ChipResult]:
        n_rec = counts[-1][kn.P_N_REC]
        out_t, out_n = self._out[0, :n_rec].copy(), self._out[1, :n_rec].astype(np.int32)
        uj, hop_uj, latency_us = self._energy.uj, self._hop_uj, self._latency_us
        t1 = self._t_us
        prev = 0
        res = []
        for end, (ticks, sops, updates, spikes, events, hops, rec), ro in zip(ends, counts, R, strict=True):
            t0 = t1
            if end > t0:
                t1 = end
            energy_uj, static_uj = uj(t1 - t0, sops, updates, spikes)
            energy_uj += hops * hop_uj
            stats = ChipStats(
                t0, t1, events, sops, updates, spikes, ticks, energy_uj, static_uj, latency_us, ro[0], ro[1]
            )
            if rec > prev:
                res.append(ChipResult(out_t[prev:rec], out_n[prev:rec], stats))
                prev = rec
            else:
                res.append(ChipResult(_EMPTY_T, _EMPTY_N, stats))
        self._t_us = t1
        return res

    def _bad_channel(self, batch: SpikeBatch, pos: int) -> ValueError:
        msg = (
            f"{batch.stream}: spike at t={batch.t_us[pos]} us has channel {batch.ch[pos]}, "
            f"the chip has inputs 0..{self.compiled.n_in - 1}"
        )
        return ValueError(msg)

    @property
    def routed_hops(self) -> int:
        """Chip-to-chip hops routed in the last ``run``."""
        return int(self.C[kn.C_HOPS])


@dataclass(frozen=True, slots=True)
class MismatchComparison:
    spikes_ideal: int
    spikes_mismatch: int
    output_spikes_ideal: list[int]
    """Per readout neuron."""
    output_spikes_mismatch: list[int]
    readout_v_mean_ideal: list[float]
    readout_v_mean_mismatch: list[float]

    def lines(self) -> list[str]:
        return [
            f"spikes (all neurons): {self.spikes_ideal} without mismatch, {self.spikes_mismatch} with",
            f"readout spikes: {self.output_spikes_ideal} without, {self.output_spikes_mismatch} with",
            f"readout mean v: {[round(v, 4) for v in self.readout_v_mean_ideal]} without, "
            f"{[round(v, 4) for v in self.readout_v_mean_mismatch]} with",
        ]


def compare_mismatch(net: Network, profile: AdexCoreProfile, batch: SpikeBatch, seed: int) -> MismatchComparison:
    """Run ``batch`` on the ideal chip and on the chip drawn with ``seed``; compare their activity."""
    res = []
    for mm in (False, True):
        chip = Dynapse2Chip(compile_dynapse2(net, profile, mismatch=mm, seed=seed))
        r = chip.run(batch)
        n_out = chip.n_outputs
        ticks = max(r.stats.ticks, 1)
        res.append(
            (
                r.stats.spikes,
                np.bincount(r.spike_ch, minlength=n_out).tolist(),
                (r.stats.readout_v_sum / ticks).tolist(),
            )
        )
    (s0, o0, v0), (s1, o1, v1) = res
    return MismatchComparison(s0, s1, o0, o1, v0, v1)
