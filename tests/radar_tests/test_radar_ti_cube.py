"""TI mmWave captures (uint16 conversion, DCA1000 .bin round trip, .cfg parsing) and generic cubes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from sensors.blocks import InputError
from sensors.radar.cube import CubeLayout
from sensors.radar.frames import fmcw_range_resolution_m
from sensors.radar.reader import open_radar
from sensors.radar.ti import CHIRP_PRESETS, ChirpConfig, encode_bin, int16_iq

SMALL = ChirpConfig(
    start_freq_ghz=77.0,
    slope_mhz_per_us=30.0,
    adc_rate_ksps=5000.0,
    n_samples=8,
    n_chirps=3,
    n_rx=2,
    n_tx=2,
    idle_time_us=10.0,
    ramp_end_time_us=40.0,
    frame_period_ms=50.0,
)


def _cube(n_frames: int, cfg: ChirpConfig, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n_frames, cfg.n_chirps, cfg.n_tx * cfg.n_rx, cfg.n_samples)
    return (rng.integers(-32768, 32767, shape) + 1j * rng.integers(-32768, 32767, shape)).astype(np.complex64)


def test_uint16_bit_patterns_become_int16() -> None:
    stored = np.array([[65531 + 3j, 7 + 65535j]], dtype=np.complex128)
    out = int16_iq(Path("x.npy"), stored)
    np.testing.assert_array_equal(out, np.array([[-5 + 3j, 7 - 1j]], dtype=np.complex64))
    true_complex = np.array([[-5.5 + 1j]], dtype=np.complex128)  # not bit patterns: kept
    np.testing.assert_array_equal(int16_iq(Path("x.npy"), true_complex), true_complex.astype(np.complex64))


@pytest.mark.parametrize("layout", ["lvds2", "iq"])
def test_dca1000_bin_round_trip(tmp_path: Path, layout: str) -> None:
    cube = _cube(5, SMALL)
    path = tmp_path / "capture.bin"
    path.write_bytes(encode_bin(cube, layout))  # type: ignore[arg-type]
    with open_radar(path, chirp=SMALL, bin_layout=layout) as r:  # type: ignore[arg-type]
        chunks = [c for c in iter(lambda: r.read(2), None)]
    assert [c.frames.shape[0] for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), cube)
    g = chunks[0].geometry
    assert (g.domain, g.frame_shape, g.frame_rate_hz) == ("fmcw_adc", (3, 4, 8), 20.0)
    assert g.range_resolution_m == pytest.approx(fmcw_range_resolution_m(30.0, 8, 5000.0))
    assert np.concatenate([c.t_us for c in chunks]).tolist() == [0, 50_000, 100_000, 150_000, 200_000]


def test_lvds2_layout_order(tmp_path: Path) -> None:
    """TI's 2-lane layout: per chirp per RX, I0 I1 Q0 Q1 I2 I3 Q2 Q3."""
    cfg = SMALL.model_copy(update={"n_chirps": 1, "n_rx": 1, "n_tx": 1, "n_samples": 4})
    path = tmp_path / "one.bin"
    path.write_bytes(np.array([1, 2, 10, 20, 3, 4, 30, 40], dtype="<i2").tobytes())
    with open_radar(path, chirp=cfg) as r:
        c = r.read()
    assert c is not None
    np.testing.assert_array_equal(c.frames.ravel(), [1 + 10j, 2 + 20j, 3 + 30j, 4 + 40j])


def test_real_adc_bin(tmp_path: Path) -> None:
    cfg = SMALL.model_copy(update={"adc_output": "real"})
    cube = _cube(2, cfg).real.astype(np.complex64)
    path = tmp_path / "real.bin"
    path.write_bytes(encode_bin(cube, "real"))
    with open_radar(path, chirp=cfg) as r:
        c = r.read()
    assert c is not None
    np.testing.assert_array_equal(c.frames, cube)


