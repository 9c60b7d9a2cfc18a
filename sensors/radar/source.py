"""Replay of radar recordings as ``RadarBlock``s, paced by the recording's own frame times.

Each file is one stream (an Acconeer file with several sessions included: its geometry may
change between blocks, never inside one). Blocks hold ``frames_per_block`` frames (fewer at a
geometry change and at the end of a file). A block covers ``[its first frame's time, the next
frame's time)``; the file's last frame ends one frame period (``1 / frame_rate_hz``) after its
time, which is also the ``t_end_us`` of the file's ``EndOfStream``. With ``speed=x`` each block
is released when its end is due at x times real time (``speed="max"``: unpaced); ``loop``,
``labels`` and ``on_error`` work as in every file replay (``sensors.replay.FileReplay``).

``EndOfStream.meta``: ``sensor``, ``format``, ``sessions``, ``frames`` (frames sent),
``frames_in_file``, ``geometry`` (the frame shapes in order), ``dropped_bytes`` for a TI
capture whose partial last frame was dropped, and ``error`` for a file that failed midway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from sensors.files import OnError
from sensors.radar.base import CHUNK_FRAMES, RadarReader
from sensors.radar.cube import CubeLayout
from sensors.radar.frames import RadarBlock, RadarGeometry
from sensors.radar.reader import RadarFormat, expand_radar_paths, open_radar
from sensors.radar.ti import BinLayout, ChirpConfig, PartialFrames
from sensors.replay import FileEnd, FileReplay


@dataclass(frozen=True)
class _Piece:
    first_frame: int
    geometry: RadarGeometry
    frames: npt.NDArray[np.complex64]
    t_us: npt.NDArray[np.int64]
    t_end_us: int


class RadarFileSource(FileReplay[RadarReader, _Piece, RadarBlock]):
    """Async iterator of ``RadarBlock``s and an ``EndOfStream`` per file (see the module docstring)."""

    _what = "radar recording(s)"

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        fmt: RadarFormat = "auto",
        frames_per_block: int = 1,
        speed: float | Literal["max"] | None = 1.0,
        loop: bool = False,
        labels: Mapping[str, str] | None = None,
        on_error: OnError = "raise",
        mixed_configs: Literal["allow", "error"] = "allow",
        chirp: ChirpConfig | Path | str | None = None,
        layout: CubeLayout | None = None,
        bin_layout: BinLayout = "lvds2",
        partial_frames: PartialFrames = "error",
        chunk_frames: int = CHUNK_FRAMES,
    ) -> None:
        if isinstance(frames_per_block, bool) or not isinstance(frames_per_block, int) or frames_per_block < 1:
            msg = f"frames_per_block must be a positive integer, got {frames_per_block!r}"
            raise ValueError(msg)
        if speed == "max":
            speed = None
        if speed is not None and (isinstance(speed, str) or not (math.isfinite(speed) and speed > 0)):
            msg = f"speed must be positive or 'max' (unpaced), got {speed!r}"
            raise ValueError(msg)
        super().__init__(paths, expand_radar_paths, speed=speed, loop=loop, labels=labels, on_error=on_error)
        self.fmt: RadarFormat = fmt
        self.frames_per_block = frames_per_block
        self.mixed_configs: Literal["allow", "error"] = mixed_configs
        self.chirp = chirp
        self.layout = layout
        self.bin_layout: BinLayout = bin_layout
        self.partial_frames: PartialFrames = partial_frames
        # reads are whole blocks, so only a geometry change or a file's end makes a short block
        self.read_frames = max(1, chunk_frames // frames_per_block) * frames_per_block
        self.frames_sent = 0
        self.dropped_bytes = 0
        """Bytes of partial trailing frames left out (TI captures, partial_frames="drop")."""

    def drops(self) -> dict[str, int]:
        return {"skipped_files": self.skipped_files, "dropped_bytes": self.dropped_bytes}

    def _open(self, path: Path) -> RadarReader:
        reader = open_radar(
            path,
            fmt=self.fmt,
            mixed_configs=self.mixed_configs,
            chirp=self.chirp,
            layout=self.layout,
            bin_layout=self.bin_layout,
            partial_frames=self.partial_frames,
        )
        self.dropped_bytes += int(reader.extra_meta.get("dropped_bytes", "0"))
        return reader

    def _read(self, f: RadarReader) -> list[_Piece] | None:
        first = f.position
        chunk = f.read(self.read_frames)
        if chunk is None:
            return None
        after = f.next_time_us()
        chunk_end = f.end_time_us() if after is None else after
        n = len(chunk.t_us)
        pieces = []
        for a in range(0, n, self.frames_per_block):
            b = min(n, a + self.frames_per_block)
            t_end = int(chunk.t_us[b]) if b < n else chunk_end
            pieces.append(_Piece(first + a, chunk.geometry, chunk.frames[a:b], chunk.t_us[a:b], t_end))
        return pieces

    def _due_s(self, f: RadarReader, played: float, piece: _Piece) -> float:
        return played + piece.t_end_us / 1e6

    def _block(self, f: RadarReader, stream: str, piece: _Piece, captured_ns: int) -> RadarBlock:
        self.frames_sent += len(piece.t_us)
        return RadarBlock(
            stream,
            piece.geometry,
            piece.frames,
            piece.t_us,
            int(piece.t_us[0]),
            piece.t_end_us,
            captured_ns,
            piece.first_frame,
        )

    def _close(self, f: RadarReader) -> None:
        f.close()

    def _end(self, f: RadarReader) -> FileEnd:
        after = f.next_time_us()
        t_end = f.end_time_us() if after is None else after
        return FileEnd(t_end, t_end / 1e6, f.meta())
