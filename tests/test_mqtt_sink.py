"""MQTT sink, URL parsing, embedded broker and ``spikewire sub`` against real brokers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from mqtt_helpers import (
    Broker,
    Collector,
    classification,
    collect,
    dedupe,
    free_port,
    publish,
    seqs,
    status,
    telemetry,
    wait_until,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from runtime.config import MqttConfig, TlsConfig
from runtime.contract import Classification, Status, Telemetry, dump
from runtime.mqtt.broker import BrokerPortInUseError, EmbeddedBroker
from runtime.mqtt.connection import connect_options
from runtime.mqtt.sink import MqttSink
from runtime.mqtt.sub import EXIT_CONNECT_FAILED, EXIT_OK, EXIT_TIMEOUT, subscribe_and_print
from runtime.mqtt.url import BrokerAddress, parse_broker_url
from runtime.sinks.base import SinkStats

REPO = Path(__file__).resolve().parents[1]
DEV = "dev1"


def sink_config(url: str, **overrides: object) -> MqttConfig:
    """Fast reconnects so broker restarts cost the tests little time."""
    return MqttConfig.model_validate({"url": url, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, **overrides})


def warnings_with(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


# -- (a) (b) status, online, order, offline ------------------------------------------


@pytest.mark.broker
async def test_announces_then_publishes_in_order_with_valid_payloads(mosquitto: Broker) -> None:
    async with Collector(mosquitto.host, mosquitto.port, f"spikewire/{DEV}/#") as live:
        sink = MqttSink(sink_config(mosquitto.url), DEV)
        await sink.start(status(DEV))
        for seq in range(1, 21):
            sink.offer(classification(seq, device=DEV))
        sink.offer(telemetry(1, device=DEV))
        got = await live.wait_for(lambda ms: any(m.topic.endswith("/telemetry") for m in ms))
        await wait_until(lambda: sink.stats().delivered == 21, what="21 deliveries")

        topics = [m.topic for m in got]
        assert topics == [
            f"spikewire/{DEV}/availability",
            f"spikewire/{DEV}/status",
            *[f"spikewire/{DEV}/kws/classification"] * 20,
            f"spikewire/{DEV}/kws/telemetry",
        ]
        assert got[0].payload == b"online"
        decisions = [Classification.model_validate_json(m.payload) for m in got[2:22]]
        assert [d.seq for d in decisions] == list(range(1, 21))
        assert all(m.qos == 1 for m in got[2:22])  # config.qos_classification
        assert Telemetry.model_validate_json(got[-1].payload).seq == 1
        assert got[-1].qos == 0
        assert sink.connected
        assert sink.stats() == SinkStats(queued=0, dropped=0, delivered=21)

    # A subscriber arriving later gets availability and status as retained messages.
    retained = await collect(mosquitto.host, mosquitto.port, f"spikewire/{DEV}/+", until=lambda ms: len(ms) >= 2)
    by_topic = {m.topic: m for m in retained}
    assert by_topic[f"spikewire/{DEV}/availability"].payload == b"online"
    assert all(m.retain for m in retained)
    announced = Status.model_validate_json(by_topic[f"spikewire/{DEV}/status"].payload)
    assert announced.device == DEV
    assert [p.name for p in announced.pipelines] == ["kws"]
    await sink.close(drain_timeout_s=2)


@pytest.mark.broker
async def test_close_publishes_retained_offline(mosquitto: Broker) -> None:
    sink = MqttSink(sink_config(mosquitto.url), DEV)
    await sink.start(status(DEV))
    await wait_until(lambda: sink.connected, what="connection")
    sink.offer(classification(1, device=DEV))
    await sink.close(drain_timeout_s=2)
    assert not sink.connected
    assert sink.stats() == SinkStats(queued=0, dropped=0, delivered=1)

    got = await collect(mosquitto.host, mosquitto.port, f"spikewire/{DEV}/availability", until=bool)
    assert [(m.payload, m.retain) for m in got] == [(b"offline", True)]


# -- (c) Last Will ---------------------------------------------------------------------

_SINK_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from runtime.config import MqttConfig
    from runtime.contract import Status, utc_now
    from runtime.mqtt.sink import MqttSink

    async def main() -> None:
        sink = MqttSink(MqttConfig(url=sys.argv[1]), sys.argv[2])
        await sink.start(Status(device=sys.argv[2], version="t", started_at=utc_now(), pipelines=[]))
        while not sink.connected:
            await asyncio.sleep(0.01)
        print("connected", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.broker
async def test_killed_process_leaves_will_offline(mosquitto: Broker) -> None:
    topic = f"spikewire/{DEV}/availability"
    async with Collector(mosquitto.host, mosquitto.port, topic) as sub:
        # A real process, SIGKILLed: the socket closes without DISCONNECT, as on a crash or power cut.
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SINK_PROCESS, mosquitto.url, DEV, cwd=REPO, stdout=subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), timeout=20)
            assert line.strip() == b"connected"
            await sub.wait_for(lambda ms: [m.payload for m in ms] == [b"online"])
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        await sub.wait_for(lambda ms: [m.payload for m in ms] == [b"online", b"offline"], timeout_s=5)

    got = await collect(mosquitto.host, mosquitto.port, topic, until=bool)
    assert [(m.payload, m.retain) for m in got] == [(b"offline", True)]


# -- (d) (e) broker restart, overflow --------------------------------------------------


@pytest.mark.broker
async def test_broker_restart_mid_stream_loses_nothing(mosquitto: Broker) -> None:
    n = 60
    sub = Collector(mosquitto.host, mosquitto.port, f"spikewire/{DEV}/+/classification", persistent=True)
    async with sub:
        sink = MqttSink(sink_config(mosquitto.url), DEV)
        await sink.start(status(DEV))
        for seq in range(1, 11):
            sink.offer(classification(seq, device=DEV))
            await asyncio.sleep(0.01)
        # A burst, then the broker goes down while part of it is in flight.
        for seq in range(11, 31):
            sink.offer(classification(seq, device=DEV))
        await asyncio.to_thread(mosquitto.stop)
        for seq in range(31, 46):  # offered while the broker is down
            sink.offer(classification(seq, device=DEV))
            await asyncio.sleep(0.1)
        assert not sink.connected
        await asyncio.to_thread(mosquitto.start)
        for seq in range(46, n + 1):
            sink.offer(classification(seq, device=DEV))
            await asyncio.sleep(0.01)
        got = await sub.wait_for(lambda ms: set(seqs(ms)) >= set(range(1, n + 1)), timeout_s=15)

    assert dedupe(seqs(got)) == list(range(1, n + 1))
    assert sink.dropped == 0
    assert sink.reconnects >= 1
    await sink.close(drain_timeout_s=2)
    assert sink.stats() == SinkStats(queued=0, dropped=0, delivered=n)


@pytest.mark.broker
async def test_overflow_drops_oldest_and_delivers_newest(mosquitto: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runtime.mqtt")
    async with Collector(mosquitto.host, mosquitto.port, f"spikewire/{DEV}/+/classification", persistent=True) as sub:
        await asyncio.to_thread(mosquitto.stop)
        sink = MqttSink(sink_config(mosquitto.url, buffer_size=5), DEV)
        await sink.start(status(DEV))
        for seq in range(1, 21):
            sink.offer(classification(seq, device=DEV))
        assert sink.stats() == SinkStats(queued=5, dropped=15, delivered=0)
        assert len(warnings_with(caplog, "buffer full")) == 1  # once per burst, not per message

        await asyncio.to_thread(mosquitto.start)
        got = await sub.wait_for(lambda ms: 20 in seqs(ms), timeout_s=10)
        await wait_until(lambda: sink.stats().delivered == 5, what="5 deliveries")

    assert dedupe(seqs(got)) == [16, 17, 18, 19, 20]
    assert sink.stats() == SinkStats(queued=0, dropped=15, delivered=5)
    await sink.close(drain_timeout_s=2)


# -- (f) URLs and connection settings ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", BrokerAddress("broker", 1883, tls=False)),
        ("mqtts://broker", BrokerAddress("broker", 8883, tls=True)),
        ("mqtt://10.0.0.5:1884", BrokerAddress("10.0.0.5", 1884, tls=False)),
        ("MQTTS://Broker.LAN:9000/", BrokerAddress("broker.lan", 9000, tls=True)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883, tls=False)),
        ("mqtt://ann:p%40ss@broker", BrokerAddress("broker", 1883, tls=False, username="ann", password="p@ss")),
        ("mqtt://ann@broker", BrokerAddress("broker", 1883, tls=False, username="ann")),
    ],
)
def test_parse_broker_url(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://broker", "scheme"),
        ("broker:1883", "scheme"),
        ("http://broker", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://:1883", "no host"),
        ("mqtt://broker:0", "port"),
        ("mqtt://broker:70000", "port"),
        ("mqtt://broker:abc", "port"),
        ("mqtt://broker/spikewire/#", "path"),
        ("mqtt://broker?x=1", "query"),
    ],
)
def test_parse_broker_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_broker_url(url)


def test_url_password_never_shown() -> None:
    address = parse_broker_url("mqtts://ann:hunter2@broker:8884")
    assert "hunter2" not in repr(address) and "hunter2" not in str(address)
    assert str(address) == "mqtts://broker:8884"
    with pytest.raises(ValueError, match="port") as excinfo:
        parse_broker_url("mqtt://ann:hunter2@broker:x")
    assert "hunter2" not in str(excinfo.value)


def test_config_credentials_beat_url_credentials() -> None:
    url = "mqtts://ann:from-url@broker"
    from_url = connect_options(MqttConfig(url=url))
    assert (from_url.username, from_url.password) == ("ann", "from-url")
    explicit = connect_options(MqttConfig.model_validate({"url": url, "username": "bob", "password": "from-config"}))
    assert (explicit.username, explicit.password) == ("bob", "from-config")
    assert explicit.tls_context is not None  # mqtts:// implies TLS
    assert "from-config" not in repr(explicit)


def test_falls_back_to_mqtt311_when_the_broker_refuses_mqtt5(caplog: pytest.LogCaptureFixture) -> None:
    # What a 3.1.1-only broker answers (amqtt without a Will, measured): CONNACK 132.
    # No broker at hand refuses MQTT 5 that way for a client with a Will, hence a synthetic error.
    sink = MqttSink(MqttConfig(), DEV)
    refused = MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=132))
    assert sink._connect_failed(refused) is True  # retry at once
    assert sink._connect_failed(refused) is False  # 3.1.1 refused too: an ordinary failure
    assert len(warnings_with(caplog, "falling back to MQTT 3.1.1")) == 1


def test_tls_settings() -> None:
    assert connect_options(MqttConfig(url="mqtt://broker")).tls_context is None
    insecure = connect_options(MqttConfig(url="mqtt://broker:8883", tls=TlsConfig(insecure=True)))
    assert insecure.tls_context is not None and not insecure.tls_context.check_hostname
    with pytest.raises(ValueError, match="ca_file"):
        connect_options(MqttConfig(url="mqtts://broker", tls=TlsConfig(ca_file=Path("/nonexistent/ca.pem"))))
    with pytest.raises(ValueError, match="prefix"):
        MqttSink(MqttConfig(prefix="spike/#"), DEV)


# -- (g) no broker, bad credentials ------------------------------------------------------


async def test_no_broker_never_blocks_the_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.mqtt")
    url = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    sink = MqttSink(sink_config(url, username="ann", password="hunter2"), DEV)
    started = time.perf_counter()
    await sink.start(status(DEV))
    for seq in range(1, 11):
        sink.offer(classification(seq, device=DEV))
    assert time.perf_counter() - started < 0.1
    await wait_until(lambda: sink.failed_attempts >= 3, what="three connection attempts")
    assert not sink.connected
    assert sink.stats() == SinkStats(queued=10, dropped=0, delivered=0)
    # One clear line for the failure kind, not one per attempt, and no traceback.
    assert len(warnings_with(caplog, "connection refused")) == 1
    assert all(r.exc_info is None for r in caplog.records)

    started = time.perf_counter()
    await sink.close(drain_timeout_s=0.3)
    assert time.perf_counter() - started < 1.0
    assert sink.stats() == SinkStats(queued=0, dropped=10, delivered=0)
    assert len(warnings_with(caplog, "10 message(s) not delivered")) == 1
    assert "hunter2" not in caplog.text

    # Nothing queued: close() does not wait out the drain time-out or a reconnect delay.
    idle = MqttSink(sink_config(url, reconnect_min_s=5, reconnect_max_s=5), DEV)
    await idle.start(status(DEV))
    await wait_until(lambda: idle.failed_attempts >= 1, what="a failed attempt")
    started = time.perf_counter()
    await idle.close(drain_timeout_s=10)
    assert time.perf_counter() - started < 0.5


@pytest.fixture
def auth_broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[Broker]:
    """Mosquitto that accepts only user "ann" with password "right-password"."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd not installed")
    workdir = tmp_path / "auth-broker"
    workdir.mkdir()
    password_file = workdir / "passwords"
    password_file.touch(mode=0o600)
    subprocess.run([passwd, "-b", str(password_file), "ann", "right-password"], check=True)
    broker = Broker(
        mosquitto_binary, workdir, free_port(), allow_anonymous=False, extra_conf=[f"password_file {password_file}"]
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.mark.broker
async def test_auth_failure_names_broker_and_user_not_password(
    auth_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.mqtt")
    sink = MqttSink(sink_config(auth_broker.url, username="ann", password="wrong-password"), DEV)
    await sink.start(status(DEV))
    await wait_until(lambda: sink.failed_attempts >= 2, what="two attempts")
    await sink.close(drain_timeout_s=0.1)
    [line] = warnings_with(caplog, "refused user")
    assert auth_broker.url in line and "'ann'" in line
    assert "wrong-password" not in caplog.text

    good = MqttSink(sink_config(auth_broker.url, username="ann", password="right-password"), DEV)
    await good.start(status(DEV))
    await wait_until(lambda: good.connected, what="connection with the right password")
    await good.close(drain_timeout_s=1)


# -- (h) embedded broker -----------------------------------------------------------------


@pytest.mark.broker
async def test_embedded_broker_round_trips() -> None:
    embedded = EmbeddedBroker()
    await embedded.start(port=free_port())
    try:
        with pytest.raises(BrokerPortInUseError, match="already in use"):
            await EmbeddedBroker().start(port=embedded.port)

        # aiomqtt, QoS 1 both ways.
        async with Collector(embedded.host, embedded.port, "demo/#") as sub:
            await publish(embedded.host, embedded.port, "demo/a", b"hello")
            [got] = await sub.wait_for(lambda ms: len(ms) == 1)
            assert (got.topic, got.payload, got.qos) == ("demo/a", b"hello", 1)

        # The sink, with the protocol amqtt speaks (see runtime/mqtt/broker.py).
        async with Collector(embedded.host, embedded.port, f"spikewire/{DEV}/#") as sub:
            sink = MqttSink(sink_config(embedded.url, protocol=EmbeddedBroker.protocol), DEV)
            await sink.start(status(DEV))
            sink.offer(classification(1, device=DEV))
            got = await sub.wait_for(lambda ms: any(m.topic.endswith("/classification") for m in ms))
            assert [m.payload for m in got if m.topic.endswith("/availability")] == [b"online"]
            assert Classification.model_validate_json(got[-1].payload).seq == 1
            await sink.close(drain_timeout_s=2)
            await sub.wait_for(lambda ms: ms[-1].payload == b"offline")

        # spikewire sub with its default MQTT 5 falls back to 3.1.1 as well.
        out = io.StringIO()
        code = await subscribe_and_print(MqttConfig(url=embedded.url), DEV, out, False, 2, 5)
        assert code == EXIT_OK
        assert f"spikewire/{DEV}/availability  offline  (retained)" in out.getvalue()

        # The mosquitto_sub binary: a retained message on subscribe, then a live one.
        mosquitto_sub = shutil.which("mosquitto_sub")
        if mosquitto_sub is None:
            pytest.skip("mosquitto_sub not installed")
        await publish(embedded.host, embedded.port, "demo/retained", b"kept", retain=True)
        # Another client subscribed to the sink's retained topics: amqtt 0.12.1 would push
        # those to mosquitto_sub too (see _Broker in runtime/mqtt/broker.py).
        async with Collector(embedded.host, embedded.port, f"spikewire/{DEV}/#"):
            cli = await asyncio.create_subprocess_exec(
                mosquitto_sub, "-h", embedded.host, "-p", str(embedded.port), "-t", "demo/#", "-v", "-q", "1",
                "-C", "2", "-W", "10", stdout=subprocess.PIPE,
            )  # fmt: skip
            assert cli.stdout is not None
            first = await asyncio.wait_for(cli.stdout.readline(), timeout=10)
            assert first.strip() == b"demo/retained kept"
            await publish(embedded.host, embedded.port, "demo/live", b"fresh")
            rest, _ = await asyncio.wait_for(cli.communicate(), timeout=10)
            assert rest.strip() == b"demo/live fresh"
            assert cli.returncode == 0
    finally:
        await embedded.stop()


async def test_embedded_broker_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        await EmbeddedBroker().start(host="0.0.0.0", port=free_port())


# -- (i) spikewire sub -------------------------------------------------------------------


async def _run_sub(broker: Broker, json_lines: bool, seq_values: list[int]) -> tuple[int, str]:
    base = f"spikewire/{DEV}"
    # A retained availability tells us when the subscriber is ready.
    await publish(broker.host, broker.port, f"{base}/availability", b"online", retain=True)
    out = io.StringIO()
    config = MqttConfig(url=broker.url)
    task = asyncio.create_task(subscribe_and_print(config, DEV, out, json_lines, 1 + len(seq_values), 10))
    await wait_until(lambda: "online" in out.getvalue(), what="the subscriber")
    for seq in seq_values:
        payload = classification(seq, device=DEV, label="up", score=0.87)
        await publish(broker.host, broker.port, f"{base}/kws/classification", dump(payload))
    return await task, out.getvalue()


@pytest.mark.broker
async def test_sub_prints_classifications_and_reports_gaps(mosquitto_session: Broker) -> None:
    code, text = await _run_sub(mosquitto_session, json_lines=False, seq_values=[1, 2, 5, 5])
    assert code == EXIT_OK
    lines = text.splitlines()
    assert lines[0].endswith(f"spikewire/{DEV}/availability  online  (retained)")
    decisions = [line for line in lines if f"spikewire/{DEV}/kws/classification" in line]
    assert len(decisions) == 4
    assert "up 0.87  seq=1  latency host=3.2ms chip=0.40ms" in decisions[0]
    gaps = [line for line in lines if "! gap" in line]
    assert len(gaps) == 1
    assert f"{DEV}/kws/classification: expected seq 3, got 5 (2 missing)" in gaps[0]
    assert decisions[-1].endswith("(duplicate)")


@pytest.mark.broker
async def test_sub_json_lines(mosquitto_session: Broker) -> None:
    code, text = await _run_sub(mosquitto_session, json_lines=True, seq_values=[7, 9])
    assert code == EXIT_OK
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["payload"] == "online" and records[0]["retained"] is True
    assert records[1]["payload"]["seq"] == 7
    assert records[2] == {**records[2], "event": "gap", "expected": 8, "got": 9}
    assert records[3]["payload"]["schema"] == "spikewire.classification/1"


@pytest.mark.broker
async def test_sub_exit_codes(mosquitto_session: Broker) -> None:
    out = io.StringIO()
    quiet = MqttConfig(url=mosquitto_session.url, prefix="nobody-publishes-here")
    assert await subscribe_and_print(quiet, None, out, False, 5, 0.3) == EXIT_TIMEOUT
    assert await subscribe_and_print(quiet, None, out, False, None, 0.3) == EXIT_OK
    nowhere = MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}")
    assert await subscribe_and_print(nowhere, None, out, False, 1, 2) == EXIT_CONNECT_FAILED
    assert out.getvalue() == ""


def test_aiomqtt_is_only_imported_by_runtime_mqtt() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "runtime").rglob("*.py")
        if "mqtt" not in path.relative_to(REPO / "runtime").parts[:1]
        and any(word in path.read_text() for word in ("import aiomqtt", "from aiomqtt", "import amqtt", "from amqtt"))
    ]
    assert offenders == []


