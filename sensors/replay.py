"""The replay loop every file source shares (audio, ECG, event camera); each format adds its own small parts.

A replay opens each file in turn (a bad one is skipped or raised, ``sensors.files.BadFiles``),
reads it piece by piece, releases each block when its end is due at ``speed`` times real time
(``speed=None``: as fast as the consumer takes them, yielding to other tasks between blocks),
closes the file and ends its stream with an ``EndOfStream``, and starts over when looping.

Pacing is on the loop clock from the moment the first file opens, so it never drifts: a slow
consumer is caught up with and nothing is dropped. Each ``async for`` starts from the first
file; the counters keep adding up across replays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from sensors.audio.resample import sample_time_us
from sensors.blocks import EndOfStream, InputError, SampleBlock
from sensors.files import BadFiles, LabelLookup, OnError

FileT = TypeVar("FileT")
PieceT = TypeVar("PieceT")
BlockT = TypeVar("BlockT")
ReaderT = TypeVar("ReaderT", bound="SampleReader")
_A = TypeVar("_A")
_T = TypeVar("_T")
SamplePiece = tuple[int, npt.NDArray[np.float32]]
"""A block of samples and the index of its first sample."""
THREAD_BLOCK_MS = 100.0
"""Sample blocks longer than this are read in a worker thread rather than on the event loop."""


@dataclass(frozen=True)
class FileEnd:
    """How one file's replay ended, as its format sees it."""

    t_end_us: int
    """Stream time of the file's end, for its ``EndOfStream``."""
    played: float
    """What the file adds to the pacing clock, in the unit ``FileReplay._due_s`` takes."""
    meta: Mapping[str, str]
    """``EndOfStream.meta`` of the file (``error`` is added when it failed)."""


class FileReplay(BadFiles, Generic[FileT, PieceT, BlockT]):
    """Async iterator of blocks and, after each file, an ``EndOfStream``.

    A format overrides the per-file parts: ``_open`` (one file, ready to read), ``_read`` (its
    next pieces, None at its end), ``_rest`` (pieces still held once reading stopped), ``_due_s``,
    ``_block``, ``_close`` and ``_end``. ``_open`` and ``_read`` run in a worker thread when
    ``_threaded()`` says so; ``_read`` raising ``InputError`` ends the file as failed.
    """

    ends_unsent_failures: ClassVar[bool] = False
    """Whether a file that fails before any of its blocks went out still gets an ``EndOfStream``."""
    _what: ClassVar[str] = "file(s)"
    """What the files are called in errors."""

    def __init__(
        self,
        paths: Sequence[Path],
        expand: Callable[[Sequence[Path]], list[Path]],
        *,
        speed: float | None,
        loop: bool,
        labels: Mapping[str, str] | None,
        on_error: OnError,
    ) -> None:
        BadFiles.__init__(self, on_error)
        if not paths:
            msg = "no input paths given"
            raise InputError(msg)
        self.files = expand(paths)
        self.speed = speed
        self.loop = loop
        self._label = LabelLookup(labels)
        self.files_done = 0
        """Files replayed to their end (each pass of a loop counts again)."""

    @property
    def n_files(self) -> int:
        return len(self.files)

    def __aiter__(self) -> AsyncIterator[BlockT | EndOfStream]:
        return self._replay()

    # --- per-format parts -------------------------------------------------------------

    def _threaded(self) -> bool:
        """Whether opening and reading run in a worker thread rather than on the event loop."""
        return True

    def _open(self, path: Path) -> FileT:
        raise NotImplementedError

    def _read(self, f: FileT) -> Sequence[PieceT] | None:
        raise NotImplementedError

    def _rest(self, f: FileT) -> Sequence[PieceT]:
        return ()

    def _due_s(self, f: FileT, played: float, piece: PieceT) -> float:
        """Stream seconds since the replay started at which ``piece`` is due (its end)."""
        raise NotImplementedError

    def _block(self, f: FileT, stream: str, piece: PieceT, captured_ns: int) -> BlockT:
        raise NotImplementedError

    def _close(self, f: FileT) -> None:
        raise NotImplementedError

    def _end(self, f: FileT) -> FileEnd:
        raise NotImplementedError

    def _label_of(self, path: Path) -> str | None:
        return self._label(path)

    # --- the shared loop ----------------------------------------------------------------

    async def _call(self, fn: Callable[[_A], _T], arg: _A) -> _T:
        if self._threaded():
            return await asyncio.to_thread(fn, arg)
        return fn(arg)

    async def _replay(self) -> AsyncIterator[BlockT | EndOfStream]:
        loop = asyncio.get_running_loop()
        start: float | None = None  # loop time of stream time 0, set when the first file opens
        played = 0.0  # the files before the current one, for pacing
        bad: set[Path] = set()
        while True:
            any_ok = False
            for path in self.files:
                if path in bad:
                    continue
                try:
                    f = await self._call(self._open, path)
                except InputError as exc:
                    bad.add(path)
                    self._skip(exc)
                    continue
                if start is None:
                    start = loop.time()
                stream = str(path)
                sent = 0
                error: InputError | None = None
                try:
                    while True:
                        try:
                            pieces = await self._call(self._read, f)
                        except InputError as exc:
                            error, pieces = exc, None
                        for piece in self._rest(f) if pieces is None else pieces:
                            if self.speed is None:
                                await asyncio.sleep(0)  # let other tasks run between blocks
                            else:
                                delay = start + self._due_s(f, played, piece) / self.speed - loop.time()
                                if delay > 0:
                                    await asyncio.sleep(delay)
                            sent += 1
                            yield self._block(f, stream, piece, time.monotonic_ns())
                        if pieces is None:
                            break
                finally:
                    self._close(f)
                end = self._end(f)
                played += end.played
                meta = dict(end.meta)
                if error is not None:
                    bad.add(path)
                    self._skip(error)
                    if sent == 0 and not self.ends_unsent_failures:
                        continue
                    meta["error"] = str(error)
                else:
                    any_ok = True
                    self.files_done += 1
                yield EndOfStream(stream, end.t_end_us, time.monotonic_ns(), self._label_of(path), meta)
            if not self.loop:
                return
            if not any_ok:
                msg = f"looping replay of {self.n_files} {self._what}: none of them could be played"
                raise InputError(msg)


