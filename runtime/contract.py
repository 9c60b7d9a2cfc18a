"""The MQTT contract: topics and JSON payloads. This is a public API.

The pydantic models below are the single source of truth for what subscribers see;
``json_schemas()`` exports them as JSON Schema. Every payload carries ``schema``
(``spikewire.<kind>/<major>``), the device and pipeline, a ``seq`` that increases by
exactly one per message of that kind and pipeline (so a gap is visible), and UTC
timestamps in ISO 8601. A breaking change bumps the major version in ``schema``.

Besides what the daemon publishes (classification, telemetry, status, state, reply) the
commands it accepts are models here too (``SetCommand`` on ``.../<pipeline>/set``,
``Request`` on ``.../request``; see ``runtime.mqtt.control``). ``schema_files()`` is the
exact text of the shipped ``runtime/schemas/<kind>.schema.json``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

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
    paused: int = Field(0, description="Decisions made while the pipeline was paused (not published) in the interval.")
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


class Outcome(_Payload):
    """What became of one command: sent back on ``.../state`` (``set``) or ``.../response`` (requests)."""

    id: str | None = Field(None, description="The command's correlation id, echoed.")
    command: str | None = Field(None, description="The command, when it could be read.")
    ok: bool = Field(description="True when the command was carried out.")
    error: str | None = Field(None, description="Why the command was refused: names the field or value.")
    detail: str | None = Field(None, description="What was done, in words (e.g. what a reload changed).")


class State(_Payload):
    schema_: Literal["spikewire.state/1"] = Field(
        "spikewire.state/1", alias="schema", description="Payload kind and major version."
    )
    device: str
    pipeline: str
    seq: int = Field(ge=1, description="Per pipeline, +1 for every state message published.")
    timestamp: datetime = Field(description="UTC time of this state.")
    paused: bool = Field(description="True while decisions are made but not published (command pause).")
    min_confidence: float = Field(ge=0.0, le=1.0, description="Confidence gate: lower-scoring decisions are held back.")
    model: str = Field(description="Model running now, 'name@version'.")
    chip: str = Field(description="Chip profile the model runs on.")
    label: str | None = Field(None, description="Last published label; null before the first decision.")
    score: float | None = Field(None, ge=0.0, le=1.0, description="Score of the last published label.")
    label_at: datetime | None = Field(None, description="UTC time of the last published decision.")
    reply: Outcome | None = Field(None, description="Answer to the ``set`` command this message replies to, else null.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Reply(Outcome):
    schema_: Literal["spikewire.reply/1"] = Field(
        "spikewire.reply/1", alias="schema", description="Payload kind and major version."
    )
    device: str
    pipeline: str | None = Field(None, description="The pipeline a ``set`` command named, for replies about it.")
    timestamp: datetime
    status: Status | None = Field(None, description="The live status, for the ``status`` request.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
"""A correlation id is one topic level: ``<prefix>/<device>/response/<id>``."""
_ID = Field(None, pattern=ID_PATTERN, description="Correlation id, echoed in the answer.")


class _Command(_Payload):
    id: str | None = _ID


class PauseCommand(_Command):
    command: Literal["pause"] = Field(description="Keep running, publish no decisions (counted as paused).")


class ResumeCommand(_Command):
    command: Literal["resume"] = Field(description="Publish decisions again.")


class ThresholdCommand(_Command):
    command: Literal["threshold"] = Field(description="Change the confidence gate.")
    min_confidence: float = Field(ge=0.0, le=1.0, description="Decisions scoring below this are held back.")


class ModelCommand(_Command):
    command: Literal["model"] = Field(description="Switch to another installed model bundle.")
    model: str = Field(min_length=1, max_length=200, description="Zoo bundle name (see `spikewire models list`).")


SetCommand = Annotated[PauseCommand | ResumeCommand | ThresholdCommand | ModelCommand, Field(discriminator="command")]
"""Payload of ``<prefix>/<device>/<pipeline>/set``."""


class Request(_Payload):
    """Payload of ``<prefix>/<device>/request``."""

    command: Literal["status", "reload"] = Field(description="status: the live status; reload: re-read the config.")
    id: str | None = _ID


def dump(payload: _Payload) -> bytes:
    """Serialise with the ``schema`` alias, as subscribers see it."""
    return payload.model_dump_json(by_alias=True).encode()


SCHEMA_KINDS = ("classification", "telemetry", "status", "state", "reply", "set", "request")


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every payload's JSON Schema by kind; ``runtime/schemas/<kind>.schema.json`` ship these."""
    models: dict[str, Any] = {
        "classification": Classification,
        "telemetry": Telemetry,
        "status": Status,
        "state": State,
        "reply": Reply,
        "request": Request,
    }
    out: dict[str, dict[str, Any]] = {}
    for kind in SCHEMA_KINDS:
        if kind == "set":
            schema = TypeAdapter(SetCommand).json_schema(by_alias=True)
            schema["title"] = "SetCommand"
        else:
            schema = models[kind].model_json_schema(by_alias=True)
        out[kind] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"spikewire.{kind}/{SCHEMA_VERSION}",
            **schema,
        }
    return out


def schema_files() -> dict[str, str]:
    """File name -> exact text of the shipped schema files (stable, so a diff means drift)."""
    return {f"{kind}.schema.json": json.dumps(schema, indent=2) + "\n" for kind, schema in json_schemas().items()}


def shipped_schema_dir() -> Path:
    return Path(__file__).parent / "schemas"


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

    def state(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/state"

    def set(self, pipeline: str) -> str:
        return f"{self.base}/{pipeline}/set"

    @staticmethod
    def valid_id(ident: str) -> bool:
        return re.fullmatch(ID_PATTERN, ident) is not None

    @property
    def request(self) -> str:
        return f"{self.base}/request"

    def response(self, correlation_id: str | None) -> str:
        return f"{self.base}/response/{correlation_id}" if correlation_id else f"{self.base}/response"
