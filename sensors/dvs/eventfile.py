"""Shared machinery of the DVS event-file readers: error type, file info, header lines, buffered decode loop.

A binary reader owns one fixed-size byte buffer that it refills with ``readinto`` and hands to a numba kernel
together with a fresh output chunk and a small int64 state vector. The kernel decodes whole records only and
returns how far it got and why it stopped (input used up, chunk full, or an error code), so a record split
across two buffer fills and the decoder state (time base, wraps, EVT3 address) carry over unchanged. Memory
is the buffer plus one chunk, whatever the file size.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from sensors.blocks import EVENT_DTYPE, InputError

DEFAULT_CHUNK_EVENTS = 1 << 18
"""Default events per chunk: 3.4 MB stays in cache for the decoder and the consumer (see decode_bench)."""
DEFAULT_BUFFER_BYTES = 1 << 20
"""Read buffer: 1 MiB makes syscalls rare and keeps the bytes just read in L2 for the kernel."""
MIN_BUFFER_BYTES = 64
"""Must hold the largest fixed-size record (the 28-byte AEDAT 3.1 packet header) plus a split remainder."""
NO_LIMIT = 1 << 16
"""Coordinate bound used when the sensor size is unknown: every x/y fits the uint16 fields."""

MAX_HEADER_BYTES = 16 << 20
MAX_HEADER_LINE = 1 << 20

# Kernel return codes shared by every format; formats add their own negative codes below ERR_Y.
NEED_INPUT = 0
OUT_FULL = 1
ERR_X = -1
ERR_Y = -2

Events = npt.NDArray[np.void]


class EventFormatError(InputError):
    """A DVS file that cannot be decoded: names the file, the byte offset and what was expected."""

    def __init__(self, path: Path | str, offset: int | None, problem: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.problem = problem
        where = f"byte {offset}: " if offset is not None else ""
        super().__init__(f"{self.path}: {where}{problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.offset, self.problem))


@dataclass(frozen=True)
class EventFileInfo:
    """What a reader found out about a file before decoding its events."""

    path: Path
    format: str
    """One of "evt2", "evt3", "dat", "nmnist_bin", "aedat2", "aedat31", "aedat4", "npy"."""
    width: int | None
    height: int | None
    header: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HeaderLines:
    """The text lines at the top of a file that start with one marker byte."""

    lines: list[str]
    data_offset: int
    """File offset of the first byte after the header."""
    at_eof: bool
    """True when the file ended inside (or right after) the header."""


def read_header_lines(path: Path, marker: bytes, *, end_line: bytes | None = None) -> HeaderLines:
    """Read lines starting with ``marker``; stop at the first other line, or after ``end_line`` if given.

    Lines are decoded as latin-1 (never fails) without their line ending. Size is bounded so that a garbage
    file that happens to start with the marker cannot make us read gigabytes looking for a newline.
    """
    lines: list[str] = []
    total = 0
    with path.open("rb") as f:
        while f.peek(1)[:1] == marker:
            line = f.readline(MAX_HEADER_LINE)
            total += len(line)
            if len(line) == MAX_HEADER_LINE and not line.endswith(b"\n"):
                msg = f"header line longer than {MAX_HEADER_LINE} bytes (expected text lines starting with {marker!r})"
                raise EventFormatError(path, total - len(line), msg)
            if total > MAX_HEADER_BYTES:
                msg = f"header longer than {MAX_HEADER_BYTES} bytes (expected the binary data to start sooner)"
                raise EventFormatError(path, total - len(line), msg)
            stripped = line.rstrip(b"\r\n")
            lines.append(stripped.decode("latin-1"))
            if end_line is not None and stripped == end_line:
                break
        return HeaderLines(lines, f.tell(), f.peek(1) == b"")


def check_sensor_size(path: Path, sensor_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """Validate a caller's ``sensor_size`` override (width, height)."""
    if sensor_size is None:
        return None
    width, height = (int(v) for v in sensor_size)
    if not (0 < width <= NO_LIMIT and 0 < height <= NO_LIMIT):
        msg = f"sensor_size {sensor_size} must be (width, height) with 1..{NO_LIMIT} pixels each"
        raise InputError(f"{path}: {msg}")
    return width, height


def range_problem(status: int, aux: int, width: int | None, height: int | None) -> str:
    """Message for the shared ERR_X / ERR_Y kernel codes."""
    axis, bound = ("x", width) if status == ERR_X else ("y", height)
    return (
        f"event {axis}={aux} is outside the {width}x{height} sensor (expected {axis} < {bound}); "
        "pass sensor_size=(width, height) if the header's size is wrong"
    )


