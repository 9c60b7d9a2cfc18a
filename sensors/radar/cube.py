"""Generic radar cubes (``.npy`` or one HDF5 dataset) with a declared layout.

``CubeLayout.axes`` names the file's axes in order, from ``frame``, ``sweep`` (alias ``chirp``),
``channel`` (aliases ``antenna``, ``rx``, ``sensor``) and ``point`` (aliases ``sample``, ``range``);
``point`` is required, the others default to size 1. Values are complex (complex dtypes, or an
HDF5 compound with ``real`` and ``imag`` fields) or real (integer or float), as declared:
a file of the other kind is an InputError naming the file, what was declared and what was
found, as is a declared size that differs. Frames are read in chunks (memory map, HDF5 slices).
This module imports h5py only when it opens an HDF5 file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensors.blocks import InputError
from sensors.radar.base import RadarReader, Segment, regular_times_us, to_complex64
from sensors.radar.frames import RadarGeometry
from sensors.radar.ti import ChirpConfig

AXES = ("frame", "sweep", "channel", "point")
_ALIASES = {
    "chirp": "sweep",
    "antenna": "channel",
    "rx": "channel",
    "sensor": "channel",
    "sample": "point",
    "range": "point",
}


def parse_axes(text: str) -> tuple[str, ...]:
    """Canonical axis names of an axis string (``"frame,chirp,rx,sample"``); ValueError when invalid."""
    names = tuple(_ALIASES.get(a.strip().lower(), a.strip().lower()) for a in text.split(","))
    unknown = [a for a in names if a not in AXES]
    if unknown:
        msg = f"unknown axis name(s) {unknown} in {text!r}; use frame, sweep, channel, point (or aliases)"
        raise ValueError(msg)
    if len(set(names)) != len(names) or "point" not in names:
        msg = f"axes {text!r} must name each axis at most once and include point"
        raise ValueError(msg)
    return names


class CubeLayout(BaseModel):
    """How to read a generic radar cube."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: str = Field(
        "frame,sweep,channel,point",
        title="Axes",
        description="The file's axes in order: frame, sweep (chirp), channel (antenna/rx/sensor), point (sample).",
    )
    dataset: str | None = Field(
        None, title="HDF5 dataset", description="Dataset path in an .h5 file; optional when it holds only one."
    )
    domain: Literal["range", "fmcw_adc"] = Field(
        "range", description="'range': points are range cells; 'fmcw_adc': ADC samples of FMCW chirps."
    )
    values: Literal["complex", "real"] = Field("complex", description="Complex IQ or real amplitudes.")
    frame_rate_hz: float | None = Field(
        None, gt=0, title="Frame rate (Hz)", description="Frames per second (the chirp config's for fmcw_adc)."
    )
    sweep_rate_hz: float | None = Field(None, gt=0, title="Sweep rate (Hz)", description="Sweeps per second.")
    range_start_m: float = Field(0.0, title="First range cell (m)", description="domain 'range': distance of point 0.")
    range_step_m: float | None = Field(
        None, gt=0, title="Range cell spacing (m)", description="domain 'range': distance between points."
    )
    chirp: ChirpConfig | None = Field(None, description="domain 'fmcw_adc': the chirp parameters.")
    n_sweeps: int | None = Field(None, ge=1, description="Expected sweeps per frame (checked when given).")
    n_channels: int | None = Field(None, ge=1, description="Expected channels (checked when given).")
    n_points: int | None = Field(None, ge=1, description="Expected points (checked when given).")

    @field_validator("axes")
    @classmethod
    def _valid_axes(cls, v: str) -> str:
        parse_axes(v)
        return v

    @model_validator(mode="after")
    def _domain_fields(self) -> CubeLayout:
        if self.domain == "range" and (self.range_step_m is None or self.frame_rate_hz is None):
            msg = "layout: domain 'range' needs range_step_m and frame_rate_hz"
            raise ValueError(msg)
        if self.domain == "fmcw_adc" and self.chirp is None:
            msg = "layout: domain 'fmcw_adc' needs chirp (the chirp parameters)"
            raise ValueError(msg)
        return self


def _h5_dataset(path: Path, layout: CubeLayout) -> tuple[Any, Any]:
    from sensors.radar.acconeer import open_h5

    f = open_h5(path)
    try:
        return _dataset_in(path, f, layout)
    except Exception as exc:  # h5py raises RuntimeError walking a damaged file (found by the fuzz suite)
        f.close()
        if isinstance(exc, InputError):
            raise
        msg = f"{path}: damaged HDF5 file: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc


