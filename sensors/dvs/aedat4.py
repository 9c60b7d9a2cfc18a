"""iniVation AEDAT 4.0 files, decoded packet by packet with the ``aedat`` package (LZ4/zstd FlatBuffers).

Only the first event stream is read; IMU, trigger and frame packets (and further event streams) are counted
in ``skipped``. Timestamps stay absolute Unix µs as stored. The decoder does not expose its byte position,
so errors name the packet instead of a byte offset, and ``bytes_read`` becomes the file size at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aedat
import numpy as np

from sensors.blocks import EVENT_DTYPE
from sensors.dvs.eventfile import EventFileInfo, EventFormatError, EventReader, Events

_INT64_MAX = np.iinfo(np.int64).max


def _decoder_failure(exc: BaseException) -> bool:
    """True for errors of the Rust decoder: Python exceptions and pyo3's PanicException (a BaseException)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


MAGIC = b"#!AER-DAT4.0\r\n"
_MAX_IO_HEADER = 1 << 24


def check_io_header(path: Path) -> None:
    """Check the IOHeader FlatBuffer's bounds and that its description is UTF-8, before the Rust decoder.

    aedat 2.3 aborts the whole process (a panic inside a panic, not an exception) when the description
    is not valid UTF-8, so a damaged header has to be caught here.
    """
    with path.open("rb") as f:
        head = f.read(len(MAGIC) + 4)
        size = int.from_bytes(head[len(MAGIC) :], "little", signed=True) if len(head) == len(MAGIC) + 4 else -1
        if head[: len(MAGIC)] != MAGIC or not 8 <= size <= _MAX_IO_HEADER:
            msg = f"AEDAT 4.0 starts with {MAGIC!r} and a 4-byte IOHeader size of 8..{_MAX_IO_HEADER}"
            raise EventFormatError(path, 0, f"not a valid AEDAT 4.0 header (expected: {msg})")
        block = f.read(size)
    base = len(MAGIC) + 4
    problem = _io_header_problem(block, size)
    if problem:
        raise EventFormatError(path, base, f"AEDAT 4.0 IOHeader {problem}")


def _io_header_problem(block: bytes, size: int) -> str | None:
    """Why the FlatBuffer in ``block`` is not a readable IOHeader, or None."""

    def u32(at: int) -> int:
        return int.from_bytes(block[at : at + 4], "little") if 0 <= at <= len(block) - 4 else -1

    if len(block) != size or block[4:8] != b"IOHE":
        return f"is cut short or lacks the IOHE identifier (expected {size} bytes)"
    table = u32(0)
    vtable = table - int.from_bytes(block[table : table + 4], "little", signed=True) if 0 <= table < size - 4 else -1
    if not 0 <= vtable <= size - 4:
        return "has its table outside the header"
    vtable_size = int.from_bytes(block[vtable : vtable + 2], "little")
    if vtable_size < 4 or vtable + vtable_size > size:
        return "has a vtable outside the header"
    if vtable_size < 10:  # no description field (field 2)
        return None
    field = int.from_bytes(block[vtable + 8 : vtable + 10], "little")
    if field == 0:
        return None
    start = table + field + u32(table + field)
    length = u32(start)
    if u32(table + field) < 0 or length < 0 or start + 4 + length > size:
        return "description string lies outside the header"
    try:
        block[start + 4 : start + 4 + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"description is not UTF-8 ({exc.reason} at byte {exc.start})"
    return None


class Aedat4Reader(EventReader):
    def __init__(self, path: Path, *, chunk_events: int, sensor_size: tuple[int, int] | None) -> None:
        check_io_header(path)
        try:
            self._decoder: Any = aedat.Decoder(str(path))
            streams: dict[int, dict[str, Any]] = self._decoder.id_to_stream()
        except BaseException as exc:
            if not _decoder_failure(exc):
                raise
            msg = f"AEDAT 4.0 header could not be decoded ({type(exc).__name__}: {exc})"
            raise EventFormatError(path, 0, msg) from exc
        event_ids = sorted(sid for sid, desc in streams.items() if desc.get("type") == "events")
        self._stream_id = event_ids[0] if event_ids else None
        desc = streams.get(self._stream_id, {}) if self._stream_id is not None else {}
        size = sensor_size or (
            (int(desc["width"]), int(desc["height"])) if "width" in desc and "height" in desc else None
        )
        width, height = size or (None, None)
        header = {f"stream {sid}": " ".join(f"{k}={v}" for k, v in sorted(d.items())) for sid, d in streams.items()}
        super().__init__(EventFileInfo(path, "aedat4", width, height, header), chunk_events)
        self.skipped = {"imu_samples": 0, "triggers": 0, "frames": 0, "other_event_streams": 0}
        self._bytes_read = 0
        self._packets = 0
        self._pending: Events | None = None
        self._pending_pos = 0

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    def _release(self) -> None:
        self._decoder = None  # the Rust decoder closes its file when dropped
        self._pending = None

    def _next_packet(self) -> dict[str, Any] | None:
        try:
            packet: dict[str, Any] = next(self._decoder)
        except StopIteration:
            return None
        except BaseException as exc:
            if not _decoder_failure(exc):
                raise
            msg = f"AEDAT 4.0 packet {self._packets} could not be decoded ({type(exc).__name__}: {exc})"
            raise EventFormatError(self.info.path, None, msg) from exc
        self._packets += 1
        return packet

    def _next_events(self) -> Events | None:
        """Event array of the next packet of our stream, counting everything else; None at the end."""
        while (packet := self._next_packet()) is not None:
            if "events" in packet:
                if packet["stream_id"] == self._stream_id:
                    return self._checked(packet["events"])
                self.skipped["other_event_streams"] += len(packet["events"])
            elif "imus" in packet:
                self.skipped["imu_samples"] += len(packet["imus"])
            elif "triggers" in packet:
                self.skipped["triggers"] += len(packet["triggers"])
            elif "frame" in packet:
                self.skipped["frames"] += 1
        self._bytes_read = self.info.path.stat().st_size
        return None

    def _checked(self, events: Events) -> Events:
        if events.shape[0] == 0:
            return events
        where = f"AEDAT 4.0 packet {self._packets - 1}"
        problems = []
        if int(events["t"].max()) > _INT64_MAX:
            problems.append("timestamp above 2**63-1")
        for axis, bound in (("x", self.info.width), ("y", self.info.height)):
            worst = int(events[axis].max())
            if bound is not None and worst >= bound:
                problems.append(f"event {axis}={worst} outside the {self.info.width}x{self.info.height} sensor")
        if problems:
            msg = f"{where}: {'; '.join(problems)}; pass sensor_size=(width, height) if the stream's size is wrong"
            raise EventFormatError(self.info.path, None, msg)
        return events

    def _read_chunk(self) -> Events | None:
        out = np.empty(self._chunk_events, EVENT_DTYPE)
        n = 0
        while n < out.shape[0]:
            if self._pending is None or self._pending_pos >= self._pending.shape[0]:
                self._pending, self._pending_pos = self._next_events(), 0
                if self._pending is None:
                    break
            take = min(out.shape[0] - n, self._pending.shape[0] - self._pending_pos)
            src = self._pending[self._pending_pos : self._pending_pos + take]
            dst = out[n : n + take]
            names = src.dtype.names or ()
            dst["t"] = src["t"]
            dst["x"] = src["x"]
            dst["y"] = src["y"]
            dst["p"] = src[names[3]]  # the polarity field is named "on" (title "p") by the aedat package
            self._pending_pos += take
            n += take
        if n == 0:
            return None
        return out[:n] if 2 * n >= out.shape[0] else out[:n].copy()
