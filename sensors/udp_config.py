"""Configuration shared by the UDP block sources (ECG "SWEC", radar "SWRD"): the listen address and
the queue / gap / idle settings of ``sensors.udp_source.UdpBlockSource``.

Only pydantic here (no numpy, no asyncio sockets), so the configs import fast. The fields
mean the same for every kind and share their bounds, titles and defaults; where a kind's
description says what it fills or hands on in its own terms, the kind passes that text.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sensors.address import parse_host_port

QueueBlocks = Annotated[
    int,
    Field(ge=1, title="Queue length", description="Blocks held when the pipeline lags; beyond, the oldest is dropped."),
]
DEFAULT_QUEUE_BLOCKS = 64


def listen_field(port: int, datagrams: str, module: str) -> Any:
    """The ``listen`` field: ``0.0.0.0:port`` by default, receiving ``datagrams`` (format in ``module``)."""
    return Field(
        f"0.0.0.0:{port}",
        title="Listen address",
        description=f"host:port to receive {datagrams} on (see {module} for the format).",
    )


def max_gap_field(description: str) -> Any:
    """The ``max_gap_ms`` field; ``description`` says what a gap is for the kind."""
    return Field(2000.0, gt=0, title="Longest gap", description=description)


def idle_flush_field(waiting: str) -> Any:
    """The ``idle_flush_ms`` field; ``waiting`` names what waits for a full block ("samples", "frames")."""
    return Field(
        200.0,
        gt=0,
        title="Idle flush",
        description=f"When no datagram arrives for this long, {waiting} waiting for a full block are handed on.",
    )


class UdpListenConfig(BaseModel):
    """Base of a UDP source's config: ``listen`` (declared by the kind, with its port) is checked here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("listen", check_fields=False)
    @classmethod
    def _valid_address(cls, v: str) -> str:
        parse_host_port(v, min_port=0)
        return v
