"""Fuzzing the radar readers (sensors/radar/reader.py open_radar): Acconeer A121 HDF5, TI .npy/.txt/.bin
with a .cfg chirp config, generic cubes (.npy, .h5). Seeds are written here with h5py/numpy/encode_bin."""

from __future__ import annotations

import functools
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import given
from hypothesis import strategies as st

from sensors.radar.cube import CubeLayout
from sensors.radar.reader import open_radar
from sensors.radar.ti import ChirpConfig, encode_bin

CHIRP = ChirpConfig(
    start_freq_ghz=77.0, slope_mhz_per_us=60.0, adc_rate_ksps=2500.0, n_samples=8, n_chirps=4, n_rx=2, n_tx=1,
    idle_time_us=30.0, ramp_end_time_us=62.0, frame_period_ms=100.0,
)  # fmt: skip
CFG_TEXT = """% small TI mmWave CLI config
sensorStop
channelCfg 3 1 0
adcCfg 2 1
profileCfg 0 77 30 6 62 0 0 60 1 8 2500 0 0 30
chirpCfg 0 0 0 0 0 0 0 1
frameCfg 0 0 4 10 100 1 0
sensorStart
"""
LAYOUT = CubeLayout(axes="frame,sweep,channel,point", frame_rate_hz=10.0, range_step_m=0.05)


def read_all(path: Path, **kw: Any) -> int:
    with open_radar(path, **kw) as reader:
        n = 0
        while (chunk := reader.read(3)) is not None:
            n += chunk.frames.shape[0]
        return n


def _cube(frames: int = 3) -> np.ndarray:
    rng = np.random.default_rng(3)
    shape = (frames, CHIRP.n_chirps, CHIRP.n_rx * CHIRP.n_tx, CHIRP.n_samples)
    return (rng.integers(-500, 500, shape) + 1j * rng.integers(-500, 500, shape)).astype(np.complex128)


def _a121_config(frame_rate: float = 10.0, sweeps: int = 4, points: int = 5, start: int = 100) -> dict[str, Any]:
    subs = [{"start_point": start, "num_points": points, "step_length": 24}]
    return {
        "groups": [{"1": {"frame_rate": frame_rate, "sweep_rate": None, "sweeps_per_frame": sweeps, "subsweeps": subs}}]
    }


def _a121_metadata(points: int = 5) -> dict[str, Any]:
    return {"base_step_length_m": 0.0025, "subsweep_data_length": [points], "subsweep_data_offset": [0]}


