"""A running ``dynapcnn`` chip: state, clock, counters and energy over the compiled layers.

``run`` is pure CPU work on numpy arrays (the kernel releases the GIL); the pipeline calls
it from a worker thread. One instance serves one stream at a time; ``reset`` starts a new
stream at stream time 0.

A step is processed only once it is complete: events of a step that a batch's ``t_end_us``
cuts in two wait for the next batch, so results never depend on how a stream is split.
With the default 1 us step every step of a batch is complete. Output spikes carry the
time of the start of their step (the input event's own time at 1 us steps); the chip's
latency is reported separately (``latency_us``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runtime.chips.base import ChipResult, ChipStats, CompiledChip, EnergyModel
from runtime.chips.dynapcnn.compile import CompiledConv
from runtime.chips.dynapcnn.kernel import (
    C_INPUT_EVENTS,
    C_LAYER_SPIKES,
    C_N_OUT,
    C_SOPS,
    C_SPIKES,
    C_UPDATES,
    run_conv,
)
from runtime.chips.dynapcnn.layout import P_VOFF, build_layout, padded
from sensors.blocks import SpikeBatch

_EMPTY_T = np.empty(0, np.int64)
_EMPTY_CH = np.empty(0, np.int32)


class DynapcnnChip(CompiledChip[CompiledConv]):
    def __init__(self, compiled: CompiledConv) -> None:
        self.compiled = compiled
        self.layout = build_layout(compiled)
        self._energy = EnergyModel.of(compiled.profile.energy)
        self._bufs = np.zeros((8, self.layout.buffer), np.int64)
        last = compiled.layers[-1]
        f, fy, fx = last.conv_shape
        self._out = np.zeros((3, max(4096, 4 * f * fy * fx)), np.int64)
        self._ordered = fy * fx == 1
        # Readout: each class's state, max over the last layer's pooling window (the top-left
        # pool x pool positions: the only window of a 1x1 output), as flat indices into V.
        off, fp, p = int(self.layout.LP[-1, P_VOFF]), padded(f), last.pool
        win = [off + (y * fx + x) * fp for y in range(p) for x in range(p)]
        self._ro_first = win[0]
        self._ro_idx = np.array(win)[:, None] + np.arange(f)[None, :]
        self._ro_scale = last.scale
        self._zeros = np.zeros(compiled.n_out)
        self._zeros.flags.writeable = False
        self.reset()

    @property
    def n_outputs(self) -> int:
        return self.compiled.n_out

    def reset(self) -> None:
        """Fresh state at stream time 0: a new file must not inherit the previous one's state."""
        lay = self.layout
        self.V = np.zeros(lay.n_states, np.int32)
        self._flags = np.zeros(lay.n_positions, np.uint8)
        self._touched = np.zeros(lay.n_positions, np.int32)
        self.C = np.zeros(C_LAYER_SPIKES + len(self.compiled.layers), np.int64)
        self._pending_t = _EMPTY_T
        self._pending_ch = _EMPTY_CH
        self._t_us = 0

    @property
    def layer_spikes(self) -> list[int]:
        """Spikes per layer since the last ``reset``."""
        return [int(x) for x in self.C[C_LAYER_SPIKES:]]

    def layer_state(self, index: int) -> npt.NDArray[np.int32]:
        """Layer ``index``'s neuron states as (f, fy, fx) integers (a copy)."""
        lay = self.compiled.layers[index]
        f, fy, fx = lay.conv_shape
        fp = padded(f)
        off = int(self.layout.LP[index, P_VOFF])
        return self.V[off : off + fp * fy * fx].reshape(fy, fx, fp)[:, :, :f].transpose(2, 0, 1).copy()

    def run(self, batch: SpikeBatch) -> ChipResult:
        c = self.compiled
        t_us, ch = batch.t_us, batch.ch
        if len(self._pending_t):
            t_us = np.concatenate((self._pending_t, t_us))
            ch = np.concatenate((self._pending_ch, ch.astype(np.int32, copy=False)))
        step = c.step_us
        t_done = (max(batch.t_end_us, self._t_us) // step) * step
        self.C[:C_N_OUT] = 0  # per-call counters; the per-layer spike totals run on
        lay = self.layout
        drained: list[npt.NDArray[np.int64]] = []
        pos = 0
        while True:
            pos, status = run_conv(
                t_us,
                ch,
                pos,
                t_done,
                step,
                lay.LP,
                lay.W,
                self.V,
                self._flags,
                self._touched,
                lay.pool_y,
                lay.pool_x,
                lay.rows_n,
                lay.rows_o,
                lay.rows_k,
                lay.cols_n,
                lay.cols_o,
                lay.cols_k,
                self._bufs,
                self._out,
                self.C,
            )
            if status == 2:
                msg = (
                    f"{batch.stream}: event at t={t_us[pos]} us has channel {ch[pos]}, "
                    f"the chip has inputs 0..{c.n_in - 1} ({'x'.join(map(str, c.input_shape))})"
                )
                raise ValueError(msg)
            n = int(self.C[C_N_OUT])
            if n:
                drained.append(self._out[:, :n].copy())
                self.C[C_N_OUT] = 0
            if status == 0:
                break
        if pos < len(t_us):
            self._pending_t, self._pending_ch = t_us[pos:].copy(), ch[pos:].copy()
        elif len(self._pending_t):
            self._pending_t, self._pending_ch = _EMPTY_T, _EMPTY_CH
        return ChipResult(*_spikes(drained, self._ordered), self._stats(batch))

    def _stats(self, batch: SpikeBatch) -> ChipStats:
        d = self.C[:C_N_OUT].tolist()
        t0 = self._t_us
        if batch.t_end_us > t0:
            self._t_us = batch.t_end_us
        elapsed = self._t_us - t0
        ticks = max(1, elapsed // self.compiled.step_us) if elapsed > 0 else 0
        sops, updates, spikes = d[C_SOPS], d[C_UPDATES], d[C_SPIKES]
        energy_uj, static_uj = self._energy.uj(elapsed, sops, updates, spikes)
        return ChipStats(
            t0,
            self._t_us,
            d[C_INPUT_EVENTS],
            sops,
            updates,
            spikes,
            ticks,
            energy_uj,
            static_uj,
            self.compiled.latency_us,
            self._zeros,
            self._readout_state(),
        )

    def _readout_state(self) -> npt.NDArray[np.float64]:
        """Each class's state in the trained network's units (max over its pooling window)."""
        idx = self._ro_idx
        # A 1x1 map without pooling (the usual last layer) is a plain slice: no fancy indexing.
        one = idx.shape[0] == 1
        v = self.V[self._ro_first : self._ro_first + idx.shape[1]] if one else self.V[idx].max(axis=0)
        return v.astype(np.float64) * self._ro_scale


def _spikes(drained: list[npt.NDArray[np.int64]], ordered: bool) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Output entries (time, class, count) -> one spike per count, ordered by time then class.

    ``ordered``: the last layer has a single position, so its entries already come in that
    order (steps in time order, classes in channel order within a step); else sort.
    """
    if not drained:
        return _EMPTY_T, _EMPTY_CH
    out = drained[0] if len(drained) == 1 else np.concatenate(drained, axis=1)
    if not ordered:
        out = out[:, np.lexsort((out[1], out[0]))]
    return np.repeat(out[0], out[2]), np.repeat(out[1].astype(np.int32), out[2])
