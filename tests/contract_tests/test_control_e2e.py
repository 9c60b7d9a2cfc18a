"""Against Mosquitto and a running daemon: every message it publishes validates against the
shipped schemas; control commands and requests work, and bad ones get error answers while the
daemon keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from ha_parse import parse_discovery, render
from mqtt_helpers import Broker, Collector, Received, publish
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests_contract_util import copy_bundle, daemon_config, popen_daemon, validate_message

pytestmark = [pytest.mark.broker, pytest.mark.slow]

BASE = "spikewire/ctl-test"


def of(messages: list[Received], suffix: str) -> list[Received]:
    return [m for m in messages if m.topic.endswith(suffix)]


def replies(messages: list[Received], ident: str) -> list[dict[str, object]]:
    """Answers carrying ``ident``: states with that reply id, or replies on response/<id>."""
    out = []
    for m in messages:
        if m.topic.endswith("/state"):
            reply = m.json()["reply"]
            if reply is not None and reply["id"] == ident:
                out.append(m.json())
        elif m.topic == f"{BASE}/response/{ident}":
            out.append(m.json())
    return out


class Daemon:
    def __init__(self, broker: Broker, sub: Collector, proc: subprocess.Popen[str], config: Path) -> None:
        self.broker, self.sub, self.proc, self.config = broker, sub, proc, config

    async def send(self, topic: str, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        await publish(self.broker.host, self.broker.port, topic, data)

    async def command(self, payload: dict[str, object] | str, ident: str, pipeline: str = "kws") -> dict[str, object]:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.send(f"{BASE}/{pipeline}/set", text)
        found = await self.sub.wait_for(lambda ms: bool(replies(ms, ident)), timeout_s=30)
        return replies(found, ident)[0]

    async def request(self, payload: dict[str, object]) -> dict[str, object]:
        await self.send(f"{BASE}/request", json.dumps(payload))
        ident = str(payload["id"])
        found = await self.sub.wait_for(lambda ms: bool(replies(ms, ident)), timeout_s=60)
        return replies(found, ident)[0]


@pytest.fixture
async def daemon(mosquitto: Broker, tmp_path: Path) -> AsyncIterator[Daemon]:
    extra = copy_bundle(tmp_path, "kws-digits-copy")
    config = daemon_config(tmp_path, mosquitto.url, extra_model=extra)
    async with Collector(mosquitto.host, mosquitto.port, "#") as sub:
        proc = popen_daemon(config)
        try:
            await sub.wait_for(lambda ms: bool(of(ms, "/kws/classification")), timeout_s=60)
            yield Daemon(mosquitto, sub, proc, config)
            assert proc.poll() is None, "the daemon died"
            proc.terminate()
            _, err = await asyncio.to_thread(proc.communicate, timeout=30)
            assert proc.returncode == 0, err
        finally:
            proc.kill()


async def test_published_messages_validate_against_the_shipped_schemas(daemon: Daemon) -> None:
    await daemon.sub.wait_for(lambda ms: len(of(ms, "/kws/telemetry")) >= 2 and len(of(ms, "/kws/state")) >= 2)
    await daemon.request({"command": "status", "id": "st-1"})
    kinds = {validate_message(m.topic, m.payload) for m in daemon.sub.messages if m.topic.startswith(BASE)}
    assert {"availability", "status", "classification", "telemetry", "state", "reply"} <= kinds


async def test_state_is_retained_and_follows_the_last_label(daemon: Daemon) -> None:
    await daemon.sub.wait_for(lambda ms: len(of(ms, "/kws/classification")) >= 3)
    states = [m.json() for m in of(daemon.sub.messages, "/kws/state")]
    labels = {c.json()["label"] for c in of(daemon.sub.messages, "/kws/classification")}
    assert {s["label"] for s in states if s["label"] is not None} <= labels
    assert [s["seq"] for s in states] == sorted(s["seq"] for s in states)
    async with Collector(daemon.broker.host, daemon.broker.port, f"{BASE}/kws/state") as late:
        retained = await late.wait_for(lambda ms: bool(ms))
    assert retained[0].retain and retained[0].json()["model"] == "kws-digits@0.1.0"


async def test_pause_resume_threshold(daemon: Daemon) -> None:
    paused = await daemon.command({"command": "pause", "id": "p-1"}, "p-1")
    assert paused["paused"] is True and paused["reply"] == {
        "id": "p-1", "command": "pause", "ok": True, "error": None, "detail": paused["reply"]["detail"],  # type: ignore[index]
    }  # fmt: skip
    paused_at = str(paused["timestamp"])
    # Decisions go on being made (and counted) while paused: wait for the telemetry that says so.
    await daemon.sub.wait_for(lambda ms: any(m.json()["paused"] > 0 for m in of(ms, "/kws/telemetry")), timeout_s=30)
    late = [c.json() for c in of(daemon.sub.messages, "/kws/classification") if c.json()["timestamp"] > paused_at]
    assert late == []
    resumed = await daemon.command({"command": "resume", "id": "r-1"}, "r-1")
    assert resumed["paused"] is False
    resumed_at = str(resumed["timestamp"])
    await daemon.sub.wait_for(
        lambda ms: any(c.json()["timestamp"] > resumed_at for c in of(ms, "/kws/classification")), timeout_s=30
    )
    gate = await daemon.command({"command": "threshold", "min_confidence": 1.0, "id": "t-1"}, "t-1")
    assert gate["min_confidence"] == 1.0 and gate["reply"]["ok"] is True  # type: ignore[index]
    gate_at = str(gate["timestamp"])
    await daemon.sub.wait_for(
        lambda ms: any(t.json()["timestamp"] > gate_at and t.json()["gated"] > 0 for t in of(ms, "/kws/telemetry")),
        timeout_s=30,
    )


async def test_model_switch_between_compatible_bundles(daemon: Daemon) -> None:
    switched = await daemon.command({"command": "model", "model": "kws-digits-copy", "id": "m-1"}, "m-1")
    assert switched["reply"]["ok"] is True, switched  # type: ignore[index]
    assert switched["model"] == "kws-digits-copy@0.1.0"
    await daemon.sub.wait_for(
        lambda ms: any(c.json()["model"] == "kws-digits-copy@0.1.0" for c in of(ms, "/kws/classification")),
        timeout_s=30,
    )
    refused = await daemon.command({"command": "model", "model": "nmnist", "id": "m-2"}, "m-2")
    assert refused["reply"]["ok"] is False and "convolutional" in refused["reply"]["error"]  # type: ignore[index]
    assert refused["model"] == "kws-digits-copy@0.1.0"  # still running the model it had
    status = await daemon.request({"command": "status", "id": "s-2"})
    assert status["status"]["pipelines"][0]["model"] == "kws-digits-copy@0.1.0"  # type: ignore[index]


async def test_status_and_reload_requests(daemon: Daemon) -> None:
    status = await daemon.request({"command": "status", "id": "abc-1"})
    assert status["ok"] is True and status["status"]["device"] == "ctl-test"  # type: ignore[index]
    # MQTT 5: the reply goes to the response topic with the correlation data.
    async with aiomqtt.Client(daemon.broker.host, daemon.broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe("reply/here/#", qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = "reply/here/1"
        props.CorrelationData = b"\x01corr"
        await client.publish(f"{BASE}/request", b'{"command": "status"}', qos=1, properties=props)
        async with asyncio.timeout(30):
            message = await anext(aiomqtt_messages(client))
    assert message.topic.value == "reply/here/1"
    assert message.properties is not None and message.properties.CorrelationData == b"\x01corr"
    validate_message("x/response", message.payload)  # type: ignore[arg-type]
    # Reload: the pipeline's threshold changes in the file, the daemon picks it up.
    daemon.config.write_text(daemon.config.read_text().replace("min_confidence = 0.0", "min_confidence = 0.25"))
    reloaded = await daemon.request({"command": "reload", "id": "rl-1"})
    assert reloaded["ok"] is True, reloaded
    await daemon.sub.wait_for(lambda ms: any(s.json()["min_confidence"] == 0.25 for s in of(ms, "/kws/state")))
    daemon.config.write_text(daemon.config.read_text().replace("speed = 4.0", "speed = 'fast'"))
    broken = await daemon.request({"command": "reload", "id": "rl-2"})
    assert broken["ok"] is False and "speed" in str(broken["error"]), broken


async def test_home_assistant_discovery(daemon: Daemon) -> None:
    """HA's view: configs accepted, templates render against the daemon's real messages, and the
    configs come again when HA announces itself online."""
    found = await daemon.sub.wait_for(
        lambda ms: len(of(ms, "/config")) >= 5 and bool(of(ms, "/kws/telemetry")) and bool(of(ms, "/kws/state"))
    )
    configs = {m.topic: m for m in of(found, "/config")}
    assert len(configs) == 5
    async with Collector(daemon.broker.host, daemon.broker.port, "homeassistant/+/+/+/config") as late:
        retained = await late.wait_for(lambda ms: len(ms) >= 5)
    assert {m.topic for m in retained if m.retain} == set(configs)
    latest = {"state": of(found, "/kws/state")[-1].payload, "telemetry": of(found, "/kws/telemetry")[-1].payload}
    unique_ids = set()
    for topic, message in configs.items():
        component, config = parse_discovery(topic, message.payload)
        assert config["availability_topic"] == f"{BASE}/availability"
        unique_ids.add(config["unique_id"])
        value = render(config["value_template"], latest[config["state_topic"].rsplit("/", 1)[1]])
        if component == "binary_sensor":
            assert value in (config["payload_on"], config["payload_off"])
        elif "state_class" in config and value != "None":  # HA reads "None" as unknown
            float(value)
    assert len(unique_ids) == 5
    before = len(of(daemon.sub.messages, "/config"))
    await daemon.send("homeassistant/status", "online")
    await daemon.sub.wait_for(lambda ms: len(of(ms, "/config")) >= before + 5)


async def aiomqtt_messages(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
    async for message in client.messages:
        yield message


INVALID = [
    ("not json", "not valid JSON"),
    ('{"command": "explode", "id": "e-1"}', "explode"),
    ('{"command": "threshold", "min_confidence": "high", "id": "e-2"}', "min_confidence"),
    ('{"command": "threshold", "min_confidence": 7, "id": "e-3"}', "min_confidence"),
    ('{"command": "model", "model": "no-such-model", "id": "e-4"}', "not installed"),
    ('{"command": "model", "model": "/etc", "id": "e-5"}', "not installed"),
    ("[1, 2]", "JSON object"),
    (b"\xff\xfe", "UTF-8"),
]


async def test_invalid_commands_get_error_replies(daemon: Daemon) -> None:
    for payload, needle in INVALID:
        before = len(of(daemon.sub.messages, "/kws/state"))
        await daemon.send(f"{BASE}/kws/set", payload)
        found = await daemon.sub.wait_for(
            lambda ms, before=before: any(m.json()["reply"] is not None for m in of(ms, "/kws/state")[before:]),
            timeout_s=30,
        )
        answer = next(m for m in of(found, "/kws/state")[before:] if m.json()["reply"] is not None)
        reply = answer.json()["reply"]
        assert reply["ok"] is False and needle in reply["error"], (payload, reply)
        assert not answer.retain  # a refusal leaves the retained state alone
    # Unknown pipeline: a Reply on the response topic. The daemon still answers afterwards.
    unknown = await daemon.command({"command": "pause", "id": "u-1"}, "u-1", pipeline="nope")
    assert unknown["ok"] is False and "unknown pipeline 'nope'" in str(unknown["error"])
    assert (await daemon.request({"command": "status", "id": "alive"}))["ok"] is True


async def test_control_off_still_publishes_state_for_home_assistant(mosquitto: Broker, tmp_path: Path) -> None:
    config = daemon_config(tmp_path, mosquitto.url, extra_model=copy_bundle(tmp_path, "x"), control=False)
    async with Collector(mosquitto.host, mosquitto.port, "#") as sub:
        proc = popen_daemon(config)
        try:
            await sub.wait_for(lambda ms: bool(of(ms, "/kws/state")) and len(of(ms, "/config")) == 5, timeout_s=60)
            await publish(mosquitto.host, mosquitto.port, f"{BASE}/kws/set", b'{"command": "pause", "id": "no"}')
            seen = len(of(sub.messages, "/kws/classification"))
            # Decisions go on being published: the pause was not obeyed, and nobody answered it.
            await sub.wait_for(lambda ms: len(of(ms, "/kws/classification")) >= seen + 3, timeout_s=60)
            assert proc.poll() is None
        finally:
            proc.kill()
            await asyncio.to_thread(proc.communicate, timeout=30)
    assert not replies(sub.messages, "no")
    assert not any(m.json()["paused"] for m in of(sub.messages, "/kws/state"))


async def test_commands_work_again_after_a_broker_restart(daemon: Daemon) -> None:
    """Subscriptions are renewed on every reconnect (the broker forgets a clean session's)."""
    assert (await daemon.command({"command": "pause", "id": "before"}, "before"))["paused"] is True
    connects = daemon.sub.connections
    await asyncio.to_thread(daemon.broker.kill)
    await asyncio.to_thread(daemon.broker.start)
    await daemon.sub.wait_for(lambda _: daemon.sub.connections > connects, timeout_s=30)
    # The state is published again on connect (retained: the broker lost it with the kill).
    await daemon.sub.wait_for(lambda ms: bool(of(ms[-50:], "/kws/state")), timeout_s=30)
    for attempt in range(60):  # the daemon reconnects with backoff; a command before that is lost
        ident = f"after-{attempt}"
        await daemon.send(f"{BASE}/kws/set", json.dumps({"command": "resume", "id": ident}))
        with contextlib.suppress(AssertionError):
            await daemon.sub.wait_for(lambda ms, i=ident: bool(replies(ms, i)), timeout_s=1)
            break
    answered = [r for m in range(60) for r in replies(daemon.sub.messages, f"after-{m}")]
    assert answered and answered[0]["paused"] is False
