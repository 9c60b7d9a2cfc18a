"""Settings of the DVS front end, apart from its numba kernel so configuration loads without numba."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DvsPreprocessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    polarity: Literal["both", "merge", "on", "off"] = Field(
        "both",
        title="Polarity",
        description="both: two channels (0 = OFF, 1 = ON); merge: one channel of both; on / off: one polarity only.",
    )
    roi: tuple[int, int, int, int] | None = Field(
        None,
        title="Region of interest",
        description="(x0, y0, width, height) in sensor pixels; default the whole sensor. Shrunk to a multiple of pool.",
    )
    pool: Literal[1, 2, 4] = Field(1, title="Sum-pool", description="Pool size and stride in x and y (chip: 1, 2, 4).")
    mirror_x: bool = Field(False, title="Mirror x", description="Flip left-right within the region.")
    mirror_y: bool = Field(False, title="Mirror y", description="Flip top-bottom within the region.")
    transpose: bool = Field(
        False, title="Transpose", description="Swap x and y after mirroring (the chip's mirror diagonal)."
    )
    refractory_us: int = Field(
        0, ge=0, title="Refractory period", description="Drop events closer than this to the pixel's last kept event."
    )
    noise_filter_us: int = Field(
        0,
        ge=0,
        title="Noise filter window",
        description="Keep an event only if a neighbouring pixel had an event within this time; 0 = off.",
    )
    hot_pixels: list[tuple[int, int]] = Field(
        default_factory=list, title="Hot pixels", description="(x, y) sensor pixels whose events are dropped."
    )

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] < 1 or v[3] < 1):
            msg = f"(x0, y0, width, height) = {v}: x0 and y0 must be >= 0, width and height >= 1"
            raise ValueError(msg)
        return v

    @field_validator("hot_pixels")
    @classmethod
    def _hot(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        bad = [p for p in v if p[0] < 0 or p[1] < 0]
        if bad:
            msg = f"negative pixel coordinates {bad[:5]}"
            raise ValueError(msg)
        return v
