"""Radar frames as they flow from readers and sources to the encoder.

Every radar this project reads is reduced to one shape: a frame is a complex cube
``(n_sweeps, n_channels, n_points)``:

* ``n_sweeps``: slow time inside one frame: Acconeer sweeps, FMCW chirps (1 when a sensor
  gives one sweep per frame);
* ``n_channels``: receive antennas, TDM-MIMO virtual antennas, or sensors;
* ``n_points``: fast time: for ``domain="range"`` each point already is a range cell
  (pulsed coherent radar: Acconeer), for ``domain="fmcw_adc"`` the ADC samples of one chirp
  (TI mmWave) that a range FFT turns into range bins.

A ``RadarGeometry`` says what the axes mean; blocks of one stream may change geometry
(an Acconeer file whose sessions alternate between app modes), and the encoder resets its
per-bin state when they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

SPEED_OF_LIGHT_M_S = 299_792_458.0
Domain = Literal["range", "fmcw_adc"]


@dataclass(frozen=True, slots=True)
class RadarGeometry:
    """What a frame's axes mean, and where its range cells are."""

    domain: Domain
    n_sweeps: int
    n_channels: int
    n_points: int
    frame_rate_hz: float
    """Nominal frames per second (from the recording's config); frame times are in ``RadarBlock.t_us``."""
    sweep_rate_hz: float | None = None
    """Sweeps (chirps) per second inside a frame; None when the config does not say."""
    range_m: tuple[float, ...] | None = None
    """``domain="range"``: distance of each point (m), ``n_points`` of them."""
    range_resolution_m: float | None = None
    """``domain="fmcw_adc"``: c / (2 x swept bandwidth); range bin ``k`` is at ``k`` x this."""
    is_complex: bool = True
    """False for sensors that give real amplitudes (Acconeer A111 sparse)."""
    carrier_hz: float | None = None
    """Centre frequency of the radar (for the wavelength of phase measurements); None: the encoder's default."""
    sensor: str = ""
    """Free text naming the sensor and mode (``"acconeer-a121"``, ``"ti-mmwave"``), for errors and telemetry."""

    def __post_init__(self) -> None:
        for name in ("n_sweeps", "n_channels", "n_points"):
            if getattr(self, name) < 1:
                msg = f"radar geometry: {name} must be >= 1, got {getattr(self, name)}"
                raise ValueError(msg)
        if not self.frame_rate_hz > 0:
            msg = f"radar geometry: frame_rate_hz must be positive, got {self.frame_rate_hz}"
            raise ValueError(msg)
        if self.domain == "range" and (self.range_m is None or len(self.range_m) != self.n_points):
            msg = f"radar geometry: domain 'range' needs range_m with {self.n_points} distances"
            raise ValueError(msg)
        if self.domain == "fmcw_adc" and not (self.range_resolution_m and self.range_resolution_m > 0):
            msg = "radar geometry: domain 'fmcw_adc' needs a positive range_resolution_m (from the chirp config)"
            raise ValueError(msg)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.n_sweeps, self.n_channels, self.n_points)


def fmcw_range_resolution_m(slope_mhz_per_us: float, n_samples: int, adc_rate_ksps: float) -> float:
    """Range bin spacing of an FMCW chirp: c / (2 B) with B = slope x sampling time."""
    bandwidth_hz = slope_mhz_per_us * 1e12 * (n_samples / (adc_rate_ksps * 1e3))
    return SPEED_OF_LIGHT_M_S / (2.0 * bandwidth_hz)


@dataclass(frozen=True, slots=True)
class RadarBlock:
    """Consecutive frames of one stream, all with the same geometry.

    ``frames`` is complex64 ``(n_frames, n_sweeps, n_channels, n_points)`` in raw sensor units
    (ADC counts). ``t_us`` is each frame's stream time (µs since the stream's first frame,
    int64, increasing). The block covers ``[t_start_us, t_end_us)``: no later block of the
    stream holds a frame before ``t_end_us``.
    """

    stream: str
    geometry: RadarGeometry
    frames: npt.NDArray[np.complex64]
    t_us: npt.NDArray[np.int64]
    t_start_us: int
    t_end_us: int
    captured_ns: int
    first_frame: int = 0
    """Index of the first frame in the stream."""

    def __post_init__(self) -> None:
        shape = self.frames.shape
        if self.frames.ndim != 4 or shape[1:] != self.geometry.frame_shape:
            msg = (
                f"{self.stream}: radar frames {shape} do not match the geometry (frames, *{self.geometry.frame_shape})"
            )
            raise ValueError(msg)
        if self.t_us.shape != (shape[0],):
            msg = f"{self.stream}: {self.t_us.shape[0]} frame times for {shape[0]} frames"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True, slots=True)
class RadarChunk:
    """What a reader returns: consecutive frames of one file with one geometry, and their times."""

    geometry: RadarGeometry
    frames: npt.NDArray[np.complex64]
    """``(n_frames, n_sweeps, n_channels, n_points)``."""
    t_us: npt.NDArray[np.int64]
    """Stream time of each frame, µs since the file's first frame."""
