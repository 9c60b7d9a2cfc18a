"""``spikewire send`` of real radar recordings to a UDP radar source on loopback: every frame arrives
exactly as the reader reads it, with its geometry changes, one stream per file."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
from radar_udp_util import Item, collect, frames_of, n_frames

from runtime.cli import _send_kind, main
from sensors.blocks import EndOfStream, InputError
from sensors.radar.frames import RadarBlock, RadarChunk
from sensors.radar.reader import open_radar
from sensors.radar.udp import RadarUdpSource


async def send_and_receive(argv: list[str], n_expected: int) -> tuple[int, list[Item], RadarUdpSource]:
    """Run ``spikewire send`` to a fresh source and take what it yields until ``n_expected`` frames and the close."""
    src = RadarUdpSource("127.0.0.1", 0, frames_per_block=16, idle_flush_ms=30)
    await src.start()
    try:
        code = await asyncio.to_thread(main, ["send", *argv[:1], f"127.0.0.1:{src.bound_port}", *argv[1:]])
        items = await collect(src, lambda it: n_frames(it) >= n_expected, timeout_s=10)
    finally:
        src.close()
    items += await collect(src, lambda it: False)
    return code, items, src


def read_all(path: Path, chirp: str | None = None) -> list[RadarChunk]:
    reader = open_radar(path, chirp=chirp)
    out = []
    try:
        while (c := reader.read(64)) is not None:
            out.append(c)
    finally:
        reader.close()
    return out


async def test_send_acconeer_file_with_alternating_sessions(data_dir: Path) -> None:
    path = data_dir / "radar" / "acconeer_a121" / "recorded" / "hand-motion-default.h5"
    expected = read_all(path)
    sent = [f for c in expected for f in c.frames]  # frames of different shapes
    code, items, src = await send_and_receive([str(path), "--speed", "max"], len(sent))
    assert code == 0
    got = [f for b in items if isinstance(b, RadarBlock) for f in b.frames]
    assert len(got) == len(sent) and all(np.array_equal(a, b) for a, b in zip(got, sent, strict=True))
    got_t = np.concatenate([b.t_us for b in items if isinstance(b, RadarBlock)])
    all_t = np.concatenate([c.t_us for c in expected])
    assert np.array_equal(got_t, all_t - all_t[0])
    changes = sum(a.geometry != b.geometry for a, b in itertools.pairwise(expected))
    assert changes >= 1 and src.drops()["geometry_changes"] == changes
    assert isinstance(items[-1], EndOfStream) and sum(isinstance(i, EndOfStream) for i in items) == 1
    drops = src.drops()
    assert drops["lost_datagrams"] == drops["incomplete_frames"] == drops["bad_datagrams"] == 0


async def test_send_ti_cube_fragments_its_frames(data_dir: Path) -> None:
    path = data_dir / "radar" / "ti_fmcw_openradar" / "doppler_example_1.npy"
    (c,) = read_all(path, chirp="openradar")
    code, items, src = await send_and_receive([str(path), "--speed", "max", "--chirp", "openradar"], len(c.frames))
    assert code == 0
    assert np.array_equal(frames_of(items), c.frames)
    block = next(i for i in items if isinstance(i, RadarBlock))
    assert block.geometry.domain == "fmcw_adc"
    assert block.geometry.range_resolution_m == pytest.approx(c.geometry.range_resolution_m, abs=1e-6)
    assert src.tracker.counts.accepted > 100  # one frame in hundreds of datagrams


def test_send_detects_radar_npy_and_leaves_event_npy_alone(tmp_path: Path, data_dir: Path) -> None:
    events = np.zeros(3, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
    np.save(tmp_path / "events.npy", events)
    assert _send_kind(tmp_path / "events.npy", "auto") == "events"
    assert _send_kind(data_dir / "radar" / "ti_fmcw_openradar" / "simple_frame_1.npy", "auto") == "radar"
    assert _send_kind(data_dir / "radar" / "acconeer_a111" / "presence_detection_sparse_input.h5", "auto") == "radar"
    assert _send_kind(tmp_path / "capture.bin", "auto") == "events"
    assert _send_kind(tmp_path / "capture.bin", "radar") == "radar"


def test_send_ti_cube_without_chirp_says_so(data_dir: Path) -> None:
    path = data_dir / "radar" / "ti_fmcw_openradar" / "simple_frame_1.npy"
    with pytest.raises(InputError, match="needs the chirp config"):
        asyncio.run(_send_direct(path))


async def _send_direct(path: Path) -> int:
    from sensors.radar.udp import send_recordings

    return await send_recordings([path], "127.0.0.1", 9, speed=None)
