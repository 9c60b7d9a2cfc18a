"""Configuration of the ECG file replay source (``kind = "ecg_file"``) and its factory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from sensors.files import OnError

if TYPE_CHECKING:  # the source pulls in numba and wfdb; loading a configuration must not
    from sensors.ecg.source import EcgFileSource


class EcgFileSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["ecg_file"] = "ecg_file"
    paths: list[Path] = Field(
        min_length=1,
        title="Recordings",
        description=(
            "WFDB records (path with or without .hea/.dat), EDF/EDF+C files, CSV files, or folders of them (sorted)."
        ),
    )
    lead: str | int | list[str | int] = Field(
        0,
        title="Lead",
        description="Lead to replay: its name (e.g. 'MLII') or 0-based index, or a list of them for several columns.",
    )
    speed: float | Literal["max"] = Field(1.0, description="Pacing: 1.0 is real time; 'max' is unpaced.")
    loop: bool = Field(False, description="Start again at the end (a daemon replaying a recording).")
    block_ms: float = Field(
        20.0,
        gt=0,
        le=10_000,
        description="Stream time per block handed to the encoder; beat readouts find onsets at this resolution.",
    )
    nan: Literal["hold", "zero", "error"] = Field(
        "hold",
        title="Invalid samples",
        description=(
            "What replaces samples the recording marks invalid (NaN): the lead's last valid value ('hold'), "
            "0 ('zero'), or nothing: any invalid sample is an error ('error'). Repairs are counted."
        ),
    )
    max_nan_ms: float = Field(
        200.0,
        ge=0,
        title="Longest repaired gap",
        description="A run of invalid samples longer than this (ms) is an error naming the file and time.",
    )
    csv_rate_hz: float | None = Field(
        None, gt=0, title="CSV sampling rate", description="Sampling rate of CSV files (they do not say it)."
    )


def ecg_file_source(
    cfg: EcgFileSourceConfig,
    rate_hz: float | None,
    labels: Mapping[str, str] | None = None,
    on_error: OnError = "raise",
) -> EcgFileSource:
    """The source ``cfg`` describes, resampling to ``rate_hz`` (the model's rate; None keeps each record's)."""
    from sensors.ecg.source import EcgFileSource

    return EcgFileSource(
        cfg.paths,
        rate_hz,
        lead=cfg.lead,
        block_ms=cfg.block_ms,
        speed=cfg.speed,
        loop=cfg.loop,
        labels=labels,
        on_error=on_error,
        nan=cfg.nan,
        max_nan_ms=cfg.max_nan_ms,
        csv_rate_hz=cfg.csv_rate_hz,
    )
