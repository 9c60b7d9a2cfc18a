"""What every chip emulator gives the pipeline: per-batch results and a small protocol.

A chip takes a ``SpikeBatch`` of input events (stream time, channel address) and returns a
``ChipResult``: the output population's spikes plus ``ChipStats`` (counters, energy,
readout accumulators). The pipeline, readout and telemetry see only these types, so a new
chip kernel plugs in without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from runtime.chips.profile import Energy
from sensors.blocks import SpikeBatch


class ChipStats(NamedTuple):
    """What one batch cost on the chip (deltas, not running totals)."""

    t_start_us: int
    t_end_us: int
    input_events: int
    sops: int
    neuron_updates: int
    spikes: int
    ticks: int
    energy_uj: float
    static_energy_uj: float
    latency_us: float
    readout_v_sum: npt.NDArray[np.float64]
    """Sum over the batch's ticks of each readout neuron's membrane."""
    readout_v_max: npt.NDArray[np.float64]
    """Maximum over the batch's ticks of each readout neuron's membrane (-inf: no tick)."""


class ChipResult(NamedTuple):
    # NamedTuples rather than frozen dataclasses: immutable too, and four times cheaper to
    # build, which matters at one result per 10 ms chunk per pipeline.
    spike_t_us: npt.NDArray[np.int64]
    """Spikes of the recorded (spiking readout) population, stream time."""
    spike_ch: npt.NDArray[np.int32]
    """Neuron index within the readout population."""
    stats: ChipStats


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """``E = P_static * t + E_sop * sops + E_update * updates + E_spike * spikes`` in µJ.

    The profile's constants turned into plain floats once: chips evaluate this per batch.
    """

    static_mw: float
    sop_uj: float
    update_uj: float
    spike_uj: float

    @classmethod
    def of(cls, e: Energy) -> EnergyModel:
        return cls(e.static_mw.value, e.sop_pj.value * 1e-6, e.update_pj.value * 1e-6, e.spike_pj.value * 1e-6)

    def uj(self, elapsed_us: int, sops: int, updates: int, spikes: int) -> tuple[float, float]:
        """``(total, static)`` energy of ``elapsed_us`` of stream time with these counts."""
        static = self.static_mw * elapsed_us * 1e-3
        return static + sops * self.sop_uj + updates * self.update_uj + spikes * self.spike_uj, static


class Chip(Protocol):
    """A running chip emulator: one stream at a time, ``reset`` between streams."""

    @property
    def name(self) -> str:
        """Profile name (``snp``, ``dynapcnn``, ...)."""
        ...

    @property
    def latency_us(self) -> float:
        """Chip-time latency from an input event to the readout."""
        ...

    @property
    def n_inputs(self) -> int: ...

    @property
    def n_outputs(self) -> int: ...

    def run(self, batch: SpikeBatch) -> ChipResult: ...

    def reset(self) -> None: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _CompiledModel(Protocol):
    """What every compiled network says about itself (``Compiled``, ``CompiledConv``, ``Dynapse2Compiled``)."""

    @property
    def profile(self) -> _Named: ...

    @property
    def latency_us(self) -> float: ...

    @property
    def n_in(self) -> int: ...


CompiledT = TypeVar("CompiledT", bound=_CompiledModel)


class CompiledChip(Generic[CompiledT]):
    """The ``Chip`` properties that come straight from the compiled network, shared by the emulators."""

    compiled: CompiledT

    @property
    def name(self) -> str:
        return self.compiled.profile.name

    @property
    def latency_us(self) -> float:
        return self.compiled.latency_us

    @property
    def n_inputs(self) -> int:
        return self.compiled.n_in
