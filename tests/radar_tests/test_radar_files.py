"""Radar recordings read by open_radar: the real files in shared/data/radar, and synthetic HDF5 files for errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from sensors.blocks import InputError
from sensors.radar.cube import CubeLayout
from sensors.radar.reader import expand_radar_paths, open_radar

A121 = "radar/acconeer_a121/recorded"
# frames per session and (sweeps, channels, points), as labels.csv and PROVENANCE.md state them
A121_FILES = {
    "presence-default.h5": ([137], [(16, 1, 11)], 12.0),
    "presence-short_range.h5": ([106], [(16, 1, 14)], 10.0),
    "presence-long_range.h5": ([130], [(16, 1, 10)], 12.0),
    "hand-motion-default.h5": ([11, 104, 5, 33], [(32, 1, 1), (64, 1, 3), (32, 1, 1), (64, 1, 3)], None),
    "hand-motion-no-presence.h5": ([130], [(64, 1, 3)], 10.0),
    "breathing-sitting.h5": ([773], [(16, 1, 21)], 20.0),
    "breathing-sitting-no-presence.h5": ([667], [(16, 1, 21)], 20.0),
    "touchless_button_default.h5": ([89], [(16, 1, 3)], 20.0),  # sweep_rate 320 / 16 sweeps
}


def _read_all(path: Path, **kw: Any) -> tuple[list[tuple[int, tuple[int, int, int]]], np.ndarray, Any]:
    """(frames, frame shape) per chunk, all frame times, and the reader (closed)."""
    chunks = []
    times = []
    with open_radar(path, **kw) as r:
        while (c := r.read(40)) is not None:
            assert c.frames.dtype == np.complex64
            chunks.append((c.frames.shape[0], c.geometry.frame_shape))
            times.append(c.t_us)
    return chunks, np.concatenate(times), r


@pytest.mark.parametrize("name", sorted(A121_FILES))
def test_a121_files_stream_with_their_sessions(data_dir: Path, name: str) -> None:
    counts, shapes, rate = A121_FILES[name]
    chunks, t_us, r = _read_all(data_dir / A121 / name)
    assert r.format == "acconeer_a121"
    assert [s.n_frames for s in r.segments] == counts
    assert [s.geometry.frame_shape for s in r.segments] == shapes
    assert sum(n for n, _ in chunks) == sum(counts) == r.n_frames
    assert t_us[0] == 0 and np.all(np.diff(t_us) > 0)
    if rate is not None:
        assert r.segments[0].geometry.frame_rate_hz == pytest.approx(rate)
        # ticks agree with the configured rate to within 0.1 %
        assert np.median(np.diff(t_us)) == pytest.approx(1e6 / rate, rel=1e-3)


def test_hand_motion_default_alternates_geometries_without_mixing_chunks(data_dir: Path) -> None:
    chunks, t_us, r = _read_all(data_dir / A121 / "hand-motion-default.h5")
    assert [s.geometry.frame_rate_hz for s in r.segments] == [2.0, 10.0, 2.0, 10.0]
    # a chunk never crosses a session: 11 | 40+40+24 | 5 | 33
    assert [n for n, _ in chunks] == [11, 40, 40, 24, 5, 33]
    # the gap between sessions is kept (session 1 starts 0.61 s after the last presence frame)
    gap_us = t_us[11] - t_us[10]
    assert 600_000 < gap_us < 620_000
    with pytest.raises(
        InputError,
        match=r"hand-motion-default.h5: sessions session_0 and session_1 .*subsweeps \(1 vs 2\)"
        r".*sweeps_per_frame \(32 vs 64\)",
    ):
        open_radar(data_dir / A121 / "hand-motion-default.h5", mixed_configs="error")


def test_a121_range_cells_from_subsweeps(data_dir: Path) -> None:
    with open_radar(data_dir / A121 / "presence-default.h5") as r:
        range_m = np.array(r.segments[0].geometry.range_m)
    base = 0.00250227400101721
    # subsweeps (start, n, step): (120,3,48) (256,4,120) (736,2,120) (976,2,120), concatenated
    points = [120, 168, 216, 256, 376, 496, 616, 736, 856, 976, 1096]
    np.testing.assert_allclose(range_m, np.array(points) * base)


def test_a121_iq_values_are_real_plus_imag(data_dir: Path) -> None:
    path = data_dir / A121 / "presence-default.h5"
    with h5py.File(path) as f:
        raw = f["sessions/session_0/group_0/entry_0/result/frame"][:3]
    with open_radar(path) as r:
        chunk = r.read(3)
    assert chunk is not None
    np.testing.assert_array_equal(chunk.frames[:, :, 0, :], raw["real"] + 1j * raw["imag"].astype(np.float32))


def test_a111_sparse(data_dir: Path) -> None:
    path = data_dir / "radar/acconeer_a111/presence_detection_sparse_input.h5"
    _, t_us, r = _read_all(path)
    g = r.segments[0].geometry
    assert (r.n_frames, g.frame_shape, g.is_complex) == (100, (64, 1, 17), False)
    assert g.frame_rate_hz == 35.0 and t_us[1] == round(1e6 / 35)
    assert g.range_m is not None
    assert g.range_m[0] == pytest.approx(1.0209, abs=1e-4)
    assert g.range_m[-1] - g.range_m[0] == pytest.approx(16 * 0.12010915577411652)
    with h5py.File(path) as f:
        raw = f["data"][5]
    with open_radar(path) as r2:
        c = r2.read(6)
    assert c is not None
    np.testing.assert_array_equal(c.frames[5, :, 0, :].real, raw[0])
    assert not c.frames.imag.any()


def test_ti_openradar_cubes(data_dir: Path) -> None:
    folder = data_dir / "radar/ti_fmcw_openradar"
    shapes = {"simple_frame_1.npy": (128, 1, 128), "doppler_example_1.npy": (128, 8, 128), "chirp.txt": (1, 1, 128)}
    for name, shape in shapes.items():
        with open_radar(folder / name, chirp="openradar") as r:
            c = r.read()
            assert c is not None and r.read() is None
        assert c.frames.shape == (1, *shape)
        assert c.geometry.domain == "fmcw_adc"
        assert c.geometry.range_resolution_m == pytest.approx(0.0488, abs=1e-4)  # "about 4.9 cm"
        # uint16 bit patterns became int16: values span both signs, none beyond int16
        assert c.frames.real.min() < 0 < c.frames.real.max() and np.abs(c.frames.real).max() <= 32768
    raw = np.load(folder / "doppler_example_1.npy")
    with open_radar(folder / "doppler_example_1.npy", chirp="openradar") as r:
        c = r.read()
    assert c is not None
    expected = ((raw.real + 32768) % 65536) - 32768 + 1j * (((raw.imag + 32768) % 65536) - 32768)
    np.testing.assert_array_equal(c.frames[0], expected.astype(np.complex64))


def test_every_file_in_the_radar_folders_opens(data_dir: Path) -> None:
    folders = [data_dir / A121, data_dir / "radar/acconeer_a111", data_dir / "radar/ti_fmcw_openradar"]
    files = expand_radar_paths(folders)
    assert len(files) == 12
    for path in files:
        _, _, r = _read_all(path, chirp="openradar")
        assert r.position == r.n_frames


# --- synthetic A121 files for the errors -------------------------------------------------------


def _write_a121(path: Path, sessions: list[dict[str, Any]], *, drop: str | None = None) -> None:
    """A small A121 exptool file; each session: frames (complex), frame_rate, subsweeps."""
    with h5py.File(path, "w") as f:
        f["server_info"] = json.dumps({"ticks_per_second": 1_000_000})
        tick = 1000
        for i, s in enumerate(sessions):
            g = f.create_group(f"sessions/session_{i}")
            frames = s["frames"]
            subs = s.get("subsweeps", [{"start_point": 100, "num_points": frames.shape[2], "step_length": 24}])
            cfg = {
                "groups": [
                    {
                        "1": {
                            "frame_rate": s.get("frame_rate", 10.0),
                            "sweep_rate": None,
                            "sweeps_per_frame": frames.shape[1],
                            "subsweeps": subs,
                        }
                    }
                ]
            }
            if drop != "session_config":
                g["session_config"] = json.dumps(cfg)
            e = g.create_group("group_0/entry_0")
            e["sensor_id"] = 1
            lengths = [sub["num_points"] for sub in subs]
            e["metadata"] = json.dumps(
                {
                    "base_step_length_m": 0.0025,
                    "subsweep_data_length": lengths,
                    "subsweep_data_offset": list(np.cumsum([0, *lengths[:-1]]).tolist()),
                }
            )
            comp = np.empty(frames.shape, dtype=[("real", "<i2"), ("imag", "<i2")])
            comp["real"], comp["imag"] = frames.real, frames.imag
            e["result/frame"] = comp
            period = round(1e6 / s.get("frame_rate", 10.0))
            e["result/tick"] = tick + period * np.arange(frames.shape[0], dtype=np.int64)
            tick += period * (frames.shape[0] + 3)


def _frames(n: int, sweeps: int, points: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-500, 500, (n, sweeps, points)) + 1j * rng.integers(-500, 500, (n, sweeps, points))


def test_synthetic_a121_round_trip_and_times(tmp_path: Path) -> None:
    a, b = _frames(4, 8, 5), _frames(3, 8, 5, seed=1)
    path = tmp_path / "two.h5"
    _write_a121(path, [{"frames": a}, {"frames": b}])
    chunks, t_us, _ = _read_all(path, mixed_configs="error")  # same config: fine
    assert [n for n, _ in chunks] == [4, 3]
    np.testing.assert_array_equal(t_us, [0, 100_000, 200_000, 300_000, 700_000, 800_000, 900_000])
    with open_radar(path) as r2:
        c = r2.read(10)
    assert c is not None
    np.testing.assert_array_equal(c.frames[:, :, 0, :], a.astype(np.complex64))
    np.testing.assert_allclose(c.geometry.range_m or (), (100 + 24 * np.arange(5)) * 0.0025)


def test_mixed_configs_error_names_file_sessions_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "mixed.h5"
    _write_a121(path, [{"frames": _frames(2, 8, 5)}, {"frames": _frames(2, 16, 5), "frame_rate": 5.0}])
    with open_radar(path) as r:  # allowed by default: two geometries
        assert [s.geometry.n_sweeps for s in r.segments] == [8, 16]
    with pytest.raises(
        InputError,
        match=r"mixed.h5: sessions session_0 and session_1 .*frame_rate \(10.0 vs 5.0\), sweeps_per_frame \(8 vs 16\)",
    ):
        open_radar(path, mixed_configs="error")


def test_missing_session_config(tmp_path: Path) -> None:
    path = tmp_path / "nocfg.h5"
    _write_a121(path, [{"frames": _frames(2, 8, 5)}], drop="session_config")
    with pytest.raises(InputError, match=r"nocfg.h5: /sessions/session_0: missing session_config"):
        open_radar(path)


def test_corrupt_hdf5(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    _write_a121(good, [{"frames": _frames(2, 8, 5)}])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes()[:600])
    with pytest.raises(InputError, match=r"bad.h5: not a readable HDF5 file"):
        open_radar(bad)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match=r"junk.h5: not a readable HDF5 file"):
        open_radar(junk)


def test_subsweeps_that_do_not_cover_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "subs.h5"
    subs = [{"start_point": 10, "num_points": 3, "step_length": 4}]
    _write_a121(path, [{"frames": _frames(2, 4, 5), "subsweeps": subs}])
    with pytest.raises(InputError, match=r"subs.h5: .*cover 3 of the frame's 5 points"):
        open_radar(path)


def test_unknown_hdf5_without_layout(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["cube"] = np.zeros((2, 3))
    with pytest.raises(InputError, match=r"plain.h5: HDF5 file is neither .* \(top level: cube\)"):
        open_radar(path)
    layout = CubeLayout(axes="frame,point", frame_rate_hz=5.0, range_step_m=0.1, values="real")
    with open_radar(path, layout=layout) as r:
        assert r.format == "cube" and r.n_frames == 2


def test_expand_radar_paths(tmp_path: Path) -> None:
    for name in ("b.npy", "a.h5", "c.bin", "d.txt", "notes.md"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in expand_radar_paths([tmp_path])] == ["a.h5", "b.npy", "c.bin", "d.txt"]
    with pytest.raises(InputError, match="no such file"):
        expand_radar_paths([tmp_path / "missing.h5"])
    with pytest.raises(InputError, match="holds no radar files"):
        expand_radar_paths([tmp_path / "sub"])
