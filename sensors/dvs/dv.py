"""Live events from iniVation cameras through dv-processing (the optional ``camera`` extra).

Two inputs, one source:

* a USB camera on this host (DVXplorer, DAVIS, DVS128), opened by serial number or camera
  name (``DVXplorer_DXA00093``), or the first one found;
* a dv-processing network stream from another host (``host:port``): the TCP event stream
  that DV or dv-processing's ``NetworkWriter`` serves.

``dv_processing`` is imported only when a source starts, so spikewire works without it.

Threading: opening a camera or connection blocks, and reading is a poll (dv-processing's
``getNextEventBatch`` returns None when nothing has arrived). A dedicated thread polls the
reader (sleeping ``poll_ms`` between empty reads, never on the event loop), converts each batch to
``EVENT_DTYPE`` and hands it to the loop with ``call_soon_threadsafe``. On the loop the
events are rebased and cut into blocks of fixed stream time (``EventSlicer``); when the
pipeline falls behind, the oldest block is dropped and counted, as in the UDP source.

A camera that disconnects (cable pulled, remote host gone) is counted and logged, and the
thread reopens it with capped exponential backoff for as long as the source runs. Stream
time runs on with the wall clock while nothing arrives, so readout windows still close.
Each new connection is rebased to where stream time stands: a camera whose clock restarted
neither piles its events up as late nor leaps hours ahead. Likewise, when stream time ran
on past a quiet camera's clock, the camera clock is moved up to it (``clock_resyncs``)
rather than its next events being called late. Only the first open, in ``start()``,
raises: a wrong serial number or address is an error, not a silent retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from sensors.address import parse_host_port
from sensors.blocks import EVENT_DTYPE, EventBlock, InputError
from sensors.dvs.slicer import EventSlicer
from sensors.queues import DropOldestQueue

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'spikewire[camera]'"


def import_dv() -> ModuleType:
    """``dv_processing``, or an ``InputError`` that says how to install it."""
    try:
        return importlib.import_module("dv_processing")
    except ImportError as exc:
        msg = f"DVS camera input needs the optional package dv-processing ({exc}); install it with `{INSTALL_HINT}`"
        raise InputError(msg) from exc


def events_from_dv(batch: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """dv-processing's ``EventStore.numpy()`` records (timestamp µs, x, y, polarity) as ``EVENT_DTYPE``."""
    out = np.empty(len(batch), EVENT_DTYPE)
    out["t"] = batch["timestamp"]
    # Negative coordinates cannot come from a sensor; if they do, they wrap to 65535 and
    # the front end counts them out of sensor rather than this thread raising.
    out["x"] = batch["x"]
    out["y"] = batch["y"]
    out["p"] = batch["polarity"] != 0
    return out


def dv_message(exc: BaseException) -> str:
    """dv-processing's exception text without the C++ stack trace it appends."""
    text = str(exc).split("Stacktrace:", 1)[0].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# -- messages from the reader thread to the loop ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Connected:
    name: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class _Batch:
    events: npt.NDArray[np.void]
    captured_ns: int


@dataclass(frozen=True, slots=True)
class _Lost:
    reason: str


@dataclass(frozen=True, slots=True)
class _OpenFailed:
    reason: str
    retry_s: float


@dataclass(frozen=True, slots=True)
class _Crashed:
    error: BaseException


_Message = _Connected | _Batch | _Lost | _OpenFailed | _Crashed


class _OpenError(Exception):
    """The camera or stream cannot be opened (now); the text is for a person."""


@dataclass
class DvCounters:
    """Written on the loop thread only."""

    batches: int = 0
    events: int = 0
    connects: int = 0
    disconnects: int = 0
    open_failures: int = 0
    resyncs: int = 0
    """Batches whose camera time was moved up to stream time that ran on while the camera was quiet."""
    last_error: str = ""


