"""What every radar file reader shares: a file is a run of segments, each with one geometry.

A segment is a stretch of frames with one geometry and known frame times (an Acconeer session,
or the whole of a TI capture or cube). Readers hand out ``RadarChunk``s of at most
``max_frames`` frames that never cross a segment, so a chunk always has one geometry. Frame
data is loaded only when read (HDF5 slices, memory maps); frame times (8 bytes per frame)
are known up front, so the end of each chunk (the next frame's time) is too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError
from sensors.radar.frames import RadarChunk, RadarGeometry

CHUNK_FRAMES = 256
"""Frames per read by default: a few hundred kB to a few MB of complex64 for the sensors here."""

FrameLoader = Callable[[int, int], npt.NDArray[np.complex64]]
"""Frames ``[start, stop)`` of a segment as complex64 ``(n, n_sweeps, n_channels, n_points)``."""


@dataclass(frozen=True)
class Segment:
    """Consecutive frames of one file that share a geometry."""

    name: str
    """What the file calls it (``session_1``), for errors and meta."""
    geometry: RadarGeometry
    t_us: npt.NDArray[np.int64]
    """Stream time of every frame of the segment (µs since the file's first frame)."""
    load: FrameLoader

    @property
    def n_frames(self) -> int:
        return int(self.t_us.shape[0])


def regular_times_us(n_frames: int, frame_rate_hz: float, t0_us: int = 0) -> npt.NDArray[np.int64]:
    """Times of ``n_frames`` frames at ``frame_rate_hz`` from ``t0_us`` (no clock in the file)."""
    return t0_us + np.round(np.arange(n_frames, dtype=np.float64) * (1e6 / frame_rate_hz)).astype(np.int64)


def frame_period_us(geometry: RadarGeometry) -> int:
    return max(1, round(1e6 / geometry.frame_rate_hz))


class RadarReader:
    """Chunks of one radar recording; ``read`` until it returns None, then ``close``."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        segments: Sequence[Segment],
        closer: Callable[[], None] | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        """The path as given (or as a folder expanded to)."""
        self.format = fmt
        self.segments = tuple(s for s in segments if s.n_frames > 0)
        self._closer = closer
        self.extra_meta = dict(meta or {})
        if not self.segments:
            self.close()
            msg = f"{path}: the recording holds no frames"
            raise InputError(msg)
        self._check_times()
        self.n_frames: int | None = sum(s.n_frames for s in self.segments)
        """Frames in the file (all segments)."""
        self.position = 0
        """Frames read so far."""
        self._seg = 0
        self._in_seg = 0

    def _check_times(self) -> None:
        prev = -1
        for seg in self.segments:
            t = seg.t_us
            bad = np.flatnonzero(np.diff(t) <= 0)
            if bad.size or t[0] <= prev:
                i = int(bad[0]) + 1 if bad.size else 0
                msg = (
                    f"{self.path}: {seg.name}: frame times do not increase at frame {i} "
                    f"({int(t[i])} µs after {int(t[i - 1]) if i else prev} µs)"
                )
                self.close()
                raise InputError(msg)
            prev = int(t[-1])

    @property
    def sensor(self) -> str:
        return self.segments[0].geometry.sensor

    @property
    def n_sessions(self) -> int:
        return len(self.segments)

    def read(self, max_frames: int = CHUNK_FRAMES) -> RadarChunk | None:
        """The next at most ``max_frames`` frames of one segment (one geometry); None after the end."""
        if max_frames < 1:
            msg = f"max_frames must be at least 1, got {max_frames}"
            raise ValueError(msg)
        if self._seg >= len(self.segments):
            return None
        seg = self.segments[self._seg]
        start = self._in_seg
        stop = min(seg.n_frames, start + max_frames)
        frames = seg.load(start, stop)
        expected = (stop - start, *seg.geometry.frame_shape)
        if frames.shape != expected:  # a loader bug or a file that changed under us
            msg = f"{self.path}: {seg.name}: read frames of shape {frames.shape}, expected {expected}"
            raise InputError(msg)
        if not np.isfinite(frames).all():
            bad = int(np.flatnonzero(~np.isfinite(frames).reshape(frames.shape[0], -1).all(axis=1))[0])
            msg = f"{self.path}: {seg.name}: frame {start + bad} holds NaN or infinite values"
            raise InputError(msg)
        self._in_seg = stop
        self.position += stop - start
        if stop == seg.n_frames:
            self._seg += 1
            self._in_seg = 0
        return RadarChunk(seg.geometry, frames, seg.t_us[start:stop].copy())

    def next_time_us(self) -> int | None:
        """Time of the next frame to be read; None when all are read."""
        if self._seg >= len(self.segments):
            return None
        return int(self.segments[self._seg].t_us[self._in_seg])

    def end_time_us(self) -> int:
        """End of the recording: its last frame's time plus one frame period."""
        last = self.segments[-1]
        return int(last.t_us[-1]) + frame_period_us(last.geometry)

    def meta(self) -> dict[str, str]:
        """What an ``EndOfStream`` says about the file."""
        shapes: list[str] = []
        for seg in self.segments:
            g = seg.geometry
            shape = f"{g.n_sweeps}x{g.n_channels}x{g.n_points}@{g.frame_rate_hz:g}Hz"
            if not shapes or shapes[-1] != shape:
                shapes.append(shape)
        return {
            "sensor": self.sensor,
            "format": self.format,
            "sessions": str(self.n_sessions),
            "frames": str(self.position),
            "frames_in_file": str(self.n_frames),
            "geometry": ",".join(shapes),
            **self.extra_meta,
        }

    def close(self) -> None:
        """Release the file; reading afterwards is an error."""
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer()

    def __enter__(self) -> RadarReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def json_field(path: Path, where: str, raw: Any) -> dict[str, Any]:
    """A JSON object stored as an HDF5 string (bytes or str), or an InputError naming the file and field."""
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw[()]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        msg = f"{path}: {where} is not a JSON string (found {type(raw).__name__})"
        raise InputError(msg)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"{path}: {where} is not valid JSON: {exc}"
        raise InputError(msg) from exc
    if not isinstance(value, dict):
        msg = f"{path}: {where} is JSON but not an object"
        raise InputError(msg)
    return value


def positive(path: Path, where: str, value: object) -> float | None:
    """``value`` as a positive finite float, None when absent (null); anything else is an InputError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        msg = f"{path}: {where} must be a positive number, found {value!r}"
        raise InputError(msg)
    return float(value)


def to_complex64(real: npt.ArrayLike, imag: npt.ArrayLike | None = None) -> npt.NDArray[np.complex64]:
    r = np.asarray(real)
    out = np.empty(r.shape, dtype=np.complex64)
    out.real = r
    out.imag = 0.0 if imag is None else np.asarray(imag)
    return out
