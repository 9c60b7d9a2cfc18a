"""Prometheus metrics that mirror the telemetry messages.

``MetricsSink`` is one more sink: it keeps the latest telemetry of each pipeline and counts
classifications by label. ``TelemetryCollector`` turns that, plus the live state of the
pipelines and sinks, into Prometheus metric families at scrape time (no background
updates, nothing to keep in sync). Names follow Prometheus conventions: base units
(seconds, watts are not used: the chip's power stays in milliwatts as in the payloads,
and the unit is in the name), ``_total`` for counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime import __version__
from runtime.contract import Classification, Status, Telemetry
from runtime.sinks.base import Sink, SinkStats


class MetricsSink:
    """Latest telemetry per pipeline and running totals; never blocks, never drops."""

    def __init__(self) -> None:
        self.name = "metrics"
        self.latest: dict[str, Telemetry] = {}
        self.classifications: dict[tuple[str, str], int] = {}
        self.decisions: dict[str, int] = {}
        self.gated: dict[str, int] = {}
        self.energy_uj: dict[str, float] = {}
        self._n = 0

    async def start(self, status: Status) -> None:
        return None

    def offer(self, payload: Classification | Telemetry) -> None:
        self._n += 1
        if isinstance(payload, Classification):
            key = (payload.pipeline, payload.label)
            self.classifications[key] = self.classifications.get(key, 0) + 1
            self.energy_uj[payload.pipeline] = self.energy_uj.get(payload.pipeline, 0.0) + payload.energy_uj
            return
        self.latest[payload.pipeline] = payload
        # Telemetry counts per interval; the totals survive a pipeline restarted by a reload.
        self.decisions[payload.pipeline] = self.decisions.get(payload.pipeline, 0) + payload.decisions
        self.gated[payload.pipeline] = self.gated.get(payload.pipeline, 0) + payload.gated

    def stats(self) -> SinkStats:
        return SinkStats(queued=0, dropped=0, delivered=self._n)

    async def close(self, drain_timeout_s: float) -> None:
        return None


@dataclass(frozen=True)
class LiveState:
    """What the collector reads from the running daemon at scrape time."""

    device: str
    pipelines: Mapping[str, str]
    """name -> running / finished / failed."""
    sinks: Sequence[Sink]
    mqtt_connected: bool | None
    uptime_s: float


class TelemetryCollector(Collector):
    def __init__(self, metrics: MetricsSink, live: Callable[[], LiveState]) -> None:
        self._metrics = metrics
        self._live = live

    def collect(self) -> Iterable[Metric]:
        m, live = self._metrics, self._live()
        info = GaugeMetricFamily("spikewire_info", "Version and device id.", labels=["version", "device"])
        info.add_metric([__version__, live.device], 1.0)
        yield info
        yield GaugeMetricFamily("spikewire_uptime_seconds", "Seconds since the daemon started.", value=live.uptime_s)
        up = GaugeMetricFamily("spikewire_pipeline_up", "1 while the pipeline runs.", labels=["pipeline"])
        for name, state in live.pipelines.items():
            up.add_metric([name], 1.0 if state == "running" else 0.0)
        yield up
        if live.mqtt_connected is not None:
            yield GaugeMetricFamily(
                "spikewire_mqtt_connected", "1 while connected to the broker.", value=float(live.mqtt_connected)
            )
        yield from _sink_metrics(live.sinks)
        yield from _telemetry_metrics(m)


def _sink_metrics(sinks: Sequence[Sink]) -> Iterable[Metric]:
    queued = GaugeMetricFamily("spikewire_sink_queued", "Messages waiting in the sink's buffer.", labels=["sink"])
    dropped = CounterMetricFamily("spikewire_sink_dropped", "Messages the sink dropped.", labels=["sink"])
    delivered = CounterMetricFamily("spikewire_sink_delivered", "Messages the sink delivered.", labels=["sink"])
    for sink in sinks:
        s = sink.stats()
        queued.add_metric([sink.name], s.queued)
        dropped.add_metric([sink.name], s.dropped)
        delivered.add_metric([sink.name], s.delivered)
    yield from (queued, dropped, delivered)


_RATES = (
    ("input_events_per_second", "input_events_per_s", "Input events per stream second."),
    ("spikes_per_second", "spikes_per_s", "Chip spikes per stream second."),
    ("synaptic_ops_per_second", "sops_per_s", "Synaptic operations per stream second."),
    ("neuron_updates_per_second", "neuron_updates_per_s", "Neuron updates per stream second."),
)


def _telemetry_metrics(m: MetricsSink) -> Iterable[Metric]:
    gauges = {key: GaugeMetricFamily(f"spikewire_{name}", doc, labels=["pipeline"]) for name, key, doc in _RATES}
    power = GaugeMetricFamily(
        "spikewire_chip_power_milliwatts", "Emulated chip power over the last interval.", labels=["pipeline", "part"]
    )
    rtf = GaugeMetricFamily(
        "spikewire_realtime_factor", "Stream time over wall time, last interval.", labels=["pipeline"]
    )
    chip_lat = GaugeMetricFamily("spikewire_chip_latency_seconds", "Emulated chip latency.", labels=["pipeline"])
    host_lat = GaugeMetricFamily(
        "spikewire_host_latency_seconds",
        "Capture to publish latency percentiles over the last interval.",
        labels=["pipeline", "quantile"],
    )
    depth = GaugeMetricFamily(
        "spikewire_queue_depth", "Queue depths at the last telemetry.", labels=["pipeline", "queue"]
    )
    drops = CounterMetricFamily("spikewire_dropped", "Drops by reason (cumulative).", labels=["pipeline", "reason"])
    for pipeline, t in sorted(m.latest.items()):
        for _name, key, _doc in _RATES:
            gauges[key].add_metric([pipeline], float(getattr(t, key)))
        for part in ("static", "dynamic", "total"):
            power.add_metric([pipeline, part], float(getattr(t.power_mw, part)))
        if t.rtf is not None:
            rtf.add_metric([pipeline], t.rtf)
        chip_lat.add_metric([pipeline], t.chip_latency_ms / 1000)
        for q, v in (("0.5", t.host_latency_ms.p50), ("0.95", t.host_latency_ms.p95), ("0.99", t.host_latency_ms.p99)):
            if v is not None:
                host_lat.add_metric([pipeline, q], v / 1000)
        for queue, n in sorted(t.queue_depths.items()):
            depth.add_metric([pipeline, queue], n)
        for reason, n in sorted(t.drops.items()):
            drops.add_metric([pipeline, reason], n)
    yield from gauges.values()
    yield from (power, rtf, chip_lat, host_lat, depth, drops)
    decisions = CounterMetricFamily(
        "spikewire_decisions", "Readout decisions, gated ones included.", labels=["pipeline"]
    )
    gated = CounterMetricFamily("spikewire_gated_decisions", "Decisions below min_confidence.", labels=["pipeline"])
    for pipeline, n in sorted(m.decisions.items()):
        decisions.add_metric([pipeline], n)
        gated.add_metric([pipeline], m.gated.get(pipeline, 0))
    classes = CounterMetricFamily(
        "spikewire_classifications", "Published classifications.", labels=["pipeline", "label"]
    )
    for (pipeline, label), n in sorted(m.classifications.items()):
        classes.add_metric([pipeline, label], n)
    energy = CounterMetricFamily(
        "spikewire_decision_energy_microjoules", "Chip energy of decisions.", labels=["pipeline"]
    )
    for pipeline, e in sorted(m.energy_uj.items()):
        energy.add_metric([pipeline], e)
    yield from (decisions, gated, classes, energy)


def render(metrics: MetricsSink, live: Callable[[], LiveState]) -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(metrics, live))
    return generate_latest(registry)
