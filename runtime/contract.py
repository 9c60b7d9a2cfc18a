"""The MQTT contract: topics and JSON payloads. This is a public API.

The pydantic models below are the single source of truth for what subscribers see;
``json_schemas()`` exports them as JSON Schema. Every payload carries ``schema``
(``spikewire.<kind>/<major>``), the device and pipeline, a ``seq`` that increases by
exactly one per message of that kind and pipeline (so a gap is visible), and UTC
timestamps in ISO 8601. A breaking change bumps the major version in ``schema``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Payload):
    stream: str = Field(description="Stream the window belongs to (file path or device).")
    start_us: int = Field(description="Stream time of the window start, microseconds.")
    end_us: int = Field(description="Stream time of the window end, microseconds.")


class Classification(_Payload):
    schema_: Literal["spikewire.classification/1"] = Field(
        "spikewire.classification/1", alias="schema", description="Payload kind and major version."
    )
    device: str
    pipeline: str
    seq: int = Field(ge=1, description="Per pipeline, +1 for every classification published.")
    timestamp: datetime = Field(description="UTC time the decision was made.")
    label: str = Field(description="Winning class.")
    score: float = Field(ge=0.0, le=1.0, description="Confidence of the winning class (softmax).")
    scores: dict[str, float] = Field(description="Confidence of every class.")
    window: Window
    captured_at: datetime = Field(description="UTC time the last input of the window was captured.")
    model: str = Field(description="Model name and version, 'name@version'.")
    chip: str = Field(description="Chip profile the model ran on.")
    chip_latency_ms: float = Field(ge=0.0, description="Emulated on-chip latency, input spike to output.")
    host_latency_ms: float = Field(ge=0.0, description="Capture of the last input block to decision, host clock.")
    energy_uj: float = Field(ge=0.0, description="Emulated chip energy spent over the window, microjoules.")
    truth: str | None = Field(None, description="Ground-truth label during a labelled replay, else null.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LatencyPercentiles(_Payload):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    n: int = 0


class PowerMw(_Payload):
    static: float = Field(description="Static (leakage/bias) power of the emulated chip, mW.")
    dynamic: float = Field(description="Activity-dependent power, mW.")
    total: float


class Telemetry(_Payload):
    schema_: Literal["spikewire.telemetry/1"] = Field(
        "spikewire.telemetry/1", alias="schema", description="Payload kind and major version."
    )
    device: str
    pipeline: str
    seq: int = Field(ge=1)
    timestamp: datetime
    interval_s: float = Field(description="Wall time this report covers.")
    stream_s: float = Field(description="Seconds of input stream processed in the interval.")
    rtf: float | None = Field(description="Real-time factor: stream seconds per wall second.")
    input_events_per_s: float = Field(description="Encoder output spikes per stream second.")
    spikes_per_s: float = Field(description="Chip neuron spikes per stream second.")
    sops_per_s: float = Field(description="Synaptic operations per stream second (NeuroBench).")
    neuron_updates_per_s: float
    power_mw: PowerMw
    chip_latency_ms: float
    host_latency_ms: LatencyPercentiles = Field(description="Capture to publish, over the interval.")
    cpu_s: float = Field(description="Process CPU time used in the interval, seconds.")
    decisions: int = Field(description="Decisions made in the interval (published or gated).")
    gated: int = Field(description="Decisions held back by the confidence gate in the interval.")
    queue_depths: dict[str, int]
    drops: dict[str, int] = Field(description="Cumulative dropped items by place. Never silent.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PipelineInfo(_Payload):
    name: str
    source: str
    model: str
    chip: str
    labels: list[str]


class Status(_Payload):
    schema_: Literal["spikewire.status/1"] = Field("spikewire.status/1", alias="schema")
    device: str
    version: str
    started_at: datetime
    pipelines: list[PipelineInfo]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def dump(payload: _Payload) -> bytes:
    """Serialise with the ``schema`` alias, as subscribers see it."""
    return payload.model_dump_json(by_alias=True).encode()


def json_schemas() -> dict[str, dict[str, Any]]:
    return {
        "classification": Classification.model_json_schema(by_alias=True),
        "telemetry": Telemetry.model_json_schema(by_alias=True),
        "status": Status.model_json_schema(by_alias=True),
    }


class Topics:
    """Topic names under ``<prefix>/<device>``."""

    def __init__(self, prefix: str, device: str) -> None:
        self.base = f"{prefix}/{device}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def classification(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/classification"

    def telemetry(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/telemetry"