@pytest.mark.broker
async def test_aiomqtt_qos1_publish_returns_only_after_puback(mosquitto: Broker) -> None:
    """The assumption "delivered" rests on (see runtime/mqtt/sink.py): QoS 1 waits for PUBACK."""
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, timeout=10) as client:
        mosquitto.pause()
        try:
            qos0 = asyncio.create_task(client.publish("probe/q0", b"x", qos=0))
            qos1 = asyncio.create_task(client.publish("probe/q1", b"x", qos=1))
            await asyncio.sleep(0.5)
            assert qos0.done()  # written to the socket is enough for QoS 0
            assert not qos1.done()  # the broker has not acknowledged it
        finally:
            mosquitto.resume()
        await asyncio.wait_for(qos1, timeout=5)


@pytest.mark.broker
async def test_hung_broker_times_out_and_recovers(mosquitto: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runtime.mqtt")
    sub = Collector(mosquitto.host, mosquitto.port, f"spikewire/{DEV}/+/classification", persistent=True)
    async with sub:
        sink = MqttSink(sink_config(mosquitto.url), DEV, operation_timeout_s=0.5)
        await sink.start(status(DEV))
        await wait_until(lambda: sink.connected, what="connection")
        mosquitto.pause()
        try:
            for seq in range(1, 11):
                sink.offer(classification(seq, device=DEV))
            await wait_until(lambda: not sink.connected, what="the time-out to count as a lost connection")
        finally:
            mosquitto.resume()
        got = await sub.wait_for(lambda ms: set(seqs(ms)) >= set(range(1, 11)), timeout_s=10)
    assert dedupe(seqs(got)) == list(range(1, 11))
    assert warnings_with(caplog, "no acknowledgement within 0.5 s")
    await sink.close(drain_timeout_s=2)
    assert sink.stats() == SinkStats(queued=0, dropped=0, delivered=10)
