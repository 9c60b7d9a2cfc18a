"""What ``compile_convnet`` tells the user: core table, quantisation errors, warnings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoreRow:
    """One core of the chip and the layer on it (``layer`` empty: free)."""

    core: int
    layer: str
    kernel_used: int
    kernel_available: int
    neuron_used: int
    neuron_available: int


@dataclass(frozen=True, slots=True)
class QuantReport:
    """How one conv/IAF pair was rounded to the chip's integers."""

    name: str
    scale: float
    """Weight of one quantisation step (max |w| / 127)."""
    rms_error_rel: float
    """RMS weight rounding error relative to the RMS of the float weights."""
    max_error_steps: float
    """Largest weight rounding error, in steps (<= 0.5)."""
    threshold_steps: int
    threshold_error_rel: float
    """(quantised threshold - threshold) / threshold."""
    floor_steps: int


@dataclass(frozen=True, slots=True)
class ConvReport:
    chip: str
    step_us: int
    latency_us: float
    cores: tuple[CoreRow, ...]
    layers: tuple[QuantReport, ...]
    warnings: tuple[str, ...]

    def summary(self) -> dict[str, int]:
        """Resource totals for ``models check --json``."""
        used = [r for r in self.cores if r.layer]
        return {
            "layers": len(self.layers),
            "cores_used": len(used),
            "cores": len(self.cores),
            "kernel_memory": sum(r.kernel_used for r in used),
            "neuron_memory": sum(r.neuron_used for r in used),
        }

    def lines(self) -> list[str]:
        out = [
            f"chip {self.chip}: {len(self.layers)} layers on {self.summary()['cores_used']} of {len(self.cores)} "
            f"cores, step {self.step_us} us, latency {self.latency_us:.3g} us"
        ]
        width = max([len("layer"), *(len(r.layer) for r in self.cores)])
        out.append(f"  core  {'layer':<{width}}  {'kernel memory':>15}  {'neuron memory':>15}")
        for r in self.cores:
            if r.layer:
                kern = f"{r.kernel_used}/{r.kernel_available}"
                neur = f"{r.neuron_used}/{r.neuron_available}"
                out.append(f"  {r.core:>4}  {r.layer:<{width}}  {kern:>15}  {neur:>15}")
            else:
                out.append(
                    f"  {r.core:>4}  {'(free)':<{width}}  {'-/' + str(r.kernel_available):>15}  "
                    f"{'-/' + str(r.neuron_available):>15}"
                )
        for q in self.layers:
            out.append(
                f"  {q.name}: step {q.scale:.4g}, weight rms error {100 * q.rms_error_rel:.2f} %, "
                f"max {q.max_error_steps:.2f} steps; threshold {q.threshold_steps} steps "
                f"(rounding error {100 * q.threshold_error_rel:+.2f} %), floor {q.floor_steps}"
            )
        out += [f"  warning: {w}" for w in self.warnings]
        return out
