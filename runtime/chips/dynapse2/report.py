"""What ``compile_dynapse2`` reports: placement, base weights and their fitting error."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoreReport:
    core: int
    chip: int
    populations: tuple[str, ...]
    neurons: int
    synapses: int
    """Incoming synapses (CAM entries in use) of the core's neurons."""
    base_weights_a: tuple[float, ...]
    rms_error_rel: float
    """Weight fitting error of the core: RMS of (fitted - float) / RMS of float weight currents."""
    spike_threshold_a: float
    itau_mem_a: float


@dataclass(frozen=True, slots=True)
class Dynapse2Report:
    chip: str
    neurons: int
    inputs: int
    synapses: int
    chips: int
    cores: tuple[CoreReport, ...]
    weight_rms_error_rel: float
    """Over all synapses, before mismatch."""
    routed_hops_per_event_max: int
    warnings: tuple[str, ...]
    mismatch: bool
    seed: int

    def summary(self) -> dict[str, int]:
        """Resource totals for ``models check --json``."""
        return {
            "neurons": self.neurons,
            "synapses": self.synapses,
            "inputs": self.inputs,
            "chips": self.chips,
            "cores": len(self.cores),
        }

    def lines(self) -> list[str]:
        out = [
            f"chip {self.chip}: {self.neurons} neurons on {len(self.cores)} core(s) of {self.chips} chip(s), "
            f"{self.synapses} synapses, {self.inputs} inputs, weight fit rms error "
            f"{100 * self.weight_rms_error_rel:.2f} %, mismatch {f'on (seed {self.seed})' if self.mismatch else 'off'}"
        ]
        for c in self.cores:
            thr = f"{c.spike_threshold_a:.3g} A" if math.isfinite(c.spike_threshold_a) else "none (readout)"
            out.append(
                f"  core {c.core} (chip {c.chip}): {'/'.join(c.populations)} {c.neurons} neurons, "
                f"{c.synapses} synapses, base weights {', '.join(f'{b:.3g}' for b in c.base_weights_a)} A, "
                f"rms error {100 * c.rms_error_rel:.2f} %, I_tau {c.itau_mem_a:.3g} A, I_spkthr {thr}"
            )
        if self.chips > 1:
            out.append(f"  routing: up to {self.routed_hops_per_event_max} chip-to-chip hop(s) per event")
        out += [f"  warning: {w}" for w in self.warnings]
        return out
