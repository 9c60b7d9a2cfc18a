"""deploy/mosquitto: the shipped broker config with TLS, passwords and the per-device ACL.

The test runs Mosquitto with the shipped mosquitto.conf and spikewire.acl, only paths and
ports rewritten into tmp_path (a CA and a server certificate for 127.0.0.1 made there with
openssl, passwords with mosquitto_passwd), and checks over TLS that device A's publish
under spikewire/A/ reaches a dashboard while its publish under spikewire/B/ does not.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from deploy_util import DEPLOY, need_tool
from mqtt_helpers import Broker, free_port

PASSWORDS = {"A": "pw-a", "B": "pw-b", "dashboard": "pw-dash"}


def _certs(d: Path) -> None:
    openssl = need_tool("openssl", "openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip


def _broker(tmp_path: Path, binary: str) -> tuple[Broker, int]:
    d = tmp_path / "etc"
    d.mkdir()
    _certs(d)
    passwd = need_tool("mosquitto_passwd", "mosquitto")
    (d / "passwd").touch()
    for user, pw in PASSWORDS.items():
        subprocess.run([passwd, "-b", str(d / "passwd"), user, pw], check=True, capture_output=True, timeout=30)
    (d / "spikewire.acl").write_text((DEPLOY / "mosquitto" / "spikewire.acl").read_text())
    tls_port = free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("/etc/mosquitto/spikewire/", f"{d}/").replace("/var/lib/mosquitto/", f"{tmp_path}/")
    conf = re.sub(r"^listener 8883$", f"listener {tls_port} 127.0.0.1", conf, flags=re.MULTILINE)
    conf = re.sub(r"^listener 1883 127.0.0.1$", f"listener {free_port()} 127.0.0.1", conf, flags=re.MULTILINE)
    # As the test fixture's broker: root keeps root, so it can read the 0700 temporary directory.
    conf += f"\nuser root\nlog_dest file {tmp_path}/mosquitto.log\n"
    broker = Broker(binary, tmp_path, tls_port)
    broker.conf_path.write_text(conf)
    broker.start()
    return broker, tls_port


def _client(port: int, ca: Path, user: str, password: str | None = None) -> aiomqtt.Client:
    ctx = ssl.create_default_context(cafile=str(ca))  # hostname checked against the SAN
    return aiomqtt.Client(
        "127.0.0.1", port, username=user, password=password or PASSWORDS[user], tls_context=ctx,
        protocol=aiomqtt.ProtocolVersion.V5, identifier=f"test-{user}",
    )  # fmt: skip


@pytest.mark.broker
async def test_each_device_publishes_only_under_its_own_prefix(tmp_path: Path, mosquitto_binary: str) -> None:
    broker, port = _broker(tmp_path, mosquitto_binary)
    ca = tmp_path / "etc" / "ca.crt"
    try:
        got: list[str] = []
        async with _client(port, ca, "dashboard") as dash:
            await dash.subscribe("spikewire/#", qos=1)
            await dash.subscribe("homeassistant/#", qos=1)
            async with _client(port, ca, "A") as dev:
                await dev.publish("spikewire/A/kws/classification", b"{}", qos=1)
                await dev.publish("spikewire/B/kws/classification", b"{}", qos=1)  # someone else's prefix
                await dev.publish("homeassistant/sensor/spikewire_A/kws_label/config", b"{}", qos=1)
                await dev.publish("homeassistant/sensor/spikewire_B/kws_label/config", b"{}", qos=1)
                await dash.publish("spikewire/A/kws/set", b"{}", qos=1)  # dashboards only read
                await dev.publish("spikewire/A/done", b"", qos=1)  # after all the others, same client

            async def until_done() -> None:
                async for message in dash.messages:
                    got.append(str(message.topic))
                    if got[-1] == "spikewire/A/done":
                        return

            await asyncio.wait_for(until_done(), 20)
        assert got == [
            "spikewire/A/kws/classification",
            "homeassistant/sensor/spikewire_A/kws_label/config",
            "spikewire/A/done",
        ]
        with pytest.raises(aiomqtt.MqttError):
            async with _client(port, ca, "A", password="wrong"):
                pass
    finally:
        broker.kill()
