"""Compile a ``ConvNet`` onto a conv-core chip profile: check, map to cores, quantise.

Every rule is checked before anything runs and all violations are reported together, each
naming the layer, the rule, the number and the limit: late, opaque mapping errors are what
users of vendor SDKs complain about most.

Quantisation uses one scale per conv/IAF pair, so the layer's dynamics are unchanged up to
rounding: ``s = max|w| / 127``, ``w_q = round(w / s)``, ``theta_q = round(theta / s)``,
``v_min_q = max(round(v_min / s), -2^15)``. ``round`` is numpy's (half to even, as torch's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.convnet import ConvLayer, ConvNet
from runtime.chips.compile import CompileError
from runtime.chips.dynapcnn.mapping import Capacity, Need, assign_cores, kernel_memory, neuron_memory
from runtime.chips.dynapcnn.report import ConvReport, CoreRow, QuantReport
from runtime.chips.profile import ConvCoreProfile

I32 = npt.NDArray[np.int32]
Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class ChipLayer:
    """One layer as the chip runs it: integers only, plus its float scale."""

    name: str
    in_shape: Shape3
    conv_shape: Shape3
    out_shape: Shape3
    weight: I32
    """(out_channels, in_channels, k, k), |w| <= 127."""
    kernel: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    pool: int
    threshold: int
    v_min: int
    scale: float
    core: int


@dataclass(frozen=True)
class CompiledConv:
    """What the ``dynapcnn`` kernel runs, plus what the rest of the runtime needs to know."""

    profile: ConvCoreProfile
    input_shape: Shape3
    layers: tuple[ChipLayer, ...]
    step_us: int
    latency_us: float
    report: ConvReport

    @property
    def n_in(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    @property
    def n_out(self) -> int:
        return self.layers[-1].out_shape[0]

    @property
    def cores(self) -> tuple[int, ...]:
        return tuple(lay.core for lay in self.layers)

    def quantised_net(self) -> ConvNet:
        """The network exactly as the chip runs it (integer-valued floats), e.g. for NIR export."""
        return ConvNet(
            self.input_shape,
            tuple(
                ConvLayer(
                    name=lay.name,
                    in_shape=lay.in_shape,
                    weight=lay.weight.astype(np.float64),
                    stride=lay.stride,
                    padding=lay.padding,
                    threshold=float(lay.threshold),
                    v_min=float(lay.v_min),
                    pool=lay.pool,
                )
                for lay in self.layers
            ),
        )


def _fmt(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _geometry_problems(lay: ConvLayer, profile: ConvCoreProfile) -> list[str]:
    lim = profile.limits
    out: list[str] = []
    ky, kx = lay.kernel
    kmax = int(lim.kernel_size.value)
    if ky != kx:
        out.append(f"layer {lay.name}: kernel {ky}x{kx} is not square")
    if max(ky, kx) > kmax:
        out.append(f"layer {lay.name}: kernel {ky}x{kx} > {kmax}x{kmax}")
    if any(s not in lim.strides.values for s in lay.stride):
        out.append(f"layer {lay.name}: stride {_fmt(lay.stride)} not in {'/'.join(map(str, lim.strides.values))}")
    if max(lay.padding) > lim.padding.value or min(lay.padding) < 0:
        out.append(f"layer {lay.name}: padding {_fmt(lay.padding)} > {lim.padding.value:.0f}")
    if lay.pool not in lim.pools.values:
        out.append(f"layer {lay.name}: pool {lay.pool} not in {'/'.join(map(str, lim.pools.values))}")
    f, fy, fx = lay.conv_shape
    side = int(lim.output_map.value)
    if max(fy, fx) > side:
        out.append(f"layer {lay.name}: output map {fy}x{fx} > {side}x{side}")
    if f > lim.channels.value:
        out.append(f"layer {lay.name}: {f} output channels > {lim.channels.value:.0f}")
    return out


def _network_problems(net: ConvNet, profile: ConvCoreProfile) -> list[str]:
    lim = profile.limits
    out: list[str] = []
    if len(net.layers) > len(profile.cores):
        out.append(f"network: {len(net.layers)} layers > {len(profile.cores)} cores")
    c, h, w = net.input_shape
    cmax, side = int(lim.input_channels.value), int(lim.input_size.value)
    if c > cmax or h > side or w > side:
        out.append(f"input: {c}x{h}x{w} > {cmax}x{side}x{side} DVS input")
    last = net.layers[-1]
    if last.out_shape[1:] != (1, 1):
        _, oy, ox = last.out_shape
        out.append(f"layer {last.name}: output map {oy}x{ox} cannot be read out (the last layer must output 1x1)")
    if net.n_outputs > lim.readout_classes.value:
        out.append(f"readout: {net.n_outputs} classes > {lim.readout_classes.value:.0f}")
    return out


def layer_need(lay: ConvLayer) -> Need:
    f, fy, fx = lay.conv_shape
    ky, kx = lay.kernel
    return Need(kernel_memory(lay.in_shape[0], ky, kx, f), neuron_memory(f, fy, fx))


def _memory_problems(net: ConvNet, profile: ConvCoreProfile) -> tuple[list[str], tuple[int, ...]]:
    caps = [Capacity(int(c.kernel_memory.value), int(c.neuron_memory.value)) for c in profile.cores]
    needs = [layer_need(lay) for lay in net.layers]
    out: list[str] = []
    kmax, nmax = max(c.kernel for c in caps), max(c.neuron for c in caps)
    for lay, need in zip(net.layers, needs, strict=True):
        if need.neuron > nmax:
            out.append(f"layer {lay.name}: neuron memory {need.neuron} > {nmax} on any free core")
        if need.kernel > kmax:
            out.append(f"layer {lay.name}: kernel memory {need.kernel} > {kmax} on any free core")
        if need.neuron <= nmax and need.kernel <= kmax and not any(c.fits(need) for c in caps):
            out.append(
                f"layer {lay.name}: kernel memory {need.kernel} and neuron memory {need.neuron} fit no single core"
            )
    mapping = assign_cores(needs, caps)
    if len(net.layers) <= len(caps):
        for layers, cores in mapping.short:
            names = ", ".join(net.layers[i].name for i in layers)
            out.append(
                f"mapping: layers {names} fit only on cores {', '.join(map(str, cores))} "
                f"({len(layers)} layers for {len(cores)} cores)"
            )
    return out, mapping.core


def _quantise(lay: ConvLayer, profile: ConvCoreProfile) -> tuple[I32, int, int, QuantReport, list[str]]:
    problems: list[str] = []
    levels = 2 ** (int(profile.precision.weight_bits.value) - 1) - 1
    state_bits = int(profile.precision.state_bits.value)
    top, bottom = 2 ** (state_bits - 1) - 1, max(-(2 ** (state_bits - 1)), int(profile.precision.state_floor.value))
    w = lay.weight
    if not np.isfinite(w).all():
        problems.append(f"layer {lay.name}: weights are not all finite")
        w = np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(w).max()) if w.size else 0.0
    scale = peak / levels if peak > 0 else 1.0
    steps = w / scale
    wq = np.round(steps)
    err = wq * scale - w
    rms = float(np.sqrt(np.mean(w**2))) or 1.0
    theta = lay.threshold
    theta_q = round(theta / scale) if np.isfinite(theta) else 0
    if not np.isfinite(theta) or theta_q < 1:
        problems.append(f"layer {lay.name}: threshold {theta:.4g} is {theta_q} steps of {scale:.4g} (must be >= 1)")
    elif theta_q > top:
        problems.append(f"layer {lay.name}: threshold {theta:.4g} is {theta_q} steps of {scale:.4g} > {top}")
    if np.isnan(lay.v_min):
        problems.append(f"layer {lay.name}: state floor is NaN")
        floor_q = bottom
    else:
        floor_q = bottom if np.isneginf(lay.v_min) else max(round(lay.v_min / scale), bottom)
    if floor_q > 0:
        # The chip checks only the neurons an event touched; a positive floor would also lift
        # neurons that were never touched, which the chip cannot do.
        problems.append(f"layer {lay.name}: state floor {lay.v_min:.4g} is {floor_q} steps > 0")
    report = QuantReport(
        name=lay.name,
        scale=scale,
        rms_error_rel=float(np.sqrt(np.mean(err**2))) / rms if w.size else 0.0,
        max_error_steps=float(np.abs(wq - steps).max()) if w.size else 0.0,
        threshold_steps=theta_q,
        threshold_error_rel=(theta_q * scale - theta) / theta if np.isfinite(theta) and theta != 0 else 0.0,
        floor_steps=floor_q,
    )
    return wq.astype(np.int32), theta_q, floor_q, report, problems


def _warnings(net: ConvNet) -> list[str]:
    out: list[str] = []
    for lay in net.layers:
        _, fy, fx = lay.conv_shape
        if fy % lay.pool or fx % lay.pool:
            out.append(
                f"layer {lay.name}: output map {fy}x{fx} is not a multiple of pool {lay.pool}; "
                "spikes of the last rows/columns are counted but not passed on"
            )
        if not np.any(lay.weight):
            out.append(f"layer {lay.name}: all weights are zero")
    return out


def compile_convnet(net: ConvNet, profile: ConvCoreProfile, *, step_us: int | None = None) -> CompiledConv:
    """Check every rule, map layers to cores and quantise; raises ``CompileError`` listing all problems."""
    problems = _network_problems(net, profile)
    for lay in net.layers:
        problems += _geometry_problems(lay, profile)
    mem_problems, cores = _memory_problems(net, profile)
    problems += mem_problems
    quant = [_quantise(lay, profile) for lay in net.layers]
    for q in quant:
        problems += q[4]
    step = int(profile.timing.step_us.value) if step_us is None else step_us
    if step < 1:
        problems.append(f"timing: step {step} us < 1 us")
    if problems:
        raise CompileError(profile.name, problems)

    layers = tuple(
        ChipLayer(
            name=lay.name,
            in_shape=lay.in_shape,
            conv_shape=lay.conv_shape,
            out_shape=lay.out_shape,
            weight=wq,
            kernel=lay.kernel[0],
            stride=lay.stride,
            padding=lay.padding,
            pool=lay.pool,
            threshold=theta_q,
            v_min=floor_q,
            scale=rep.scale,
            core=core,
        )
        for lay, (wq, theta_q, floor_q, rep, _), core in zip(net.layers, quant, cores, strict=True)
    )
    latency_us = len(layers) * profile.timing.layer_latency_us.value
    report = ConvReport(
        chip=profile.name,
        step_us=step,
        latency_us=latency_us,
        cores=_core_rows(layers, profile),
        layers=tuple(q[3] for q in quant),
        warnings=tuple(_warnings(net)),
    )
    return CompiledConv(profile, net.input_shape, layers, step, latency_us, report)


def _core_rows(layers: tuple[ChipLayer, ...], profile: ConvCoreProfile) -> tuple[CoreRow, ...]:
    on_core = {lay.core: lay for lay in layers}
    rows = []
    for j, cap in enumerate(profile.cores):
        lay = on_core.get(j)
        need = Need(0, 0)
        if lay is not None:
            f, fy, fx = lay.conv_shape
            need = Need(kernel_memory(lay.in_shape[0], lay.kernel, lay.kernel, f), neuron_memory(f, fy, fx))
        rows.append(
            CoreRow(
                core=j,
                layer=lay.name if lay is not None else "",
                kernel_used=need.kernel,
                kernel_available=int(cap.kernel_memory.value),
                neuron_used=need.neuron,
                neuron_available=int(cap.neuron_memory.value),
            )
        )
    return tuple(rows)
