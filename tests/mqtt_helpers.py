"""Helpers for tests that talk MQTT: a Mosquitto process, a collecting subscriber, payloads.

Import as ``from mqtt_helpers import ...``: pytest puts ``tests/`` on ``sys.path``
because it holds a ``conftest.py`` and no ``__init__.py``. The fixtures that wrap these
helpers (``mosquitto``, ``mosquitto_session``) live in ``tests/conftest.py``.

Everything here binds or connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from runtime.contract import (
    Classification,
    LatencyPercentiles,
    PipelineInfo,
    PowerMw,
    Status,
    Telemetry,
    Window,
    utc_now,
)

LOOPBACK = "127.0.0.1"
MOSQUITTO_START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None


class BrokerStartError(RuntimeError):
    pass


class Broker:
    """A Mosquitto process on a fixed loopback port with persistence in ``workdir``.

    ``stop()`` then ``start()`` restarts it on the same port with the same persistence
    file, so persistent sessions and retained messages survive, as with a real restart.
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        port: int,
        *,
        allow_anonymous: bool = True,
        extra_conf: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.host = LOOPBACK
        self.port = port
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {port} {LOOPBACK}",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            *extra_conf,
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to the "mosquitto" user and can no longer
            # read or write the test's 0700 temporary directory.
            lines.append("user root")
        self.conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start and wait until the port accepts connections; ``BrokerStartError`` if not."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + MOSQUITTO_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"mosquitto exited with code {self._process.returncode}:\n{self.log_text()}"
                raise BrokerStartError(msg)
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.kill()
        msg = f"mosquitto did not accept connections on port {self.port} within "
        msg += f"{MOSQUITTO_START_TIMEOUT_S:g} s:\n{self.log_text()}"
        raise BrokerStartError(msg)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        self._end(signal.SIGKILL, 10.0)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (a hung or overloaded broker)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- subscribing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """Subscribe to ``topic_filter`` in the background and keep every message.

    It reconnects when the broker restarts. With ``persistent=True`` it uses a fixed
    client id, a non-clean MQTT 3.1.1 session and QoS 1, so the broker keeps what is
    published while the collector is away (with Mosquitto persistence, across a
    broker restart too).

        async with Collector(broker.host, broker.port, "spikewire/#") as sub:
            ...publish...
            await sub.wait_for(lambda ms: len(ms) >= 3)
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str,
        *,
        persistent: bool = False,
        client_id: str | None = None,
        qos: int = 1,
    ) -> None:
        self.host, self.port, self.topic_filter, self.qos = host, port, topic_filter, qos
        self.persistent = persistent
        self.client_id = client_id or (f"collector-{uuid.uuid4().hex[:12]}" if persistent else None)
        self.messages: list[Received] = []
        self.connections = 0
        self._changed = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout=10.0)
        except TimeoutError:
            await self.__aexit__(None, None, None)
            msg = f"could not subscribe to {self.topic_filter} on {self.host}:{self.port}"
            raise AssertionError(msg) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float = 10.0) -> list[Received]:
        """Wait until ``predicate(messages)`` holds; AssertionError with what arrived if not."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self.messages):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                shown = [(m.topic, m.payload[:80]) for m in self.messages[-20:]]
                msg = f"timed out after {timeout_s:g} s; {len(self.messages)} message(s), last: {shown}"
                raise AssertionError(msg)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.2))
        return list(self.messages)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    clean_session=not self.persistent,
                    timeout=5,
                ) as client:
                    self.connections += 1
                    await client.subscribe(self.topic_filter, qos=self.qos)
                    self._subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        self.messages.append(Received(m.topic.value, payload, m.retain, m.qos))
                        self._changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)


async def collect(
    host: str,
    port: int,
    topic_filter: str,
    *,
    until: Callable[[list[Received]], bool] | None = None,
    timeout_s: float = 5.0,
    persistent: bool = False,
    client_id: str | None = None,
) -> list[Received]:
    """Subscribe and gather until ``until(messages)`` holds or ``timeout_s`` passes.

    Never raises on time-out: returns what arrived (assert on it). Handy for retained
    messages, which arrive right after subscribing.
    """
    async with Collector(host, port, topic_filter, persistent=persistent, client_id=client_id) as sub:
        with contextlib.suppress(AssertionError):
            await sub.wait_for(until or (lambda _: False), timeout_s)
        return list(sub.messages)


async def publish(host: str, port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one QoS 1 message and wait for the PUBACK."""
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V311, timeout=5) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


def seqs(messages: Iterable[Received], kind: str = "classification") -> list[int]:
    """``seq`` of every message on a ``.../<kind>`` topic, in arrival order."""
    return [int(m.json()["seq"]) for m in messages if m.topic.endswith(f"/{kind}")]


def dedupe(values: Iterable[int]) -> list[int]:
    """First occurrence of each value, in order (what a subscriber deduping by seq keeps)."""
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout_s:g} s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.01)


# -- payloads ---------------------------------------------------------------------------

LABELS = ("yes", "no", "up", "down")


def classification(
    seq: int,
    *,
    device: str = "testdev",
    pipeline: str = "kws",
    label: str = "yes",
    score: float = 0.9,
    labels: Sequence[str] = LABELS,
    truth: str | None = None,
) -> Classification:
    """A valid Classification; the window of ``seq`` n covers stream second n-1 to n."""
    now = utc_now()
    others = (1.0 - score) / max(len(labels) - 1, 1)
    return Classification(
        device=device,
        pipeline=pipeline,
        seq=seq,
        timestamp=now,
        label=label,
        score=score,
        scores={name: (score if name == label else others) for name in labels},
        window=Window(stream="test.flac", start_us=(seq - 1) * 1_000_000, end_us=seq * 1_000_000),
        captured_at=now,
        model="kws-test@1.0.0",
        chip="snp",
        chip_latency_ms=0.4,
        host_latency_ms=3.2,
        energy_uj=1.5,
        truth=truth,
    )


def telemetry(seq: int, *, device: str = "testdev", pipeline: str = "kws") -> Telemetry:
    return Telemetry(
        device=device,
        pipeline=pipeline,
        seq=seq,
        timestamp=utc_now(),
        interval_s=5.0,
        stream_s=5.0,
        rtf=1.0,
        input_events_per_s=12_000.0,
        spikes_per_s=800.0,
        sops_per_s=50_000.0,
        neuron_updates_per_s=25_600.0,
        power_mw=PowerMw(static=0.8, dynamic=0.15, total=0.95),
        chip_latency_ms=0.4,
        host_latency_ms=LatencyPercentiles(p50=2.0, p95=3.5, p99=4.2, n=10),
        cpu_s=0.2,
        decisions=3,
        gated=0,
        queue_depths={"source": 0, "mqtt": 0},
        drops={"source": 0, "mqtt": 0},
    )


def status(device: str = "testdev", pipelines: Sequence[str] = ("kws",)) -> Status:
    return Status(
        device=device,
        version="0.1.0",
        started_at=utc_now(),
        pipelines=[
            PipelineInfo(name=name, source="file", model="kws-test@1.0.0", chip="snp", labels=list(LABELS))
            for name in pipelines
        ],
    )