class EventReader(abc.ABC):
    """Iterator of ``EVENT_DTYPE`` chunks of one file, in file order, timestamps in file time (µs).

    Every chunk is a fresh array (never reused by the reader), holds at least one and at most
    ``chunk_events`` events. Timestamps are unwrapped to int64 but neither sorted nor rebased.
    """

    info: EventFileInfo
    events_read: int
    skipped: dict[str, int]
    """Records that carry no CD event (triggers, APS/IMU samples, ...) or came before the time base, by kind."""

    def __init__(self, info: EventFileInfo, chunk_events: int) -> None:
        if chunk_events < 16:
            msg = f"{info.path}: chunk_events must be at least 16, got {chunk_events}"
            raise InputError(msg)
        self.info = info
        self.events_read = 0
        self.skipped = {}
        self._chunk_events = int(chunk_events)
        self._done = False

    @property
    @abc.abstractmethod
    def bytes_read(self) -> int:
        """Bytes of the file consumed so far (header included)."""

    @abc.abstractmethod
    def _read_chunk(self) -> Events | None:
        """The next chunk, or None at the end of the file."""

    def _release(self) -> None:  # noqa: B027 - optional hook, most readers hold nothing but a file
        """Free file handles; called once by close()."""

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._release()

    def __iter__(self) -> Iterator[Events]:
        return self

    def __next__(self) -> Events:
        if self._done:
            raise StopIteration
        try:
            chunk = self._read_chunk()
        except BaseException:
            self.close()
            raise
        if chunk is None:
            self.close()
            raise StopIteration
        self.events_read += int(chunk.shape[0])
        return chunk

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Kernel(Protocol):
    """numba decoder: ``(buf, pos, end, out, n, state, width, height) -> (pos, n, status, aux)``."""

    def __call__(
        self,
        buf: npt.NDArray[np.uint8],
        pos: int,
        end: int,
        out: Events,
        n: int,
        state: npt.NDArray[np.int64],
        width: int,
        height: int,
    ) -> tuple[int, int, int, int]: ...


class BinaryEventReader(EventReader):
    """Drives a numba kernel over a file with one reused read buffer (see the module docstring)."""

    record_bytes: int = 1
    """Size of the smallest whole record, for the truncation message."""
    record_name: str = "record"

    def __init__(
        self,
        info: EventFileInfo,
        *,
        data_offset: int,
        kernel: Kernel,
        state: npt.NDArray[np.int64],
        skipped_slots: Mapping[str, int],
        chunk_events: int,
        buffer_bytes: int,
    ) -> None:
        super().__init__(info, chunk_events)
        if buffer_bytes < MIN_BUFFER_BYTES:
            msg = f"{info.path}: buffer_bytes must be at least {MIN_BUFFER_BYTES}, got {buffer_bytes}"
            raise InputError(msg)
        self._kernel = kernel
        self._state = state
        self._skipped_slots = dict(skipped_slots)
        self.skipped = dict.fromkeys(self._skipped_slots, 0)
        self._width = info.width if info.width is not None else NO_LIMIT
        self._height = info.height if info.height is not None else NO_LIMIT
        self._buf = np.empty(int(buffer_bytes), np.uint8)
        self._view = self._buf.data  # memoryview: readinto fills the array in place
        self._base = data_offset  # file offset of self._buf[0]
        self._pos = 0
        self._end = 0
        self._eof = False
        self._file = info.path.open("rb", buffering=0)
        self._file.seek(data_offset)

    @property
    def bytes_read(self) -> int:
        return self._base + self._pos

    def _release(self) -> None:
        self._file.close()

    def _refill(self) -> bool:
        """Move the unconsumed tail to the front and read more; False when nothing more could be read."""
        left = self._end - self._pos
        if left:
            self._buf[:left] = self._buf[self._pos : self._end]
        self._base += self._pos
        self._pos, self._end = 0, left
        if self._eof:
            return False
        got = self._file.readinto(self._view[left:])
        if not got:
            self._eof = True
            return False
        self._end = left + got
        return True

    def _read_chunk(self) -> Events | None:
        out = np.empty(self._chunk_events, EVENT_DTYPE)
        n = 0
        while True:
            pos, n, status, aux = self._kernel(
                self._buf, self._pos, self._end, out, n, self._state, self._width, self._height
            )
            self._pos = pos
            if status == OUT_FULL:
                break
            if status != NEED_INPUT:
                raise EventFormatError(self.info.path, self.bytes_read, self._problem(status, aux))
            if not self._refill():
                self._check_end(self._end - self._pos)
                break
        for name, slot in self._skipped_slots.items():
            self.skipped[name] = int(self._state[slot])
        if n == 0:
            return None
        # A short last chunk is copied so that it does not pin the whole chunk-sized allocation.
        return out[:n] if 2 * n >= out.shape[0] else out[:n].copy()

    def _check_end(self, left: int) -> None:
        """Called at end of file with the bytes no kernel call could consume."""
        if left:
            msg = f"file ends inside a {self.record_name} ({left} of {self.record_bytes} bytes present)"
            raise EventFormatError(self.info.path, self.bytes_read, msg)

    def _problem(self, status: int, aux: int) -> str:
        """Text for a kernel error code; formats override for their own codes."""
        if status in (ERR_X, ERR_Y):
            return range_problem(status, aux, self.info.width, self.info.height)
        return f"decoder error {status} (value {aux})"
