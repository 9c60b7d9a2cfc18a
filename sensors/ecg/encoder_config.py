"""Settings of the ECG spike encoder, apart from its numba kernels so configuration loads without numba.

The encoder band-passes each lead (baseline wander below ``highpass_hz``, muscle noise above
``lowpass_hz``, optionally a mains notch) and turns the filtered signal into UP / DOWN spikes
by level crossing (delta modulation), one reference level per threshold.

Channel layout, for lead ``l`` (0-based column of the SampleBlock), threshold index ``k``
(position in ``thresholds_mv``) and direction ``d`` (0 = UP, 1 = DOWN)::

    ch = (l * n_thresholds + k) * 2 + d

so ``n_channels = n_leads * n_thresholds * 2`` and the two directions of one
(lead, threshold) pair are adjacent.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_FILTER_ORDER = 8
"""Highest Butterworth order accepted for each of the high-pass and the low-pass."""


class EcgEncoderConfig(BaseModel):
    """Band-pass + level-crossing encoder of ECG leads; stored in model manifests' [encoder] table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_hz: float = Field(
        360.0,
        title="Sample rate",
        description="Input rate in Hz the model was trained at; the source resamples to it.",
    )
    n_leads: int = Field(
        1,
        ge=1,
        title="Leads",
        description="Number of SampleBlock channels encoded (the first n_leads columns).",
    )
    highpass_hz: float = Field(
        0.5, title="High-pass corner", description="Butterworth high-pass corner in Hz; removes baseline wander."
    )
    lowpass_hz: float = Field(
        40.0, title="Low-pass corner", description="Butterworth low-pass corner in Hz; below Nyquist."
    )
    filter_order: int = Field(
        2,
        ge=1,
        le=MAX_FILTER_ORDER,
        title="Filter order",
        description="Butterworth order of the high-pass and, separately, of the low-pass.",
    )
    notch_hz: Literal[50, 60] | None = Field(
        None, title="Mains notch", description="Mains frequency to notch out (50 or 60 Hz); None = no notch."
    )
    notch_q: float = Field(
        30.0, gt=0, title="Notch Q", description="Quality factor of the notch (centre / -3 dB width)."
    )
    thresholds_mv: tuple[float, ...] = Field(
        (0.05,),
        min_length=1,
        title="Level-crossing thresholds",
        description=(
            "Delta-modulator steps in mV, increasing; one UP/DOWN channel pair per lead and threshold. "
            "With normalise on: mV at a QRS amplitude estimate of 1 mV."
        ),
    )
    refractory_us: int = Field(
        0,
        ge=0,
        title="Refractory period",
        description="Per channel: a spike closer than this to the channel's last kept spike is dropped "
        "(counted); the reference level still moves. 0 = off.",
    )
    normalise: bool = Field(
        False,
        title="Amplitude normalisation",
        description="Divide the filtered signal by a slow running estimate of the QRS amplitude, so that "
        "thresholds are relative to it (see normalise_tau_s).",
    )
    normalise_tau_s: float = Field(
        10.0,
        gt=0,
        title="Normalisation time constant",
        description="Time constant in s of the running mean of the amplitude estimate; the estimate follows a "
        "change of QRS amplitude to 63 % after this long.",
    )
    normalise_floor_mv: float = Field(
        0.1,
        gt=0,
        title="Normalisation floor",
        description="Smallest amplitude estimate used, so a flat line (lead off) is not amplified into noise.",
    )

    @field_validator("rate_hz")
    @classmethod
    def _rate(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            msg = f"rate_hz must be a positive finite rate in Hz, got {v}"
            raise ValueError(msg)
        return v

    @field_validator("highpass_hz")
    @classmethod
    def _highpass(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            msg = f"highpass_hz must be positive, got {v}"
            raise ValueError(msg)
        return v

    @field_validator("thresholds_mv")
    @classmethod
    def _thresholds(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(t) and t > 0 for t in v):
            msg = f"thresholds_mv must all be positive and finite, got {v}"
            raise ValueError(msg)
        if any(b <= a for a, b in itertools.pairwise(v)):
            msg = f"thresholds_mv must be strictly increasing, got {v}"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _bands(self) -> EcgEncoderConfig:
        nyquist = self.rate_hz / 2
        if not self.lowpass_hz < nyquist:
            msg = f"lowpass_hz {self.lowpass_hz} must be below Nyquist ({nyquist} Hz at rate_hz {self.rate_hz})"
            raise ValueError(msg)
        if not self.highpass_hz < self.lowpass_hz:
            msg = f"highpass_hz {self.highpass_hz} must be below lowpass_hz {self.lowpass_hz}"
            raise ValueError(msg)
        if self.notch_hz is not None and not self.notch_hz < nyquist:
            msg = f"notch_hz {self.notch_hz} must be below Nyquist ({nyquist} Hz at rate_hz {self.rate_hz})"
            raise ValueError(msg)
        return self

    @property
    def n_thresholds(self) -> int:
        return len(self.thresholds_mv)

    @property
    def n_channels(self) -> int:
        """``n_leads * len(thresholds_mv) * 2`` (UP and DOWN per lead and threshold)."""
        return self.n_leads * len(self.thresholds_mv) * 2

    def channel(self, lead: int, k: int, down: bool) -> int:
        """Channel id of lead ``lead``, threshold index ``k``, direction DOWN if ``down`` else UP."""
        if not (0 <= lead < self.n_leads and 0 <= k < self.n_thresholds):
            msg = f"no channel for lead {lead} (n_leads {self.n_leads}), threshold {k} ({self.n_thresholds})"
            raise ValueError(msg)
        return (lead * self.n_thresholds + k) * 2 + int(down)

    def channel_label(self, ch: int) -> str:
        """Human-readable name of a channel, e.g. ``lead0/0.05mV/up``."""
        if not 0 <= ch < self.n_channels:
            msg = f"channel {ch} out of range 0..{self.n_channels - 1}"
            raise ValueError(msg)
        pair, direction = divmod(ch, 2)
        lead, k = divmod(pair, self.n_thresholds)
        return f"lead{lead}/{self.thresholds_mv[k]:g}mV/{'down' if direction else 'up'}"
