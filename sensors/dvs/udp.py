"""Event streams over UDP: a camera on another host feeds the daemon.

Datagram format "SWEV" version 1 (little-endian), chosen so a sender in any language is
a dozen lines: a 20-byte header ``magic "SWEV", u8 version = 1, u8 flags = 0,
u16 width, u16 height, u16 reserved = 0, u32 sequence, u32 n_events`` followed by
``n_events`` packed records of ``EVENT_DTYPE`` (i64 t_us, u16 x, u16 y, u8 polarity),
13 bytes each. Timestamps are the camera's clock in µs; the receiver rebases the first
event to stream time 0.

UDP loses and reorders datagrams and the daemon cannot push back on a camera, so the
receiver never blocks: sequence numbers go through the shared tracker of
``sensors.datagram`` (a gap is counted as lost datagrams; a late or duplicate datagram is
counted and dropped, never glued in after newer events; a sender restart is counted), a
malformed datagram is counted and ignored, and when the pipeline falls behind the oldest
queued block is dropped and counted. All of it shows in telemetry ``drops``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import EVENT_DTYPE, EventBlock
from sensors.datagram import SequenceTracker, listen_udp, listening_port
from sensors.dvs.slicer import EventSlicer
from sensors.queues import DropOldestQueue

log = logging.getLogger(__name__)

MAGIC = b"SWEV"
VERSION = 1
HEADER = struct.Struct("<4sBBHHHII")
MAX_EVENTS_PER_DATAGRAM = (65_507 - HEADER.size) // EVENT_DTYPE.itemsize


def pack_datagram(seq: int, width: int, height: int, events: npt.NDArray[np.void]) -> bytes:
    """One datagram of at most ``MAX_EVENTS_PER_DATAGRAM`` events."""
    if len(events) > MAX_EVENTS_PER_DATAGRAM:
        msg = f"{len(events)} events do not fit one datagram (at most {MAX_EVENTS_PER_DATAGRAM})"
        raise ValueError(msg)
    body = np.ascontiguousarray(events, dtype=EVENT_DTYPE).tobytes()
    return HEADER.pack(MAGIC, VERSION, 0, width, height, 0, seq & 0xFFFFFFFF, len(events)) + body


@dataclass(frozen=True, slots=True)
class Datagram:
    seq: int
    width: int
    height: int
    events: npt.NDArray[np.void]


def unpack_datagram(data: bytes) -> Datagram:
    """Parse one datagram; ``ValueError`` says what is wrong with it."""
    if len(data) < HEADER.size:
        msg = f"datagram of {len(data)} bytes is shorter than the {HEADER.size}-byte header"
        raise ValueError(msg)
    magic, version, _flags, width, height, _res, seq, n = HEADER.unpack_from(data)
    if magic != MAGIC:
        msg = f"magic {magic!r} is not {MAGIC!r}"
        raise ValueError(msg)
    if version != VERSION:
        msg = f"version {version} is not {VERSION}"
        raise ValueError(msg)
    if len(data) != HEADER.size + n * EVENT_DTYPE.itemsize:
        msg = f"header says {n} events ({HEADER.size + n * EVENT_DTYPE.itemsize} bytes), datagram has {len(data)}"
        raise ValueError(msg)
    events = np.frombuffer(data, EVENT_DTYPE, count=n, offset=HEADER.size).copy()
    if n and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        msg = f"an event lies outside the declared {width}x{height} sensor"
        raise ValueError(msg)
    return Datagram(seq, width, height, events)


@dataclass
class _Counters:
    datagrams: int = 0
    bad_datagrams: int = 0
    events: int = 0
    last_error: str = ""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: asyncio.Queue[bytes], overflow: list[int]) -> None:
        self.queue = on_datagram
        self.overflow = overflow

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)
            return
        # The parser fell behind: drop the oldest datagram. Counted here as an overflow; its
        # sequence number never reaches the tracker, so it is in lost_datagrams as well.
        self.overflow[0] += 1
        with contextlib.suppress(asyncio.QueueEmpty):
            self.queue.get_nowait()
        self.queue.put_nowait(data)


class UdpEventSource:
    """Async iterator of ``EventBlock``s received on a UDP port (a live source: never ends)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7777,
        *,
        block_ms: float = 20.0,
        queue_blocks: int = 64,
        idle_flush_ms: float = 100.0,
    ) -> None:
        self.host, self.port = host, port
        self.block_us = max(1, round(block_ms * 1000))
        self.idle_flush_s = idle_flush_ms / 1000
        self.stream = f"udp://{host}:{port}"
        self.counters = _Counters()
        self._datagrams: asyncio.Queue[bytes] = asyncio.Queue(4096)
        self._blocks: DropOldestQueue[EventBlock] = DropOldestQueue(queue_blocks)
        self._transport: asyncio.DatagramTransport | None = None
        self._pump: asyncio.Task[None] | None = None
        self._slicer = EventSlicer(self.block_us)
        self._size: tuple[int, int] | None = None
        self._seq = SequenceTracker()
        self._overflow = [0]

    @property
    def bound_port(self) -> int:
        return listening_port(self._transport, self.port)

    async def start(self) -> None:
        self._transport = await listen_udp(
            self.host, self.port, lambda: _Protocol(self._datagrams, self._overflow), self.stream
        )
        self._pump = asyncio.create_task(self._run_pump(), name=f"{self.stream}-pump")

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._transport is not None:
            self._transport.close()

    def drops(self) -> dict[str, int]:
        c = self.counters
        seq = self._seq.counts
        return {
            "lost_datagrams": seq.lost,
            "late_datagrams": seq.late,
            "duplicate_datagrams": seq.duplicates,
            "sender_restarts": seq.restarts,
            "bad_datagrams": c.bad_datagrams,
            "overflow_datagrams": self._overflow[0],
            "dropped_blocks": self._blocks.dropped_blocks,
            "late_events": self._slicer.late,
            "reordered_events": self._slicer.reordered,
        }

    def __aiter__(self) -> AsyncIterator[EventBlock]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[EventBlock]:
        if self._transport is None:
            await self.start()
        while (block := await self._blocks.get()) is not None:
            yield block

    async def _run_pump(self) -> None:
        last_rx = time.monotonic()
        while True:
            try:
                data = await asyncio.wait_for(self._datagrams.get(), self.idle_flush_s)
            except TimeoutError:
                # The camera is quiet (or gone): let stream time run on with the wall clock
                # so windows close and the readout sees the silence.
                if self._size is not None and self._slicer.t0_us is not None:
                    idle_us = int((time.monotonic() - last_rx) * 1e6)
                    self._emit_until(self._slicer.sent_until_us + idle_us)
                    last_rx = time.monotonic()
                continue
            last_rx = time.monotonic()
            self._accept(data)

    def _accept(self, data: bytes) -> None:
        c = self.counters
        try:
            dg = unpack_datagram(data)
        except ValueError as exc:
            c.bad_datagrams += 1
            if str(exc) != c.last_error:
                log.warning("%s: bad datagram: %s", self.stream, exc)
                c.last_error = str(exc)
            return
        c.datagrams += 1
        verdict = self._seq.classify(dg.seq)
        if not verdict.kind.accepted:
            # A late or repeated datagram is never glued in after newer events: counted, dropped.
            return
        self._size = (dg.width, dg.height)
        c.events += len(dg.events)
        self._slicer.add(dg.events)
        for events, t0, t1 in self._slicer.blocks(final=False):
            self._blocks.put(EventBlock(self.stream, events, dg.width, dg.height, t0, t1, time.monotonic_ns()))

    def _emit_until(self, t_us: int) -> None:
        assert self._size is not None
        for events, start, end in self._slicer.blocks_until(t_us):
            self._blocks.put(EventBlock(self.stream, events, *self._size, start, end, time.monotonic_ns()))


