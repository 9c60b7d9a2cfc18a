"""Control over MQTT: parse and carry out commands. No I/O here (``runtime.mqtt.session`` does it).

- ``<prefix>/<device>/<pipeline>/set``: ``{"command": "pause" | "resume"}``,
  ``{"command": "threshold", "min_confidence": 0.6}``, ``{"command": "model", "model": "kws-digits"}``,
  each with an optional ``"id"``. Answered on ``<prefix>/<device>/<pipeline>/state`` (the
  state after the command, with ``reply``); a set on an unknown pipeline is answered with a
  ``Reply`` on ``<prefix>/<device>/response[/<id>]``.
- ``<prefix>/<device>/request``: ``{"command": "status" | "reload", "id": "..."}``, answered
  with a ``Reply`` on the MQTT 5 response topic (with the correlation data) if the request
  carries one, else on ``<prefix>/<device>/response/<id>`` (``.../response`` without an id).

``parse_set`` and ``parse_request`` are pure and total: any bytes give a command or an
``Invalid`` naming the problem, never an exception (they are fuzzed).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from runtime.config import PipelineConfig
from runtime.contract import (
    ModelCommand,
    Outcome,
    PauseCommand,
    Reply,
    Request,
    ResumeCommand,
    SetCommand,
    State,
    Status,
    ThresholdCommand,
    Topics,
    dump,
    utc_now,
)
from runtime.pipeline import Pipeline

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 16_384
"""Commands are a few dozen bytes; anything bigger is refused unread."""

AnySet = PauseCommand | ResumeCommand | ThresholdCommand | ModelCommand
_SET: TypeAdapter[AnySet] = TypeAdapter(SetCommand)


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command that cannot be carried out; ``error`` names the field or value at fault."""

    error: str
    id: str | None = None
    command: str | None = None


