"""Settings of the radar spike encoder, apart from its numba kernels so configuration loads without numba.

Per frame the encoder computes, for every range point of every receive channel:

* ``motion``: power of the sweep-mean after clutter removal, ``|m - c|^2``, where ``c`` is an
  exponential moving average of ``m`` over frames (time constant ``clutter_tau_s``): what
  moved since the last seconds (a person shifting, a chest rising);
* ``doppler``: range-Doppler power outside the zero-Doppler bin, i.e. the variance over the
  frame's sweeps (Parseval: the sum over the non-zero Doppler bins of an FFT over sweeps
  equals it): what moves within one frame (a hand waving);
* ``displacement``: radial displacement from the phase change of the sweep-mean between
  frames, ``dphi * wavelength / (4 pi)`` in mm, weighted by how far the point stands above
  the noise: the sub-millimetre chest motion of breathing.

Powers are relative to the stream's static reflection (the mean clutter power over all points,
tracked with the same time constant), in dB, so the encoder does not depend on the sensor's
gain, profile or averaging. Points are mapped onto ``n_range`` fixed cells, log-spaced from
``range_min_m`` to ``range_max_m`` (linear interpolation between points in log range; cells
outside the points' span stay silent), so one model takes any sensor configuration.

Each cell and feature is delta-modulated (level crossing): an UP spike each time the value
rises ``threshold`` above its reference level, DOWN each time it falls below; the reference
moves by one threshold per spike. At most ``max_spikes_per_frame`` per channel and frame
(the rest are counted as ``saturated`` drops).

Channel layout, for cell ``r`` (0 = nearest), feature ``f`` (0 motion, 1 doppler,
2 displacement) and direction ``d`` (0 = UP, 1 = DOWN)::

    ch = (r * 3 + f) * 2 + d
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

FEATURES = ("motion", "doppler", "displacement")


class RadarEncoderConfig(BaseModel):
    """Clutter removal + range-Doppler features + delta spikes per range cell; a model manifest's [encoder]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    range_min_m: float = Field(0.05, gt=0, title="Nearest range", description="Centre of the nearest range cell (m).")
    range_max_m: float = Field(8.0, gt=0, title="Farthest range", description="Centre of the farthest range cell (m).")
    n_range: int = Field(12, ge=1, le=64, title="Range cells", description="Cells, log-spaced between the two.")
    clutter_tau_s: float = Field(
        2.0,
        gt=0,
        title="Clutter time constant",
        description="Time constant (s) of the static-reflection estimate removed from every point.",
    )
    threshold_db: float = Field(
        3.0, gt=0, title="Power threshold", description="Delta-modulator step of the motion and doppler powers (dB)."
    )
    threshold_mm: float = Field(
        0.5, gt=0, title="Displacement threshold", description="Delta-modulator step of the displacement (mm)."
    )
    floor_db: float = Field(
        -40.0,
        title="Power floor",
        description="Relative powers are clipped below this (dB re the static reflection): noise does not spike.",
    )
    phase_snr_db: float = Field(
        6.0,
        title="Phase gate",
        description="A point's phase counts fully when its power is this far above its noise (dB); less, less.",
    )
    max_spikes_per_frame: int = Field(
        4, ge=1, le=64, title="Spikes per frame", description="Most spikes per channel and frame; more are counted."
    )
    carrier_hz: float = Field(
        60.5e9,
        gt=0,
        title="Carrier frequency",
        description="Used for the wavelength when the recording does not say (Acconeer A1xx: 60.5 GHz).",
    )

    @model_validator(mode="after")
    def _range(self) -> RadarEncoderConfig:
        if not self.range_min_m < self.range_max_m:
            msg = f"range_min_m {self.range_min_m} must be below range_max_m {self.range_max_m}"
            raise ValueError(msg)
        if not math.isfinite(self.floor_db):
            msg = f"floor_db must be finite, got {self.floor_db}"
            raise ValueError(msg)
        return self

    @property
    def n_channels(self) -> int:
        return self.n_range * len(FEATURES) * 2

    def cell_ranges_m(self) -> npt.NDArray[np.float64]:
        """Centres of the range cells (m), log-spaced."""
        return np.geomspace(self.range_min_m, self.range_max_m, self.n_range)

    def channel(self, cell: int, feature: str, down: bool) -> int:
        if not 0 <= cell < self.n_range or feature not in FEATURES:
            msg = f"no channel for cell {cell} (n_range {self.n_range}) and feature {feature!r} ({FEATURES})"
            raise ValueError(msg)
        return (cell * len(FEATURES) + FEATURES.index(feature)) * 2 + int(down)

    def channel_label(self, ch: int) -> str:
        """Human-readable name of a channel, e.g. ``0.52m/doppler/up``."""
        if not 0 <= ch < self.n_channels:
            msg = f"channel {ch} out of range 0..{self.n_channels - 1}"
            raise ValueError(msg)
        pair, direction = divmod(ch, 2)
        cell, f = divmod(pair, len(FEATURES))
        return f"{self.cell_ranges_m()[cell]:.2f}m/{FEATURES[f]}/{'down' if direction else 'up'}"
