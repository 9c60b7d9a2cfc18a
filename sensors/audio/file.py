"""Replay of audio files (WAV, FLAC, OGG) as a stream of blocks, paced or as fast as possible.

Files are read block by block (constant memory), mixed or reduced to one channel,
resampled to the model's rate when they differ, and checked: an unreadable, corrupt,
truncated or empty file, a NaN/Inf sample or a missing channel is an ``InputError``
naming the file. Replay never drops a block: it is lossless and deterministic.

Bad files in a multi-file replay: with ``on_error="raise"`` (the default) the first one
ends the replay with its ``InputError``. With ``on_error="skip"`` it is logged, appended
to ``errors`` and counted in ``skipped_files``, and the replay goes on with the next file.
A file that fails after some of its blocks went out still gets its ``EndOfStream`` (with
``meta["error"]``) so that later stages reset; in a looping replay a bad file is not
tried again. A missing path or a folder without audio files is a configuration mistake
and raises from the constructor in either mode.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf

from sensors.audio.resample import StreamingResampler, sample_time_us
from sensors.blocks import InputError
from sensors.files import OnError
from sensors.files import expand_paths as expand_files
from sensors.replay import FileEnd, FrameCutter, SampleFileReplay, SamplePiece

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
READ_CHUNK_FRAMES = 4096
"""Frames per soundfile read (at least one block): a few tens of kB at most."""

Channel = int | Literal["mix"]


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders replaced by their audio files in sorted order."""
    return expand_files(paths, AUDIO_SUFFIXES)


