"""Configuration of the radar file replay source (``kind = "radar_file"``) and its factory.

Importing this module loads pydantic and numpy only (``ChirpConfig`` and ``CubeLayout``), not
h5py or numba: the source and its readers are imported when the factory runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from sensors.files import OnError
from sensors.radar.cube import CubeLayout
from sensors.radar.ti import ChirpConfig

if TYPE_CHECKING:
    from sensors.radar.source import RadarFileSource


class RadarFileSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["radar_file"] = "radar_file"
    paths: list[Path] = Field(
        min_length=1,
        title="Recordings",
        description="Acconeer .h5, TI .npy/.txt/.bin, generic .npy/.h5 cubes, or folders of them (sorted).",
    )
    format: Literal["auto", "acconeer_a121", "acconeer_a111", "ti_npy", "ti_txt", "ti_bin", "cube"] = Field(
        "auto", title="Format", description="'auto' picks from the suffix and, for HDF5, the layout inside."
    )
    speed: float | Literal["max"] = Field(1.0, description="Pacing: 1.0 is real time; 'max' is unpaced.")
    loop: bool = Field(False, description="Start again at the end (a daemon replaying a recording).")
    frames_per_block: int = Field(
        1, ge=1, le=100_000, title="Frames per block", description="Radar frames per block handed to the encoder."
    )
    mixed_configs: Literal["allow", "error"] = Field(
        "allow",
        title="Sessions with different configs",
        description=(
            "Acconeer files whose sessions differ in config: replay them as one stream whose geometry "
            "changes ('allow'), or reject the file naming the sessions and fields ('error')."
        ),
    )
    chirp: ChirpConfig | Literal["openradar"] | Path | None = Field(
        None,
        title="TI chirp config",
        description="TI captures: the chirp parameters, a preset ('openradar') or a mmWave SDK CLI .cfg file.",
    )
    layout: CubeLayout | None = Field(None, title="Cube layout", description="How to read generic .npy/.h5 cubes.")
    bin_layout: Literal["lvds2", "iq", "real"] = Field(
        "lvds2",
        title="DCA1000 .bin layout",
        description="'lvds2': xWR16xx/18xx/68xx complex (I0 I1 Q0 Q1 ...); 'iq': I0 Q0 I1 Q1 ...; 'real'.",
    )
    partial_frames: Literal["error", "drop"] = Field(
        "error",
        title="Partial last frame",
        description="A .bin that is not whole frames: an error, or the tail dropped and counted (dropped_bytes).",
    )


def radar_file_source(
    cfg: RadarFileSourceConfig, labels: Mapping[str, str] | None = None, on_error: OnError = "raise"
) -> RadarFileSource:
    """The source ``cfg`` describes."""
    from sensors.radar.source import RadarFileSource

    return RadarFileSource(
        cfg.paths,
        fmt=cfg.format,
        frames_per_block=cfg.frames_per_block,
        speed=cfg.speed,
        loop=cfg.loop,
        labels=labels,
        on_error=on_error,
        mixed_configs=cfg.mixed_configs,
        chirp=cfg.chirp,
        layout=cfg.layout,
        bin_layout=cfg.bin_layout,
        partial_frames=cfg.partial_frames,
    )
