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

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from sensors.blocks import EndOfStream, EventBlock, InputError
from sensors.dvs.reader import EventReader, open_events
from sensors.dvs.slicer import EventSlicer
from sensors.files import BadFiles, LabelLookup, OnError, expand_paths

DVS_SUFFIXES = (".raw", ".dat", ".bin", ".aedat", ".aedat4", ".npy", ".npz")


class EventFileSource(BadFiles):
    """Async iterator of ``EventBlock``s and, after each file, an ``EndOfStream``."""

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
        BadFiles.__init__(self, on_error)
        if not paths:
            msg = "no input paths given"
            raise InputError(msg)
        self.files = expand_paths(paths, DVS_SUFFIXES)
        self.block_us = max(1, round(block_ms * 1000))
        self.speed = speed
        self.loop = loop
        self.sensor_size = sensor_size
        self.fmt = fmt
        self.check_sensor = check_sensor
        """Called with each file's sensor size when it opens; raises InputError if the model cannot take it."""
        self._label = LabelLookup(labels)
        self.files_done = 0
        self.events_read = 0
        self.reordered_events = 0
        self.late_events = 0

    @property
    def n_files(self) -> int:
        return len(self.files)

    def drops(self) -> dict[str, int]:
        """Nothing is dropped; repaired events are reported with the drops for visibility."""
        return {"reordered_events": self.reordered_events, "late_events": self.late_events}

    def __aiter__(self) -> AsyncIterator[EventBlock | EndOfStream]:
        return self._replay()

    def _open(self, path: Path) -> EventReader:
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
        return reader

    async def _replay(self) -> AsyncIterator[EventBlock | EndOfStream]:
        loop = asyncio.get_running_loop()
        start: float | None = None
        played_us = 0
        bad: set[Path] = set()
        while True:
            any_ok = False
            for path in self.files:
                if path in bad:
                    continue
                try:
                    reader = await asyncio.to_thread(self._open, path)
                except InputError as exc:
                    bad.add(path)
                    self._skip(exc)
                    continue
                if start is None:
                    start = loop.time()
                slicer = EventSlicer(self.block_us)
                stream = str(path)
                width, height = int(reader.info.width or 0), int(reader.info.height or 0)
                error: InputError | None = None
                chunks = iter(reader)
                try:
                    while True:
                        try:
                            chunk = await asyncio.to_thread(next, chunks, None)
                        except InputError as exc:
                            error = exc
                            chunk = None
                        final = chunk is None
                        if chunk is not None:
                            self.events_read += len(chunk)
                            slicer.add(chunk)
                        for events, t0, t1 in slicer.blocks(final):
                            if self.speed is None:
                                await asyncio.sleep(0)
                            else:
                                delay = start + (played_us + t1) / 1e6 / self.speed - loop.time()
                                if delay > 0:
                                    await asyncio.sleep(delay)
                            yield EventBlock(stream, events, width, height, t0, t1, time.monotonic_ns())
                        if final:
                            break
                finally:
                    reader.close()
                    self.reordered_events += slicer.reordered
                    self.late_events += slicer.late
                played_us += slicer.sent_until_us
                meta: dict[str, str] = {}
                if error is not None:
                    bad.add(path)
                    self._skip(error)
                    meta = {"error": str(error)}
                else:
                    any_ok = True
                    self.files_done += 1
                yield EndOfStream(stream, slicer.sent_until_us, time.monotonic_ns(), self._label(path), meta)
            if not self.loop:
                return
            if not any_ok:
                msg = f"looping replay of {self.n_files} file(s): none of them could be played"
                raise InputError(msg)
