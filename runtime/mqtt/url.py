"""Broker URLs: ``mqtt://[user[:password]@]host[:port]``, ``mqtts://`` (TLS), and MQTT over
WebSockets ``ws://host[:port][/path]`` / ``wss://`` (TLS; path default ``/mqtt``).

Pure parsing, no I/O and no MQTT library, so configuration code can validate a URL
without importing the transport.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
TLS_SCHEMES = frozenset({"mqtts", "wss"})
WEBSOCKET_SCHEMES = frozenset({"ws", "wss"})
DEFAULT_WEBSOCKET_PATH = "/mqtt"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    """User name given in the URL, if any; ``MqttConfig.username`` takes precedence."""
    password: str | None = field(default=None, repr=False)
    """Password given in the URL, if any. Kept out of ``repr`` so it never reaches a log."""
    websocket_path: str | None = None
    """HTTP path of the WebSocket endpoint; None for MQTT over plain TCP."""

    @property
    def transport(self) -> str:
        return "websockets" if self.websocket_path is not None else "tcp"

    @property
    def scheme(self) -> str:
        if self.websocket_path is not None:
            return "wss" if self.tls else "ws"
        return "mqtts" if self.tls else "mqtt"

    def __str__(self) -> str:
        # The form used in log lines and errors: never carries credentials.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.websocket_path or ''}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse an ``mqtt(s)://`` or ``ws(s)://`` URL; ``ValueError`` says what is wrong.

    Default ports: 1883 for ``mqtt``, 8883 for ``mqtts``, 80 for ``ws``, 443 for ``wss``. Percent-escapes in the user
    name and password are decoded (a password containing ``@`` is written ``%40``).
    """
    shown = _redact(url)
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        msg = f"invalid broker URL {shown!r}: {exc}"
        raise ValueError(msg) from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        msg = f"invalid broker URL {shown!r}: scheme must be mqtt://, mqtts://, ws:// or wss://"
        raise ValueError(msg)
    host = parts.hostname
    if not host:
        msg = f"invalid broker URL {shown!r}: no host (expected {scheme}://host[:port])"
        raise ValueError(msg)
    websocket = scheme in WEBSOCKET_SCHEMES
    if parts.query or parts.fragment or (not websocket and parts.path not in ("", "/")):
        # A path would be silently ignored by MQTT over TCP; a topic there is a common mistake.
        msg = f"invalid broker URL {shown!r}: unexpected path, query or fragment after host:port"
        raise ValueError(msg)
    try:
        port = parts.port
    except ValueError as exc:
        msg = f"invalid broker URL {shown!r}: port must be a number from 1 to 65535"
        raise ValueError(msg) from exc
    if port == 0:
        msg = f"invalid broker URL {shown!r}: port must be a number from 1 to 65535"
        raise ValueError(msg)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerAddress(
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        tls=scheme in TLS_SCHEMES,
        username=username,
        password=password,
        websocket_path=(parts.path if parts.path not in ("", "/") else DEFAULT_WEBSOCKET_PATH) if websocket else None,
    )


def _redact(url: str) -> str:
    """The URL with any password replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}"
