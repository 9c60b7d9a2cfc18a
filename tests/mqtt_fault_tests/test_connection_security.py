"""Connection settings against real Mosquitto listeners: TLS, credentials, MQTT 5, sessions, ws."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from mqtt_helpers import Broker, BrokerStartError, Collector, classification, free_port, status, wait_until

from runtime.config import MqttConfig, load_settings
from runtime.mqtt.connection import connect_options
from runtime.mqtt.sink import MqttSink

DEV = "secdev"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)  # fmt: skip


def make_cert(folder: Path, ca: str, name: str, san: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=folder)  # fmt: skip
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=folder)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_cert(folder, "ca", "server", "DNS:localhost,IP:127.0.0.1")
    make_cert(folder, "ca", "wrongname", "DNS:broker.example")
    make_cert(folder, "ca", "client", "DNS:client")
    return folder


def tls_broker(binary: str, tmp_path: Path, pki: Path, server: str) -> tuple[Broker, int]:
    """TLS listener (client certificates required) on one port, a plain one for the test's subscriber."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    tls_port, plain_port = free_port(), free_port()
    broker = Broker(binary, workdir, tls_port, extra_conf=[
        f"cafile {pki / 'ca.crt'}", f"certfile {pki / server}.crt", f"keyfile {pki / server}.key",
        "require_certificate true", f"listener {plain_port} 127.0.0.1",
    ])  # fmt: skip
    broker.start()
    return broker, plain_port


def sink_config(url: str, **overrides: object) -> MqttConfig:
    return MqttConfig.model_validate({"url": url, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, **overrides})


def tls(pki: Path, ca: str = "ca", **extra: object) -> dict[str, object]:
    return {"ca_file": str(pki / f"{ca}.crt"), "cert_file": str(pki / "client.crt"),
            "key_file": str(pki / "client.key"), **extra}  # fmt: skip


@pytest.mark.broker
async def test_mutual_tls_with_hostname_check_delivers(mosquitto_binary: str, tmp_path: Path, pki: Path) -> None:
    broker, plain = tls_broker(mosquitto_binary, tmp_path, pki, "server")
    try:
        async with Collector(broker.host, plain, f"spikewire/{DEV}/+/classification") as sub:
            sink = MqttSink(sink_config(f"mqtts://localhost:{broker.port}", tls=tls(pki)), DEV)
            await sink.start(status(DEV))
            sink.offer(classification(1, device=DEV))
            await sub.wait_for(lambda ms: len(ms) == 1)
            await sink.close(drain_timeout_s=2)
        assert sink.delivered == 1 and sink.broker == f"mqtts://localhost:{broker.port}"
    finally:
        broker.kill()


@pytest.mark.broker
@pytest.mark.parametrize(
    ("ca", "server", "expected"),
    [
        ("other-ca", "server", "certificate verify failed"),
        ("ca", "wrongname", "Hostname mismatch, certificate is not valid for 'localhost'"),
    ],
    ids=["unknown-ca", "wrong-hostname"],
)
async def test_tls_failure_is_one_clear_line_and_keeps_retrying(
    mosquitto_binary: str, tmp_path: Path, pki: Path, ca: str, server: str, expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    broker, _ = tls_broker(mosquitto_binary, tmp_path, pki, server)
    caplog.set_level(logging.DEBUG, logger="runtime.mqtt")
    try:
        sink = MqttSink(sink_config(f"mqtts://localhost:{broker.port}", tls=tls(pki, ca)), DEV)
        await sink.start(status(DEV))
        await wait_until(lambda: sink.failed_attempts >= 4, timeout_s=30, what="four attempts")
        await sink.close(drain_timeout_s=0.1)
    finally:
        broker.kill()
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "TLS handshake" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings  # not one per retry
    assert expected in warnings[0] and f"mqtts://localhost:{broker.port}" in warnings[0]
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "attempt" in r.getMessage()]
    assert len(retries) >= 3  # the later attempts, at DEBUG


@pytest.mark.broker
async def test_hostname_check_can_be_turned_off_explicitly(mosquitto_binary: str, tmp_path: Path, pki: Path) -> None:
    broker, _ = tls_broker(mosquitto_binary, tmp_path, pki, "wrongname")
    try:
        sink = MqttSink(sink_config(f"mqtts://127.0.0.1:{broker.port}", tls=tls(pki, insecure=True)), DEV)
        await sink.start(status(DEV))
        await wait_until(lambda: sink.connected, timeout_s=10, what="connection")
        await sink.close(drain_timeout_s=1)
    finally:
        broker.kill()


# -- credentials ---------------------------------------------------------------------


