"""Plain numpy, dense, time-stepped reference of the ``dynapcnn`` semantics (for tests only).

Each step is a dense tensor computation, like a frame-based simulator (sinabs) does it:
the step's input events become a count raster, every layer convolves its whole input map,
checks *every* neuron and sum-pools the spikes for the next layer. It shares no code with
the event-driven kernel (no fan-out tables, no touched lists), so agreement between the two
is evidence for both. Steps without input events are skipped: with no input nothing can
change, because every state is already within ``[v_min, theta)``.

Counters follow the kernel's definitions: synaptic operations = incoming events (with
multiplicity) x the targets each reaches inside the map; neuron updates = neurons whose
receptive field held an event in the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.convnet import ConvLayer, ConvNet

I64 = npt.NDArray[np.int64]
STATE_MIN, STATE_MAX = -(2**15), 2**15 - 1


@dataclass
class RefLayer:
    weight: I64
    stride: tuple[int, int]
    padding: tuple[int, int]
    pool: int
    theta: int
    v_min: int
    v: I64
    """State, (f, fy, fx)."""
    fanout: I64
    """Targets reached from each input position (y, x), times f."""

    @classmethod
    def of(cls, lay: ConvLayer) -> RefLayer:
        v_min = STATE_MIN if np.isneginf(lay.v_min) else max(int(lay.v_min), STATE_MIN)
        return cls(
            weight=np.rint(lay.weight).astype(np.int64),
            stride=lay.stride,
            padding=lay.padding,
            pool=lay.pool,
            theta=int(lay.threshold),
            v_min=v_min,
            v=np.zeros(lay.conv_shape, np.int64),
            fanout=_fanout(lay),
        )

    def conv(self, x: I64) -> I64:
        """Dense convolution of a (c, h, w) count raster; zero padding contributes nothing."""
        f, _, k, _ = self.weight.shape
        (sy, sx), (py, px) = self.stride, self.padding
        _, fy, fx = self.v.shape
        xp = np.pad(x, ((0, 0), (py, py), (px, px)))
        out = np.zeros((f, fy, fx), np.int64)
        for ky in range(k):
            for kx in range(k):
                window = xp[:, ky : ky + sy * (fy - 1) + 1 : sy, kx : kx + sx * (fx - 1) + 1 : sx]
                out += np.tensordot(self.weight[:, :, ky, kx], window, axes=(1, 0))
        return out

    def touched(self, x: I64) -> int:
        """Output positions whose kernel window holds an input event."""
        k = self.weight.shape[2]
        (sy, sx), (py, px) = self.stride, self.padding
        _, fy, fx = self.v.shape
        xp = np.pad((x.sum(0) > 0).astype(np.int64), ((py, py), (px, px)))
        hit = np.zeros((fy, fx), np.int64)
        for ky in range(k):
            for kx in range(k):
                hit += xp[ky : ky + sy * (fy - 1) + 1 : sy, kx : kx + sx * (fx - 1) + 1 : sx]
        return int((hit > 0).sum())

    def step(self, x: I64) -> tuple[I64, I64, int, int]:
        """One step: returns (spikes (f, fy, fx), pooled output, sops, updates)."""
        f = self.v.shape[0]
        sops = int((x * self.fanout[None]).sum())
        updates = self.touched(x) * f
        v = np.clip(self.v + self.conv(x), STATE_MIN, STATE_MAX)
        s = np.where(v >= self.theta, v // self.theta, 0)
        self.v = np.maximum(v - s * self.theta, self.v_min)
        p = self.pool
        _, fy, fx = s.shape
        hp, wp = fy // p, fx // p
        pooled = s[:, : hp * p, : wp * p].reshape(f, hp, p, wp, p).sum(axis=(2, 4))
        return s, pooled, sops, updates


def _fanout(lay: ConvLayer) -> I64:
    f, fy, fx = lay.conv_shape
    _, h, w = lay.in_shape
    k = lay.kernel[0]
    (sy, sx), (py, px) = lay.stride, lay.padding
    fan = np.zeros((h, w), np.int64)
    for oy in range(fy):
        for ox in range(fx):
            for ky in range(k):
                for kx in range(k):
                    y, x = oy * sy - py + ky, ox * sx - px + kx
                    if 0 <= y < h and 0 <= x < w:
                        fan[y, x] += 1
    return fan * f


@dataclass(frozen=True)
class ReferenceResult:
    out_t_us: I64
    out_ch: I64
    layer_spikes: list[I64]
    """Per layer, the spike raster of every processed step: (steps, f, fy, fx)."""
    step_index: I64
    """The step number of each processed step."""
    states: list[I64]
    """Final state of every layer, (f, fy, fx)."""
    sops: int
    updates: int


def run_raster(net: ConvNet, raster: I64) -> ReferenceResult:
    """Run a (steps, c, h, w) raster of input event counts, one step per entry."""
    return _run(net, list(raster), np.arange(len(raster), dtype=np.int64), 1)


def run_events(net: ConvNet, t_us: I64, ch: I64, step_us: int) -> ReferenceResult:
    """Run events (sorted by time, address ``(c * h + y) * w + x``) in steps of ``step_us``."""
    c, h, w = net.input_shape
    steps = t_us // step_us
    keys, first = np.unique(steps, return_index=True)
    bounds = [*first.tolist(), len(t_us)]
    rasters = []
    for i in range(len(keys)):
        x = np.zeros(c * h * w, np.int64)
        np.add.at(x, ch[bounds[i] : bounds[i + 1]], 1)
        rasters.append(x.reshape(c, h, w))
    return _run(net, rasters, keys.astype(np.int64), step_us)


def _run(net: ConvNet, rasters: list[I64], step_index: I64, step_us: int) -> ReferenceResult:
    layers = [RefLayer.of(lay) for lay in net.layers]
    spikes: list[list[I64]] = [[] for _ in layers]
    out_t: list[I64] = []
    out_ch: list[I64] = []
    sops = updates = 0
    for k, x in zip(step_index.tolist(), rasters, strict=True):
        for i, lay in enumerate(layers):
            s, x, n_sops, n_upd = lay.step(x)
            spikes[i].append(s)
            sops += n_sops
            updates += n_upd
        counts = x.reshape(-1)
        out_ch.append(np.repeat(np.arange(len(counts)), counts))
        out_t.append(np.full(int(counts.sum()), k * step_us, np.int64))
    empty = np.empty(0, np.int64)
    return ReferenceResult(
        out_t_us=np.concatenate(out_t) if out_t else empty,
        out_ch=np.concatenate(out_ch).astype(np.int64) if out_ch else empty,
        layer_spikes=[np.array(s) for s in spikes],
        step_index=step_index,
        states=[lay.v for lay in layers],
        sops=sops,
        updates=updates,
    )
