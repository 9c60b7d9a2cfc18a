"""Acconeer exploration-tool HDF5 recordings: A121 (IQ sessions) and A111 sparse.

A121 (``sessions/session_N/group_0/entry_0/result/frame``, compound (real, imag) int16,
``(frames, sweeps_per_frame, points)``): one file is one stream, its sessions in order, each
its own ``Segment`` with the geometry of its ``session_config``. Point ``i`` of a subsweep is at
``(start_point + i * step_length) * base_step_length_m`` (entry ``metadata``); subsweeps are
concatenated along the points axis as ``subsweep_data_offset/length`` say. Frame times come
from ``result/tick`` over ``server_info.ticks_per_second``, relative to the file's first tick
(the gaps between sessions stay); a file without ticks gets frames at its frame rate, sessions
back to back. Frame rate: ``frame_rate``, else ``sweep_rate / sweeps_per_frame`` (continuous
sweep mode), else the median tick interval.

Several sensors of one group (entries ``entry_0..``) become channels when their frames and
range cells match, else the file is an InputError; several groups in one session (configs
interleaved frame by frame) are an InputError: not supported.

A111 sparse (flat ``data`` uint16 ``(frames, sensors, sweeps, points)``, JSON ``session_info``
and ``sensor_config_dump``): real amplitudes, sensors as channels, frames at ``1/update_rate``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError
from sensors.radar.base import RadarReader, Segment, json_field, positive, regular_times_us, to_complex64
from sensors.radar.frames import RadarGeometry

MixedConfigs = Literal["allow", "error"]
_NUMBERED = re.compile(r"^(session|entry)_(\d+)$")


def open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        msg = f"{path}: not a readable HDF5 file: {exc}"
        raise InputError(msg) from exc


def h5_kind(f: h5py.File) -> Literal["acconeer_a121", "acconeer_a111"] | None:
    """Which Acconeer layout an open HDF5 file has, None when neither."""
    if "sessions" in f or ("session" in f and isinstance(f["session"], h5py.Group)):
        return "acconeer_a121"
    if "data" in f and "session_info" in f:
        return "acconeer_a111"
    return None


def _numbered(group: h5py.Group, prefix: str) -> list[str]:
    found = [(int(m.group(2)), k) for k in group if (m := _NUMBERED.match(k)) and m.group(1) == prefix]
    return [k for _, k in sorted(found)]


def _get(path: Path, group: h5py.Group, name: str, what: str) -> Any:
    if name not in group:
        msg = f"{path}: {group.name}: missing {name} ({what})"
        raise InputError(msg)
    return group[name]


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Fields of two sensor configs that differ: top-level names, subsweep fields by index."""
    out: list[str] = []
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key), b.get(key)
        if va == vb:
            continue
        if key == "subsweeps" and isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
            for i, (sa, sb) in enumerate(zip(va, vb, strict=True)):
                if isinstance(sa, dict) and isinstance(sb, dict):
                    out.extend(f"subsweeps[{i}].{k}" for k in sorted(sa.keys() | sb.keys()) if sa.get(k) != sb.get(k))
                elif sa != sb:
                    out.append(f"subsweeps[{i}]")
        elif key == "subsweeps":
            na, nb = (len(v) if isinstance(v, list) else 0 for v in (va, vb))
            out.append(f"subsweeps ({na} vs {nb})")
        else:
            out.append(f"{key} ({va} vs {vb})")
    return out


def _listed(names: list[str], most: int = 12) -> str:
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


