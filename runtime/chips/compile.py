"""Compile a ``Network`` onto a crossbar chip profile: check, quantise, draw mismatch.

Every limit is checked before anything runs, and all violations are reported together,
each naming the layer, the limit and the numbers: late, opaque mapping errors are what
users of vendor SDKs complain about most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.network import Network
from runtime.chips.crossbar_kernel import (
    P_ALPHA,
    P_BETA,
    P_EPS,
    P_GAIN,
    P_LEAK,
    P_RESET,
    P_REST,
    P_THETA,
)
from runtime.chips.profile import CrossbarProfile, Sourced


class CompileError(ValueError):
    """The network does not fit the chip. ``problems`` lists every violation."""

    def __init__(self, chip: str, problems: list[str], model: str | None = None) -> None:
        self.chip = chip
        self.problems = problems
        self.model = model
        """The bundle (name@version and path) when known, so that the error names the input."""
        which = f"model {model}" if model else "model"
        super().__init__(f"{which} does not fit chip {chip!r}:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class LayerReport:
    name: str
    source: str
    target: str
    shape: tuple[int, int]
    synapses: int
    """Non-zero weights after quantisation: the crossbar cells the layer occupies."""
    scale: float
    """Weight of one quantisation step."""
    rms_error_rel: float
    """RMS quantisation error relative to the RMS of the float weights."""
    max_error_steps: float
    """Largest rounding error, in quantisation steps (<= 0.5 unless clipped)."""


@dataclass(frozen=True, slots=True)
class CompileReport:
    chip: str
    neurons: int
    synapses: int
    inputs: int
    model_bytes: int
    layers: tuple[LayerReport, ...]
    warnings: tuple[str, ...]
    mismatch: bool
    seed: int

    def summary(self) -> dict[str, int]:
        """Resource totals for ``models check --json``."""
        return {
            "neurons": self.neurons,
            "synapses": self.synapses,
            "inputs": self.inputs,
            "model_bytes": self.model_bytes,
        }

    def lines(self) -> list[str]:
        out = [
            f"chip {self.chip}: {self.neurons} neurons, {self.synapses} synapses, {self.inputs} inputs, "
            f"{self.model_bytes} bytes of weights, mismatch {f'on (seed {self.seed})' if self.mismatch else 'off'}"
        ]
        for lay in self.layers:
            out.append(
                f"  {lay.name}: {lay.source} -> {lay.target} {lay.shape[0]}x{lay.shape[1]}, "
                f"{lay.synapses} synapses, step {lay.scale:.4g}, rms error {100 * lay.rms_error_rel:.2f} %"
            )
        out += [f"  warning: {w}" for w in self.warnings]
        return out


@dataclass(frozen=True)
class Compiled:
    """Arrays the kernel runs on, plus what the rest of the runtime needs to know."""

    profile: CrossbarProfile
    W: npt.NDArray[np.float32]
    """Crossbar, shape (n_in + N, N): row = source (input channel, then neuron), column = target."""
    fanout: npt.NDArray[np.int64]
    P: npt.NDArray[np.float32]
    n_in: int
    out_lo: int
    out_hi: int
    rec_lo: int
    rec_hi: int
    tick_us: int
    latency_us: float
    report: CompileReport


def _limit(value: float, lim: Sourced) -> bool:
    return value > lim.value


def _quantise(w: npt.NDArray[np.float64], bits: int) -> tuple[npt.NDArray[np.float64], float]:
    levels = 2 ** (bits - 1) - 1
    peak = float(np.abs(w).max()) if w.size else 0.0
    scale = peak / levels if peak > 0 else 1.0
    return np.clip(np.round(w / scale), -levels, levels) * scale, scale


def compile_network(
    net: Network, profile: CrossbarProfile, *, mismatch: bool | None = None, seed: int = 0, strict: bool = False
) -> Compiled:
    lim = profile.limits
    problems: list[str] = []
    warnings: list[str] = []
    bits = int(profile.precision.weight_bits.value)
    tick_us = int(profile.timing.tick_us.value)

    if _limit(net.n_inputs, lim.inputs):
        problems.append(
            f"input: {net.n_inputs} channels > {lim.inputs.value:.0f} (limit 'inputs', {lim.inputs.source})"
        )
    if _limit(net.n_neurons, lim.neurons):
        parts = " + ".join(f"{p.name} {p.size}" for p in net.populations)
        problems.append(
            f"neurons: {net.n_neurons} ({parts}) > {lim.neurons.value:.0f} (limit 'neurons', {lim.neurons.source})"
        )

    offsets: dict[str, int] = {}
    base = 0
    for pop in net.populations:
        offsets[pop.name] = base
        base += pop.size
        tau_min = float(min(pop.tau_syn_s.min(), pop.tau_mem_s.min()))
        if tau_min * 1e6 < tick_us:
            warnings.append(
                f"layer {pop.name}: time constant {tau_min * 1e3:.3g} ms is shorter than the {tick_us} us tick"
            )
    n = net.n_neurons
    W = np.zeros((net.n_inputs + n, n), np.float64)
    layers: list[LayerReport] = []
    for proj in net.projections:
        wq, scale = _quantise(proj.weight, bits)
        err = wq - proj.weight
        rms = float(np.sqrt(np.mean(proj.weight**2))) or 1.0
        syn = int(np.count_nonzero(wq))
        layers.append(
            LayerReport(
                name=proj.name,
                source=proj.source,
                target=proj.target,
                shape=(int(proj.weight.shape[0]), int(proj.weight.shape[1])),
                synapses=syn,
                scale=scale,
                rms_error_rel=float(np.sqrt(np.mean(err**2))) / rms,
                max_error_steps=float(np.abs(err).max() / scale) if err.size else 0.0,
            )
        )
        rows = (
            slice(0, net.n_inputs)
            if proj.source == "input"
            else slice(net.n_inputs + offsets[proj.source], net.n_inputs + offsets[proj.source] + proj.weight.shape[1])
        )
        cols = slice(offsets[proj.target], offsets[proj.target] + proj.weight.shape[0])
        W[rows, cols] += wq.T
    synapses = sum(lay.synapses for lay in layers)
    if _limit(synapses, lim.synapses):
        parts = ", ".join(f"layer {lay.name} {lay.synapses}" for lay in layers)
        problems.append(
            f"synapses: {synapses} ({parts}) > {lim.synapses.value:.0f} (limit 'synapses', {lim.synapses.source})"
        )
    model_bytes = math.ceil(synapses * bits / 8)
    if _limit(model_bytes, lim.model_bytes):
        text = (
            f"model size: {model_bytes} bytes of {bits}-bit weights > {lim.model_bytes.value:.0f} "
            f"(limit 'model_bytes', {lim.model_bytes.source})"
        )
        (problems if strict else warnings).append(text)
    if problems:
        raise CompileError(profile.name, problems)

    use_mismatch = profile.mismatch.enabled if mismatch is None else mismatch
    P = _neuron_params(net, profile, tick_us, use_mismatch, seed, W)
    out = net.population(net.output)
    out_lo = offsets[net.output]
    report = CompileReport(
        chip=profile.name,
        neurons=n,
        synapses=synapses,
        inputs=net.n_inputs,
        model_bytes=model_bytes,
        layers=tuple(layers),
        warnings=tuple(warnings),
        mismatch=use_mismatch,
        seed=seed,
    )
    W32 = W.astype(np.float32)
    return Compiled(
        profile=profile,
        W=W32,
        fanout=np.count_nonzero(W32, axis=1).astype(np.int64),
        P=P,
        n_in=net.n_inputs,
        out_lo=out_lo,
        out_hi=out_lo + out.size,
        rec_lo=out_lo if out.spiking else 0,
        rec_hi=out_lo + out.size if out.spiking else 0,
        tick_us=tick_us,
        latency_us=net.depth() * profile.timing.layer_latency_us.value,
        report=report,
    )


def _neuron_params(
    net: Network, profile: CrossbarProfile, tick_us: int, mismatch: bool, seed: int, W: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    cat = {
        f: np.concatenate([getattr(p, f) for p in net.populations])
        for f in ("tau_syn_s", "tau_mem_s", "r", "v_leak", "v_threshold", "v_reset")
    }
    if mismatch:
        # Frozen per-device draw: the same seed is the same chip, run after run.
        rng = np.random.default_rng(seed)
        mm = profile.mismatch
        nz = W != 0
        W[nz] *= 1.0 + mm.weight_sigma.value * rng.standard_normal(int(nz.sum()))
        n = len(cat["tau_syn_s"])
        cat["tau_syn_s"] = cat["tau_syn_s"] * np.clip(1 + mm.tau_sigma.value * rng.standard_normal(n), 0.2, None)
        cat["tau_mem_s"] = cat["tau_mem_s"] * np.clip(1 + mm.tau_sigma.value * rng.standard_normal(n), 0.2, None)
        cat["v_threshold"] = cat["v_threshold"] * (1 + mm.threshold_sigma.value * rng.standard_normal(n))
    dt = tick_us * 1e-6
    beta = np.exp(-dt / cat["tau_mem_s"])
    P = np.zeros((8, len(beta)), np.float64)
    P[P_ALPHA] = np.exp(-dt / cat["tau_syn_s"])
    P[P_BETA] = beta
    P[P_GAIN] = (1 - beta) * cat["r"]
    P[P_LEAK] = (1 - beta) * cat["v_leak"]
    P[P_THETA] = np.where(np.isfinite(cat["v_threshold"]), cat["v_threshold"], np.finfo(np.float32).max)
    P[P_RESET] = cat["v_reset"]
    P[P_REST] = cat["v_leak"]
    finite = np.abs(cat["v_threshold"][np.isfinite(cat["v_threshold"])])
    P[P_EPS, 0] = 1e-6 * (float(finite.min()) if finite.size else 1.0)
    return P.astype(np.float32)