def write_a121(path: Path, config: Any, metadata: Any, frames: np.ndarray, ticks: np.ndarray | None = None) -> None:
    with h5py.File(path, "w") as f:
        f["server_info"] = json.dumps({"ticks_per_second": 1_000_000})
        g = f.create_group("sessions/session_0")
        g["session_config"] = config if isinstance(config, str) else json.dumps(config)
        e = g.create_group("group_0/entry_0")
        e["sensor_id"] = 1
        e["metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
        comp = np.empty(frames.shape, dtype=[("real", "<i2"), ("imag", "<i2")])
        comp["real"], comp["imag"] = frames.real, frames.imag
        e["result/frame"] = comp
        e["result/tick"] = ticks if ticks is not None else 1000 + 100_000 * np.arange(frames.shape[0], dtype=np.int64)


@functools.cache
def seed(name: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if name == "a121.h5":
            write_a121(path, _a121_config(), _a121_metadata(), _cube()[:, :4, 0, :5])
        elif name == "cube.h5":
            with h5py.File(path, "w") as f:
                f["cube"] = _cube().astype(np.complex64)
        elif name == "ti.bin":
            path.write_bytes(encode_bin(_cube()))
        elif name == "ti.txt":
            np.savetxt(path, _cube()[0].reshape(-1, CHIRP.n_samples))
        elif name == "ti.cfg":
            path.write_text(CFG_TEXT)
        else:  # ti.npy and cube.npy
            buf = io.BytesIO()
            np.save(buf, _cube())
            return buf.getvalue()
        return path.read_bytes()


OPEN_KW: dict[str, dict[str, Any]] = {
    "a121.h5": {},
    "cube.h5": {"layout": LAYOUT},
    "cube.npy": {"layout": LAYOUT},
    "ti.npy": {"chirp": CHIRP},
    "ti.txt": {"chirp": CHIRP},
    "ti.bin": {"chirp": CHIRP},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("radar_fuzz")


def _target(name: str) -> str:
    return "radar:" + name.replace("cube.", "cube_").replace("ti.", "ti_").replace("a121.h5", "acconeer")


@pytest.mark.parametrize("name", list(OPEN_KW))
def test_seeds_are_valid(work: Path, name: str) -> None:
    path = work / f"valid_{name}"
    path.write_bytes(seed(name))
    assert read_all(path, **OPEN_KW[name]) >= 1


def test_cfg_seed_is_valid(work: Path) -> None:
    (work / "valid.cfg").write_text(CFG_TEXT)
    (work / "valid.bin").write_bytes(seed("ti.bin"))
    assert read_all(work / "valid.bin", chirp=work / "valid.cfg") == 3


@FUZZ
@given(data=st.data(), name=st.sampled_from(list(OPEN_KW)))
def test_damaged_radar_file(work: Path, data: st.DataObject, name: str) -> None:
    path = work / f"damaged_{name}"
    path.write_bytes(data.draw(mutated(seed(name), header_bytes=256)))
    guarded(_target(name), lambda: read_all(path, **OPEN_KW[name]), names=str(path))


@FUZZ
@given(data=st.data())
def test_damaged_chirp_cfg(work: Path, data: st.DataObject) -> None:
    cfg = work / "damaged.cfg"
    cfg.write_bytes(data.draw(mutated(CFG_TEXT.encode(), header_bytes=len(CFG_TEXT))))
    (work / "for_cfg.bin").write_bytes(seed("ti.bin"))
    guarded("radar:ti_cfg", lambda: read_all(work / "for_cfg.bin", chirp=cfg), names=str(work))


@FUZZ
@given(
    frame_rate=st.sampled_from([10.0, 0.0, -1.0, math.nan, math.inf, 1e-300, None, "x"]),
    sweeps=st.sampled_from([4, 0, -1, 10**12, None]),
    points=st.sampled_from([5, 0, -5, 10**12]),
    start=st.sampled_from([100, -(10**12), 10**15]),
    meta_points=st.sampled_from([5, 0, 10**12, -1]),
    config_text=st.sampled_from([None, "", "{", "[]", "null", '{"groups": []}', '{"groups": [{}]}']),
    ticks=st.sampled_from(["ok", "backwards", "constant", "huge", "short"]),
)
def test_a121_structure(
    work: Path, frame_rate: Any, sweeps: Any, points: int, start: int, meta_points: int, config_text: str | None,
    ticks: str,
) -> None:  # fmt: skip
    """Session configs and metadata that lie: zero/NaN rates, 10^12 sweeps/points, broken JSON, bad tick runs."""
    frames = _cube()[:, :4, 0, :5]
    tick_values = {
        "ok": None,
        "backwards": np.array([3000, 2000, 1000], dtype=np.int64),
        "constant": np.array([5, 5, 5], dtype=np.int64),
        "huge": np.array([0, 2**62, 2**63 - 1], dtype=np.int64),
        "short": np.array([1], dtype=np.int64),
    }[ticks]
    config = config_text if config_text is not None else _a121_config(frame_rate, sweeps, points, start)
    path = work / "structure.h5"
    write_a121(path, config, _a121_metadata(meta_points), frames, tick_values)
    guarded("radar:acconeer", lambda: read_all(path), names=str(path))


@FUZZ
@given(
    shape=st.sampled_from([(3, 4, 2, 8), (0, 4, 2, 8), (8,), (4, 8), (2, 3), (1, 1, 1, 1, 8), (3, 4, 2, 7), ()]),
    dtype=st.sampled_from(["<c16", "<c8", "<i2", "<u2", "<f8", "<i8", "|b1", "<U3"]),
    values=st.sampled_from(["small", "nan", "inf", "huge"]),
    name=st.sampled_from(["ti.npy", "cube.npy"]),
)
def test_npy_cube_shapes_and_values(work: Path, shape: tuple[int, ...], dtype: str, values: str, name: str) -> None:
    """Cubes of the wrong rank, dtype, or with NaN/inf/huge values."""
    rng = np.random.default_rng(0)
    fill = {"small": 3.0, "nan": math.nan, "inf": math.inf, "huge": 1e300}[values]
    base = np.full(shape, fill) if values != "small" else rng.integers(-5, 5, shape)
    try:
        arr = np.asarray(base).astype(dtype)
    except (ValueError, OverflowError):
        arr = np.asarray(rng.integers(-5, 5, shape)).astype(dtype)
    path = work / f"shapes_{name}"
    np.save(path, arr)
    guarded(_target(name), lambda: read_all(path, **OPEN_KW[name]), names=str(path))


@FUZZ
@given(
    line=st.sampled_from(["profileCfg", "frameCfg", "channelCfg", "adcCfg"]),
    index=st.integers(0, 13),
    value=st.sampled_from(["0", "-1", "1e308", "nan", "inf", "99999999999", "x", "0.0000001", "4294967295"]),
)
def test_chirp_cfg_extreme_values(work: Path, line: str, index: int, value: str) -> None:
    """One CLI value set to zero, negative, NaN or huge: a clear error, never a zero division or a huge frame."""
    lines = []
    for raw in CFG_TEXT.splitlines():
        words = raw.split()
        if words and words[0] == line and index + 1 < len(words):
            words[index + 1] = value
        lines.append(" ".join(words))
    cfg = work / "extreme.cfg"
    cfg.write_text("\n".join(lines) + "\n")
    (work / "for_extreme.bin").write_bytes(seed("ti.bin"))
    # A config that is valid but does not fit the capture is reported on the capture: either file is named.
    guarded("radar:ti_cfg", lambda: read_all(work / "for_extreme.bin", chirp=cfg), names=str(work))


@pytest.mark.parametrize(
    ("line", "index", "value"),
    [
        ("profileCfg", 9, "inf"),  # numAdcSamples: int(inf) was a bare OverflowError
        ("adcCfg", 1, "nan"),  # adcOutputFmt: int(nan) was a bare ValueError outside the try
        ("profileCfg", 7, "1e308"),  # slope: range resolution 0, rejected later by RadarGeometry (bare ValueError)
        ("frameCfg", 4, "1e308"),  # frame period: frame times overflowed int64
    ],
)
def test_chirp_cfg_regressions(work: Path, line: str, index: int, value: str) -> None:
    """Found by the fuzzer: each was a bare exception; now an InputError naming the .cfg."""
    test_chirp_cfg_extreme_values.hypothesis.inner_test(work, line, index, value)  # type: ignore[attr-defined]
    cfg = work / "extreme.cfg"
    outcome = guarded("radar:ti_cfg", lambda: read_all(work / "for_extreme.bin", chirp=cfg), names=str(cfg))
    assert outcome.error is not None


def test_regression_radar_files(work: Path) -> None:
    """Found by the fuzzer: a 0-d TI cube (IndexError), constant A121 ticks without a frame rate
    (ZeroDivisionError, and the HDF5 file stayed open), an .npy header numpy cannot tokenize (TokenError)."""
    np.save(work / "zero_d.npy", np.array(1 + 1j))
    assert guarded("radar:ti_npy", lambda: read_all(work / "zero_d.npy", chirp=CHIRP), names="zero_d").error
    path = work / "constant_ticks.h5"
    write_a121(path, _a121_config(frame_rate=None), _a121_metadata(), _cube()[:, :4, 0, :5], np.array([5, 5, 5]))
    outcome = guarded("radar:acconeer", lambda: read_all(path), names=str(path))
    assert outcome.error is not None
    write_a121(path, _a121_config(), _a121_metadata(), _cube()[:, :4, 0, :5])  # the file was closed
    bad = work / "token.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': (\n}   \n")
    assert guarded("radar:cube_npy", lambda: read_all(bad, layout=LAYOUT), names=str(bad)).error


def test_chirp_bandwidth_underflow_is_a_validation_error() -> None:
    """Found by the fuzzer: a bandwidth that underflows to 0 raised ZeroDivisionError inside validation."""
    values = CHIRP.model_dump() | {"slope_mhz_per_us": 5e-324, "adc_rate_ksps": 1e300}
    with pytest.raises(ValueError, match="range resolution"):
        ChirpConfig(**values)