class _A121Session:
    """One session's datasets and geometry, read from its JSON without touching the frames."""

    def __init__(self, path: Path, f: h5py.File, name: str, group: h5py.Group, tps: float | None) -> None:
        self.name = name
        cfg = json_field(path, f"{name}/session_config", _get(path, group, "session_config", "session JSON")[()])
        groups = cfg.get("groups")
        if not isinstance(groups, list) or not groups:
            msg = f"{path}: {name}/session_config has no 'groups'"
            raise InputError(msg)
        if len(groups) > 1 or "group_1" in group:
            msg = f"{path}: {name} has {len(groups)} groups (configs interleaved frame by frame); not supported"
            raise InputError(msg)
        g0 = _get(path, group, "group_0", "the session's only group")
        entries = _numbered(g0, "entry")
        if not entries:
            msg = f"{path}: {name}/group_0 holds no entry_N"
            raise InputError(msg)
        self.frames: list[h5py.Dataset] = []
        sensor_cfgs: list[dict[str, Any]] = []
        ranges: list[tuple[float, ...]] = []
        ticks: h5py.Dataset | None = None
        for entry in entries:
            e = g0[entry]
            where = f"{name}/group_0/{entry}"
            sensor_id = str(int(e["sensor_id"][()])) if "sensor_id" in e else None
            sensors = groups[0]
            if not isinstance(sensors, dict) or not sensors:
                msg = f"{path}: {name}/session_config: group 0 names no sensor"
                raise InputError(msg)
            scfg = sensors.get(sensor_id) if sensor_id is not None else next(iter(sensors.values()))
            if not isinstance(scfg, dict):
                msg = f"{path}: {where}: sensor {sensor_id} has no config in session_config"
                raise InputError(msg)
            meta = json_field(path, f"{where}/metadata", _get(path, e, "metadata", "entry JSON")[()])
            result = _get(path, e, "result", "frames")
            frame = _get(path, result, "frame", "IQ frames")
            self._check_frame(path, where, frame, scfg)
            ranges.append(_ranges(path, where, scfg, meta, int(frame.shape[2])))
            self.frames.append(frame)
            sensor_cfgs.append(scfg)
            if ticks is None and "tick" in result:
                ticks = result["tick"]
        first = self.frames[0]
        for entry, frame, rng in zip(entries[1:], self.frames[1:], ranges[1:], strict=True):
            if frame.shape != first.shape or rng != ranges[0]:
                msg = (
                    f"{path}: {name}: sensors of one group differ ({entries[0]} {first.shape}, "
                    f"{entry} {frame.shape}, range cells {'equal' if rng == ranges[0] else 'differ'}); "
                    "only sensors with the same frames can be channels"
                )
                raise InputError(msg)
        self.config = sensor_cfgs[0]
        self.n_frames = int(first.shape[0])
        self.n_sweeps = int(first.shape[1])
        self.ticks: npt.NDArray[np.int64] | None = None
        if ticks is not None and tps is not None:
            t = np.asarray(ticks[()], dtype=np.int64)
            if t.shape != (self.n_frames,):
                msg = f"{path}: {name}: {t.shape[0]} ticks for {self.n_frames} frames"
                raise InputError(msg)
            self.ticks = t
        self.sweep_rate_hz = positive(path, f"{name}: sweep_rate", self.config.get("sweep_rate"))
        rate = positive(path, f"{name}: frame_rate", self.config.get("frame_rate"))
        if rate is None and self.sweep_rate_hz is not None:
            rate = self.sweep_rate_hz / self.n_sweeps  # continuous sweep mode: frames follow sweeps
        if rate is None and self.ticks is not None and tps is not None and self.n_frames > 1:
            step = float(np.median(np.diff(self.ticks)))
            if not step > 0:  # constant ticks divided by zero here (found by the fuzz suite)
                msg = f"{path}: {name}: no frame_rate and its frame ticks do not increase (median step {step:g})"
                raise InputError(msg)
            rate = tps / step
        if rate is None or not rate > 0:
            msg = f"{path}: {name}: no frame_rate, sweep_rate or ticks to time its frames"
            raise InputError(msg)
        self.frame_rate_hz = rate
        self.range_m = ranges[0]

    @staticmethod
    def _check_frame(path: Path, where: str, frame: h5py.Dataset, scfg: dict[str, Any]) -> None:
        names = frame.dtype.names
        if names is None or "real" not in names or "imag" not in names:
            msg = f"{path}: {where}/result/frame: expected compound (real, imag) int16, found {frame.dtype}"
            raise InputError(msg)
        if frame.ndim != 3:
            msg = f"{path}: {where}/result/frame: expected (frames, sweeps, points), found shape {frame.shape}"
            raise InputError(msg)
        spf = scfg.get("sweeps_per_frame")
        if spf is not None and spf != frame.shape[1]:
            msg = f"{path}: {where}/result/frame: {frame.shape[1]} sweeps per frame, session_config says {spf}"
            raise InputError(msg)

    def geometry(self) -> RadarGeometry:
        return RadarGeometry(
            "range",
            self.n_sweeps,
            len(self.frames),
            len(self.range_m),
            self.frame_rate_hz,
            self.sweep_rate_hz,
            self.range_m,
            sensor="acconeer-a121",
        )

    def load(self, start: int, stop: int) -> npt.NDArray[np.complex64]:
        parts = []
        for ds in self.frames:
            raw = ds[start:stop]
            parts.append(to_complex64(raw["real"], raw["imag"]))
        return np.ascontiguousarray(np.stack(parts, axis=2))  # (n, sweeps, sensors, points)


