"""MQTT sink: decisions and telemetry to a broker, in order, across broker outages.

``offer`` only appends to a bounded queue (``runtime.mqtt.queue``: in memory, or the disk
spool of ``runtime.mqtt.spool`` that survives a restart); one background task owns the connection:
connect with a Last Will, announce ``online`` and the status (both retained), then
publish the buffer head by head. A message leaves the buffer only once ``publish``
returned, so a message in flight when the connection drops is sent again after the
reconnect: at-least-once, subscribers dedupe by ``seq``.

Why each publish races a connection watcher: see ``runtime/mqtt/connection.py``.

Each connection attempt gets a new ``aiomqtt.Client``. A reused paho client re-sends
its own unacknowledged messages after a reconnect. That would make a second retry
queue besides ours, and ours alone decides order and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiomqtt
from paho.mqtt.properties import Properties

from runtime.config import MqttConfig
from runtime.contract import Classification, Status, Telemetry, Topics, dump
from runtime.mqtt.connection import (
    FailureKind,
    check_topic_level,
    connect_options,
    describe_failure,
    describe_lost,
    lost_error,
    publish_properties,
    reap,
    run_until_lost,
    wait_event,
    watch_connection,
)
from runtime.mqtt.queue import Message, MessageQueue
from runtime.mqtt.spool import open_queue
from runtime.sinks.base import Sink, SinkStats

log = logging.getLogger(__name__)

AVAILABLE = b"online"
UNAVAILABLE = b"offline"
# Bounds the goodbye (retained "offline" + DISCONNECT) on top of the drain time-out.
_GOODBYE_TIMEOUT_S = 2.0
# A client stuck in a graceful disconnect from a hung broker is abandoned after this.
_RELEASE_TIMEOUT_S = 1.0


class MqttSink:
    """The ``Sink`` for MQTT. ``offer`` must be called from the event loop's thread."""

    def __init__(self, config: MqttConfig, device: str, *, operation_timeout_s: float = 10.0) -> None:
        check_topic_level("mqtt.prefix", config.prefix, allow_slash=True)
        check_topic_level("device", device, allow_slash=False)
        self.name = "mqtt"
        self._config = config
        self._options = connect_options(config)  # ValueError now, not at the first reconnect
        self._topics = Topics(config.prefix, device)
        self._device = device
        self._client_id = config.client_id or f"spikewire-{device}"
        self._operation_timeout_s = operation_timeout_s
        self._queue = open_queue(config)  # spool problems now, too
        self._inflight: Message | None = None
        self._wakeup = asyncio.Event()
        self._status: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._closing = False
        self._closed = False
        self._burst_drops = 0
        self._last_failure: FailureKind | None = None
        self._connected = False
        self._ever_connected = False
        self.delivered = 0
        """Buffered messages the broker acknowledged (QoS>0) or that were written (QoS 0)."""
        self.dropped = 0
        """Buffer overflow, plus whatever was still queued when ``close`` gave up (memory queue only)."""
        self.reconnects = 0
        """Connections established after the first one."""
        self.failed_attempts = 0
        self.last_error: str | None = None
        # Hook for runtime.mqtt.session (control, state, discovery; owner B): each handler runs
        # as a task for the life of every connection (subscribe, read messages), cancelled at its end.
        self.session_handlers: list[Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]] = []
        self.on_message: Callable[[aiomqtt.Message], None] | None = None
        """Gets every incoming message (for the handlers' subscriptions); must not block."""

    @property
    def broker(self) -> str:
        """The broker URL without credentials, as shown in logs."""
        return str(self._options.address)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued(self) -> int:
        """Messages waiting, including the one being published."""
        return len(self._queue)

    @property
    def queue(self) -> MessageQueue:
        return self._queue

    def stats(self) -> SinkStats:
        return SinkStats(queued=len(self._queue), dropped=self.dropped, delivered=self.delivered)

    async def start(self, status: Status) -> None:
        """Start connecting in the background and return at once."""
        if self._task is not None:
            msg = "MqttSink.start() called twice"
            raise RuntimeError(msg)
        self._status = dump(status)
        self._task = asyncio.create_task(self._run(), name=f"mqtt-sink {self.broker}")
        self._task.add_done_callback(_log_crash)

    def offer(self, payload: Classification | Telemetry) -> None:
        if self._closed:
            self.dropped += 1
            log.debug("MQTT sink is closed; dropped a %s message", type(payload).__name__)
            return
        if isinstance(payload, Classification):
            topic, qos = self._topics.classification(payload.pipeline), self._config.qos_classification
        else:
            topic, qos = self._topics.telemetry(payload.pipeline), 0
        message = Message(topic, dump(payload), qos, payload.pipeline, payload.schema_)
        if not self._make_room(message):
            return
        self._queue.append(message)
        self._wakeup.set()

    async def close(self, drain_timeout_s: float) -> None:
        """Deliver what is queued within ``drain_timeout_s``, publish ``offline``, disconnect.

        Takes at most ``drain_timeout_s`` plus a few seconds for the goodbye on a hung
        connection. Whatever is still queued afterwards is counted as dropped.
        """
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        task = self._task
        if task is not None and not task.done() and not self._connected and not self._queue:
            # Nothing to deliver and nobody to say goodbye to: skip any reconnect delay.
            task.cancel()
            await asyncio.wait({task})
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=drain_timeout_s)
            except TimeoutError:
                task.cancel()
                await asyncio.wait({task})
            except Exception:  # already logged by _log_crash
                pass
        if self._client is not None:
            await self._goodbye(self._client)
        self._closed = True
        if self._burst_drops:
            self._end_burst()
        left = len(self._queue)
        if left and self._queue.persistent:
            log.warning(
                "MQTT: %d message(s) not yet delivered to %s kept in the spool for the next start (%s)",
                left,
                self.broker,
                self.last_error or f"drain time-out, {drain_timeout_s:g} s",
            )
        elif left:
            self.dropped += self._queue.discard_all()
            why = "broker unreachable" if self.last_error and not self._connected else "drain time-out"
            log.warning(
                "MQTT: %d message(s) not delivered to %s at close (%s: %s); counted as dropped",
                left,
                self.broker,
                why,
                self.last_error or f"{drain_timeout_s:g} s elapsed",
            )
        self._queue.close()
        log.info(
            "MQTT sink closed: %d delivered, %d dropped, %d reconnects",
            self.delivered,
            self.dropped,
            self.reconnects,
        )

    # -- buffer ---------------------------------------------------------------------

    def _make_room(self, message: Message) -> bool:
        """Apply the overflow policy; False means ``message`` itself is dropped (counted)."""
        if self._queue.fits(message):
            if self._burst_drops:
                self._end_burst()
            return True
        if self._config.overflow == "drop_newest":
            self._count_drop("newest")
            return False
        # The head may be on the wire; it is never dropped, so "delivered" and "dropped"
        # stay exact. With room for one message that allows one extra for a moment.
        while not self._queue.fits(message) and self._queue.drop_oldest(keep_head=self._inflight is not None):
            self._count_drop("oldest")
        return True

    def _count_drop(self, which: str) -> None:
        self.dropped += 1
        if self._burst_drops == 0:
            state = "connected" if self._connected else "not connected"
            bound = (
                f"{self._config.spool_max_mb:g} MiB spool"
                if self._queue.persistent
                else f"{self._config.buffer_size} messages"
            )
            log.warning(
                "MQTT buffer full (%s, %s %s): dropping the %s until there is room",
                bound,
                self.broker,
                state,
                which,
            )
        self._burst_drops += 1

    def _end_burst(self) -> None:
        log.warning("MQTT buffer: %d message(s) dropped in that burst, %d in total", self._burst_drops, self.dropped)
        self._burst_drops = 0

    # -- connection task ------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            if self._closing and not self._queue:
                # Nothing left to say: if we were dropped uncleanly, the Will said "offline".
                return
            client = self._options.client(
                client_id=self._client_id,
                will=aiomqtt.Will(self._topics.availability, UNAVAILABLE, qos=1, retain=True),
                timeout_s=self._operation_timeout_s,
            )
            try:
                # Entered by hand, not with "async with": when close() cancels this task
                # mid-drain, the connection must outlive it so close() can say goodbye.
                await client.__aenter__()
            except Exception as exc:  # every kind of failure is reported in one line
                if not self._connect_failed(exc):
                    await asyncio.sleep(self._backoff_s(attempt))
                    attempt += 1
                continue
            attempt = 0
            self._client = client
            self._on_connected()
            lost = asyncio.create_task(watch_connection(client, self.on_message))
            sessions = [asyncio.create_task(handler(client)) for handler in self.session_handlers]
            try:
                await self._publish(client, lost, self._topics.availability, AVAILABLE, 1, retain=True)
                if self._status is not None:
                    await self._publish(client, lost, self._topics.status, self._status, 1, retain=True)
                await self._drain(client, lost)
                return  # closing and drained: close() publishes "offline" on this connection
            except aiomqtt.MqttError as exc:
                self._connection_lost(exc)
            except Exception as exc:
                # A bug, ours or the library's: report it fully, then carry on as after a
                # lost connection so the device keeps publishing.
                log.error("MQTT sink: unexpected error; reconnecting", exc_info=exc)
                self._connection_lost(aiomqtt.MqttError(f"unexpected {type(exc).__name__}"))
            finally:
                for task in [lost, *sessions]:
                    task.cancel()
                await asyncio.wait({lost, *sessions})
                for task in [lost, *sessions]:
                    reap(task)
            self._client = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), _RELEASE_TIMEOUT_S)
            await asyncio.sleep(self._backoff_s(0))
            attempt = 1

    async def _drain(self, client: aiomqtt.Client, lost: asyncio.Task[None]) -> None:
        """Publish the buffer head by head; return once closing and empty."""
        while True:
            message = self._queue.head()
            if message is None:
                if self._closing:
                    return
                self._wakeup.clear()
                await run_until_lost(wait_event(self._wakeup), lost)
                if lost.done():
                    raise lost_error(lost)
                continue
            self._inflight = message
            properties = None
            if self._options.protocol == "5" and message.schema:
                properties = publish_properties(
                    pipeline=message.pipeline,
                    schema=message.schema,
                    device=self._device,
                    expiry_s=self._config.message_expiry_s if "classification" in message.schema else None,
                )
            try:
                await self._publish(client, lost, message.topic, message.payload, message.qos, properties=properties)
            except ValueError as exc:
                # paho refused the message itself (topic, size): a retry cannot help.
                self._queue.pop_head()
                self.dropped += 1
                log.error("MQTT: dropped a message paho refuses (%s): %s", message.topic, exc)
                continue
            finally:
                self._inflight = None
            # Still the head: offer() never drops the message in flight.
            self._queue.pop_head()
            self.delivered += 1

    async def _publish(
        self,
        client: aiomqtt.Client,
        lost: asyncio.Task[None],
        topic: str,
        payload: bytes,
        qos: int,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """``client.publish`` that gives up as soon as the connection drops (see module doc)."""
        if lost.done():
            raise lost_error(lost)
        publish = await run_until_lost(
            client.publish(topic, payload, qos=qos, retain=retain, properties=properties), lost
        )
        if publish.cancelled():
            raise lost_error(lost)
        publish.result()  # raises what publish raised: a time-out, NO_CONN, a ValueError

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        # A clean DISCONNECT suppresses the Will, so "offline" has to be said explicitly.
        self._client = None
        try:
            await client.publish(self._topics.availability, UNAVAILABLE, qos=1, retain=True, timeout=_GOODBYE_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            log.warning("MQTT: could not publish 'offline' to %s: %s", self.broker, exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.__aexit__(None, None, None), _GOODBYE_TIMEOUT_S)
        self._connected = False

    # -- reporting ------------------------------------------------------------------

    def _on_connected(self) -> None:
        queued = len(self._queue)
        if self._ever_connected:
            self.reconnects += 1
            log.info("MQTT reconnected to %s; %d message(s) queued", self.broker, queued)
        else:
            log.info(
                "MQTT connected to %s as %r (MQTT %s, user %s)",
                self.broker,
                self._client_id,
                self._options.protocol,
                self._options.user_label,
            )
        self._connected = True
        self._ever_connected = True
        self._last_failure = None
        self.last_error = None

    def _connect_failed(self, exc: BaseException) -> bool:
        """Report a failed attempt; True means retry at once (protocol fallback)."""
        failure = describe_failure(exc, self._options)
        self.failed_attempts += 1
        self.last_error = failure.message
        if failure.kind == "protocol" and self._options.protocol == "5":
            # amqtt (the embedded demo broker) and older brokers speak only 3.1.1. The
            # topics and payloads do not depend on MQTT 5, so fall back rather than fail.
            log.warning('MQTT: %s; falling back to MQTT 3.1.1 (set mqtt.protocol = "3.1.1")', failure.message)
            self._options = dataclasses.replace(self._options, protocol="3.1.1")
            return True
        if failure.kind != self._last_failure:
            log.warning(
                "MQTT: %s. Retrying every %g-%g s; up to %d messages are buffered meanwhile",
                failure.message,
                self._config.reconnect_min_s,
                self._config.reconnect_max_s,
                self._config.buffer_size,
            )
        else:
            log.debug("MQTT: %s (attempt %d)", failure.message, self.failed_attempts)
        self._last_failure = failure.kind
        return False

    def _connection_lost(self, exc: aiomqtt.MqttError) -> None:
        self._connected = False
        if str(exc) == "Operation timed out":
            reason = f"no acknowledgement within {self._operation_timeout_s:g} s"
        else:
            reason = describe_lost(exc)
        self.last_error = f"connection to {self.broker} lost: {reason}"
        self._last_failure = "lost"
        log.warning("MQTT %s; %d message(s) queued, reconnecting", self.last_error, len(self._queue))

    def _backoff_s(self, attempt: int) -> float:
        first_s, cap_s = self._config.reconnect_min_s, self._config.reconnect_max_s
        base = min(cap_s, first_s * 2.0 ** min(attempt, 30))
        # Jitter: a fleet that lost the same broker must not reconnect in lockstep.
        return base * random.uniform(0.5, 1.0)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("MQTT sink task crashed; nothing more will be published", exc_info=task.exception())


if TYPE_CHECKING:

    def _implements_sink(sink: MqttSink) -> Sink:
        return sink  # mypy checks here that MqttSink satisfies the Sink protocol
