"""spikewire run: the daemon against a real Mosquitto, and its shutdown."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from e2e_util import popen_cli
from mqtt_helpers import Broker, Collector, collect

from runtime.contract import Classification, Status, Telemetry
from runtime.daemon import demo_recording

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "spikewire.toml"
    path.write_text(
        f"""
device = "edge-test"
stdout = false
[mqtt]
url = "{url}"
[[pipelines]]
name = "kws"
model = "kws-digits"
telemetry_interval_s = 1.0
[pipelines.source]
kind = "audio_file"
paths = ["{demo_recording()}"]
speed = 2.0
loop = true
"""
    )
    return path


async def test_sigterm_drains_and_publishes_offline(mosquitto: Broker, tmp_path: Path) -> None:
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/edge-test/#") as sub:
        proc = popen_cli("run", config(tmp_path, mosquitto.url))
        try:
            await sub.wait_for(lambda ms: any(m.topic.endswith("/kws/classification") for m in ms), timeout_s=30)
            await sub.wait_for(lambda ms: any(m.topic.endswith("/kws/telemetry") for m in ms), timeout_s=10)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(proc.communicate, timeout=20)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        await sub.wait_for(lambda ms: ms[-1].topic.endswith("/availability") and ms[-1].text == "offline", timeout_s=10)
    texts = [m.text for m in sub.messages if m.topic.endswith("/availability")]
    assert texts[0] == "online" and texts[-1] == "offline"
    cls = [Classification.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/classification")]
    assert [c.seq for c in cls] == list(range(1, len(cls) + 1))
    assert all(c.label in [str(d) for d in range(10)] and c.window.end_us > c.window.start_us for c in cls)
    tel = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/telemetry")]
    assert tel[0].power_mw.total >= tel[0].power_mw.static > 0
    assert tel[0].rtf is not None and tel[0].rtf > 0
    # Retained for late subscribers: the device is offline and says what it ran.
    late = await collect(mosquitto.host, mosquitto.port, "spikewire/edge-test/+", until=lambda ms: len(ms) >= 2)
    retained = {m.topic.rsplit("/", 1)[1]: m for m in late if m.retain}
    assert retained["availability"].text == "offline"
    assert Status.model_validate_json(retained["status"].payload).pipelines[0].name == "kws"


async def test_demo_runs_without_a_config(mosquitto: Broker) -> None:
    """`spikewire run` with no file: the project's own recording on kws-digits, published."""
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/demo-host/#") as sub:
        proc = popen_cli(
            "run", "--duration", "12", env={"SPIKEWIRE_MQTT__URL": mosquitto.url, "SPIKEWIRE_DEVICE": "demo-host"}
        )
        try:
            out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        await sub.wait_for(lambda ms: any(m.text == "offline" for m in ms if m.topic.endswith("availability")))
    cls = [
        Classification.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/demo/classification")
    ]
    assert len(cls) >= 3, "the demo speaks a digit every ~1.4 s"
    assert "demo #1" in out  # the terminal shows decisions too
