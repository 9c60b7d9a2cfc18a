"""The receiving side shared by the UDP block sources (ECG "SWEC", radar "SWRD").

``UdpBlockSource`` owns the socket, the bounded queue of arriving datagrams (a datagram that
finds it full is dropped and counted as ``overflow_datagrams``), the pump task that parses
them and hands blocks on through a ``DropOldestQueue``, the idle timer (after ``idle_flush_ms``
without a datagram what waits for a full block is handed on; after ``max_gap_ms`` the stream
ends), the iteration (a failing pump ends the iterator with its exception instead of leaving
it waiting) and start/close. A kind only parses its datagrams and assembles its blocks, in
the hooks ``_accept``, ``_flush``, ``_end`` and ``_active``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import ClassVar, Generic, TypeVar

from sensors.datagram import SequenceTracker, listen_udp, listening_port
from sensors.queues import DropOldestQueue

ItemT = TypeVar("ItemT")


class _QueueProtocol(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, int]], overflow: list[int]) -> None:
        self.queue = queue
        self.overflow = overflow

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            self.queue.put_nowait((data, time.monotonic_ns()))
        except asyncio.QueueFull:
            # The parser fell behind; the loss also shows as lost datagrams in the sequence.
            self.overflow[0] += 1


class UdpBlockSource(ABC, Generic[ItemT]):
    """Async iterator of a kind's blocks received as datagrams on ``host:port`` (live: never ends)."""

    log: ClassVar[logging.Logger] = logging.getLogger(__name__)
    """The kind's logger (its module's), so its warnings carry its name."""

    def __init__(
        self, host: str, port: int, *, queue_blocks: int, max_gap_ms: float, idle_flush_ms: float, datagram_queue: int
    ) -> None:
        self.host, self.port = host, port
        self.stream = f"udp://{host}:{port}"
        self.max_gap_s = max_gap_ms / 1000
        self.idle_flush_s = idle_flush_ms / 1000
        self.tracker = SequenceTracker()
        self.counts: dict[str, int] = {"bad_datagrams": 0}
        self._overflow = [0]
        self._in_bad_burst = False
        self._datagrams: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue(datagram_queue)
        self._blocks: DropOldestQueue[ItemT] = DropOldestQueue(queue_blocks)
        self._transport: asyncio.DatagramTransport | None = None
        self._pump: asyncio.Task[None] | None = None
        self._failure: Exception | None = None

    @property
    def bound_port(self) -> int:
        return listening_port(self._transport, self.port)

    @property
    def dropped_blocks(self) -> int:
        return self._blocks.dropped_blocks

    async def start(self) -> None:
        if self._transport is not None:
            return
        self._transport = await listen_udp(
            self.host, self.port, lambda: _QueueProtocol(self._datagrams, self._overflow), self.stream
        )
        self.stream = f"udp://{self.host}:{self.bound_port}"
        self._listening(self._transport)
        self._pump = asyncio.create_task(self._run_pump(), name=f"{self.stream}-pump")

    def close(self) -> None:
        """Stop listening; the iterator yields what is queued, the stream's end, and stops."""
        if self._pump is not None:
            self._pump.cancel()
        if self._transport is not None:
            self._transport.close()
        self._end("closed")
        self._blocks.close()

    def _datagram_drops(self, *, more_restarts: int, **kind: int) -> dict[str, int]:
        """``drops()``: the datagram counts, ``kind``'s own, then the queue counts."""
        t = self.tracker.counts
        return {
            "lost_datagrams": t.lost,
            "late_datagrams": t.late,
            "duplicate_datagrams": t.duplicates,
            "restarts": t.restarts + more_restarts,
            "bad_datagrams": self.counts["bad_datagrams"],
            **kind,
            "overflow_datagrams": self._overflow[0],
            "dropped_blocks": self._blocks.dropped_blocks,
        }

    def __aiter__(self) -> AsyncIterator[ItemT]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ItemT]:
        await self.start()
        while (item := await self._blocks.get()) is not None:
            yield item
        if self._failure is not None:
            raise self._failure

    async def _run_pump(self) -> None:
        try:
            await self._pump_datagrams()
        except Exception as exc:  # a bug must end the source loudly, not leave the iterator waiting
            self.log.exception("%s: receiver failed", self.stream)
            self._failure = exc
            self._blocks.close()

    async def _pump_datagrams(self) -> None:
        last_rx = time.monotonic()
        while True:
            try:
                data, captured_ns = await asyncio.wait_for(self._datagrams.get(), self.idle_flush_s)
            except TimeoutError:
                if self._active():
                    if time.monotonic() - last_rx > self.max_gap_s:
                        # The sender went quiet: the stream is over; what comes next is a new one.
                        self._end("silence")
                        self.tracker.reset()
                    else:
                        self._flush()  # bound latency when data comes slower than a block fills
                continue
            if self._accept(data, captured_ns):
                last_rx = time.monotonic()
            # Take whatever else has arrived without a loop pass per datagram.
            while not self._datagrams.empty():
                if self._accept(*self._datagrams.get_nowait()):
                    last_rx = time.monotonic()

    def _bad(self, problem: str) -> bool:
        """Count a bad datagram, logging the first of a burst; ``False`` (for ``_accept`` to return)."""
        self.counts["bad_datagrams"] += 1
        if not self._in_bad_burst:
            self.log.warning("%s: dropping bad datagram(s): %s", self.stream, problem)
            self._in_bad_burst = True
        return False

    def _listening(self, transport: asyncio.DatagramTransport) -> None:
        """Called once the socket is bound and ``stream`` names the real port."""

    @abstractmethod
    def _active(self) -> bool:
        """Whether a stream is under way (silence then flushes or ends it)."""

    @abstractmethod
    def _accept(self, data: bytes, captured_ns: int) -> bool:
        """Take one datagram; ``True`` when it counts as the sender being alive."""

    @abstractmethod
    def _flush(self) -> None:
        """Hand on what waits for a full block."""

    @abstractmethod
    def _end(self, reason: str) -> None:
        """End the stream under way (if any) with ``EndOfStream`` meta ``{"end": reason}``."""