def check_wav_length(path: Path) -> None:
    """Raise if a RIFF/WAVE file holds less audio data than its header declares.

    libsndfile quietly shortens such a file to what is there, so a copy that was cut
    off would otherwise replay as a shorter recording.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not plain RIFF/WAVE (RF64, another format): libsndfile judges it
        offset = 12
        for _ in range(64):
            fh.seek(offset)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return  # no data chunk: libsndfile reports it
            chunk_id, chunk_size = struct.unpack("<4sI", chunk)
            if chunk_id == b"data":
                available = size - offset - 8
                # 0 and 0xFFFFFFFF are placeholders of writers that stream to a pipe.
                if chunk_size not in (0, 0xFFFFFFFF) and available < chunk_size:
                    msg = (
                        f"{path}: truncated WAV: header declares {chunk_size} bytes of audio, "
                        f"the file holds {available}"
                    )
                    raise InputError(msg)
                return
            offset += 8 + chunk_size + (chunk_size & 1)


class _FileReader:
    """Synchronous block reader of one file: checks, channel selection, resampling."""

    def __init__(self, path: Path, rate_hz: float, block_ms: float, channel: Channel) -> None:
        self.path = path
        try:
            size = path.stat().st_size
        except OSError as exc:
            msg = f"{path}: cannot read: {exc.strerror or exc}"
            raise InputError(msg) from exc
        if size == 0:
            msg = f"{path}: empty file (0 bytes)"
            raise InputError(msg)
        try:
            check_wav_length(path)
            self._sf = sf.SoundFile(path)
        except InputError:
            raise
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            msg = f"{path}: unreadable or corrupt audio file: {_reason(exc, path)}"
            raise InputError(msg) from exc
        try:
            self.frames = int(self._sf.frames)
            self.file_rate_hz = float(self._sf.samplerate)
            n_channels = int(self._sf.channels)
            if self.frames <= 0:
                msg = f"{path}: zero-length audio (no samples)"
                raise InputError(msg)
            if channel != "mix" and channel >= n_channels:
                msg = f"{path}: channel {channel} requested, the file has {n_channels} channel(s)"
                raise InputError(msg)
        except InputError:
            self._sf.close()
            raise
        self.channel = channel
        self.n_read = 0
        """Input frames read so far."""
        self.rate_hz = rate_hz
        """Output rate."""
        self.cut = FrameCutter(max(1, round(rate_hz * block_ms / 1000.0)), 1)
        # soundfile costs tens of microseconds per read call, more than the copy: read
        # whole chunks and cut blocks from them. Memory stays constant either way.
        self.chunk_frames = max(READ_CHUNK_FRAMES, round(self.file_rate_hz * block_ms / 1000.0))
        self._resampler: StreamingResampler | None = None
        if self.file_rate_hz != rate_hz:
            try:
                self._resampler = StreamingResampler(self.file_rate_hz, rate_hz, 1)
            except ValueError as exc:
                # A rate from a damaged header (or an odd one such as 8001 Hz) has no supported ratio.
                self._sf.close()
                msg = f"{path}: cannot resample its {self.file_rate_hz:g} Hz audio to {rate_hz:g} Hz: {exc}"
                raise InputError(msg) from exc

    def read(self) -> npt.NDArray[np.float32] | None:
        """Next mono block of ``block_ms`` at the output rate, shape ``(frames, 1)``; None after the end.

        Every block is full except possibly the last one of the file.
        """
        while self.cut.short() and self.n_read < self.frames:
            self._fill()
        return self.cut.take()

    def _fill(self) -> None:
        want = min(self.chunk_frames, self.frames - self.n_read)
        try:
            data = self._sf.read(want, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            msg = f"{self.path}: corrupt or truncated audio after sample {self.n_read}: {_reason(exc, self.path)}"
            raise InputError(msg) from exc
        got = int(data.shape[0])
        if got < want:
            msg = (
                f"{self.path}: truncated: header declares {self.frames} samples, only {self.n_read + got} could be read"
            )
            raise InputError(msg)
        finite = np.isfinite(data)
        if not finite.all():
            offset = self.n_read + int(np.argmin(finite.all(axis=1)))
            msg = (
                f"{self.path}: non-finite sample (NaN or Inf) at sample offset {offset} "
                f"({offset / self.file_rate_hz:.4f} s)"
            )
            raise InputError(msg)
        self.n_read += got
        if self.channel == "mix":
            mono = data if data.shape[1] == 1 else data.mean(axis=1, keepdims=True, dtype=np.float32)
        else:
            mono = data[:, self.channel : self.channel + 1]
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._resampler is not None:
            mono = self._resampler.process(mono)
            if self.n_read >= self.frames:
                mono = np.concatenate((mono, self._resampler.flush()))
        self.cut.push(mono)

    def close(self) -> None:
        self._sf.close()


def _reason(exc: BaseException, path: Path) -> str:
    # libsndfile repeats the path ("Error opening '...': reason"); keep the reason only.
    text = str(exc)
    marker = f"'{path}': "
    return text.split(marker, 1)[1] if marker in text else text


class AudioFileSource(SampleFileReplay[_FileReader]):
    """Async iterator of ``SampleBlock``s and, after each file, an ``EndOfStream``.

    ``speed=None`` replays as fast as the consumer takes blocks; ``speed=x`` releases each
    block when its end is due at x times real time, measured on the loop clock from the
    start of the replay so that pacing never drifts. A slow consumer is caught up with,
    never dropped. Each ``async for`` starts the replay from the first file; the counters
    (``errors``, ``skipped_files``, ``files_done``) keep adding up across replays.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        rate_hz: float,
        block_ms: float = 20.0,
        speed: float | None = 1.0,
        loop: bool = False,
        channel: Channel = "mix",
        labels: Mapping[str, str] | None = None,
        on_error: OnError = "raise",
    ) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            msg = f"rate_hz must be positive, got {rate_hz}"
            raise ValueError(msg)
        if not (math.isfinite(block_ms) and block_ms > 0):
            msg = f"block_ms must be positive, got {block_ms}"
            raise ValueError(msg)
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            msg = f"speed must be positive or None (unpaced), got {speed}"
            raise ValueError(msg)
        if channel != "mix" and (isinstance(channel, bool) or not isinstance(channel, int) or channel < 0):
            msg = f"channel must be a channel index >= 0 or 'mix', got {channel!r}"
            raise ValueError(msg)
        super().__init__(paths, expand_paths, speed=speed, loop=loop, labels=labels, on_error=on_error)
        self.rate_hz = float(rate_hz)
        self.block_ms = float(block_ms)
        self.channel: Channel = channel
        self.labels = labels
        self._seconds_total: float | None = None

    @property
    def stream_seconds_total(self) -> float:
        """Duration of one pass over all files, from their headers (unreadable ones count 0)."""
        if self._seconds_total is None:
            total = 0.0
            for path in self.files:
                try:
                    total += float(sf.info(str(path)).duration)
                except (sf.SoundFileError, RuntimeError, OSError):
                    continue
            self._seconds_total = total
        return self._seconds_total

    def _open(self, path: Path) -> _FileReader:
        return _FileReader(path, self.rate_hz, self.block_ms, self.channel)

    def _due_s(self, f: _FileReader, played: float, piece: SamplePiece) -> float:
        # One output rate for all files: the pacing clock counts samples.
        return (played + piece[0] + len(piece[1])) / self.rate_hz

    def _close(self, f: _FileReader) -> None:
        f.close()

    def _end(self, f: _FileReader) -> FileEnd:
        return FileEnd(sample_time_us(f.cut.n_out, self.rate_hz), f.cut.n_out, {})