def _decode(payload: bytes) -> dict[str, Any] | Invalid:
    if len(payload) > MAX_COMMAND_BYTES:
        return Invalid(f"command too large: {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Invalid(f"not UTF-8 text: byte {exc.start} is invalid")
    except json.JSONDecodeError as exc:
        return Invalid(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return Invalid("not valid JSON: nested too deeply")
    if not isinstance(data, dict):
        return Invalid(f'expected a JSON object like {{"command": ...}}, got {type(data).__name__}')
    return data


def _invalid(data: dict[str, Any], exc: ValidationError) -> Invalid:
    problems = []
    for err in exc.errors():
        # Drop the union tag pydantic puts first in the path ("threshold.min_confidence" -> "min_confidence").
        loc = [str(p) for p in err["loc"]]
        if len(loc) > 1 and loc[0] == str(data.get("command")):
            loc = loc[1:]
        problems.append(f"{'.'.join(loc) or 'command'}: {err['msg']}")
    ident = data.get("id")
    command = data.get("command")
    return Invalid(
        "; ".join(problems),
        ident if isinstance(ident, str) and Topics.valid_id(ident) else None,
        command if isinstance(command, str) else None,
    )


def parse_set(payload: bytes) -> AnySet | Invalid:
    data = _decode(payload)
    if isinstance(data, Invalid):
        return data
    try:
        return _SET.validate_python(data)
    except ValidationError as exc:
        return _invalid(data, exc)


def parse_request(payload: bytes) -> Request | Invalid:
    data = _decode(payload)
    if isinstance(data, Invalid):
        return data
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        return _invalid(data, exc)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None = None
    """MQTT 5 correlation data to echo, when the request carried a response topic."""


Switcher = Callable[[PipelineConfig, Pipeline, str], Awaitable[None]]
"""Compile a model for a pipeline and swap it in; raises ValueError with the reason."""
Reloader = Callable[[], Awaitable[str]]
"""Re-read the config file and apply it; returns what changed, raises ValueError with the reason."""


@dataclass
class Controller:
    """Carries out parsed commands on the pipelines and builds the answers."""

    topics: Topics
    device: str
    pipelines: Callable[[], Mapping[str, tuple[PipelineConfig, Pipeline]]]
    """The running pipelines now (a reload replaces them) with their configurations."""
    status: Callable[[], Status]
    switch: Switcher
    reload: Reloader | None = None
    _state_seq: dict[str, int] = field(default_factory=dict)

    def state(self, name: str, reply: Outcome | None = None) -> Outgoing:
        _, p = self.pipelines()[name]
        seq = self._state_seq[name] = self._state_seq.get(name, 0) + 1
        last = p.last
        payload = State(
            device=self.device,
            pipeline=name,
            seq=seq,
            timestamp=utc_now(),
            paused=p.paused,
            min_confidence=p.min_confidence,
            model=p.info.model,
            chip=p.info.chip,
            label=last.label if last else None,
            score=last.score if last else None,
            label_at=last.at if last else None,
            reply=reply,
        )
        # A refusal changes nothing: it goes to whoever listens now, the retained state stays.
        return Outgoing(self.topics.state(name), dump(payload), retain=reply is None or reply.ok)

    async def handle_set(self, name: str, payload: bytes) -> Outgoing:
        cmd = parse_set(payload)
        running = self.pipelines()
        if name not in running:
            error = f"unknown pipeline {name!r}; pipelines: {', '.join(sorted(running))}"
            return self._reply(Outcome(id=cmd.id, command=cmd.command, ok=False, error=error), name)
        if isinstance(cmd, Invalid):
            log.warning("control: refused a command for pipeline %s: %s", name, cmd.error)
            return self.state(name, Outcome(id=cmd.id, command=cmd.command, ok=False, error=cmd.error))
        cfg, pipeline = running[name]
        try:
            detail = await self._apply(cfg, pipeline, cmd)
        except (ValueError, RuntimeError) as exc:
            log.warning("control: %s on pipeline %s refused: %s", cmd.command, name, exc)
            return self.state(name, Outcome(id=cmd.id, command=cmd.command, ok=False, error=str(exc)))
        log.info("control: %s on pipeline %s: %s", cmd.command, name, detail)
        return self.state(name, Outcome(id=cmd.id, command=cmd.command, ok=True, detail=detail))

    async def _apply(self, cfg: PipelineConfig, pipeline: Pipeline, cmd: AnySet) -> str:
        if isinstance(cmd, PauseCommand):
            pipeline.set_paused(True)
            return "paused: decisions are made and counted, not published"
        if isinstance(cmd, ResumeCommand):
            pipeline.set_paused(False)
            return "resumed"
        if isinstance(cmd, ThresholdCommand):
            pipeline.set_min_confidence(cmd.min_confidence)
            return f"min_confidence = {cmd.min_confidence:g}"
        old = pipeline.info.model
        await self.switch(cfg, pipeline, cmd.model)
        return f"model {old} -> {pipeline.info.model} on {pipeline.info.chip}"

    async def handle_request(self, payload: bytes) -> tuple[Reply, str | None]:
        """The reply and the correlation id it goes to (``.../response/<id>``)."""
        req = parse_request(payload)
        if isinstance(req, Invalid):
            log.warning("control: refused a request: %s", req.error)
            outcome = Outcome(id=req.id, command=req.command, ok=False, error=req.error)
            return self._reply_payload(outcome), req.id
        if req.command == "status":
            outcome = Outcome(id=req.id, command="status", ok=True)
            return self._reply_payload(outcome, status=self.status()), req.id
        if self.reload is None:
            error = "reload is not available here"
            return self._reply_payload(Outcome(id=req.id, command="reload", ok=False, error=error)), req.id
        try:
            detail = await self.reload()
        except (ValueError, OSError) as exc:
            log.warning("control: reload refused: %s", exc)
            return self._reply_payload(Outcome(id=req.id, command="reload", ok=False, error=str(exc))), req.id
        except asyncio.CancelledError:
            raise
        return self._reply_payload(Outcome(id=req.id, command="reload", ok=True, detail=detail)), req.id

    def _reply_payload(self, outcome: Outcome, *, pipeline: str | None = None, status: Status | None = None) -> Reply:
        fields = outcome.model_dump()
        return Reply(device=self.device, pipeline=pipeline, timestamp=utc_now(), status=status, **fields)

    def _reply(self, outcome: Outcome, pipeline: str) -> Outgoing:
        reply = self._reply_payload(outcome, pipeline=pipeline)
        return Outgoing(self.topics.response(outcome.id), dump(reply), retain=False)


def extra_models(paths: list[Path]) -> dict[str, Path]:
    """Configured bundles by folder name (the name a ``model`` command uses)."""
    return {p.name: p for p in paths}