def _ranges(path: Path, where: str, scfg: dict[str, Any], meta: dict[str, Any], n_points: int) -> tuple[float, ...]:
    subsweeps = scfg.get("subsweeps")
    base = positive(path, f"{where}/metadata: base_step_length_m", meta.get("base_step_length_m"))
    if not isinstance(subsweeps, list) or not subsweeps or base is None:
        msg = f"{path}: {where}: session_config needs subsweeps and metadata base_step_length_m for range cells"
        raise InputError(msg)
    offsets = meta.get("subsweep_data_offset") or [0]
    lengths = meta.get("subsweep_data_length") or [n_points]
    if not (len(offsets) == len(lengths) == len(subsweeps)):
        msg = (
            f"{path}: {where}: {len(subsweeps)} subsweeps but metadata gives {len(offsets)} offsets "
            f"and {len(lengths)} lengths"
        )
        raise InputError(msg)
    out = np.full(n_points, np.nan)
    for j, (sub, off, length) in enumerate(zip(subsweeps, offsets, lengths, strict=True)):
        try:
            start, num, step = int(sub["start_point"]), int(sub["num_points"]), int(sub["step_length"])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{path}: {where}: subsweep {j} lacks start_point/num_points/step_length: {exc}"
            raise InputError(msg) from exc
        if num != length or off < 0 or off + num > n_points:
            msg = (
                f"{path}: {where}: subsweep {j} has {num} points at offset {off} (metadata length {length}); "
                f"frames have {n_points} points"
            )
            raise InputError(msg)
        out[off : off + num] = (start + np.arange(num) * step) * base
    if np.isnan(out).any():
        msg = f"{path}: {where}: subsweeps cover {int((~np.isnan(out)).sum())} of the frame's {n_points} points"
        raise InputError(msg)
    return tuple(float(x) for x in out)


def open_a121(path: Path, *, mixed_configs: MixedConfigs = "allow") -> RadarReader:
    """A121 recording, one stream: its sessions in order (see the module docstring)."""
    if mixed_configs not in ("allow", "error"):
        msg = f"mixed_configs must be 'allow' or 'error', got {mixed_configs!r}"
        raise ValueError(msg)
    f = open_h5(path)
    try:
        return _a121(path, f, mixed_configs)
    except Exception as exc:  # any failure: close the file (it stayed open on e.g. a ZeroDivisionError)
        f.close()
        if isinstance(exc, InputError):
            raise
        msg = f"{path}: unreadable A121 recording: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc


