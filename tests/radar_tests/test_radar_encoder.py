"""The radar spike encoder on synthetic frames whose physics is known: static clutter, a moving reflector,
an FMCW beat tone, and the stream mechanics (block splits, geometry changes, bad frames)."""

from __future__ import annotations

import numpy as np
import pytest

from sensors.blocks import InputError
from sensors.radar.encode import RadarEncoder, cell_weights, point_ranges_m
from sensors.radar.encoder_config import RadarEncoderConfig
from sensors.radar.frames import RadarBlock, RadarGeometry, fmcw_range_resolution_m

RATE_HZ = 20.0
RANGES_M = tuple(0.3 + 0.06 * i for i in range(16))


def geometry(n_sweeps: int = 8, ranges: tuple[float, ...] = RANGES_M) -> RadarGeometry:
    return RadarGeometry("range", n_sweeps, 1, len(ranges), RATE_HZ, range_m=ranges, sensor="synthetic")


def times_us(n: int, t0_us: int = 0) -> np.ndarray:
    return t0_us + (np.arange(n) * 1e6 / RATE_HZ).astype(np.int64)


def blocks(frames: np.ndarray, g: RadarGeometry, per_block: int, t0_us: int = 0) -> list[RadarBlock]:
    t = times_us(len(frames), t0_us)
    period = int(1e6 / RATE_HZ)
    out = []
    for a in range(0, len(frames), per_block):
        b = min(a + per_block, len(frames))
        end = int(t[b]) if b < len(frames) else int(t[-1]) + period
        out.append(RadarBlock("synthetic", g, frames[a:b].astype(np.complex64), t[a:b], int(t[a]), end, 0, a))
    return out


def encode_all(enc: RadarEncoder, bs: list[RadarBlock]) -> tuple[np.ndarray, np.ndarray]:
    out = [enc.encode(b) for b in bs]
    return np.concatenate([o.t_us for o in out]), np.concatenate([o.ch for o in out])


