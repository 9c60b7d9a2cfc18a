"""Helpers shared by the DVS reader tests: random events, one writer per binary format, comparisons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import EVENT_DTYPE
from sensors.dvs import writers

Events = npt.NDArray[np.void]


def random_events(rng: np.random.Generator, n: int, width: int, height: int, *, t0: int = 0, max_dt: int = 3) -> Events:
    """Sorted events with random pixels; consecutive events are 0..max_dt-1 µs apart."""
    events = np.empty(n, EVENT_DTYPE)
    events["t"] = t0 + np.cumsum(rng.integers(0, max_dt, n))
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["p"] = rng.random(n) < 0.5
    return events


def assert_same_events(got: Events, expected: Events) -> None:
    assert got.dtype == EVENT_DTYPE
    assert got.shape == expected.shape
    for name in ("t", "x", "y", "p"):
        mismatch = np.flatnonzero(got[name] != expected[name])
        assert mismatch.size == 0, f"field {name} differs first at event {mismatch[:1]}"


@dataclass(frozen=True)
class Format:
    """How to write one binary format, and the sensor it stands for."""

    name: str
    suffix: str
    width: int
    height: int
    write: Callable[[Path, Events], object]
    wrap_us: int | None
    """Counter period the reader has to unwrap, None when the format has no wrap."""


FORMATS = {
    "evt2": Format("evt2", ".raw", 640, 480, lambda p, e: writers.write_evt2(p, e, width=640, height=480), 1 << 34),
    "evt3": Format("evt3", ".raw", 1280, 720, lambda p, e: writers.write_evt3(p, e, width=1280, height=720), 1 << 24),
    "dat": Format("dat", ".dat", 304, 240, writers.write_dat, 1 << 32),
    "nmnist_bin": Format("nmnist_bin", ".bin", 34, 34, writers.write_nmnist_bin, None),
    "aedat2": Format("aedat2", ".aedat", 346, 260, writers.write_aedat2, 1 << 32),
    "aedat31": Format("aedat31", ".aedat", 128, 128, writers.write_aedat31, 1 << 31),
}


def write_format(tmp_path: Path, fmt: Format, events: Events, stem: str = "events") -> Path:
    path = tmp_path / f"{stem}{fmt.suffix}"
    fmt.write(path, events)
    return path


def evt3_word_types(path: Path, data_offset: int) -> npt.NDArray[np.int64]:
    """Count of each EVT 3.0 word type (index = type nibble) in a file, decoded with plain numpy."""
    words = np.fromfile(path, np.uint8)[data_offset:].view("<u2")
    return np.bincount(words >> 12, minlength=16)
