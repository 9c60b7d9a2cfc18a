"""Per-pipeline telemetry: counters accumulated by the stages, reported every interval.

Rates are per *stream* second (what the chip saw), so they mean the same at 1x and at
``--speed max``; the real-time factor relates stream time to wall time. Power is the
emulated chip's: energy over the interval's stream time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from runtime.chips.base import ChipStats
from runtime.contract import LatencyPercentiles, PowerMw, Telemetry, utc_now


def percentiles(values_ms: list[float]) -> LatencyPercentiles:
    if not values_ms:
        return LatencyPercentiles(n=0)
    p50, p95, p99 = np.percentile(np.asarray(values_ms), [50, 95, 99])
    return LatencyPercentiles(p50=float(p50), p95=float(p95), p99=float(p99), n=len(values_ms))


@dataclass
class Counters:
    stream_us: int = 0
    input_events: int = 0
    spikes: int = 0
    sops: int = 0
    updates: int = 0
    energy_uj: float = 0.0
    static_energy_uj: float = 0.0
    decisions: int = 0
    gated: int = 0
    paused: int = 0
    host_latency_ms: list[float] = field(default_factory=list)

    def add_chip(self, s: ChipStats) -> None:
        self.stream_us += s.t_end_us - s.t_start_us
        self.input_events += s.input_events
        self.spikes += s.spikes
        self.sops += s.sops
        self.updates += s.neuron_updates
        self.energy_uj += s.energy_uj
        self.static_energy_uj += s.static_energy_uj


class TelemetryRecorder:
    """Interval counters plus totals since start (the totals feed replay summaries)."""

    def __init__(self, device: str, pipeline: str, chip_latency_ms: float) -> None:
        self.device = device
        self.pipeline = pipeline
        self.chip_latency_ms = chip_latency_ms
        self.interval = Counters()
        self.total = Counters()
        self._seq = 0
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def add_chip(self, s: ChipStats) -> None:
        self.interval.add_chip(s)
        self.total.add_chip(s)

    def add_decision(self, gated: bool, host_latency_ms: float | None, *, paused: bool = False) -> None:
        for c in (self.interval, self.total):
            c.decisions += 1
            c.gated += int(gated)
            c.paused += int(paused)
            if host_latency_ms is not None:
                c.host_latency_ms.append(host_latency_ms)

    def snapshot(self, queue_depths: dict[str, int], drops: dict[str, int]) -> Telemetry:
        now, cpu = time.monotonic(), time.process_time()
        wall_s, cpu_s = now - self._wall, cpu - self._cpu
        self._wall, self._cpu = now, cpu
        c, self.interval = self.interval, Counters()
        stream_s = c.stream_us / 1e6
        per_s = 1 / stream_s if stream_s > 0 else 0.0
        static_mw = c.static_energy_uj * per_s * 1e-3
        total_mw = c.energy_uj * per_s * 1e-3
        self._seq += 1
        return Telemetry(
            device=self.device,
            pipeline=self.pipeline,
            seq=self._seq,
            timestamp=utc_now(),
            interval_s=wall_s,
            stream_s=stream_s,
            rtf=stream_s / wall_s if wall_s > 0 else None,
            input_events_per_s=c.input_events * per_s,
            spikes_per_s=c.spikes * per_s,
            sops_per_s=c.sops * per_s,
            neuron_updates_per_s=c.updates * per_s,
            power_mw=PowerMw(static=static_mw, dynamic=total_mw - static_mw, total=total_mw),
            chip_latency_ms=self.chip_latency_ms,
            host_latency_ms=percentiles(c.host_latency_ms),
            cpu_s=cpu_s,
            decisions=c.decisions,
            gated=c.gated,
            paused=c.paused,
            queue_depths=queue_depths,
            drops=drops,
        )
