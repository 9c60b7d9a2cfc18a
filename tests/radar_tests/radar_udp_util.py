"""Helpers of the radar UDP tests: synthetic frames and geometries, collecting what a source yields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from sensors.blocks import EndOfStream
from sensors.radar.frames import RadarBlock, RadarChunk, RadarGeometry

Item: TypeAlias = RadarBlock | EndOfStream

# An Acconeer A121 presence session has several subsweeps: range cells that are not evenly spaced.
UNEVEN_M = (0.3, 0.42, 0.54, 0.64, 0.94, 1.24, 1.54, 1.84, 2.14, 2.44, 2.74)


def range_geometry(n_sweeps: int = 16, n_channels: int = 1, n_points: int = 40, rate_hz: float = 20.0) -> RadarGeometry:
    ranges = tuple(0.2 + 0.0025 * k for k in range(n_points))
    return RadarGeometry("range", n_sweeps, n_channels, n_points, rate_hz, sweep_rate_hz=1000.0, range_m=ranges)


def uneven_geometry() -> RadarGeometry:
    return RadarGeometry("range", 16, 1, len(UNEVEN_M), 12.0, range_m=UNEVEN_M, sensor="acconeer-a121")


def fmcw_geometry() -> RadarGeometry:
    return RadarGeometry("fmcw_adc", 8, 4, 64, 10.0, range_resolution_m=0.0439, sensor="ti-mmwave")


def iq_frames(geometry: RadarGeometry, n_frames: int, seed: int = 0) -> npt.NDArray[np.complex64]:
    """Whole-number IQ (ADC counts) over the int16 range."""
    rng = np.random.default_rng(seed)
    shape = (n_frames, *geometry.frame_shape)
    re = rng.integers(-32768, 32768, shape)
    im = rng.integers(-32768, 32768, shape) if geometry.is_complex else 0
    if not geometry.is_complex:
        re = np.abs(re) * 2  # amplitudes 0..65535
    return (re + 1j * im).astype(np.complex64)


def chunk(geometry: RadarGeometry, n_frames: int, *, seed: int = 0, t0_us: int = 0) -> RadarChunk:
    period_us = round(1e6 / geometry.frame_rate_hz)
    t_us = t0_us + period_us * np.arange(n_frames, dtype=np.int64)
    return RadarChunk(geometry, iq_frames(geometry, n_frames, seed), t_us)


def n_frames(items: list[Item]) -> int:
    return sum(len(i) for i in items if isinstance(i, RadarBlock))


def frames_of(items: list[Item]) -> npt.NDArray[np.complex64]:
    return np.concatenate([i.frames for i in items if isinstance(i, RadarBlock)])


async def collect(src: AsyncIterable[Item], done: Callable[[list[Item]], bool], timeout_s: float = 5.0) -> list[Item]:
    """What ``src`` yields until ``done(items)`` holds; a ``TimeoutError`` after ``timeout_s``."""
    items: list[Item] = []
    async with asyncio.timeout(timeout_s):
        async for item in src:
            items.append(item)
            if done(items):
                break
    return items
