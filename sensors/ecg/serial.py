"""ECG samples from a serial port (pyserial): a microcontroller with an ADC front end (AD8232, ...).

Two protocols; the sampling rate and channel count come from the configuration, the device
sends only samples. Values become millivolts as ``(value - offset) * scale_mv``.

``text``: one line per sample time, ``channels`` numbers separated by commas and/or spaces,
ended by ``\\n`` or ``\\r\\n`` (e.g. ``Serial.println(analogRead(A0))`` on an Arduino). The
device has no clock of its own in this protocol: stream time is sample count / rate. A line
that is not exactly ``channels`` finite numbers is counted in ``malformed_lines`` and
skipped (a line cut when the port opened mid-line may still parse: reset the device or
discard the first sample if that matters).

``int16``: binary frames, little-endian: sync word ``0xA5 0x5A``, u16 sequence number (+1
per frame, wraps), then ``channels`` int16 samples. A frame is accepted only when the next
frame's sync word follows it, so a lost or extra byte never yields a shifted frame: the
receiver counts a bad frame, skips to the next sync word (``skipped_bytes``) and locks
again. The last frame is accepted when the line goes quiet. Frames missing from the
sequence (``lost_frames``) are filled with the last value and counted in ``lost_samples``;
duplicate or late frames are counted and dropped; a sequence number far behind is a device
restart (a new stream).

Either protocol: a gap of more than ``max_gap_ms`` (missing frames, or silence on the line)
ends the stream with an ``EndOfStream``; the next sample starts a new one at stream time 0.

pyserial blocks, so a thread reads with a short timeout, parses, re-blocks and hands blocks
to the event loop through a ``DropOldestQueue`` (overflow counted in ``dropped_blocks``).
A port that cannot be opened, or that fails while reading (device unplugged), raises
``InputError`` naming the port; ``close()`` stops the thread and closes the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import serial

from sensors.blocks import EndOfStream, InputError, SampleBlock
from sensors.datagram import Seq, SequenceTracker
from sensors.ecg.live_blocks import LiveBlocker
from sensors.queues import DropOldestQueue

log = logging.getLogger(__name__)

Protocol = Literal["text", "int16"]
SYNC = b"\xa5\x5a"
MAX_LINE_BYTES = 4096
"""A 'line' longer than this is garbage (wrong protocol or baud rate): dropped and counted."""
Item = SampleBlock | EndOfStream


@dataclass(frozen=True, slots=True)
class _Failure:
    error: Exception


class TextParser:
    """Bytes -> ``(n, channels)`` float64 values, one row per well-formed line."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.malformed_lines = 0
        self._buf = b""

    def feed(self, data: bytes) -> npt.NDArray[np.float64]:
        *lines, self._buf = (self._buf + data).split(b"\n")
        if len(self._buf) > MAX_LINE_BYTES:
            self.malformed_lines += 1
            self._buf = b""
        rows = [row for line in lines if (row := self._parse(line)) is not None]
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.channels)

    def _parse(self, line: bytes) -> list[float] | None:
        try:
            row = [float(v) for v in line.replace(b",", b" ").split()]
        except ValueError:
            row = []
        if len(row) != self.channels or not all(math.isfinite(v) for v in row):
            self.malformed_lines += 1
            return None
        return row


