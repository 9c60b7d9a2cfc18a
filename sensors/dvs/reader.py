"""Streaming readers of DVS event files: format detection and the public API.

>>> with open_events("rec.raw") as reader:          # doctest: +SKIP
...     for chunk in reader:                          # np.ndarray[EVENT_DTYPE], file time in µs
...         ...
...     reader.info.width, reader.skipped

Formats (``EventFileInfo.format``): Prophesee ``evt2``/``evt3`` ``.raw`` and ``dat``, N-MNIST/N-Caltech
``nmnist_bin``, jAER ``aedat2``, cAER ``aedat31``, iniVation ``aedat4``, numpy ``npy`` (``.npy``/``.npz``).
The format comes from the file's magic bytes or header; only header-less N-MNIST files are recognised by
their ``.bin`` extension. Timestamps are file time as stored, unwrapped to int64 (Prophesee and jAER
counters wrap), never sorted or rebased; the source does that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensors.blocks import EVENT_DTYPE, InputError
from sensors.dvs.aedat4 import Aedat4Reader
from sensors.dvs.aer import Aedat2Reader, Aedat31Reader, NmnistReader
from sensors.dvs.eventfile import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_CHUNK_EVENTS,
    EventFileInfo,
    EventFormatError,
    EventReader,
    Events,
    check_sensor_size,
    read_header_lines,
)
from sensors.dvs.npyfile import NpyReader
from sensors.dvs.prophesee import DatReader, Evt2Reader, Evt3Reader, classify, parse_header

__all__ = [
    "FORMATS",
    "EventFileInfo",
    "EventFormatError",
    "EventReader",
    "detect_format",
    "open_events",
    "read_events",
]

FORMATS = ("evt2", "evt3", "dat", "nmnist_bin", "aedat2", "aedat31", "aedat4", "npy")
_BUFFERED = {
    "evt2": Evt2Reader,
    "evt3": Evt3Reader,
    "dat": DatReader,
    "nmnist_bin": NmnistReader,
    "aedat2": Aedat2Reader,
    "aedat31": Aedat31Reader,
}
_AEDAT_MAGIC = {b"#!AER-DAT2.0": "aedat2", b"#!AER-DAT3.1": "aedat31", b"#!AER-DAT4.0": "aedat4"}
_EXPECTED = (
    "expected '#!AER-DAT2.0', '#!AER-DAT3.1', '#!AER-DAT4.0', a Prophesee '%' header naming evt 2.0/3.0 or a "
    "DAT file, numpy '\\x93NUMPY' or zip magic, or a .bin N-MNIST file whose size is a multiple of 5"
)


def _looks_like_nmnist(path: Path, size: int) -> bool:
    return path.suffix.lower() == ".bin" and size % 5 == 0


def detect_format(path: Path | str) -> str:
    """The format of ``path`` from its first bytes (one of ``FORMATS``); EventFormatError when unknown."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except OSError as exc:
        msg = f"{path}: cannot read event file ({exc.strerror or exc})"
        raise InputError(msg) from exc
    for magic, fmt in _AEDAT_MAGIC.items():
        if head.startswith(magic):
            return fmt
    if head.startswith(b"#!AER-DAT"):
        version = head[len(b"#!AER-DAT") :].split(b"\r")[0].split(b"\n")[0].decode("latin-1")
        raise EventFormatError(path, 0, f"AEDAT version {version!r} is not supported ({_EXPECTED})")
    if head.startswith(b"\x93NUMPY") or head.startswith(b"PK\x03\x04"):
        return "npy"
    if head.startswith(b"%"):
        kind = classify(parse_header(read_header_lines(path, b"%").lines))
        if kind in ("evt2", "evt3", "dat"):
            return kind
        if _looks_like_nmnist(path, size):  # an N-Caltech event at x=37 starts with a '%' byte
            return "nmnist_bin"
        problem = f"Prophesee format {kind.split(':', 1)[1]!r} is not supported" if kind else "'%' header"
        raise EventFormatError(path, 0, f"{problem} ({_EXPECTED})")
    if _looks_like_nmnist(path, size):
        return "nmnist_bin"
    raise EventFormatError(path, 0, f"unknown event file format ({_EXPECTED})")


def open_events(
    path: Path | str,
    *,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    sensor_size: tuple[int, int] | None = None,
    fmt: str | None = None,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> EventReader:
    """Open an event file for streaming; iterate the reader for ``EVENT_DTYPE`` chunks.

    ``sensor_size`` (width, height) overrides the size from the header (and N-MNIST's 34x34); events
    outside the size raise EventFormatError. ``fmt`` skips detection. ``buffer_bytes`` sizes the read
    buffer of the binary formats. Chunks hold 1 to ``chunk_events`` (at least 16) events and are never
    reused. A missing or unreadable file is an InputError; a file that is not what its format says, an
    EventFormatError (an InputError too) naming the byte offset.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: no such event file"
        raise InputError(msg)
    size = check_sensor_size(path, sensor_size)
    fmt = fmt or detect_format(path)
    if fmt in _BUFFERED:
        return _BUFFERED[fmt](path, chunk_events=chunk_events, buffer_bytes=buffer_bytes, sensor_size=size)
    if fmt == "aedat4":
        return Aedat4Reader(path, chunk_events=chunk_events, sensor_size=size)
    if fmt == "npy":
        return NpyReader(path, chunk_events=chunk_events, sensor_size=size)
    msg = f"{path}: unknown event format {fmt!r} (expected one of {', '.join(FORMATS)})"
    raise InputError(msg)


def read_events(
    path: Path | str,
    *,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    sensor_size: tuple[int, int] | None = None,
    fmt: str | None = None,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> tuple[Events, EventFileInfo]:
    """Whole file as one array (tests and small files); arguments as for ``open_events``."""
    with open_events(
        path, chunk_events=chunk_events, sensor_size=sensor_size, fmt=fmt, buffer_bytes=buffer_bytes
    ) as reader:
        chunks = list(reader)
        info = reader.info
    events = np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)
    return events, info
