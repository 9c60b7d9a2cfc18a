"""``spikewire run``: the edge daemon. Several pipelines, shared sinks, clean shutdown.

Start-up checks every pipeline (model, chip fit, encoder) before any starts. A pipeline
that fails while running is logged with its name and the others keep running. SIGTERM or
SIGINT stops the sources, drains the queues, publishes what is decided, publishes
``offline`` and returns 0.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from importlib import resources
from pathlib import Path

from runtime.config import AudioFileSourceConfig, MqttConfig, PipelineConfig, ReadoutConfig, Settings
from runtime.service import Service
from runtime.sinks.base import Sink
from runtime.sinks.local import JsonlSink, StdoutSink

log = logging.getLogger(__name__)

DEMO_RECORDING = "demo.flac"


def demo_recording() -> Path:
    return Path(str(resources.files("runtime") / "demo" / DEMO_RECORDING))


def demo_settings(base: Settings) -> Settings:
    """The built-in demo: a recording the project made, looped at 1x, on the kws-digits model."""
    pipeline = PipelineConfig(
        name="demo",
        source=AudioFileSourceConfig(paths=[demo_recording()], speed=1.0, loop=True, block_ms=20.0),
        model="kws-digits",
        readout=ReadoutConfig(mode="utterance"),
        telemetry_interval_s=10.0,
    )
    mqtt = base.mqtt or MqttConfig()
    return base.model_copy(update={"pipelines": [pipeline], "mqtt": mqtt})


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def make_sinks(settings: Settings) -> list[Sink]:
    sinks: list[Sink] = []
    if settings.stdout:
        sinks.append(StdoutSink())
    if settings.jsonl is not None:
        sinks.append(JsonlSink(settings.jsonl.path))
    if settings.mqtt is not None:
        from runtime.mqtt.sink import MqttSink

        sinks.append(MqttSink(settings.mqtt, settings.device))
    return sinks


async def run_daemon(
    settings: Settings, *, demo: bool = False, duration_s: float | None = None, config_path: Path | None = None
) -> int:
    if demo:
        settings = demo_settings(settings)
    embedded = None
    if (
        demo
        and settings.mqtt is not None
        and settings.mqtt.url == MqttConfig().url
        and not _port_open("127.0.0.1", 1883)
    ):
        # Zero-config demo only: give subscribers a broker to watch. Production points at a real one.
        from runtime.mqtt.broker import EmbeddedBroker

        embedded = EmbeddedBroker()
        await embedded.start("127.0.0.1", 1883)
        # amqtt speaks MQTT 3.1.1 only (an MQTT 5 CONNECT with a Will goes unanswered).
        settings = settings.model_copy(
            update={"mqtt": settings.mqtt.model_copy(update={"protocol": EmbeddedBroker.protocol})}
        )
        log.info("no broker on 127.0.0.1:1883: started the embedded demo broker there")
    try:
        return await _run(settings, duration_s, None if demo else config_path)
    finally:
        if embedded is not None:
            await embedded.stop()


async def _run(settings: Settings, duration_s: float | None, config_path: Path | None) -> int:
    # runtime.service runs the pipelines: sd_notify/watchdog, SIGHUP reload, optional HTTP.
    if not settings.pipelines:
        log.error("the configuration has no pipelines")
        return 2
    sinks = make_sinks(settings)
    service = Service(settings, sinks, config_path=config_path)
    if settings.mqtt is not None:
        from runtime.mqtt.session import attach_control

        # Control commands, retained per-pipeline state and Home Assistant discovery.
        attach_control(settings, sinks, service)
    return await service.run(duration_s)