class DvCameraSource:
    """Async iterator of ``EventBlock``s from an iniVation camera or a dv-processing network stream.

    A live source: it never ends by itself. ``camera`` is a serial number or camera name
    (None: the first camera found); ``network`` is ``host:port`` of a network stream.
    """

    def __init__(
        self,
        camera: str | None = None,
        *,
        network: str | None = None,
        block_ms: float = 20.0,
        queue_blocks: int = 64,
        idle_flush_ms: float = 100.0,
        poll_ms: float = 1.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        if camera is not None and network is not None:
            msg = f"give a camera or a network stream, not both (camera={camera!r}, network={network!r})"
            raise ValueError(msg)
        if queue_blocks < 1 or block_ms <= 0 or poll_ms <= 0 or not 0 < reconnect_min_s <= reconnect_max_s:
            msg = (
                f"need queue_blocks >= 1, block_ms > 0, poll_ms > 0 and 0 < reconnect_min_s <= reconnect_max_s; got "
                f"{queue_blocks}, {block_ms}, {poll_ms}, {reconnect_min_s}, {reconnect_max_s}"
            )
            raise ValueError(msg)
        self.camera = camera
        self.address = parse_host_port(network) if network is not None else None
        self.stream = f"dv-tcp://{network}" if network is not None else f"dv-camera:{camera or 'first'}"
        self.camera_name = ""
        """The name the camera or stream gives itself, once connected."""
        self.block_us = max(1, round(block_ms * 1000))
        self.idle_flush_s = idle_flush_ms / 1000
        self.poll_s = poll_ms / 1000
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.counters = DvCounters()
        self._blocks: DropOldestQueue[EventBlock | BaseException] = DropOldestQueue(queue_blocks)
        self._slicer = EventSlicer(self.block_us)
        self._size: tuple[int, int] | None = None
        self._now_us = 0  # stream time known so far: newest event, or advanced by idle time
        self._last_rx = time.monotonic()
        self._shift_us: int | None = None  # device time + shift = stream time; None: a new connection
        self._idle_advanced = False  # stream time ran on with the wall clock since the last batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the camera or stream; ``InputError`` if dv-processing is missing or it cannot be opened."""
        if self._thread is not None:
            return
        dvp = import_dv()
        try:
            reader, connected = await asyncio.to_thread(self._open, dvp)
        except _OpenError as exc:
            msg = f"{self.stream}: {exc}"
            raise InputError(msg) from exc
        self._loop = asyncio.get_running_loop()
        self._on_message(connected)
        self._thread = threading.Thread(target=self._run, args=(dvp, reader), name=f"{self.stream}-reader", daemon=True)
        self._thread.start()
        self._idle = asyncio.create_task(self._run_idle(), name=f"{self.stream}-idle")

    def close(self) -> None:
        """Stop reading; the thread releases the camera within ``poll_ms``."""
        self._stop.set()
        if self._idle is not None:
            self._idle.cancel()

    async def wait_closed(self, timeout_s: float = 5.0) -> bool:
        """After ``close()``: wait (off the loop) for the reader thread; False if it is still running."""
        thread = self._thread
        if thread is None:
            return True
        await asyncio.to_thread(thread.join, timeout_s)
        return not thread.is_alive()

    def drops(self) -> dict[str, int]:
        c = self.counters
        return {
            "dropped_blocks": self._blocks.dropped_blocks,
            "late_events": self._slicer.late,
            "reordered_events": self._slicer.reordered,
            "disconnects": c.disconnects,
            "reconnects": max(0, c.connects - 1),
            "open_failures": c.open_failures,
            "clock_resyncs": c.resyncs,
        }

    def __aiter__(self) -> AsyncIterator[EventBlock]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[EventBlock]:
        if self._thread is None:
            await self.start()
        while (item := await self._blocks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    # -- reader thread -----------------------------------------------------------------------

    def _open(self, dvp: ModuleType) -> tuple[Any, _Connected]:
        """Runs off the loop: opening a USB camera or a TCP connection blocks."""
        try:
            address = self.address
            reader = _open_camera(dvp, self.camera) if address is None else dvp.io.NetworkReader(*address)
        except _OpenError:
            raise
        except Exception as exc:  # dv raises RuntimeError, IndexError, ... with C++ text
            raise _OpenError(f"cannot open: {dv_message(exc)}") from exc
        if not reader.isEventStreamAvailable():
            raise _OpenError("it has no event stream (frames or IMU only?)")
        resolution = reader.getEventResolution()
        if resolution is None:
            raise _OpenError("it does not say the resolution of its event stream")
        width, height = int(resolution[0]), int(resolution[1])
        if width < 1 or height < 1:
            raise _OpenError(f"it gives an event resolution of {width}x{height}")
        return reader, _Connected(str(reader.getCameraName()), width, height)

    def _run(self, dvp: ModuleType, reader: Any) -> None:
        try:
            self._reconnect_loop(dvp, reader)
        except BaseException as exc:  # a bug here must end the pipeline loudly, not hang it
            self._post(_Crashed(exc))

    def _reconnect_loop(self, dvp: ModuleType, reader: Any) -> None:
        delay_s = self.reconnect_min_s
        while not self._stop.is_set():
            if reader is None:
                try:
                    reader, connected = self._open(dvp)
                except _OpenError as exc:
                    self._post(_OpenFailed(str(exc), delay_s))
                    self._stop.wait(delay_s)
                    delay_s = min(delay_s * 2, self.reconnect_max_s)
                    continue
                self._post(connected)
            reason, delivered = self._read_until_lost(reader)
            reader = None  # released here, on this thread: closing a camera may block
            if reason is None:
                return
            self._post(_Lost(reason))
            if delivered:
                delay_s = self.reconnect_min_s  # a connection that worked resets the backoff
            self._stop.wait(delay_s)

    def _read_until_lost(self, reader: Any) -> tuple[str | None, bool]:
        """Read until the stream ends or ``close()``: (reason it ended or None, whether a batch came)."""
        delivered = False
        while not self._stop.is_set():
            try:
                batch = reader.getNextEventBatch()
                if batch is None:
                    if not reader.isRunning():
                        return "the camera or stream stopped (disconnected?)", delivered
                    self._stop.wait(self.poll_s)
                    continue
                records = batch.numpy()
            except Exception as exc:  # the device went away in the middle of a read
                return dv_message(exc), delivered
            if len(records):
                delivered = True
                self._post(_Batch(events_from_dv(records), time.monotonic_ns()))
        return None, delivered

    def _post(self, message: _Message) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._on_message, message)

    # -- loop thread -------------------------------------------------------------------------

    def _on_message(self, m: _Message) -> None:
        c = self.counters
        if isinstance(m, _Batch):
            self._accept(m.events, m.captured_ns)
        elif isinstance(m, _Connected):
            c.connects += 1
            if c.connects > 1:
                log.warning("%s: reconnected to %s (%dx%d)", self.stream, m.name, m.width, m.height)
            else:
                log.info("%s: reading %s (%dx%d)", self.stream, m.name, m.width, m.height)
            if self._size not in (None, (m.width, m.height)) and self._slicer.t0_us is not None:
                # Another sensor: the old one's events must not go out in a block of the new size.
                self._now_us = -(-self._now_us // self.block_us) * self.block_us
                self._emit_until(self._now_us)
            self.camera_name, self._size = m.name, (m.width, m.height)
            self._shift_us = None
            c.last_error = ""
        elif isinstance(m, _Lost):
            c.disconnects += 1
            log.warning("%s: lost: %s; reopening", self.stream, m.reason)
        elif isinstance(m, _OpenFailed):
            c.open_failures += 1
            # Once per kind of failure, so a night without the camera is not a log per retry.
            level = logging.DEBUG if m.reason == c.last_error else logging.WARNING
            log.log(level, "%s: %s; retrying in %.1f s", self.stream, m.reason, m.retry_s)
            c.last_error = m.reason
        else:
            self._fail(m.error)

    def _accept(self, events: npt.NDArray[np.void], captured_ns: int) -> None:
        c = self.counters
        c.batches += 1
        c.events += len(events)
        self._last_rx = time.monotonic()
        t = events["t"]
        first = int(t[0])
        if self._shift_us is None:
            self._shift_us = self._now_us - first  # a new connection starts where stream time stands
        elif self._idle_advanced and first + self._shift_us < self._slicer.sent_until_us:
            # While the camera was quiet, stream time ran on with the wall clock past this
            # batch's camera time: move the camera clock up rather than call its events late.
            self._shift_us = self._slicer.sent_until_us - first
            self.counters.resyncs += 1
        self._idle_advanced = False
        t += self._shift_us  # the batch is this source's fresh array: shift in place
        self._now_us = max(self._now_us, int(t.max()) + 1)
        self._slicer.add(events)  # its first event is at stream time 0, so its own rebase is a no-op
        assert self._size is not None
        for block_events, start, end in self._slicer.blocks(final=False):
            self._blocks.put(EventBlock(self.stream, block_events, *self._size, start, end, captured_ns))

    async def _run_idle(self) -> None:
        while True:
            await asyncio.sleep(self.idle_flush_s)
            quiet_s = time.monotonic() - self._last_rx
            if quiet_s < self.idle_flush_s or self._size is None or self._slicer.t0_us is None:
                continue
            # The camera is quiet (or gone): stream time runs on with the wall clock so
            # windows close and the readout sees the silence.
            self._now_us += int(quiet_s * 1e6)
            self._idle_advanced = True
            self._last_rx = time.monotonic()
            self._emit_until(self._now_us)

    def _emit_until(self, t_us: int) -> None:
        assert self._size is not None
        for events, start, end in self._slicer.blocks_until(t_us):
            self._blocks.put(EventBlock(self.stream, events, *self._size, start, end, time.monotonic_ns()))

    def _fail(self, error: BaseException) -> None:
        log.error("%s: reader thread failed: %r", self.stream, error)
        self._blocks.put(error)


def _open_camera(dvp: ModuleType, name: str | None) -> Any:
    """A USB camera by serial number or camera name (``Model_SERIAL``), or the first one found."""
    io = dvp.io
    if not hasattr(io, "camera"):
        # dv-processing 1.x: CameraCapture("") opens the first camera (removed in 2.0).
        return io.CameraCapture(name or "")
    found = list(io.camera.discover())
    if not found:
        msg = "no iniVation camera found (plugged in? may this user open it? see dv-processing's udev rules)"
        raise _OpenError(msg)
    if name is None:
        return io.camera.open(found[0])
    for desc in found:
        serial = str(desc.serialNumber)
        if name == serial or name.endswith(f"_{serial}"):  # getCameraName() is "<model>_<serial>"
            return io.camera.open(desc)
    serials = ", ".join(str(d.serialNumber) for d in found)
    msg = f"no camera with serial number or name {name!r}; found: {serials}"
    raise _OpenError(msg)
