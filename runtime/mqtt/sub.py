"""``spikewire sub``: print what a broker carries for spikewire devices, one line per message.

Pretty mode shows the fields a person watches (label, score, latency; real-time factor,
power, drops). ``json_lines`` writes one JSON object per message instead:
``{"time", "topic", "retained", "payload"}``, and ``{"time", "event": "gap", ...}`` for a
gap. Gaps are detected per (device, pipeline, kind) from ``seq``. A repeated ``seq``
(at-least-once delivery after a reconnect) is marked, not reported as a gap.

Exit codes: 0 done (``max_messages`` reached, or ``timeout_s`` elapsed with no
``max_messages``); 1 connection lost; 2 could not connect (or bad settings);
3 ``timeout_s`` elapsed before ``max_messages`` messages arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import aiomqtt
from pydantic import BaseModel, ValidationError

from runtime.config import MqttConfig
from runtime.contract import Classification, Status, Telemetry
from runtime.mqtt.connection import connect_options, describe_failure, describe_lost

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONNECTION_LOST = 1
EXIT_CONNECT_FAILED = 2
EXIT_TIMEOUT = 3

_MODELS: dict[str, type[BaseModel]] = {"classification": Classification, "telemetry": Telemetry}


async def subscribe_and_print(
    config: MqttConfig,
    device: str | None,
    out: TextIO,
    json_lines: bool,
    max_messages: int | None,
    timeout_s: float | None,
) -> int:
    """Subscribe to ``<prefix>/<device or +>/#`` and print each message; return an exit code."""
    try:
        options = connect_options(config)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_CONNECT_FAILED
    topic_filter = f"{config.prefix}/{device or '+'}/#"
    printer = _Printer(config.prefix, out, json_lines)
    count = 0
    connected = False
    try:
        async with asyncio.timeout(timeout_s):
            # No client id: the broker assigns one, so several subscribers never evict each other.
            client = options.client(client_id=None)
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                if describe_failure(exc, options).kind != "protocol" or options.protocol != "5":
                    raise
                # As the sink does: a broker that only speaks 3.1.1 (amqtt) still works.
                log.info("%s does not accept MQTT 5; using MQTT 3.1.1", options.address)
                options = dataclasses.replace(options, protocol="3.1.1")
                client = options.client(client_id=None)
                await client.__aenter__()
            connected = True
            try:
                await client.subscribe(topic_filter, qos=1)
                log.info("subscribed to %s on %s", topic_filter, options.address)
                async for message in client.messages:
                    printer.handle(message)
                    count += 1
                    if max_messages is not None and count >= max_messages:
                        return EXIT_OK
            finally:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.__aexit__(None, None, None)
    except TimeoutError:
        if not connected:
            log.error("no connection to %s within %g s", options.address, timeout_s)
            return EXIT_CONNECT_FAILED
        if max_messages is None:
            return EXIT_OK
        log.warning("%d of %d message(s) within %g s", count, max_messages, timeout_s)
        return EXIT_TIMEOUT
    except aiomqtt.MqttError as exc:
        if not connected:
            log.error("%s", describe_failure(exc, options).message)
            return EXIT_CONNECT_FAILED
        log.error("connection to %s lost: %s", options.address, describe_lost(exc))
        return EXIT_CONNECTION_LOST
    return EXIT_CONNECTION_LOST  # the message iterator ended: the broker went away


@dataclass(frozen=True, slots=True)
class _Gap:
    key: str
    expected: int
    got: int


class _Printer:
    def __init__(self, prefix: str, out: TextIO, json_lines: bool) -> None:
        self._prefix = prefix.rstrip("/") + "/"
        self._out = out
        self._json = json_lines
        self._last_seq: dict[str, int] = {}

    def handle(self, message: aiomqtt.Message) -> None:
        now = datetime.now().astimezone()
        topic = message.topic.value
        raw = _as_bytes(message.payload)
        parts = topic.removeprefix(self._prefix).split("/")
        kind = parts[-1]
        seq, duplicate, gap = None, False, None
        model = _MODELS.get(kind) if len(parts) == 3 else None
        decoded: BaseModel | None = None
        error = None
        if model is not None:
            try:
                decoded = model.model_validate_json(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                error = f"not a valid {kind} payload: {'.'.join(map(str, first['loc']))}: {first['msg']}"
            else:
                seq = getattr(decoded, "seq", None)
                duplicate, gap = self._track("/".join(parts), seq)
        if self._json:
            self._write_json(now, topic, message.retain, raw, gap)
            return
        if gap is not None:
            missing = gap.got - gap.expected
            self._write(
                f"{_clock(now)}  ! gap in {gap.key}: expected seq {gap.expected}, got {gap.got} ({missing} missing)"
            )
        text = error or _describe(kind if len(parts) in (2, 3) else "", decoded, raw)
        flags = ("  (retained)" if message.retain else "") + ("  (duplicate)" if duplicate else "")
        self._write(f"{_clock(now)}  {topic}  {text}{flags}")

    def _track(self, key: str, seq: int | None) -> tuple[bool, _Gap | None]:
        """(duplicate, gap) for this ``seq`` on ``key``."""
        if seq is None:
            return False, None
        last = self._last_seq.get(key)
        if last is None or seq == last + 1 or (seq == 1 and last > 1):  # first, next, publisher restart
            self._last_seq[key] = seq
            return False, None
        if seq <= last:
            return True, None
        self._last_seq[key] = seq
        return False, _Gap(key, last + 1, seq)

    def _write_json(self, now: datetime, topic: str, retained: bool, raw: bytes, gap: _Gap | None) -> None:
        time = now.isoformat(timespec="milliseconds")
        if gap is not None:
            event = {"time": time, "event": "gap", "key": gap.key, "expected": gap.expected, "got": gap.got}
            self._write(json.dumps(event))
        payload: Any
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        self._write(json.dumps({"time": time, "topic": topic, "retained": retained, "payload": payload}))

    def _write(self, line: str) -> None:
        print(line, file=self._out, flush=True)


def _describe(kind: str, decoded: BaseModel | None, raw: bytes) -> str:
    if isinstance(decoded, Classification):
        c = decoded
        truth = f"  truth={c.truth}" if c.truth is not None else ""
        return (
            f"{c.label} {c.score:.2f}  seq={c.seq}  latency host={c.host_latency_ms:.1f}ms "
            f"chip={c.chip_latency_ms:.2f}ms{truth}"
        )
    if isinstance(decoded, Telemetry):
        t = decoded
        rtf = f"{t.rtf:.2f}" if t.rtf is not None else "-"
        p99 = f"{t.host_latency_ms.p99:.1f}ms" if t.host_latency_ms.p99 is not None else "-"
        drops = sum(t.drops.values())
        return (
            f"seq={t.seq}  rtf={rtf}  spikes/s={t.spikes_per_s:.0f}  power={t.power_mw.total:.3f}mW  "
            f"p99={p99}  drops={drops}"
        )
    text = raw.decode(errors="replace")
    if kind == "status":
        try:
            s = Status.model_validate_json(raw)
        except ValidationError:
            return text[:200]
        pipelines = ", ".join(f"{p.name} ({p.model} on {p.chip})" for p in s.pipelines) or "none"
        return f"version={s.version}  started={s.started_at.isoformat(timespec='seconds')}  pipelines: {pipelines}"
    return text[:200]


def _clock(now: datetime) -> str:
    return now.strftime("%H:%M:%S.%f")[:-3]


def _as_bytes(payload: aiomqtt.types.PayloadType) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
