"""Open any radar recording this project reads, by suffix and content, for chunked reading.

``open_radar(path)`` returns a ``RadarReader`` (``sensors.radar.base``): ``read(max_frames)``
gives ``RadarChunk``s of one geometry until None, ``close()`` releases the file; ``path``,
``n_frames``, ``format``, ``sensor``, ``n_sessions``, ``next_time_us()``, ``end_time_us()`` and
``meta()`` describe it.

Formats (``fmt="auto"`` picks from the suffix, and for HDF5 from the layout inside):

* ``.h5``/``.hdf5``: Acconeer A121 (a ``sessions`` group), A111 (``data`` and ``session_info``),
  else a generic cube when a ``layout`` is given;
* ``.npy``: a generic cube when a ``layout`` is given, else a TI mmWave cube (needs ``chirp``);
* ``.txt``: one TI chirp as numpy text complex (needs ``chirp``);
* ``.bin``: a TI DCA1000 capture (needs ``chirp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from sensors.blocks import InputError
from sensors.files import expand_paths
from sensors.radar.base import RadarReader
from sensors.radar.cube import CubeLayout, open_cube
from sensors.radar.ti import BinLayout, ChirpConfig, PartialFrames, chirp_config, open_ti_bin, open_ti_cube

RadarFormat = Literal["auto", "acconeer_a121", "acconeer_a111", "ti_npy", "ti_txt", "ti_bin", "cube"]
RADAR_FORMATS: tuple[str, ...] = ("auto", "acconeer_a121", "acconeer_a111", "ti_npy", "ti_txt", "ti_bin", "cube")
RADAR_SUFFIXES = (".h5", ".hdf5", ".npy", ".bin", ".txt")


__all__ = ["RADAR_SUFFIXES", "RadarFormat", "RadarReader", "detect_radar_format", "expand_radar_paths", "open_radar"]


def expand_radar_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders replaced by their radar files (``.h5 .hdf5 .npy .bin .txt``), sorted.

    Other files and sub-folders are not replayed (logged at INFO, with their names); a folder
    with no radar file, or a missing path, is an InputError.
    """
    return expand_paths(paths, RADAR_SUFFIXES, what="radar files")


def detect_radar_format(path: Path, *, layout: CubeLayout | None = None) -> RadarFormat:
    """The format ``open_radar`` would use for ``path`` with ``fmt="auto"``."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from sensors.radar.acconeer import h5_kind, open_h5

        with open_h5(path) as f:
            try:
                kind = h5_kind(f)
                keys = sorted(f.keys())
            except Exception as exc:  # a damaged file opens, then h5py fails on a link (found by the fuzz suite)
                msg = f"{path}: damaged HDF5 file: {type(exc).__name__}: {exc}"
                raise InputError(msg) from exc
        if kind is not None:
            return kind
        if layout is not None:
            return "cube"
        msg = (
            f"{path}: HDF5 file is neither an Acconeer A121/A111 recording nor described by a cube layout "
            f"(top level: {', '.join(keys[:10]) or 'empty'})"
        )
        raise InputError(msg)
    if suffix == ".npy":
        return "cube" if layout is not None else "ti_npy"
    if suffix == ".txt":
        return "ti_txt"
    if suffix == ".bin":
        return "ti_bin"
    msg = f"{path}: unknown radar format (expected {', '.join(RADAR_SUFFIXES)})"
    raise InputError(msg)


def open_radar(
    path: Path,
    *,
    fmt: RadarFormat = "auto",
    mixed_configs: Literal["allow", "error"] = "allow",
    chirp: ChirpConfig | Path | str | None = None,
    layout: CubeLayout | None = None,
    bin_layout: BinLayout = "lvds2",
    partial_frames: PartialFrames = "error",
) -> RadarReader:
    """Open one radar recording for chunked reading.

    ``mixed_configs``: Acconeer A121 files whose sessions differ in config are read as one
    stream whose geometry changes ("allow"), or are an InputError naming the sessions and
    fields ("error"). ``chirp``: TI chirp parameters (a ``ChirpConfig``, a preset name such as
    ``"openradar"``, or a mmWave SDK ``.cfg`` path). ``layout``: how to read a generic cube.
    ``bin_layout``/``partial_frames``: see ``sensors.radar.ti``.
    """
    path = Path(path)
    if fmt not in RADAR_FORMATS:
        msg = f"unknown radar format {fmt!r}; one of {', '.join(RADAR_FORMATS)}"
        raise ValueError(msg)
    if not path.is_file():
        msg = f"{path}: no such file"
        raise InputError(msg)
    kind = detect_radar_format(path, layout=layout) if fmt == "auto" else fmt
    if kind in ("acconeer_a121", "acconeer_a111"):
        from sensors.radar.acconeer import open_a111, open_a121

        return open_a121(path, mixed_configs=mixed_configs) if kind == "acconeer_a121" else open_a111(path)
    if kind == "cube":
        if layout is None:
            msg = f"{path}: a generic cube needs a layout (axes, domain, frame rate, range cells)"
            raise InputError(msg)
        return open_cube(path, layout)
    if chirp is None:
        msg = (
            f"{path}: a TI mmWave capture needs the chirp config (a ChirpConfig, a .cfg file or a preset: 'openradar')"
        )
        raise InputError(msg)
    cfg = chirp_config(chirp)
    if kind == "ti_bin":
        return open_ti_bin(path, cfg, bin_layout=bin_layout, partial_frames=partial_frames)
    return open_ti_cube(path, cfg)
