"""Connection settings shared by the sink and the subscriber, and one-line failure reports.

``ConnectOptions`` resolves an ``MqttConfig`` once (URL, credentials, TLS context,
protocol) so a bad CA path or URL fails at start-up, not on the first reconnect.
``describe_failure`` turns what aiomqtt raises into a kind and a single readable line:
aiomqtt re-raises socket and TLS errors as ``MqttError(str(exc)) from None``, so the
original exception is gone and the message text is all there is to classify.
``watch_connection`` and ``run_until_lost`` end a wait as soon as the connection drops,
which aiomqtt's own ``publish`` does not do (see ``runtime/mqtt/sink.py``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from runtime.config import MqttConfig, TlsConfig
from runtime.mqtt.url import BrokerAddress, parse_broker_url

FailureKind = Literal[
    "refused",
    "dns",
    "unreachable",
    "timeout",
    "tls",
    "auth",
    "protocol",
    "rejected",
    "lost",
    "other",
]

# paho logs socket errors itself, on every attempt; our one line per failure kind
# replaces that. Set this logger to DEBUG to see paho's own messages.
PAHO_LOG = logging.getLogger("runtime.mqtt.paho")
PAHO_LOG.setLevel(logging.CRITICAL)

# What paho reports when the socket closed without a DISCONNECT: reason code 128
# ("Unspecified error"), or MQTT_ERR_NO_CONN / MQTT_ERR_CONN_LOST from a publish.
_RC_SOCKET_CLOSED = {128, 4, 7}

# MQTT 5 CONNACK reason codes. paho maps MQTT 3.1.1 return codes onto them too
# (4 -> 134, 5 -> 135), so one table serves both protocol versions.
_RC_UNSUPPORTED_PROTOCOL = 132
_RC_AUTH = {134, 135}  # bad user name or password, not authorized

_ERRNO_RE = re.compile(r"\[Errno (-?\d+)\]")


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    address: BrokerAddress
    username: str | None
    password: str | None = field(repr=False)
    tls_context: ssl.SSLContext | None
    protocol: Literal["3.1.1", "5"]
    keepalive_s: int
    clean_session: bool = True
    session_expiry_s: int = 0

    @property
    def user_label(self) -> str:
        return repr(self.username) if self.username is not None else "anonymous"

    def client(
        self,
        *,
        client_id: str | None,
        protocol: Literal["3.1.1", "5"] | None = None,
        will: aiomqtt.Will | None = None,
        timeout_s: float = 10.0,
        clean_session: bool | None = None,
    ) -> aiomqtt.Client:
        """A new, unconnected aiomqtt client (one per connection attempt, see the sink)."""
        version = protocol or self.protocol
        clean = self.clean_session if clean_session is None else clean_session
        if version == "5":
            # paho raises ValueError for clean_session under MQTT 5 and for a non-default
            # clean_start under 3.1.1, so each version gets only its own flag.
            connect_properties = None
            if not clean and self.session_expiry_s > 0:
                # MQTT 5 ends a session at disconnect unless it has an expiry interval.
                connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                connect_properties.SessionExpiryInterval = self.session_expiry_s
            return aiomqtt.Client(
                **self._common(client_id, will, timeout_s),
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=clean,
                properties=connect_properties,
            )
        return aiomqtt.Client(
            **self._common(client_id, will, timeout_s),
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=clean,
        )

    def _common(self, client_id: str | None, will: aiomqtt.Will | None, timeout_s: float) -> dict[str, Any]:
        return {
            "hostname": self.address.host,
            "port": self.address.port,
            "username": self.username,
            "password": self.password,
            "identifier": client_id,
            "will": will,
            "keepalive": self.keepalive_s,
            "timeout": timeout_s,
            "tls_context": self.tls_context,
            "logger": PAHO_LOG,
            "transport": self.address.transport,
            "websocket_path": self.address.websocket_path,
        }


def connect_options(config: MqttConfig) -> ConnectOptions:
    """Resolve ``config``; ``ValueError`` for a bad URL or unreadable TLS or password files."""
    address = parse_broker_url(config.url)
    # Explicit fields beat credentials embedded in the URL: the URL often comes from a
    # shared file, the fields from a secret in the environment.
    username = config.username if config.username is not None else address.username
    if config.password is not None:
        password: str | None = config.password.get_secret_value()
    elif config.password_file is not None:
        password = read_password_file(config.password_file)
    else:
        password = address.password
    use_tls = address.tls or config.tls is not None
    tls_context = tls_context_for(config.tls) if use_tls else None
    return ConnectOptions(
        address=address,
        username=username,
        password=password,
        tls_context=tls_context,
        protocol=config.protocol,
        keepalive_s=config.keepalive_s,
        clean_session=config.clean_session,
        session_expiry_s=config.session_expiry_s,
    )


def read_password_file(path: Path) -> str:
    """The password in ``path`` (one trailing newline stripped); the error names the file only."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"mqtt.password_file: {path} does not exist (with systemd LoadCredential, is the credential set?)"
        raise ValueError(msg) from exc
    except OSError as exc:
        msg = f"mqtt.password_file: cannot read {path}: {exc.strerror}"
        raise ValueError(msg) from exc
    except UnicodeDecodeError:
        # Not chained: a decode error's message quotes bytes of the secret.
        msg = f"mqtt.password_file: {path} is not UTF-8 text"
        raise ValueError(msg) from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        msg = f"mqtt.password_file: {path} is empty"
        raise ValueError(msg)
    return password


