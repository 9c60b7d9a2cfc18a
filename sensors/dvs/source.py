"""Replay of event-camera recordings as a stream of time-sliced ``EventBlock``s.

Each file is decoded chunk by chunk (constant memory, ``sensors.dvs.reader``), its time
rebased so that its first event is at stream time 0, and cut into blocks of ``block_ms``
of stream time: a block covers ``[k * block, (k + 1) * block)`` whatever the event rate,
so readout windows and pacing are in sensor time. Blocks are released as fast as the
consumer takes them (``speed=None``) or when their end is due at ``speed`` times real
time.

Files whose timestamps are not monotonic are repaired, never dropped, and counted (see
``sensors.dvs.slicer``). Bad files follow ``on_error`` like the audio file source: ``raise`` ends the replay with the
``InputError``; ``skip`` logs it, counts it and goes on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import EventBlock, InputError
from sensors.dvs.reader import EventReader, open_events
from sensors.dvs.slicer import EventSlicer
from sensors.files import OnError, expand_paths
from sensors.replay import FileEnd, FileReplay

DVS_SUFFIXES = (".raw", ".dat", ".bin", ".aedat", ".aedat4", ".npy", ".npz")


@dataclass
class _EventFile:
    """One open recording and the slicer that cuts its events into blocks."""

    reader: EventReader
    slicer: EventSlicer
    width: int
    height: int
    chunks: Iterator[npt.NDArray[np.void]]


Slice = tuple[npt.NDArray[np.void], int, int]
"""A block's events, start and end (stream time, us)."""


class EventFileSource(FileReplay[_EventFile, Slice, EventBlock]):
    """Async iterator of ``EventBlock``s and, after each file, an ``EndOfStream``."""

    # A file that fails at once still ends its stream (with meta["error"]), as it always has.
    ends_unsent_failures = True

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        block_ms: float = 20.0,
        speed: float | None = 1.0,
        loop: bool = False,
        sensor_size: tuple[int, int] | None = None,
        fmt: str | None = None,
        labels: Mapping[str, str] | None = None,
        on_error: OnError = "raise",
        check_sensor: Callable[[Path, int, int], None] | None = None,
    ) -> None:
        if not (math.isfinite(block_ms) and block_ms > 0):
            msg = f"block_ms must be positive, got {block_ms}"
            raise ValueError(msg)
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            msg = f"speed must be positive or None (unpaced), got {speed}"
            raise ValueError(msg)
        expand = functools.partial(expand_paths, suffixes=DVS_SUFFIXES)
        super().__init__(paths, expand, speed=speed, loop=loop, labels=labels, on_error=on_error)
        self.block_us = max(1, round(block_ms * 1000))
        self.sensor_size = sensor_size
        self.fmt = fmt
        self.check_sensor = check_sensor
        """Called with each file's sensor size when it opens; raises InputError if the model cannot take it."""
        self.events_read = 0
        self.reordered_events = 0
        self.late_events = 0

    def drops(self) -> dict[str, int]:
        """Nothing is dropped; repaired events are reported with the drops for visibility."""
        return {"reordered_events": self.reordered_events, "late_events": self.late_events}

    def _open(self, path: Path) -> _EventFile:
        reader = open_events(path, sensor_size=self.sensor_size, fmt=self.fmt)
        info = reader.info
        if info.width is None or info.height is None:
            reader.close()
            msg = f"{path}: the {info.format} file does not say its sensor size; set the source's sensor_size"
            raise InputError(msg)
        if self.check_sensor is not None:
            try:
                self.check_sensor(path, info.width, info.height)
            except InputError:
                reader.close()
                raise
        return _EventFile(reader, EventSlicer(self.block_us), int(info.width), int(info.height), iter(reader))

    def _read(self, f: _EventFile) -> list[Slice] | None:
        chunk = next(f.chunks, None)
        if chunk is None:
            return None
        self.events_read += len(chunk)
        f.slicer.add(chunk)
        return list(f.slicer.blocks(False))

    def _rest(self, f: _EventFile) -> list[Slice]:
        return list(f.slicer.blocks(True))

    def _due_s(self, f: _EventFile, played: float, piece: Slice) -> float:
        return (played + piece[2]) / 1e6

    def _block(self, f: _EventFile, stream: str, piece: Slice, captured_ns: int) -> EventBlock:
        events, t0, t1 = piece
        return EventBlock(stream, events, f.width, f.height, t0, t1, captured_ns)

    def _close(self, f: _EventFile) -> None:
        f.reader.close()
        self.reordered_events += f.slicer.reordered
        self.late_events += f.slicer.late

    def _end(self, f: _EventFile) -> FileEnd:
        return FileEnd(f.slicer.sent_until_us, f.slicer.sent_until_us, {})
