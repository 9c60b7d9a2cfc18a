"""The network's non-zero weights as a flat list of chip synapses (CAM entries).

Sources are numbered like the kernel does: input channel ``c`` is source ``c``, neuron ``m``
(global index, populations in order) is source ``n_in + m``. A positive weight is an AMPA
synapse (NMDA for the projections named in ``nmda``), a negative one GABA. Delay classes
come from ``delays`` (per projection, same shape as its weight), else class 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.network import Network
from runtime.chips.dynapse2.mapping import SYN_AMPA, SYN_GABA, SYN_NMDA
from runtime.chips.profile import AdexCoreProfile

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Synapses:
    src: I64
    tgt: I64
    typ: I64
    cls: I64
    """Delay class, 0..3."""
    dly: I64
    """Delay in ticks."""
    weight: F64
    """The network's float weight (sign included)."""


def offsets(net: Network) -> dict[str, int]:
    out: dict[str, int] = {}
    base = 0
    for pop in net.populations:
        out[pop.name] = base
        base += pop.size
    return out


def collect_synapses(
    net: Network, profile: AdexCoreProfile, delays: Mapping[str, npt.NDArray[np.int64]] | None, nmda: set[str]
) -> tuple[Synapses, list[str]]:
    problems: list[str] = []
    names = {p.name for p in net.projections}
    delays = dict(delays or {})
    problems += [f"delays: no projection named {n!r}" for n in delays if n not in names]
    problems += [f"nmda: no projection named {n!r}" for n in sorted(nmda) if n not in names]
    classes_us = profile.limits.delay_classes_us.values
    tick_us = int(profile.timing.tick_us.value)
    off_tick = [c for c in classes_us if c % tick_us]
    if off_tick:
        problems.append(f"delay classes {off_tick} us are not whole {tick_us} us ticks")
    class_ticks = np.array([c // tick_us for c in classes_us], np.int64)
    off = offsets(net)
    parts: list[tuple[I64, I64, I64, I64, F64]] = []
    for proj in net.projections:
        w = np.asarray(proj.weight, np.float64)
        cls_full = np.zeros(w.shape, np.int64)
        if proj.name in delays:
            d = np.asarray(delays[proj.name])
            if d.shape != w.shape:
                problems.append(f"delays[{proj.name!r}]: shape {d.shape} != weight shape {w.shape}")
            elif d.size and (d.min() < 0 or d.max() >= len(classes_us)):
                problems.append(
                    f"delays[{proj.name!r}]: classes {int(d.min())}..{int(d.max())} outside 0..{len(classes_us) - 1} "
                    f"(2-bit delay classes {list(classes_us)} us)"
                )
            else:
                cls_full = d.astype(np.int64)
        ti, si = np.nonzero(w)
        src = si.astype(np.int64) + (0 if proj.source == "input" else net.n_inputs + off[proj.source])
        tgt = ti.astype(np.int64) + off[proj.target]
        vals = w[ti, si]
        exc = SYN_NMDA if proj.name in nmda else SYN_AMPA
        typ = np.where(vals > 0, exc, SYN_GABA).astype(np.int64)
        parts.append((src, tgt, typ, cls_full[ti, si], vals))
    if not parts:
        empty = np.zeros(0, np.int64)
        return Synapses(empty, empty, empty, empty, empty, np.zeros(0)), problems
    src, tgt, typ, cls, vals = (np.concatenate([p[i] for p in parts]) for i in range(5))
    cls = np.clip(cls, 0, len(classes_us) - 1)
    return Synapses(src, tgt, typ, cls, class_ticks[cls], vals.astype(np.float64)), problems