def publish_properties(*, pipeline: str, schema: str, device: str, expiry_s: int | None) -> Properties:
    """MQTT 5 PUBLISH properties: content type, user properties, message expiry."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = "application/json"
    properties.UserProperty = [("device", device), ("pipeline", pipeline), ("schema", schema)]
    if expiry_s is not None:
        properties.MessageExpiryInterval = expiry_s
    return properties


def tls_context_for(tls: TlsConfig | None) -> ssl.SSLContext:
    """Client TLS context: the system CAs, or ``ca_file``; a client certificate if given."""
    if tls is None:
        return ssl.create_default_context()
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        msg = f"mqtt.tls.ca_file: cannot load {tls.ca_file}: {exc}"
        raise ValueError(msg) from exc
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            msg = f"mqtt.tls.cert_file/key_file: cannot load {tls.cert_file}: {exc}"
            raise ValueError(msg) from exc
    elif tls.key_file is not None:
        msg = "mqtt.tls.key_file is set without mqtt.tls.cert_file"
        raise ValueError(msg)
    if tls.insecure:
        # Same meaning as paho's tls_insecure_set: the chain is still verified, the name is not.
        context.check_hostname = False
    return context


def describe_lost(exc: BaseException) -> str:
    """Why an established connection ended, for a log line."""
    cause = exc.__cause__ or exc
    rc = getattr(cause, "rc", None)
    if getattr(rc, "value", rc) in _RC_SOCKET_CLOSED:
        return "closed by the broker or the network"
    return str(cause)


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    message: str


def describe_failure(exc: BaseException, options: ConnectOptions) -> Failure:
    """One line for a failed connection attempt: what happened and what to check."""
    broker = str(options.address)
    text = str(exc)
    if isinstance(exc, MqttConnectError):
        code = getattr(exc.rc, "value", exc.rc)
        if code in _RC_AUTH:
            return Failure(
                "auth",
                f"{broker} refused user {options.user_label}: {text}; check mqtt.username and mqtt.password",
            )
        if code == _RC_UNSUPPORTED_PROTOCOL:
            return Failure("protocol", f"{broker} does not accept MQTT {options.protocol}: {text}")
        return Failure("rejected", f"{broker} rejected the connection: {text}")
    if "[SSL" in text or "certificate" in text.lower():
        return Failure("tls", f"TLS handshake with {broker} failed: {text}")
    match = _ERRNO_RE.search(text)
    code = int(match.group(1)) if match else None
    if code is not None and code < 0:  # getaddrinfo errors are negative (EAI_*)
        return Failure("dns", f"cannot resolve {options.address.host!r}: {text}")
    if code == errno.ECONNREFUSED:
        return Failure("refused", f"{broker}: connection refused (is a broker running there?)")
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return Failure("unreachable", f"{broker} is unreachable: {text}")
    if code == errno.ECONNRESET and options.tls_context is not None:
        return Failure("tls", f"{broker} reset the TLS handshake (is that port a TLS listener?)")
    if "timed out" in text:
        hints = [] if options.tls_context is not None else ["a TLS listener? use mqtts://"]
        if options.protocol == "5":
            # amqtt, for one, never answers an MQTT 5 CONNECT that carries a Will.
            hints.append('a broker without MQTT 5? set mqtt.protocol = "3.1.1"')
        hint = f" ({'; '.join(hints)})" if hints else ""
        return Failure("timeout", f"{broker} did not answer the connection in time{hint}")
    return Failure("other", f"cannot connect to {broker}: {type(exc).__name__}: {text}")


# -- watching a connection (aiomqtt's publish does not, see sink.py) ------------------

# What ``aiomqtt.Client.publish`` guarantees (read in aiomqtt 2.5.1 / paho-mqtt 2.2 source):
#
# - it calls paho's ``publish`` and then waits for an event that paho's ``on_publish``
#   sets. paho calls ``on_publish`` for QoS 1 on PUBACK and for QoS 2 on PUBCOMP
#   (``_handle_pubackcomp``), and for QoS 0 as soon as the packet is written to the
#   socket (``_packet_write``). So a QoS 1 ``publish`` returns only once the broker has
#   acknowledged the message.
# - it ignores the PUBACK reason code: an MQTT 5 PUBACK that reports an error (e.g. 0x87,
#   not authorized by an ACL) still counts as published. We cannot see that.
# - its wait does not end when the connection drops. It ends only at the client time-out
#   (measured: a broker SIGKILLed under a QoS 1 stream was noticed by aiomqtt at once,
#   but the pending ``publish`` returned 5 s later, at its time-out). Each publish here
#   therefore races a watcher that sees the disconnect, and a time-out counts as a dead
#   connection.
# - while disconnected, paho's ``publish`` returns ``MQTT_ERR_NO_CONN`` and aiomqtt raises
#   ``MqttCodeError`` immediately.


class ConnectionLostError(aiomqtt.MqttError):
    """The connection dropped while we waited for the broker."""


async def watch_connection(client: aiomqtt.Client, on_message: Callable[[aiomqtt.Message], None] | None = None) -> None:
    """Return (with MqttError) when the connection drops.

    aiomqtt's message iterator is its public signal for a disconnect: it raises
    MqttError then. The sink itself never subscribes; messages for the subscriptions of
    its ``session_handlers`` (runtime.mqtt.session) go to ``on_message``, which must not block.
    """
    async for message in client.messages:
        if on_message is not None:
            on_message(message)


async def wait_event(event: asyncio.Event) -> None:
    await event.wait()


async def run_until_lost(work: Coroutine[Any, Any, None], lost: asyncio.Task[None]) -> asyncio.Task[None]:
    """Run ``work`` until it is done or the connection is lost; return its task.

    The task is cancelled (and awaited) if the connection was lost first or if we are
    cancelled ourselves, so no publish outlives the connection it was started on.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    return task


def reap(task: asyncio.Task[None]) -> None:
    """Mark a finished task's exception as retrieved: asyncio logs it otherwise."""
    if task.done() and not task.cancelled():
        task.exception()


def lost_error(lost: asyncio.Task[None]) -> ConnectionLostError:
    if lost.cancelled():
        return ConnectionLostError("connection closed")
    exc = lost.exception()
    cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
    error = ConnectionLostError(str(cause) if cause is not None else "connection closed")
    error.__cause__ = cause
    return error


def check_topic_level(what: str, value: str, *, allow_slash: bool) -> None:
    bad = set("+#\0") | (set() if allow_slash else {"/"})
    if not value or bad & set(value) or value.startswith("/") or value.endswith("/"):
        msg = f"{what} {value!r} cannot be used in MQTT topics (empty, or contains + # NUL or a stray /)"
        raise ValueError(msg)