class FrameParser:
    """Bytes -> ``(sequence numbers, (n, channels) int16 samples)`` of the frames confirmed so far."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.frame_bytes = 4 + 2 * channels
        self._frame = struct.Struct(f"<2sH{channels}h")
        self.bad_frames = 0
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._locked = False

    def feed(self, data: bytes) -> tuple[list[int], list[tuple[int, ...]]]:
        self._buf += data
        return self._scan(final=False)

    def drain(self) -> tuple[list[int], list[tuple[int, ...]]]:
        """The line is quiet: accept a last whole frame without waiting for the next sync word."""
        return self._scan(final=True)

    def _scan(self, *, final: bool) -> tuple[list[int], list[tuple[int, ...]]]:
        buf, size = self._buf, self.frame_bytes
        seqs: list[int] = []
        rows: list[tuple[int, ...]] = []
        pos = 0
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # Keep a trailing 0xA5: it may be the first half of the next sync word.
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self._skip(len(buf) - keep - pos)
                pos = len(buf) - keep
                break
            self._skip(i - pos)
            end = i + size
            last = final and len(buf) == end  # the line went quiet after a whole frame
            if len(buf) < end + 2 and not last:
                pos = i
                break  # wait for the next sync word to confirm this frame
            if last or buf[end : end + 2] == SYNC:
                _, seq, *values = self._frame.unpack_from(buf, i)
                seqs.append(seq)
                rows.append(tuple(values))
                self._locked = True
                pos = end
            else:
                self._lose_lock()
                self.skipped_bytes += 1  # this false start; _skip counts the rest up to the next sync
                pos = i + 1
        del buf[:pos]
        return seqs, rows

    def _skip(self, n: int) -> None:
        if n > 0:
            self.skipped_bytes += n
            self._lose_lock()

    def _lose_lock(self) -> None:
        if self._locked:
            self.bad_frames += 1  # one per loss of lock: skipped bytes say how much went
            self._locked = False


class SerialEcgSource:
    """Async iterator of ``SampleBlock`` / ``EndOfStream`` read from a serial port (a live source)."""

    def __init__(
        self,
        port: str,
        *,
        baud: int = 115_200,
        protocol: Protocol = "text",
        channels: int = 1,
        rate_hz: float,
        lead: int | None = None,
        scale_mv: float = 1.0,
        offset: float = 0.0,
        block_ms: float = 100.0,
        queue_blocks: int = 64,
        max_gap_ms: float = 2000.0,
        model_rate_hz: float | None = None,
        read_timeout_s: float = 0.05,
    ) -> None:
        if protocol not in ("text", "int16"):
            msg = f"serial port {port}: protocol must be 'text' or 'int16', got {protocol!r}"
            raise ValueError(msg)
        if not (rate_hz > 0 and max_gap_ms > 0 and math.isfinite(scale_mv)):
            msg = f"serial port {port}: rate_hz, max_gap_ms must be positive and scale_mv finite"
            raise ValueError(msg)
        self.port = port
        self.baud = baud
        self.protocol = protocol
        self.channels = channels
        self.rate_hz = float(rate_hz)
        self.scale_mv = scale_mv
        self.offset = offset
        self.max_gap_samples = max_gap_ms * self.rate_hz / 1000
        self.max_gap_s = max_gap_ms / 1000
        self.read_timeout_s = read_timeout_s
        self.stream = f"serial://{port}"
        self.blocker = LiveBlocker(
            self.stream, self.rate_hz, channels, lead=lead, block_ms=block_ms, out_rate_hz=model_rate_hz
        )
        self.text = TextParser(channels)
        self.frames = FrameParser(channels)
        self.tracker = SequenceTracker(bits=16, window=256)
        self.counts = {"lost_samples": 0, "long_gaps": 0}
        self._queue: DropOldestQueue[Item | _Failure] = DropOldestQueue(queue_blocks)
        self._serial: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    async def start(self) -> None:
        """Open the port and start reading; ``InputError`` naming the port if it cannot be opened."""
        if self._serial is not None:
            return
        try:
            self._serial = await asyncio.to_thread(
                serial.Serial, self.port, self.baud, timeout=self.read_timeout_s, exclusive=True
            )
            self._serial.reset_input_buffer()  # stale bytes from before we listened
        except (serial.SerialException, OSError, ValueError) as exc:
            msg = f"serial port {self.port}: cannot open: {exc}"
            raise InputError(msg) from exc
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, args=(loop,), name=f"{self.stream}-reader", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the reader thread and close the port; the iterator yields what is queued and ends."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, 10 * self.read_timeout_s))
        if self._serial is not None:
            with contextlib.suppress(Exception):  # the device may be gone already
                self._serial.close()
        if self._thread is None:
            self._queue.close()

    def drops(self) -> dict[str, int]:
        t = self.tracker.counts
        return {
            "malformed_lines": self.text.malformed_lines,
            "bad_frames": self.frames.bad_frames,
            "skipped_bytes": self.frames.skipped_bytes,
            "lost_frames": t.lost,
            "duplicate_frames": t.duplicates + t.late,
            "restarts": t.restarts,
            "lost_samples": self.counts["lost_samples"],
            "long_gaps": self.counts["long_gaps"],
            "dropped_blocks": self._queue.dropped_blocks,
        }

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Item]:
        await self.start()
        while (item := await self._queue.get()) is not None:
            if isinstance(item, _Failure):
                raise item.error
            yield item

    # -- reader thread -----------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        items: list[Item] = []
        post = _poster(loop, self._queue)
        last_rx = time.monotonic()
        try:
            while not self._stop.is_set():
                data = self._serial.read(max(1, self._serial.in_waiting))
                now_ns = time.monotonic_ns()
                if data:
                    last_rx = time.monotonic()
                    items = self._on_data(data, now_ns)
                else:
                    items = self._on_idle(now_ns, time.monotonic() - last_rx)
                if items:
                    post(items)
        except (serial.SerialException, OSError) as exc:
            if not self._stop.is_set():
                msg = f"serial port {self.port}: read failed (device unplugged?): {exc}"
                log.error("%s", msg)
                post([*self.blocker.end(time.monotonic_ns(), {"end": "error"}), _Failure(InputError(msg))])
        except Exception as exc:  # a bug must end the source loudly, not leave the iterator waiting
            log.exception("%s: reader failed", self.stream)
            post([_Failure(exc)])
        finally:
            post(self.blocker.end(time.monotonic_ns(), {"end": "closed"}))
            post(None)

    def _on_data(self, data: bytes, now_ns: int) -> list[Item]:
        if self.protocol == "text":
            return self._samples(self.text.feed(data), now_ns)
        return self._frames(*self.frames.feed(data), now_ns)

    def _on_idle(self, now_ns: int, idle_s: float) -> list[Item]:
        out: list[Item] = []
        if self.protocol == "int16":
            out += self._frames(*self.frames.drain(), now_ns)
        if self.blocker.active and idle_s > self.max_gap_s:
            self.tracker.reset()
            out += self.blocker.end(now_ns, {"end": "silence"})
        elif self.blocker.active:
            out += self.blocker.flush(now_ns)
        return out

    def _samples(self, values: npt.NDArray[Any], now_ns: int) -> list[Item]:
        mv = ((values - self.offset) * self.scale_mv).astype(np.float32)
        return list(self.blocker.push(mv, now_ns))

    def _frames(self, seqs: list[int], rows: list[tuple[int, ...]], now_ns: int) -> list[Item]:
        out: list[Item] = []
        run: list[tuple[int, ...]] = []  # consecutive frames, pushed together
        for seq, row in zip(seqs, rows, strict=True):
            verdict = self.tracker.classify(seq)
            if not verdict.kind.accepted:
                continue
            if verdict.lost or verdict.kind is Seq.RESTART:
                out += self._samples(np.array(run, dtype=np.float64).reshape(-1, self.channels), now_ns)
                run = []
            if verdict.kind is Seq.RESTART:
                out += self.blocker.end(now_ns, {"end": "restart"})
            elif verdict.lost > self.max_gap_samples:
                self.counts["long_gaps"] += 1
                out += self.blocker.end(now_ns, {"end": "gap"})
            elif verdict.lost:
                self.counts["lost_samples"] += verdict.lost
                out += self.blocker.fill(verdict.lost, now_ns)
            run.append(row)
        if run:
            out += self._samples(np.array(run, dtype=np.float64), now_ns)
        return out


def _poster(loop: asyncio.AbstractEventLoop, queue: DropOldestQueue[Item | _Failure]) -> Callable[[Any], None]:
    """Hand items to the loop thread in order; ``None`` closes the queue."""

    def deliver(items: list[Item | _Failure] | None) -> None:
        if items is None:
            queue.close()
            return
        for item in items:
            queue.put(item)

    def post(items: list[Any] | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(deliver, items)

    return post
