"""Optional HTTP endpoint (``[http] listen = "127.0.0.1:9100"``; off by default).

- ``GET /health``: 200 when every pipeline runs and the MQTT sink is connected or
  buffering within its bound, 503 otherwise; a JSON body says which part is unwell.
- ``GET /metrics``: Prometheus text exposition mirroring the telemetry (runtime.metrics).

Served by ``asyncio.start_server`` on the daemon's own loop with a minimal HTTP/1.1
handler (one request per connection): a scrape reads state the loop owns, no locks or
threads needed, and a blocked loop shows as a failed health check, as it should.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sensors.address import parse_host_port

log = logging.getLogger(__name__)

_MAX_REQUEST_BYTES = 8192
_READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Health:
    ok: bool
    body: dict[str, Any]


def judge_health(
    pipelines: Mapping[str, str],
    *,
    mqtt_connected: bool | None,
    mqtt_queued: int = 0,
    mqtt_buffer_size: int = 0,
) -> Health:
    """Pure: the health verdict from the daemon's state (``mqtt_connected`` None: no MQTT sink)."""
    problems = [f"pipeline {name} is {state}" for name, state in pipelines.items() if state != "running"]
    if not pipelines:
        problems.append("no pipelines")
    body: dict[str, Any] = {"pipelines": dict(pipelines)}
    if mqtt_connected is not None:
        body["mqtt"] = {"connected": mqtt_connected, "queued": mqtt_queued, "buffer_size": mqtt_buffer_size}
        if not mqtt_connected and mqtt_queued >= mqtt_buffer_size:
            problems.append(f"broker unreachable and the buffer is full ({mqtt_queued} of {mqtt_buffer_size})")
    ok = not problems
    return Health(ok, {"status": "ok" if ok else "unhealthy", "problems": problems, **body})


class HttpServer:
    def __init__(self, listen: str, health: Callable[[], Health], metrics: Callable[[], bytes]) -> None:
        self.host, self.port = parse_host_port(listen)
        self._health = health
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            msg = f"http.listen {self.host}:{self.port}: cannot listen: {exc.strerror or exc}"
            raise OSError(msg) from exc
        log.info("HTTP /health and /metrics on http://%s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            status, ctype, body = self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            status, ctype, body = 400, "text/plain; charset=utf-8", b"bad request\n"
        try:
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass  # the client went away; nothing to tell it
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[int, str, bytes]:
        if len(head) > _MAX_REQUEST_BYTES:
            return 400, "text/plain; charset=utf-8", b"request too large\n"
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            return 400, "text/plain; charset=utf-8", b"bad request line\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if target not in ("/health", "/metrics"):
            return 404, "text/plain; charset=utf-8", b"not found: try /health or /metrics\n"
        if method != "GET":
            return 405, "text/plain; charset=utf-8", b"only GET\n"
        if target == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self._metrics()
        h = self._health()
        return (200 if h.ok else 503), "application/json", json.dumps(h.body).encode() + b"\n"
