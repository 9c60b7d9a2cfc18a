"""The MQTT side of control, state and Home Assistant discovery, on the sink's connection.

``ControlSession.run`` is one of ``MqttSink.session_handlers``: the sink starts it on every
(re)connect and cancels it when the connection ends. Each run subscribes again (a clean
session forgets subscriptions), publishes the discovery configs and every pipeline's
retained ``state``, then reads commands. While connected, a pipeline's state is published
again on every change (coalesced: one message per change burst, never a backlog); a change
while disconnected is covered by the full publish at the next connect.

A command that fails in any way gets an error answer and is logged; nothing here may end
the daemon (``Controller`` turns bad input into answers, this module catches the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from runtime.contract import Status, Topics, dump, utc_now
from runtime.mqtt.control import Controller, Outgoing, extra_models
from runtime.mqtt.discovery import DiscoveryEntity, discovery_entities

if TYPE_CHECKING:
    from runtime.config import PipelineConfig, Settings
    from runtime.pipeline import Pipeline
    from runtime.service import Service
    from runtime.sinks.base import Sink

log = logging.getLogger(__name__)

HA_ONLINE = b"online"
# How often the session looks for pipelines a reload started.
_WATCH_EVERY_S = 1.0
_INBOX_SIZE = 64


class ControlSession:
    def __init__(
        self,
        controller: Controller,
        pipelines: Callable[[], Mapping[str, Pipeline]],
        discovery: list[DiscoveryEntity] | None = None,
        ha_status_topic: str | None = None,
        *,
        commands: bool = True,
    ) -> None:
        self.controller = controller
        self.commands = commands
        """Accept commands; without, the session still publishes state (HA reads it) and discovery."""
        self.pipelines = pipelines
        self.discovery = discovery or []
        self.ha_status_topic = ha_status_topic
        self.handled = 0
        """Commands and requests answered (ok or refused)."""
        self._dirty: set[str] = set()
        self._wakeup = asyncio.Event()
        self._watched: set[int] = set()
        self._inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(_INBOX_SIZE)
        self.refused = 0
        """Messages dropped because commands arrived faster than they are carried out."""
        self._watch()

    def _watch(self) -> None:
        """Follow the state of pipelines not seen before (a reload starts new ones)."""
        for name, pipeline in self.pipelines().items():
            if id(pipeline) not in self._watched:
                self._watched.add(id(pipeline))
                pipeline.on_state_change.append(functools.partial(self._mark, name))
                self._mark(name)

    def _mark(self, name: str) -> None:
        self._dirty.add(name)
        self._wakeup.set()

    async def run(self, client: aiomqtt.Client) -> None:
        """For the life of one connection; the sink cancels it when the connection ends."""
        try:
            await self._session(client)
        except aiomqtt.MqttError as exc:
            # The sink's watcher sees the same loss and reconnects; we start again then.
            log.debug("control session ended: %s", exc)
        except Exception:
            log.exception("control session: unexpected error; commands resume after the next reconnect")

    def on_message(self, message: aiomqtt.Message) -> None:
        """``MqttSink.on_message``: queue it for ``run``; a flood is dropped and counted."""
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            self.refused += 1
            log.warning("control: %d command(s) dropped: more than %d waiting", self.refused, _INBOX_SIZE)

    async def _session(self, client: aiomqtt.Client) -> None:
        while not self._inbox.empty():  # left from the previous connection: its answers cannot be sent
            self._inbox.get_nowait()
        if self.commands:
            topics = self.controller.topics
            await client.subscribe(topics.set("+"), qos=1)
            await client.subscribe(topics.request, qos=1)
        if self.ha_status_topic is not None:
            await client.subscribe(self.ha_status_topic, qos=1)
        await self._publish_discovery(client)
        self._watch()
        self._dirty.update(self.pipelines())
        self._wakeup.set()
        publisher = asyncio.create_task(self._publish_states(client))
        try:
            while True:
                await self._dispatch(client, await self._inbox.get())
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await publisher

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        for entity in self.discovery:
            await client.publish(entity.topic, json.dumps(entity.config).encode(), qos=1, retain=True)
        if self.discovery:
            log.info("Home Assistant discovery: %d entities published", len(self.discovery))

    async def _publish_states(self, client: aiomqtt.Client) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), _WATCH_EVERY_S)
            self._wakeup.clear()
            self._watch()
            while self._dirty:
                name = self._dirty.pop()
                if name in self.pipelines():  # not removed by a reload meanwhile
                    await self._send(client, self.controller.state(name))

    async def _send(self, client: aiomqtt.Client, out: Outgoing, response_topic: str | None = None) -> None:
        properties = None
        if out.correlation is not None or response_topic is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if out.correlation is not None:
                properties.CorrelationData = out.correlation
            properties.ContentType = "application/json"
        await client.publish(response_topic or out.topic, out.payload, qos=1, retain=out.retain, properties=properties)

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        if topic == self.ha_status_topic:
            if payload.strip() == HA_ONLINE:
                log.info("Home Assistant is online: publishing discovery again")
                await self._publish_discovery(client)
            return
        controller = self.controller
        if not self.commands:
            return
        try:
            if topic == controller.topics.request:
                reply, ident = await controller.handle_request(payload)
                props = message.properties
                response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
                correlation = getattr(props, "CorrelationData", None) if props is not None else None
                out = Outgoing(controller.topics.response(ident), dump(reply), retain=False, correlation=correlation)
                await self._send(client, out, response_topic if isinstance(response_topic, str) else None)
            else:
                name = topic.removeprefix(controller.topics.base + "/").removesuffix("/set")
                out = await controller.handle_set(name, payload)
                # This answer carries the new state: the change need not be sent twice.
                self._dirty.discard(name)
                await self._send(client, out)
            self.handled += 1
        except aiomqtt.MqttError:
            raise
        except Exception:
            log.exception("control: a command on %s failed unexpectedly (the daemon carries on)", topic)


def attach_control(settings: Settings, sinks: Sequence[Sink], service: Service) -> ControlSession | None:
    """Wire control, retained state and HA discovery to the MQTT sink among ``sinks``, if any.

    Pipelines come from ``service`` at each use: a reload (SIGHUP or the ``reload`` request,
    both ``Service.reload``) replaces them.
    """
    from runtime import __version__
    from runtime.mqtt.sink import MqttSink
    from runtime.pipeline import status_payload
    from runtime.switch import prepare_switch

    sink = next((s for s in sinks if isinstance(s, MqttSink)), None)
    if sink is None or settings.mqtt is None:
        return None
    mqtt = settings.mqtt
    topics = Topics(mqtt.prefix, settings.device)
    extra = extra_models(mqtt.control.models)
    started = utc_now()

    def status() -> Status:
        live = status_payload(settings.device, service.pipelines())
        return live.model_copy(update={"started_at": started})

    async def switch(cfg: PipelineConfig, pipeline: Pipeline, model: str) -> None:
        prepared = await asyncio.to_thread(prepare_switch, cfg, pipeline, model, extra)
        await pipeline.switch_model(prepared)

    running = service.running_pipelines
    controller = Controller(topics, settings.device, running, status, switch, service.reload_or_raise)
    discovery = None
    ha_status = None
    if mqtt.home_assistant.enabled:
        prefix = mqtt.home_assistant.discovery_prefix
        names = [c.name for c in settings.pipelines]
        discovery = discovery_entities(prefix, topics, settings.device, __version__, names)
        ha_status = f"{prefix}/status"
    session = ControlSession(
        controller,
        lambda: {n: p for n, (_, p) in running().items()},
        discovery,
        ha_status,
        commands=mqtt.control.enabled,
    )
    sink.session_handlers.append(session.run)
    sink.on_message = session.on_message
    return session