def _a121(path: Path, f: h5py.File, mixed_configs: MixedConfigs) -> RadarReader:
    tps = None
    if "server_info" in f:
        info = json_field(path, "server_info", f["server_info"][()])
        tps = positive(path, "server_info.ticks_per_second", info.get("ticks_per_second"))
    # "session" (no s) is the older single-session layout
    names = [f"sessions/{k}" for k in _numbered(f["sessions"], "session")] if "sessions" in f else ["session"]
    if not names:
        msg = f"{path}: 'sessions' holds no session_N"
        raise InputError(msg)
    sessions = [_A121Session(path, f, n.split("/")[-1], f[n], tps) for n in names]
    if mixed_configs == "error":
        for s in sessions[1:]:
            diff = config_diff(sessions[0].config, s.config)
            if diff:
                msg = (
                    f"{path}: sessions {sessions[0].name} and {s.name} have different configs "
                    f"({_listed(diff)}); mixed_configs='error'"
                )
                raise InputError(msg)
    t0 = next((int(s.ticks[0]) for s in sessions if s.ticks is not None), None)
    segments: list[Segment] = []
    next_t = 0
    for s in sessions:
        geometry = s.geometry()
        if s.ticks is not None and t0 is not None and tps is not None:
            t_us = np.round((s.ticks - t0) * (1e6 / tps)).astype(np.int64)
        else:
            t_us = regular_times_us(s.n_frames, s.frame_rate_hz, next_t)
        if t_us.size:
            next_t = int(t_us[-1]) + max(1, round(1e6 / s.frame_rate_hz))
        segments.append(Segment(s.name, geometry, t_us, s.load))
    return RadarReader(path, "acconeer_a121", segments, f.close)


def open_a111(path: Path) -> RadarReader:
    """A111 sparse recording: real amplitudes, sensors as channels, frames at 1/update_rate."""
    f = open_h5(path)
    try:
        return _a111(path, f)
    except Exception as exc:  # any failure: close the file (it stayed open on e.g. a ZeroDivisionError)
        f.close()
        if isinstance(exc, InputError):
            raise
        msg = f"{path}: unreadable A111 recording: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc


def _attr_or_dataset(path: Path, f: h5py.File, name: str) -> dict[str, Any]:
    raw = f.attrs[name] if name in f.attrs else _get(path, f, name, "JSON")[()]
    return json_field(path, name, raw)


def _a111(path: Path, f: h5py.File) -> RadarReader:
    info = _attr_or_dataset(path, f, "session_info")
    dump = (
        _attr_or_dataset(path, f, "sensor_config_dump")
        if ("sensor_config_dump" in f or "sensor_config_dump" in f.attrs)
        else {}
    )
    mode = str(dump.get("mode", f["mode"][()].decode() if "mode" in f else "sparse")).lower()
    if mode != "sparse":
        msg = f"{path}: A111 '{mode}' recordings are not supported (only the sparse service)"
        raise InputError(msg)
    data = f["data"]
    if data.ndim != 4 or data.dtype.kind not in "ui":
        msg = f"{path}: data: expected integer (frames, sensors, sweeps, points), found {data.dtype} {data.shape}"
        raise InputError(msg)
    n_frames, n_sensors, n_sweeps, n_points = (int(x) for x in data.shape)
    spf = info.get("sweeps_per_frame")
    if spf is not None and spf != n_sweeps:
        msg = f"{path}: data has {n_sweeps} sweeps per frame, session_info says {spf}"
        raise InputError(msg)
    start = info.get("range_start_m")
    step = positive(path, "session_info.step_length_m", info.get("step_length_m"))
    if not isinstance(start, int | float) or step is None:
        msg = f"{path}: session_info needs range_start_m and step_length_m"
        raise InputError(msg)
    sweep_rate = positive(path, "session_info.sweep_rate", info.get("sweep_rate"))
    rate = positive(path, "sensor_config_dump.update_rate", dump.get("update_rate"))
    if rate is None:
        msg = f"{path}: sensor_config_dump has no update_rate (frame rate) to time the frames"
        raise InputError(msg)
    range_m = tuple(float(start + i * step) for i in range(n_points))
    geometry = RadarGeometry(
        "range",
        n_sweeps,
        n_sensors,
        n_points,
        rate,
        sweep_rate,
        range_m,
        is_complex=False,
        sensor="acconeer-a111-sparse",
    )

    def load(a: int, b: int) -> npt.NDArray[np.complex64]:
        raw = np.asarray(data[a:b], dtype=np.float32)  # (n, sensors, sweeps, points)
        return np.ascontiguousarray(to_complex64(raw.transpose(0, 2, 1, 3)))

    return RadarReader(
        path, "acconeer_a111", [Segment("data", geometry, regular_times_us(n_frames, rate), load)], f.close
    )
