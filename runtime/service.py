"""Running under a service manager: sd_notify, the watchdog, JSON logs, and SIGHUP reload.

``Service`` owns the daemon's pipelines and sinks while it runs:

- systemd ``Type=notify``: ``READY=1`` once the pipelines are started and the broker
  connection attempt has begun, ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` from a task on
  the event loop (so a blocked loop stops the pings and systemd restarts the daemon),
  ``RELOADING=1`` during a SIGHUP reload, ``STOPPING=1`` on shutdown. The protocol is a
  datagram of ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET``
  (a leading ``@`` names the abstract namespace); it is small enough not to need a library.
- JSON logs (``--log-format json`` or ``[logging] format = "json"``): runtime.logs.
- SIGHUP re-reads and validates the configuration file. An invalid file, or a pipeline
  that does not build, is logged and the running configuration keeps running. Pipelines
  whose configuration changed are drained and restarted, removed ones drained, new ones
  started; the sinks (the MQTT sink and its queue included) are kept, so nothing queued
  is lost. Sink settings (mqtt, jsonl, stdout, device, http) need a restart; a reload
  that changes them says so in the log and keeps the old ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runtime.build import build_pipeline
from runtime.config import ConfigError, PipelineConfig, Settings, load_settings
from runtime.http import Health, HttpServer, judge_health
from runtime.metrics import LiveState, MetricsSink, render
from runtime.pipeline import Pipeline, status_payload
from runtime.sinks.base import Sink

log = logging.getLogger(__name__)

PipelineState = Literal["running", "finished", "failed"]

# -- sd_notify -------------------------------------------------------------------------


class Notifier:
    """Sends sd_notify states; does nothing when not started by a service manager."""

    def __init__(self, address: str | None) -> None:
        self.address: str | bytes | None = None
        self._sock: socket.socket | None = None
        if not address:
            return
        if address[0] not in ("/", "@"):
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; not notifying", address)
            return
        # Abstract namespace: the leading '@' stands for a NUL byte.
        self.address = "\0" + address[1:] if address[0] == "@" else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *states: str) -> bool:
        """Send ``states`` (``READY=1`` ...) as one datagram; False if not sent (logged, never raised)."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(states).encode(), self.address)
        except OSError as exc:
            # The manager is gone or the socket is full: the daemon's work matters more.
            log.warning("sd_notify %s failed: %s", states[0] if states else "", exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` (systemd's advice), or None when no watchdog is asked for us."""
    env = dict(os.environ) if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (our parent, a wrapper)
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; no watchdog pings", usec)
        return None
    return value / 2e6 if value > 0 else None


async def watchdog_loop(notifier: Notifier, interval_s: float) -> None:
    """Ping from the event loop itself: a loop blocked by a bug stops the pings."""
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


# -- the running daemon ------------------------------------------------------------------


@dataclass
class _Running:
    config: PipelineConfig
    pipeline: Pipeline
    task: asyncio.Task[bool]

    @property
    def state(self) -> PipelineState:
        if not self.task.done():
            return "running"
        return "failed" if self.task.cancelled() or self.task.result() else "finished"


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    message: str
    restarted: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()


Loader = Callable[[Path], Settings]
# Settings a reload cannot apply: they belong to sinks and servers that live as long as the process.
_RESTART_ONLY = ("device", "mqtt", "jsonl", "stdout", "http")


class Service:
    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink],
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        loader: Loader | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.config_path = config_path
        self.notifier = notifier or Notifier.from_env()
        self._load: Loader = loader or (lambda p: load_settings(p))
        self._running: dict[str, _Running] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.started_monotonic = time.monotonic()
        self.metrics: MetricsSink | None = None
        self._http: HttpServer | None = None
        if settings.http is not None:
            self.metrics = MetricsSink()
            self.sinks.append(self.metrics)
            self._http = HttpServer(settings.http.listen, self.health, self.render_metrics)

    # -- state for /health and /metrics ---------------------------------------------------

    def pipeline_states(self) -> dict[str, PipelineState]:
        return {name: r.state for name, r in self._running.items()}

    def pipelines(self) -> list[Pipeline]:
        return [r.pipeline for r in self._running.values()]

    def running_pipelines(self) -> dict[str, tuple[PipelineConfig, Pipeline]]:
        """name -> (configuration, pipeline) now; a reload replaces entries (the MQTT controller's view)."""
        return {name: (r.config, r.pipeline) for name, r in self._running.items()}

    async def reload_or_raise(self) -> str:
        """``reload()`` for a remote command: what changed, or ValueError with the reason."""
        result = await self.reload()
        if not result.ok:
            raise ValueError(result.message)
        return result.message

    def _mqtt(self) -> Sink | None:
        return next((s for s in self.sinks if s.name == "mqtt"), None)

    def _mqtt_connected(self) -> bool | None:
        mqtt = self._mqtt()
        return None if mqtt is None else bool(getattr(mqtt, "connected", False))

    def health(self) -> Health:
        mqtt = self._mqtt()
        return judge_health(
            self.pipeline_states(),
            mqtt_connected=self._mqtt_connected(),
            mqtt_queued=mqtt.stats().queued if mqtt is not None else 0,
            mqtt_buffer_size=self.settings.mqtt.buffer_size if self.settings.mqtt is not None else 0,
        )

    def render_metrics(self) -> bytes:
        assert self.metrics is not None
        live = LiveState(
            device=self.settings.device,
            pipelines=self.pipeline_states(),
            sinks=[s for s in self.sinks if s is not self.metrics],
            mqtt_connected=self._mqtt_connected(),
            uptime_s=time.monotonic() - self.started_monotonic,
        )
        return render(self.metrics, lambda: live)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, duration_s: float | None = None) -> int:
        if not self.settings.pipelines:
            log.error("the configuration has no pipelines")
            return 2
        # Build everything first: a bad model or config stops start-up before anything runs.
        built = [(cfg, build_pipeline(cfg, self.settings.device, self.sinks)) for cfg in self.settings.pipelines]
        status = status_payload(self.settings.device, [p for _, p in built])
        if self._http is not None:
            await self._http.start()  # a port in use stops start-up before anything connects
        for sink in self.sinks:
            await sink.start(status)  # the MQTT sink starts connecting in the background here
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        for cfg, p in built:
            self._start(cfg, p)
        self.notifier.notify("READY=1", f"STATUS=running {len(built)} pipeline(s)")
        watchdog = self._watchdog_task()
        timer = loop.call_later(duration_s, self.stop) if duration_s is not None else None
        try:
            await self._wait_until_done()
        finally:
            if timer is not None:
                timer.cancel()
            self.notifier.notify("STOPPING=1")
            async with self._reload_lock:
                pass  # a reload under way finishes first, so no pipeline starts after the drain
            log.info("stopping: draining %d pipeline(s)", len(self._running))
            for r in self._running.values():
                r.pipeline.stop()
            results = await asyncio.gather(*(r.task for r in self._running.values()), return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self._http is not None:
                await self._http.close()
            for sink in self.sinks:
                await sink.close(drain_timeout_s=5.0)
            if watchdog is not None:
                watchdog.cancel()
            self.notifier.close()
        failed = [r is not False for r in results]
        # Failure only when every pipeline failed: a daemon that ran some pipelines to the end ran.
        return 1 if failed and all(failed) else 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def _wait_until_done(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if not self._reload_lock.locked() and all(r.task.done() for r in self._running.values()):
                return
            await self._wake.wait()

    def _watchdog_task(self) -> asyncio.Task[None] | None:
        interval = watchdog_interval_s()
        if interval is None or not self.notifier.enabled:
            return None
        log.info("systemd watchdog: pinging every %.3g s", interval)
        return asyncio.create_task(watchdog_loop(self.notifier, interval), name="watchdog")

    def _start(self, cfg: PipelineConfig, pipeline: Pipeline) -> None:
        task = asyncio.create_task(_guarded(pipeline), name=cfg.name)
        task.add_done_callback(lambda _t: self._wake.set())
        self._running[cfg.name] = _Running(cfg, pipeline, task)

    # -- reload --------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        task = asyncio.create_task(self.reload(), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> ReloadResult:
        """Apply the configuration file again; on any error keep what runs and say why."""
        async with self._reload_lock:
            self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            try:
                result = await self._reload()
            except Exception as exc:  # a bug must not take the running daemon down with it
                log.exception("reload failed; the running configuration is kept")
                result = ReloadResult(False, f"reload failed: {exc}")
            finally:
                self.notifier.notify("READY=1")
                self._wake.set()
            (log.info if result.ok else log.error)("%s", result.message)
            return result

    async def _reload(self) -> ReloadResult:
        if self.config_path is None:
            return ReloadResult(False, "reload: no configuration file (the demo runs built-in settings)")
        try:
            new = self._load(self.config_path)
        except ConfigError as exc:
            return ReloadResult(False, f"reload rejected, the running configuration is kept: {exc}")
        names = [p.name for p in new.pipelines]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            return ReloadResult(False, f"reload rejected: pipeline name(s) used twice: {', '.join(dupes)}")
        if not new.pipelines:
            return ReloadResult(False, "reload rejected: the new configuration has no pipelines")
        for key in _RESTART_ONLY:
            if getattr(new, key, None) != getattr(self.settings, key, None):
                log.warning("reload: %r changed; it takes effect at the next restart", key)
        current = dict(self._running)
        wanted = {p.name: p for p in new.pipelines}
        # Changed pipelines restart; a failed one is retried (a device plugged in since, a file fixed).
        changed = [
            n
            for n, cfg in wanted.items()
            if n not in current or current[n].config != cfg or current[n].state == "failed"
        ]
        # Build (load, compile, check) before stopping anything: a model that does not load
        # or fit leaves the running pipelines alone.
        built: dict[str, Pipeline] = {}
        for name in changed:
            try:
                built[name] = build_pipeline(wanted[name], self.settings.device, self.sinks)
            except Exception as exc:
                return ReloadResult(False, f"reload rejected, pipeline {name!r} does not build: {exc}")
        replaced = [n for n in current if n not in wanted or n in built]
        for name in replaced:
            current[name].pipeline.stop()
        # Drained: what they decided went into the sinks, which stay (queue included).
        await asyncio.gather(*(current[n].task for n in replaced), return_exceptions=True)
        for name in replaced:
            old = self._running.pop(name)
            if name in built:
                # seq goes on where it was, so subscribers do not see a reset as a gap.
                built[name]._seq = old.pipeline._seq
        for name, pipeline in built.items():
            self._start(wanted[name], pipeline)
        self.settings = self.settings.model_copy(update={"pipelines": new.pipelines})
        self._announce()
        restarted = tuple(n for n in built if n in current)
        started = tuple(n for n in built if n not in current)
        stopped = tuple(n for n in replaced if n not in wanted)
        return ReloadResult(
            True,
            f"reloaded {self.config_path}: restarted {list(restarted)}, started {list(started)}, "
            f"stopped {list(stopped)}",
            restarted=restarted,
            started=started,
            stopped=stopped,
        )

    def _announce(self) -> None:
        """Sinks that can re-announce the status (retained on MQTT) get the new pipeline list."""
        status = status_payload(self.settings.device, self.pipelines())
        for sink in self.sinks:
            update = getattr(sink, "update_status", None)
            if callable(update):
                update(status)


async def _guarded(pipeline: Pipeline) -> bool:
    """Run one pipeline; log its failure instead of taking the others down. True = failed."""
    try:
        await pipeline.run()
    except Exception as exc:
        log.error("pipeline %r failed: %s", pipeline.info.name, exc)
        return True
    return False