class FrameCutter:
    """Frames (rows) pushed in chunks of any length, taken out in blocks of ``block_frames``.

    ``n_out`` counts the frames taken so far: the first frame of the next block.
    """

    def __init__(self, block_frames: int, n_channels: int) -> None:
        self.block_frames = block_frames
        self.n_out = 0
        self._pending = np.empty((0, n_channels), dtype=np.float32)
        self._pos = 0

    def short(self) -> bool:
        """Whether less than a whole block is pending."""
        return self._pending.shape[0] - self._pos < self.block_frames

    def push(self, frames: npt.NDArray[np.float32]) -> None:
        rest = self._pending[self._pos :]
        self._pending = np.concatenate((rest, frames)) if rest.shape[0] else frames
        self._pos = 0

    def take(self) -> npt.NDArray[np.float32] | None:
        """The next block (the last may be shorter), None when nothing is pending."""
        if self._pos >= self._pending.shape[0]:
            return None
        block = self._pending[self._pos : self._pos + self.block_frames]
        self._pos += block.shape[0]
        self.n_out += block.shape[0]
        return block


class SampleReader(Protocol):
    """One file of samples, cut into blocks at its output rate."""

    @property
    def rate_hz(self) -> float: ...
    @property
    def cut(self) -> FrameCutter: ...
    def read(self) -> npt.NDArray[np.float32] | None: ...
    def close(self) -> None: ...


class SampleFileReplay(FileReplay[ReaderT, SamplePiece, SampleBlock]):
    """A replay of ``SampleBlock``s, a block per read; stream time is exact (``sample_time_us``)."""

    block_ms: float

    def _threaded(self) -> bool:
        # Small reads are quicker inline than a thread hop; large ones must not stall the loop.
        return self.block_ms > THREAD_BLOCK_MS

    def _read(self, f: ReaderT) -> tuple[SamplePiece] | None:
        first = f.cut.n_out
        data = f.read()
        return None if data is None else ((first, data),)

    def _block(self, f: ReaderT, stream: str, piece: SamplePiece, captured_ns: int) -> SampleBlock:
        first, data = piece
        return SampleBlock(stream, sample_time_us(first, f.rate_hz), f.rate_hz, data, captured_ns, first)
