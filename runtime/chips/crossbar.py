"""A running crossbar chip: state, clock, counters and energy over the compiled arrays.

``run`` is pure CPU work on numpy arrays (the kernel releases the GIL); the pipeline calls
it from a worker thread. One chip instance serves one stream at a time; ``reset`` starts a
new stream at stream time 0.
"""

from __future__ import annotations

import numpy as np

from runtime.chips.base import ChipResult, ChipStats, CompiledChip, EnergyModel
from runtime.chips.compile import Compiled
from runtime.chips.crossbar_kernel import (
    C_INPUT_EVENTS,
    C_N_IN,
    C_N_REC,
    C_NEXT_TICK_END,
    C_OUT_HI,
    C_OUT_LO,
    C_QUIET,
    C_REC_HI,
    C_REC_LO,
    C_SIZE,
    C_SOPS,
    C_SPIKES,
    C_TICK_US,
    C_TICKS,
    C_UPDATES,
    new_state,
    run_crossbar,
)
from sensors.blocks import SpikeBatch

_REC_CAPACITY_TICKS = 64
_EMPTY_T = np.empty(0, np.int64)
_EMPTY_N = np.empty(0, np.int32)


class CrossbarChip(CompiledChip[Compiled]):
    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        c = compiled
        self._n_out = c.out_hi - c.out_lo
        width = max(c.rec_hi - c.rec_lo, 1)
        self._out = np.empty((2, _REC_CAPACITY_TICKS * width), np.int64)
        self._energy = EnergyModel.of(c.profile.energy)
        self.reset()

    @property
    def n_outputs(self) -> int:
        return self._n_out

    def reset(self) -> None:
        """Fresh state at stream time 0: a new file must not inherit the previous one's state."""
        c = self.compiled
        self.S = new_state(c.P)
        self.C = np.zeros(C_SIZE, np.int64)
        self.C[C_NEXT_TICK_END] = c.tick_us
        self.C[C_TICK_US] = c.tick_us
        self.C[C_OUT_LO], self.C[C_OUT_HI] = c.out_lo, c.out_hi
        self.C[C_REC_LO], self.C[C_REC_HI] = c.rec_lo, c.rec_hi
        self.C[C_QUIET] = 1
        self.C[C_N_IN] = c.n_in
        self._t_us = 0

    def run(self, batch: SpikeBatch) -> ChipResult:
        # This wrapper runs once per 10 ms chunk in live use, so it avoids every copy it
        # can: the kernel's counters are zeroed here and read back once as Python ints.
        c = self.compiled
        C = self.C
        ro = np.empty((2, self._n_out), np.float64)  # filled by the kernel; fresh per batch
        out_t, out_n = _EMPTY_T, _EMPTY_N
        pos = 0
        fresh = True
        while True:
            pos, status, k = run_crossbar(
                batch.t_us,
                batch.ch,
                pos,
                batch.t_end_us,
                c.W,
                c.fanout,
                c.P,
                self.S,
                C,
                self._out,
                ro,
                fresh,
            )
            fresh = False
            if k:
                if len(out_t):
                    out_t = np.concatenate((out_t, self._out[0, :k]))
                    out_n = np.concatenate((out_n, self._out[1, :k].astype(np.int32)))
                else:
                    out_t = self._out[0, :k].copy()
                    out_n = self._out[1, :k].astype(np.int32)
                C[C_N_REC] = 0
            if status == 2:
                msg = (
                    f"{batch.stream}: spike at t={batch.t_us[pos]} us has channel {batch.ch[pos]}, "
                    f"the chip has inputs 0..{c.n_in - 1}"
                )
                raise ValueError(msg)
            if status == 0:
                break
        counters = C.tolist()
        t0 = self._t_us
        if batch.t_end_us > t0:
            self._t_us = batch.t_end_us
        sops, updates, spikes = counters[C_SOPS], counters[C_UPDATES], counters[C_SPIKES]
        energy_uj, static_uj = self._energy.uj(self._t_us - t0, sops, updates, spikes)
        stats = ChipStats(
            t0,
            self._t_us,
            counters[C_INPUT_EVENTS],
            sops,
            updates,
            spikes,
            counters[C_TICKS],
            energy_uj,
            static_uj,
            c.latency_us,
            ro[0],
            ro[1],
        )
        return ChipResult(out_t, out_n, stats)
