"""An embedded MQTT broker (amqtt) for the zero-config demo only.

Production points the sink at a real broker (Mosquitto, EMQX, ...). This one binds to
loopback only, allows anonymous clients and keeps nothing on disk.

amqtt speaks MQTT 3.1.1 only: clients must connect with ``protocol="3.1.1"``
(``EmbeddedBroker.protocol``). An MQTT 5 CONNECT that carries a Will (as the sink's
does) is mis-parsed by amqtt 0.12 and never answered, so the attempt only ends at the
client's time-out. Without a Will, amqtt answers "unsupported protocol version" as it should.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import Any, Final

from amqtt.broker import Broker
from amqtt.errors import BrokerError

log = logging.getLogger(__name__)

# amqtt logs every connection, packet and state transition at INFO.
_NOISY_LOGGERS = ("amqtt", "transitions")


class _Broker(Broker):  # type: ignore[misc]  # amqtt ships no type hints
    """amqtt's Broker minus one bug (amqtt 0.12.1).

    On every CONNECT, amqtt sends the new client the retained messages matching *every*
    client's topic filters (it loops over all subscriptions, not the session's own), at
    QoS 0 and before any SUBACK. A ``mosquitto_sub -t demo/#`` then receives
    ``spikewire/...`` status messages. Found by tests/test_mqtt_sink.py. The subscribe
    path registers the session before calling this, so the check keeps that path intact.
    If amqtt renames the method, this override stops applying and nothing else breaks.
    """

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        subscribers = self._subscriptions.get(subscription[0], [])
        if any(subscriber is session for subscriber, _qos in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class BrokerPortInUseError(OSError):
    """Something already listens on the port; the caller can use that broker instead."""


class EmbeddedBroker:
    protocol: Final = "3.1.1"

    def __init__(self) -> None:
        self._broker: Any = None  # amqtt.broker.Broker; amqtt ships no type hints
        self._host = "127.0.0.1"
        self._port = 1883

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        """Listen on ``host:port``; ``BrokerPortInUseError`` if the port is taken."""
        if self._broker is not None:
            msg = f"embedded broker already running on {self.url}"
            raise RuntimeError(msg)
        _require_ipv4_loopback(host)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # Probe first: amqtt would log a full traceback at ERROR before raising.
        _ensure_port_free(host, port)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            # Only anonymous auth: no $SYS publisher, no packet/event loggers.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = _Broker(config)
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise _in_use(host, port) from exc
            msg = f"embedded MQTT broker could not start on {host}:{port}: {exc}"
            raise RuntimeError(msg) from exc
        self._broker, self._host, self._port = broker, host, port
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1, demo only) listening on %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
            log.info("embedded MQTT broker on %s stopped", self.url)


def _require_ipv4_loopback(host: str) -> None:
    # amqtt mangles IPv6 bind addresses ("[::1]" is passed on with its brackets).
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        ok = host == "localhost"
    else:
        ok = address.version == 4 and address.is_loopback
    if not ok:
        msg = f"the embedded broker binds to IPv4 loopback only (e.g. 127.0.0.1), not {host!r}"
        raise ValueError(msg)


def _ensure_port_free(host: str, port: int) -> None:
    # SO_REUSEADDR as asyncio.start_server sets it: a port in TIME_WAIT counts as free,
    # a port with a listener does not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(host, port) from exc
            raise


def _in_use(host: str, port: int) -> BrokerPortInUseError:
    return BrokerPortInUseError(
        errno.EADDRINUSE,
        f"{host}:{port} is already in use (another MQTT broker?); connect to mqtt://{host}:{port} instead",
    )
