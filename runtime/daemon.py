"""``spikewire run``: the edge daemon. Several pipelines, shared sinks, clean shutdown.

Start-up checks every pipeline (model, chip fit, encoder) before any starts. A pipeline
that fails while running is logged with its name and the others keep running. SIGTERM or
SIGINT stops the sources, drains the queues, publishes what is decided, publishes
``offline`` and returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from importlib import resources
from pathlib import Path
from typing import Any

from runtime.build import build_pipeline
from runtime.config import AudioFileSourceConfig, MqttConfig, PipelineConfig, ReadoutConfig, Settings
from runtime.pipeline import Pipeline, status_payload
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


async def run_daemon(settings: Settings, *, demo: bool = False, duration_s: float | None = None) -> int:
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
        return await _run(settings, duration_s)
    finally:
        if embedded is not None:
            await embedded.stop()


async def _run(settings: Settings, duration_s: float | None) -> int:
    if not settings.pipelines:
        log.error("the configuration has no pipelines")
        return 2
    sinks = make_sinks(settings)
    # Build everything first: a bad model or config stops start-up before anything runs.
    pipelines = [build_pipeline(p, settings.device, sinks) for p in settings.pipelines]
    status = status_payload(settings.device, pipelines)
    for sink in sinks:
        await sink.start(status)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(_guarded(p), name=p.info.name) for p in pipelines]
    stopper = asyncio.create_task(_stop_when(stop, duration_s))
    all_done: asyncio.Future[list[bool]] = asyncio.gather(*tasks)
    waiters: list[asyncio.Future[Any]] = [stopper, all_done]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping: draining %d pipeline(s)", len(pipelines))
    for p in pipelines:
        p.stop()
    results = await all_done
    stopper.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    for sink in sinks:
        await sink.close(drain_timeout_s=5.0)
    # Failure only when every pipeline failed: a daemon that ran some pipelines to the end ran.
    return 1 if any(results) and all(results) else 0


async def _stop_when(stop: asyncio.Event, duration_s: float | None) -> None:
    if duration_s is None:
        await stop.wait()
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)


async def _guarded(pipeline: Pipeline) -> bool:
    """Run one pipeline; log its failure instead of taking the others down. True = failed."""
    try:
        await pipeline.run()
    except Exception as exc:
        log.error("pipeline %r failed: %s", pipeline.info.name, exc)
        return True
    return False