def clutter(g: RadarGeometry, n: int, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    static = 200.0 * np.exp(1j * rng.uniform(0, 2 * np.pi, g.n_points))
    shape = (n, g.n_sweeps, 1, g.n_points)
    return static + noise * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def test_a_static_scene_stays_quiet() -> None:
    rng = np.random.default_rng(0)
    g = geometry()
    t, _ = encode_all(RadarEncoder(RadarEncoderConfig()), blocks(clutter(g, 100, rng), g, 1))
    # Receiver noise 46 dB below the reflection: nothing moves, nothing crosses a 3 dB step.
    assert len(t) < 5


def test_a_reflector_moving_away_spikes_displacement_up_in_its_range_cell() -> None:
    rng = np.random.default_rng(1)
    cfg = RadarEncoderConfig()
    g = geometry()
    frames = clutter(g, 60, rng)
    point = 8  # 0.78 m
    wavelength_mm = 299_792_458.0 / cfg.carrier_hz * 1e3
    step_mm = 0.2  # per frame: 4 mm/s, a slow lean
    phase = 4 * np.pi * step_mm * np.arange(60) / wavelength_mm
    frames[:, :, :, point] += 500.0 * np.exp(1j * phase)[:, None, None]
    _, ch = encode_all(RadarEncoder(cfg), blocks(frames, g, 1))
    cell = int(np.argmin(np.abs(np.log(cfg.cell_ranges_m() / RANGES_M[point]))))
    up = cfg.channel(cell, "displacement", down=False)
    down = cfg.channel(cell, "displacement", down=True)
    n_up, n_down = int((ch == up).sum()), int((ch == down).sum())
    # The reflector outshines the clutter, so its phase carries the point: about
    # 59 x 0.2 mm / 0.5 mm = 23 steps. The cell's static points do not dilute it (displacement
    # is weighted by motion), but the moving point lifts the cell's reference power.
    assert n_up >= 5 and n_down == 0
    assert {cfg.channel_label(int(c)).split("/")[0] for c in ch[ch % 6 >= 4]} <= {
        f"{r:.2f}m" for r in cfg.cell_ranges_m()[max(cell - 1, 0) : cell + 2]
    }


def test_blocks_of_any_size_give_the_same_spikes() -> None:
    rng = np.random.default_rng(2)
    g = geometry()
    frames = clutter(g, 80, rng)
    frames[30:50, :, :, 5] += 2000.0 * rng.standard_normal((20, g.n_sweeps, 1))  # a hand waving
    cfg = RadarEncoderConfig()
    one = encode_all(RadarEncoder(cfg), blocks(frames, g, 1))
    many = encode_all(RadarEncoder(cfg), blocks(frames, g, 7))
    assert len(one[0]) > 10
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_fast_motion_within_a_frame_is_doppler_power() -> None:
    rng = np.random.default_rng(3)
    g = geometry(n_sweeps=16)
    frames = clutter(g, 40, rng)
    # Sweep-to-sweep phase rotation with a zero sweep-mean: Doppler power only, no motion of the mean.
    spin = np.exp(1j * 2 * np.pi * np.arange(16) * 4 / 16)
    frames[20:, :, 0, 3] += 800.0 * spin[None, :]
    cfg = RadarEncoderConfig()
    _, ch = encode_all(RadarEncoder(cfg), blocks(frames, g, 1))
    features = {cfg.channel_label(int(c)).split("/")[1] for c in ch}
    assert "doppler" in features
    dop_up = sum(int((ch == cfg.channel(c, "doppler", False)).sum()) for c in range(cfg.n_range))
    assert dop_up >= 1


def test_a_geometry_change_is_counted_and_does_not_burst() -> None:
    rng = np.random.default_rng(4)
    g1, g2 = geometry(n_sweeps=8), geometry(n_sweeps=4, ranges=RANGES_M[:5])
    enc = RadarEncoder(RadarEncoderConfig())
    first = blocks(clutter(g1, 20, rng), g1, 5)
    second = blocks(clutter(g2, 20, rng), g2, 5, t0_us=first[-1].t_end_us)
    t, _ = encode_all(enc, first + second)
    assert enc.geometry_changes == 1
    assert len(t) < 10


def test_fmcw_chirps_go_through_a_range_fft() -> None:
    res_m = fmcw_range_resolution_m(60.0, 128, 2500.0)  # the OpenRadar tutorial's chirp: ~4.9 cm
    g = RadarGeometry("fmcw_adc", 4, 2, 128, 10.0, range_resolution_m=res_m, carrier_hz=77e9)
    ranges = point_ranges_m(g)
    assert len(ranges) == 128 and ranges[1] == pytest.approx(res_m)
    rng = np.random.default_rng(5)
    n = np.arange(128)
    frames = np.zeros((30, 4, 2, 128), np.complex128)
    bin_k = 20  # ~0.98 m
    amp = np.where(np.arange(30) < 15, 100.0, 1000.0)  # a target appears (20 dB) half way
    frames += amp[:, None, None, None] * np.exp(2j * np.pi * bin_k * n / 128)
    frames += rng.standard_normal(frames.shape) + 1j * rng.standard_normal(frames.shape)
    cfg = RadarEncoderConfig()
    _, ch = encode_all(RadarEncoder(cfg), blocks(frames, g, 3))
    labels = {cfg.channel_label(int(c)) for c in ch}
    target_cell = int(np.argmin(np.abs(np.log(cfg.cell_ranges_m() / (bin_k * res_m)))))
    assert cfg.channel_label(cfg.channel(target_cell, "motion", False)) in labels


def test_cells_outside_the_points_get_no_weight() -> None:
    cells = RadarEncoderConfig().cell_ranges_m()
    w = cell_weights(np.array(RANGES_M), cells)
    covered = w.sum(axis=1) > 0
    assert covered.any() and not covered.all()
    np.testing.assert_allclose(w[covered].sum(axis=1), 1.0)
    assert cells[covered].min() >= RANGES_M[0] * 0.9 and cells[covered].max() <= RANGES_M[-1] * 1.1


def test_bad_frames_are_named() -> None:
    g = geometry()
    frames = clutter(g, 4, np.random.default_rng(6))
    frames[2, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"synthetic: frame 2 .* NaN"):
        encode_all(RadarEncoder(RadarEncoderConfig()), blocks(frames, g, 4))
    enc = RadarEncoder(RadarEncoderConfig())
    b = blocks(clutter(g, 4, np.random.default_rng(7)), g, 2)
    enc.encode(b[1])
    with pytest.raises(InputError, match="frame times must increase"):
        enc.encode(b[0])


def test_config_names_bad_fields() -> None:
    with pytest.raises(ValueError, match="range_min_m"):
        RadarEncoderConfig(range_min_m=5.0, range_max_m=1.0)
    with pytest.raises(ValueError, match="extra"):
        RadarEncoderConfig.model_validate({"n_ranges": 4})
    cfg = RadarEncoderConfig(n_range=4)
    assert cfg.n_channels == 24 and cfg.channel_label(23).endswith("displacement/down")