def test_truncated_bin(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    data = encode_bin(_cube(3, SMALL))
    path.write_bytes(data[:-10])
    frame = len(data) // 3
    with pytest.raises(
        InputError,
        match=rf"cut.bin: {len(data) - 10} bytes is 2 whole frame\(s\) of {frame} bytes"
        rf".* and {frame - 10} bytes of a partial frame",
    ):
        open_radar(path, chirp=SMALL)
    with open_radar(path, chirp=SMALL, partial_frames="drop") as r:
        assert r.n_frames == 2 and r.extra_meta["dropped_bytes"] == str(frame - 10)
    path.write_bytes(data[:100])
    with pytest.raises(InputError, match="less than one frame"):
        open_radar(path, chirp=SMALL, partial_frames="drop")


def test_ti_needs_a_chirp_config(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=r"x.bin: a TI mmWave capture needs the chirp config"):
        open_radar(path)


def test_ti_npy_sample_count_and_dtype_checked(tmp_path: Path) -> None:
    path = tmp_path / "cube.npy"
    np.save(path, np.zeros((4, 2, 16), dtype=np.int16))
    with pytest.raises(InputError, match=r"cube.npy: 16 samples per chirp .* the chirp config says 8"):
        open_radar(path, chirp=SMALL)
    np.save(path, np.array(["a", "b"]))
    with pytest.raises(InputError, match=r"cube.npy: expected a complex or integer cube, found dtype <U1"):
        open_radar(path, chirp=SMALL)
    np.save(path, np.ones((2, 3, 4, 8), dtype=np.int16))  # 4-d: frames of int16 taken as they are
    with open_radar(path, chirp=SMALL) as r:
        c = r.read()
    assert c is not None and c.frames.shape == (2, 3, 4, 8) and r.n_frames == 2


CFG_TEXT = """% a mmWave SDK profile
sensorStop
flushCfg
dfeDataOutputMode 1
channelCfg 15 5 0
adcCfg 2 1
adcbufCfg -1 0 1 1 1
profileCfg 0 77 429 7 57.14 0 0 70 1 256 5209 0 0 30
chirpCfg 0 0 0 0 0 0 0 1
chirpCfg 1 1 0 0 0 0 0 4
frameCfg 0 1 16 0 100 1 0
sensorStart
"""


def test_cli_cfg_parsing(tmp_path: Path) -> None:
    path = tmp_path / "profile.cfg"
    path.write_text(CFG_TEXT)
    cfg = ChirpConfig.from_cfg(path)
    assert cfg == ChirpConfig(
        start_freq_ghz=77.0,
        idle_time_us=429.0,
        ramp_end_time_us=57.14,
        slope_mhz_per_us=70.0,
        n_samples=256,
        adc_rate_ksps=5209.0,
        n_chirps=16,
        n_tx=2,
        n_rx=4,
        frame_period_ms=100.0,
    )
    bad = tmp_path / "bad.cfg"
    bad.write_text(CFG_TEXT.replace("frameCfg 0 1 16 0 100 1 0\n", ""))
    with pytest.raises(InputError, match=r"bad.cfg: chirp config lacks frameCfg"):
        ChirpConfig.from_cfg(bad)
    bad.write_text(CFG_TEXT.replace("profileCfg 0 77 429", "profileCfg 0 77 x"))
    with pytest.raises(InputError, match=r"bad.cfg:8: profileCfg"):
        ChirpConfig.from_cfg(bad)


def test_openradar_preset_matches_provenance() -> None:
    c = CHIRP_PRESETS["openradar"]
    assert (c.start_freq_ghz, c.slope_mhz_per_us, c.adc_rate_ksps, c.n_samples, c.n_chirps) == (
        77.4201,
        60,
        2500,
        128,
        128,
    )
    assert (c.n_tx, c.n_rx, c.idle_time_us, c.ramp_end_time_us) == (2, 4, 30, 62)
    with pytest.raises(ValidationError):
        ChirpConfig(
            start_freq_ghz=77,
            slope_mhz_per_us=-1,
            adc_rate_ksps=1,
            n_samples=1,
            n_chirps=1,
            n_rx=1,
            ramp_end_time_us=1,
            frame_period_ms=1,
        )


# --- generic cubes ------------------------------------------------------------------------------


def test_npy_cube_with_declared_axes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(6, 5, 2, 3)) + 1j * rng.normal(size=(6, 5, 2, 3))).astype(np.complex64)
    path = tmp_path / "c.npy"
    np.save(path, data.transpose(0, 3, 1, 2))  # stored as frame, point, sweep, channel
    layout = CubeLayout(axes="frame,sample,chirp,rx", frame_rate_hz=4.0, range_start_m=0.5, range_step_m=0.25)
    with open_radar(path, layout=layout) as r:
        c = r.read(4)
        rest = r.read(4)
    assert c is not None and rest is not None
    np.testing.assert_array_equal(np.concatenate([c.frames, rest.frames]), data)
    assert c.geometry.range_m == (0.5, 0.75, 1.0)
    assert rest.t_us.tolist() == [1_000_000, 1_250_000]


def test_h5_cube_compound_and_fmcw(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 8), dtype=[("real", "<i2"), ("imag", "<i2")])
    data["real"], data["imag"] = 1, -2
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["radar/iq"] = data
        f["other"] = np.zeros(3)
    layout = CubeLayout(axes="frame,chirp,sample", dataset="radar/iq", domain="fmcw_adc", chirp=SMALL)
    with open_radar(path, layout=layout) as r:
        c = r.read()
    assert c is not None
    assert c.frames.shape == (3, 4, 1, 8) and c.frames[0, 0, 0, 0] == 1 - 2j
    assert c.geometry.frame_rate_hz == 20.0 and c.geometry.domain == "fmcw_adc"
    no_name = CubeLayout(axes="frame,chirp,sample", domain="fmcw_adc", chirp=SMALL)
    with pytest.raises(InputError, match=r"c.h5: layout names no dataset and the file holds 2"):
        open_radar(path, layout=no_name)


def test_cube_mismatches_name_file_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "c.npy"
    np.save(path, np.zeros((2, 4, 3), dtype=np.float32))
    layout = CubeLayout(axes="frame,sweep,point", frame_rate_hz=1.0, range_step_m=0.1)
    with pytest.raises(InputError, match=r"c.npy: layout declares complex values, found dtype float32"):
        open_radar(path, layout=layout)
    real = layout.model_copy(update={"values": "real", "n_points": 5})
    with pytest.raises(InputError, match=r"c.npy: shape \(2, 4, 3\) as 'frame,sweep,point' .*point 3 \(expected 5\)"):
        open_radar(path, layout=real)
    four = layout.model_copy(update={"values": "real", "axes": "frame,sweep,channel,point"})
    with pytest.raises(InputError, match=r"c.npy: layout axes .* \(4-d\), found a 3-d array of shape \(2, 4, 3\)"):
        open_radar(path, layout=four)
    np.save(path, np.full((2, 4, 3), np.nan, dtype=np.float32))
    with (
        open_radar(path, layout=layout.model_copy(update={"values": "real"})) as r,
        pytest.raises(InputError, match=r"c.npy: cube: frame 0 holds NaN"),
    ):
        r.read()
    with pytest.raises(ValidationError, match="unknown axis"):
        CubeLayout(axes="frame,time,point", frame_rate_hz=1.0, range_step_m=0.1)
    with pytest.raises(ValidationError, match="needs range_step_m"):
        CubeLayout(axes="frame,point", frame_rate_hz=1.0)
