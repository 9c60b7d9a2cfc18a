"""The interface every sink implements.

A sink never blocks the pipeline: ``offer`` only enqueues (or counts a drop), and the
sink's own task does the I/O. Each sink owns its buffer, so a slow MQTT broker cannot
stall the JSONL file or the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from runtime.contract import Classification, Status, Telemetry

Kind = Literal["classification", "telemetry"]


@dataclass(frozen=True, slots=True)
class SinkStats:
    queued: int
    """Messages waiting in the sink's buffer."""
    dropped: int
    """Messages dropped because the buffer was full (cumulative)."""
    delivered: int
    """Messages handed to the transport and acknowledged where the transport acks."""


class Sink(Protocol):
    name: str

    async def start(self, status: Status) -> None:
        """Open the transport (may return before it is connected) and announce ``status``."""

    def offer(self, payload: Classification | Telemetry) -> None:
        """Enqueue without blocking. A full buffer drops the oldest message and counts it."""

    def stats(self) -> SinkStats: ...

    async def close(self, drain_timeout_s: float) -> None:
        """Deliver what is queued (bounded by the timeout), say goodbye, close."""
