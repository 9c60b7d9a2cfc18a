"""Local sinks: pretty lines on a terminal, and JSON lines appended to a file.

Both write synchronously: a terminal or local file write is far below a block's duration,
and these sinks exist for people watching and for records, not for throughput.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from runtime.contract import Classification, Status, Telemetry, dump
from runtime.sinks.base import SinkStats


class StdoutSink:
    def __init__(self, out: TextIO | None = None, telemetry: bool = True) -> None:
        self.name = "stdout"
        self._out = out or sys.stdout
        self._telemetry = telemetry
        self._n = 0

    async def start(self, status: Status) -> None:
        names = ", ".join(f"{p.name} ({p.model} on {p.chip}, {p.source})" for p in status.pipelines)
        print(f"spikewire {status.version} on {status.device}: {names}", file=self._out, flush=True)

    def offer(self, payload: Classification | Telemetry) -> None:
        self._n += 1
        if isinstance(payload, Classification):
            truth = f"  truth {payload.truth}" if payload.truth is not None else ""
            line = (
                f"{payload.timestamp:%H:%M:%S} {payload.pipeline} #{payload.seq:<5} {payload.label:>8} "
                f"{payload.score:5.2f}  window {payload.window.start_us / 1e6:7.2f}-{payload.window.end_us / 1e6:.2f} s"
                f"  host {payload.host_latency_ms:6.1f} ms  chip {payload.chip_latency_ms:.2f} ms"
                f"  {payload.energy_uj:7.1f} uJ{truth}"
            )
        elif self._telemetry:
            p99 = payload.host_latency_ms.p99
            line = (
                f"{payload.timestamp:%H:%M:%S} {payload.pipeline} telemetry: rtf {payload.rtf or 0:.1f}x, "
                f"{payload.input_events_per_s:.0f} in/s, {payload.spikes_per_s:.0f} spikes/s, "
                f"{payload.sops_per_s:.3g} SOP/s, {payload.power_mw.total:.3f} mW, "
                f"p99 {'-' if p99 is None else f'{p99:.1f} ms'}, drops {sum(payload.drops.values())}"
            )
        else:
            return
        print(line, file=self._out, flush=True)

    def stats(self) -> SinkStats:
        return SinkStats(queued=0, dropped=0, delivered=self._n)

    async def close(self, drain_timeout_s: float) -> None:
        self._out.flush()


class JsonlSink:
    def __init__(self, path: Path) -> None:
        self.name = "jsonl"
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("ab")
        self._n = 0

    async def start(self, status: Status) -> None:
        self._write(dump(status))

    def offer(self, payload: Classification | Telemetry) -> None:
        self._write(dump(payload))

    def _write(self, data: bytes) -> None:
        self._fh.write(data + b"\n")
        self._fh.flush()
        self._n += 1

    def stats(self) -> SinkStats:
        return SinkStats(queued=0, dropped=0, delivered=self._n)

    async def close(self, drain_timeout_s: float) -> None:
        self._fh.close()