def _dataset_in(path: Path, f: Any, layout: CubeLayout) -> tuple[Any, Any]:
    import h5py

    name = layout.dataset
    if name is None:
        found: list[str] = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim >= 1 else None)
        if len(found) != 1:
            msg = f"{path}: layout names no dataset and the file holds {len(found)} ({', '.join(found[:8])})"
            raise InputError(msg)
        name = found[0]
    if name not in f or not isinstance(f[name], h5py.Dataset):
        msg = f"{path}: no dataset {name!r} (layout.dataset)"
        raise InputError(msg)
    return f, f[name]


def _kind(dtype: np.dtype[Any]) -> str | None:
    names = dtype.names
    if names is not None:
        return "complex" if "real" in names and "imag" in names and len(names) == 2 else None
    if dtype.kind == "c":
        return "complex"
    if dtype.kind in "iuf":
        return "real"
    return None


def open_cube(path: Path, layout: CubeLayout) -> RadarReader:
    """A generic cube read in chunks as ``layout`` declares."""
    axes = parse_axes(layout.axes)
    closer = None
    if path.suffix.lower() == ".npy":
        try:
            data: Any = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # numpy's header parser also raises SyntaxError and tokenize.TokenError
            msg = f"{path}: not a readable .npy array: {type(exc).__name__}: {exc}"
            raise InputError(msg) from exc
    else:
        f, data = _h5_dataset(path, layout)
        closer = f.close
    try:
        return _reader(path, layout, axes, data, closer)
    except Exception as exc:  # close the HDF5 file whatever went wrong (it leaked on non-InputErrors)
        if closer is not None:
            closer()
        if isinstance(exc, InputError):
            raise
        msg = f"{path}: unreadable radar cube: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc


def _reader(path: Path, layout: CubeLayout, axes: tuple[str, ...], data: Any, closer: Any) -> RadarReader:
    kind = _kind(data.dtype)
    if kind != layout.values:
        msg = f"{path}: layout declares {layout.values} values, found dtype {data.dtype}"
        raise InputError(msg)
    if data.ndim != len(axes):
        msg = f"{path}: layout axes {layout.axes!r} ({len(axes)}-d), found a {data.ndim}-d array of shape {data.shape}"
        raise InputError(msg)
    size = {a: 1 for a in AXES} | dict(zip(axes, (int(s) for s in data.shape), strict=True))
    chirp = layout.chirp
    expect = {
        "sweep": layout.n_sweeps,
        "channel": layout.n_channels,
        "point": chirp.n_samples if chirp is not None and layout.domain == "fmcw_adc" else layout.n_points,
    }
    wrong = [f"{a} {size[a]} (expected {n})" for a, n in expect.items() if n is not None and size[a] != n]
    if wrong or size["frame"] == 0:
        found = ", ".join(wrong) or "no frames"
        msg = f"{path}: shape {data.shape} as {layout.axes!r} does not match the layout: {found}"
        raise InputError(msg)
    if layout.domain == "fmcw_adc" and chirp is not None:
        geometry = RadarGeometry(
            "fmcw_adc",
            size["sweep"],
            size["channel"],
            size["point"],
            layout.frame_rate_hz or chirp.frame_rate_hz,
            layout.sweep_rate_hz or chirp.chirp_rate_hz,
            range_resolution_m=chirp.range_resolution_m,
            is_complex=kind == "complex",
            sensor="cube",
        )
    else:
        assert layout.range_step_m is not None and layout.frame_rate_hz is not None  # the validator checked
        range_m = tuple(layout.range_start_m + i * layout.range_step_m for i in range(size["point"]))
        geometry = RadarGeometry(
            "range",
            size["sweep"],
            size["channel"],
            size["point"],
            layout.frame_rate_hz,
            layout.sweep_rate_hz,
            range_m,
            is_complex=kind == "complex",
            sensor="cube",
        )
    # transpose the file's axes (missing ones appended as size 1) into frame, sweep, channel, point
    order = [axes.index(a) for a in AXES if a in axes]
    frame_first = "frame" in axes

    def load(a: int, b: int) -> npt.NDArray[np.complex64]:
        if frame_first:
            idx = tuple(slice(a, b) if ax == "frame" else slice(None) for ax in axes)
            raw = np.asarray(data[idx])
        else:
            raw = np.asarray(data[()])
        cube = to_complex64(raw["real"], raw["imag"]) if raw.dtype.names else raw.astype(np.complex64)
        cube = cube.transpose(order)
        return np.ascontiguousarray(cube.reshape(b - a, size["sweep"], size["channel"], size["point"]))

    times = regular_times_us(size["frame"], geometry.frame_rate_hz)
    return RadarReader(path, "cube", [Segment("cube", geometry, times, load)], closer)