@pytest.mark.broker
async def test_password_file_connects_and_the_password_is_never_shown(
    mosquitto_binary: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pa55-Word-unique-9931"
    passwd = tmp_path / "passwd"
    await asyncio.to_thread(subprocess.run, ["mosquitto_passwd", "-b", "-c", str(passwd), "edge", secret], check=True)
    (tmp_path / "broker").mkdir()
    broker = Broker(mosquitto_binary, tmp_path / "broker", free_port(), allow_anonymous=False,
                    extra_conf=[f"password_file {passwd}"])  # fmt: skip
    broker.start()
    credential = tmp_path / "credentials" / "mqtt-password"  # as systemd LoadCredential= lays it out
    credential.parent.mkdir()
    credential.write_text(secret + "\n")
    caplog.set_level(logging.DEBUG)
    try:
        config = sink_config(broker.url, username="edge", password_file=str(credential))
        sink = MqttSink(config, DEV)
        await sink.start(status(DEV))
        await wait_until(lambda: sink.connected, timeout_s=10, what="connection")
        await sink.close(drain_timeout_s=1)
    finally:
        broker.kill()
    options = connect_options(config)
    assert options.password == secret
    shown = [repr(config), str(config), repr(options), *(r.getMessage() for r in caplog.records)]
    assert not [text for text in shown if secret in text]


def test_password_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=rf"mqtt.password_file: {missing} does not exist"):
        connect_options(MqttConfig(password_file=missing))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=rf"{empty} is empty"):
        connect_options(MqttConfig(password_file=empty))
    with pytest.raises(ValueError, match="either password or password_file"):
        MqttConfig.model_validate({"password": "x", "password_file": str(empty)})


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nurl = "mqtts://broker"\nusername = "edge"\n')
    monkeypatch.setenv("SPIKEWIRE_MQTT__PASSWORD", "env-secret-123")
    settings = load_settings(config)
    assert settings.mqtt is not None
    assert connect_options(settings.mqtt).password == "env-secret-123"
    assert "env-secret-123" not in repr(settings)


# -- MQTT 5, sessions, websockets --------------------------------------------------------


@pytest.mark.broker
async def test_mqtt5_properties_on_classifications(mosquitto: Broker) -> None:
    received: list[aiomqtt.Message] = []
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as sub:
        await sub.subscribe(f"spikewire/{DEV}/+/classification", qos=1)
        sink = MqttSink(sink_config(mosquitto.url, message_expiry_s=600), DEV)
        await sink.start(status(DEV))
        sink.offer(classification(1, device=DEV))
        async with asyncio.timeout(10):
            async for message in sub.messages:
                received.append(message)
                break
        await sink.close(drain_timeout_s=1)
    props = received[0].properties
    assert props is not None
    assert props.ContentType == "application/json"
    assert dict(props.UserProperty) == {"device": DEV, "pipeline": "kws", "schema": "spikewire.classification/1"}
    assert 590 <= props.MessageExpiryInterval <= 600  # the broker counts down the time it held it


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_persistent_session_is_requested(mosquitto: Broker, protocol: str) -> None:
    config = sink_config(mosquitto.url, protocol=protocol, clean_session=False, client_id="persist-1")
    sink = MqttSink(config, DEV)
    await sink.start(status(DEV))
    await wait_until(lambda: sink.connected, timeout_s=10, what="connection")
    await sink.close(drain_timeout_s=1)
    # Mosquitto logs "as <id> (p<version>, c<clean>, k<keepalive>)" for each connection.
    version = "p5" if protocol == "5" else "p2"
    assert f"as persist-1 ({version}, c0, k30" in mosquitto.log_text()


@pytest.mark.broker
async def test_websocket_transport(mosquitto_binary: str, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "broker").mkdir()
    broker = Broker(mosquitto_binary, tmp_path / "broker", free_port(),
                    extra_conf=[f"listener {port} 127.0.0.1", "protocol websockets"])  # fmt: skip
    try:
        broker.start()
    except BrokerStartError as exc:
        if "Unable to start any listening sockets" in str(exc) and "websockets" in str(exc):
            pytest.skip(f"this mosquitto was built without websockets support: {exc}")
        raise
    try:
        async with Collector(broker.host, broker.port, f"spikewire/{DEV}/+/classification") as sub:
            sink = MqttSink(sink_config(f"ws://127.0.0.1:{port}/mqtt"), DEV)
            await sink.start(status(DEV))
            sink.offer(classification(1, device=DEV))
            await sub.wait_for(lambda ms: len(ms) == 1)
            await sink.close(drain_timeout_s=1)
    finally:
        broker.kill()
