"""RadarFileSource: replay of radar recordings as RadarBlocks and an EndOfStream per file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sensors.blocks import EndOfStream, InputError
from sensors.radar.file_config import RadarFileSourceConfig, radar_file_source
from sensors.radar.frames import RadarBlock
from sensors.radar.source import RadarFileSource
from sensors.radar.ti import encode_bin

A121 = "radar/acconeer_a121/recorded"


async def _collect(src: RadarFileSource, limit: int = 100_000) -> list[RadarBlock | EndOfStream]:
    out: list[RadarBlock | EndOfStream] = []
    async for item in src:
        out.append(item)
        if len(out) >= limit:
            break
    return out


def _check_stream(items: list[RadarBlock | EndOfStream]) -> None:
    """Blocks of each stream tile time: each starts where the previous ended, and the EndOfStream is the last end."""
    prev: RadarBlock | None = None
    for item in items:
        if isinstance(item, RadarBlock):
            assert item.t_us[0] == item.t_start_us < item.t_end_us
            assert np.all(np.diff(item.t_us) > 0) and item.t_us[-1] < item.t_end_us
            if prev is not None:
                assert item.t_start_us == prev.t_end_us and item.first_frame == prev.first_frame + len(prev)
            else:
                assert item.t_start_us == 0 and item.first_frame == 0
            prev = item
        else:
            assert prev is not None and item.t_end_us == prev.t_end_us
            prev = None


async def test_every_shared_radar_file_streams_through(data_dir: Path) -> None:
    folders = [data_dir / A121, data_dir / "radar/acconeer_a111", data_dir / "radar/ti_fmcw_openradar"]
    src = RadarFileSource(folders, speed="max", chirp="openradar", frames_per_block=3)
    items = await _collect(src)
    _check_stream(items)
    ends = {Path(e.stream).name: e for e in items if isinstance(e, EndOfStream)}
    frames = {name: int(e.meta["frames"]) for name, e in ends.items()}
    assert frames == {
        "presence-default.h5": 137,
        "presence-short_range.h5": 106,
        "presence-long_range.h5": 130,
        "hand-motion-default.h5": 153,
        "hand-motion-no-presence.h5": 130,
        "breathing-sitting.h5": 773,
        "breathing-sitting-no-presence.h5": 667,
        "touchless_button_default.h5": 89,
        "presence_detection_sparse_input.h5": 100,
        "simple_frame_1.npy": 1,
        "doppler_example_1.npy": 1,
        "chirp.txt": 1,
    }
    assert src.frames_sent == sum(frames.values()) and src.files_done == 12
    hand = ends["hand-motion-default.h5"].meta
    assert hand["sessions"] == "4" and hand["geometry"] == "32x1x1@2Hz,64x1x3@10Hz,32x1x1@2Hz,64x1x3@10Hz"
    assert ends["presence_detection_sparse_input.h5"].meta["sensor"] == "acconeer-a111-sparse"
    # the last frame of a file ends one frame period after its time: 137 frames at 12 Hz
    presence = [b for b in items if isinstance(b, RadarBlock) and b.stream.endswith("presence-default.h5")]
    assert presence[-1].t_end_us == presence[-1].t_us[-1] + round(1e6 / 12)


async def test_blocks_never_cross_a_session(data_dir: Path) -> None:
    src = RadarFileSource([data_dir / A121 / "hand-motion-default.h5"], speed="max", frames_per_block=4)
    items = await _collect(src)
    blocks = [b for b in items if isinstance(b, RadarBlock)]
    sizes = [len(b) for b in blocks]
    # sessions of 11, 104, 5, 33 frames cut into blocks of 4
    assert sizes == [4, 4, 3] + [4] * 26 + [4, 1] + [4] * 8 + [1]
    assert [b.geometry.frame_rate_hz for b in blocks[:4]] == [2.0, 2.0, 2.0, 10.0]
    # the last presence block covers the gap to the first hand-motion frame
    assert blocks[2].t_end_us == blocks[3].t_start_us


async def test_bad_files_raise_or_are_skipped_and_counted(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not hdf5" * 100)
    good = data_dir / A121 / "touchless_button_default.h5"
    with pytest.raises(InputError, match=r"broken.h5: not a readable HDF5 file"):
        await _collect(RadarFileSource([bad, good], speed="max"))
    src = RadarFileSource([bad, good], speed="max", on_error="skip")
    items = await _collect(src)
    assert [Path(e.stream).name for e in items if isinstance(e, EndOfStream)] == ["touchless_button_default.h5"]
    assert src.drops() == {"skipped_files": 1, "dropped_bytes": 0}
    assert "broken.h5" in str(src.errors[0])


async def test_labels_loop_and_paced_replay(tmp_path: Path) -> None:
    cube = np.arange(2 * 3 * 1 * 8, dtype=np.float32).reshape(2, 3, 1, 8) * (1 + 1j)
    path = tmp_path / "cap.bin"
    path.write_bytes(encode_bin(cube, "iq") + b"\0" * 6)  # a partial frame, dropped and counted
    chirp = {
        "start_freq_ghz": 77,
        "slope_mhz_per_us": 30,
        "adc_rate_ksps": 5000,
        "n_samples": 8,
        "n_chirps": 3,
        "n_rx": 1,
        "ramp_end_time_us": 40,
        "frame_period_ms": 1.0,
    }
    cfg = RadarFileSourceConfig.model_validate(
        {"paths": [path], "chirp": chirp, "bin_layout": "iq", "partial_frames": "drop", "speed": 50.0, "loop": True}
    )
    src = radar_file_source(cfg, labels={str(path.resolve()): "walk"})
    items = await _collect(src, limit=6)  # two passes of 2 blocks + EndOfStream
    assert [type(i).__name__ for i in items] == ["RadarBlock", "RadarBlock", "EndOfStream"] * 2
    end = items[2]
    assert isinstance(end, EndOfStream) and end.label == "walk" and end.meta["dropped_bytes"] == "6"
    assert end.t_end_us == 2000
    first = items[0]
    assert isinstance(first, RadarBlock)
    np.testing.assert_array_equal(first.frames, cube[:1].astype(np.complex64))
    assert src.drops()["dropped_bytes"] == 12  # counted on each pass


def test_config_module_imports_without_h5py_or_numba() -> None:
    code = (
        "import sys, sensors.radar.file_config as c; "
        "c.RadarFileSourceConfig(paths=['x.h5'], chirp='openradar'); "
        "print('h5py' in sys.modules, 'numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_source_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames_per_block"):
        RadarFileSource([tmp_path], frames_per_block=0)
    with pytest.raises(ValueError, match="speed"):
        RadarFileSource([tmp_path], speed=0.0)
    with pytest.raises(InputError, match="holds no radar files"):
        RadarFileSource([tmp_path])