async def send_file(
    path: Path, host: str, port: int, *, speed: float | None = 1.0, max_events: int = 4096, loop: bool = False
) -> int:
    """Send a recording as datagrams, paced by its timestamps (``speed=None``: unpaced). Returns datagrams sent."""
    from sensors.dvs.reader import open_events

    max_events = min(max_events, MAX_EVENTS_PER_DATAGRAM)
    aio = asyncio.get_running_loop()
    transport, _ = await aio.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
    seq = 0
    try:
        while True:
            start = aio.time()
            t0: int | None = None
            with open_events(path) as reader:
                width, height = int(reader.info.width or 0), int(reader.info.height or 0)
                for chunk in reader:
                    for i in range(0, len(chunk), max_events):
                        part = chunk[i : i + max_events]
                        t0 = int(part["t"][0]) if t0 is None else t0
                        if speed is not None:
                            delay = start + (int(part["t"][-1]) - t0) / 1e6 / speed - aio.time()
                            if delay > 0:
                                await asyncio.sleep(delay)
                        transport.sendto(pack_datagram(seq, width, height, part))
                        seq += 1
                        if speed is None and seq % 64 == 0:
                            await asyncio.sleep(0)  # let the socket drain on loopback
            if not loop:
                return seq
    finally:
        transport.close()
