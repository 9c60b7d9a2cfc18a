"""``host:port`` addresses of network sources and senders, parsed in one place."""

from __future__ import annotations


def parse_host_port(address: str, *, min_port: int = 1) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> ``(host, port)``; ``ValueError`` says what is wrong.

    ``min_port=0`` admits port 0 (the OS picks one), for a listening socket.
    """
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not min_port <= int(port) <= 65535:
        msg = f"must be host:port with a port in {min_port}..65535, got {address!r}"
        raise ValueError(msg)
    return host, int(port)
