"""The UDP radar source over real loopback sockets: send_radar round trips, and datagrams injected
out of order, lost, repeated, malformed or cut short through a raw socket."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from radar_udp_util import (
    Item,
    chunk,
    collect,
    fmcw_geometry,
    frames_of,
    iq_frames,
    n_frames,
    range_geometry,
    uneven_geometry,
)

from sensors.blocks import EndOfStream, InputError
from sensors.radar.frames import RadarBlock, RadarGeometry
from sensors.radar.live_config import RadarUdpSourceConfig, radar_udp_source
from sensors.radar.udp import RadarUdpSource, send_radar
from sensors.radar.udp_wire import pack_frame, wire_samples

LOOPBACK = "127.0.0.1"


@pytest.fixture
async def source() -> AsyncIterator[Callable[..., RadarUdpSource]]:
    made: list[RadarUdpSource] = []

    def make(**kw: object) -> RadarUdpSource:
        args: dict[str, object] = {"frames_per_block": 4, "idle_flush_ms": 30.0}
        args.update(kw)
        src = RadarUdpSource(LOOPBACK, 0, **args)  # type: ignore[arg-type]
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


class Raw:
    """A plain UDP socket that sends hand-made datagrams to the source, in whatever order a test wants."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.to = (LOOPBACK, port)

    def send(self, *datagrams: bytes) -> None:
        for dg in datagrams:
            self.sock.sendto(dg, self.to)

    def close(self) -> None:
        self.sock.close()


def frame_datagrams(g: RadarGeometry, frame: np.ndarray, *, seq: int, index: int, t_us: int,
                    max_bytes: int = 1472, start: bool = False) -> list[bytes]:  # fmt: skip
    samples, stype = wire_samples(frame[None], g.is_complex)
    return pack_frame(
        seq=seq, frame_index=index, t_us=t_us, geometry=g, samples=samples[0], sample_type=stype,
        max_datagram_bytes=max_bytes, start=start,
    )  # fmt: skip


def has_frame(index_t_us: int) -> Callable[[list[Item]], bool]:
    """Done once a block holding the frame at stream time ``index_t_us`` arrived (a sentinel frame)."""
    return lambda items: any(isinstance(i, RadarBlock) and index_t_us in i.t_us for i in items)


async def test_round_trip_with_fragments_and_a_geometry_change(source: Callable[..., RadarUdpSource]) -> None:
    src = source(frames_per_block=3)
    await src.start()
    a = chunk(uneven_geometry(), 5, seed=1)  # 704-byte frames: 6 fragments each at 200 bytes
    b = chunk(fmcw_geometry(), 4, seed=2, t0_us=a.t_us[-1] + 100_000)
    sent = await send_radar([a, b], LOOPBACK, src.bound_port, speed=None, max_datagram_bytes=200)
    items = await collect(src, lambda it: n_frames(it) == 9)
    assert sent > 9
    blocks = [i for i in items if isinstance(i, RadarBlock)]
    assert [len(x) for x in blocks] == [3, 2, 3, 1]  # the geometry change starts a new block
    assert [x.geometry.domain for x in blocks] == ["range", "range", "fmcw_adc", "fmcw_adc"]
    assert np.array_equal(frames_of(items[:2]), a.frames)
    assert np.array_equal(frames_of(items[2:]), b.frames)
    t = np.concatenate([x.t_us for x in blocks])
    assert np.array_equal(t, np.concatenate([a.t_us, b.t_us]) - a.t_us[0])
    assert [x.first_frame for x in blocks] == [0, 3, 5, 8]
    assert all(x.t_start_us == x.t_us[0] and x.t_end_us == x.t_us[-1] + 1 for x in blocks)
    drops = src.drops()
    assert drops["geometry_changes"] == 1
    assert sum(drops.values()) == 1, drops  # nothing lost, bad or dropped


async def test_paced_send_delivers_every_frame(source: Callable[..., RadarUdpSource]) -> None:
    src = source(frames_per_block=1)
    await src.start()
    c = chunk(range_geometry(n_sweeps=4), 6, seed=3)  # 20 Hz: 0.25 s of frames, sent at 10x
    await send_radar([c], LOOPBACK, src.bound_port, speed=10.0)
    items = await collect(src, lambda it: n_frames(it) == 6)
    assert np.array_equal(frames_of(items), c.frames)


async def test_lost_late_and_duplicate_datagrams_are_counted(source: Callable[..., RadarUdpSource]) -> None:
    src = source(frames_per_block=1)
    await src.start()
    g = range_geometry(n_sweeps=4)
    frames = iq_frames(g, 5, seed=4)
    dg = [frame_datagrams(g, frames[i], seq=i, index=i, t_us=50_000 * i, start=i == 0)[0] for i in range(5)]
    raw = Raw(src.bound_port)
    raw.send(dg[0], dg[2], dg[1], dg[2], dg[4], dg[3])  # 1 late, 2 repeated, 3 late (after 4)
    raw.send(frame_datagrams(g, frames[0], seq=5, index=5, t_us=250_000)[0])  # sentinel
    items = await collect(src, has_frame(250_000))
    raw.close()
    blocks = [i for i in items if isinstance(i, RadarBlock)]
    assert [b.first_frame for b in blocks] == [0, 2, 4, 5]  # late frames never glued in after newer ones
    assert np.array_equal(frames_of(items)[:3], frames[[0, 2, 4]])
    drops = src.drops()
    assert drops["lost_datagrams"] == 2 and drops["late_datagrams"] == 2 and drops["duplicate_datagrams"] == 1
    assert drops["lost_frames"] == 2 and drops["incomplete_frames"] == 0 and drops["bad_datagrams"] == 0


async def test_incomplete_frame_is_dropped_counted_and_not_glued(source: Callable[..., RadarUdpSource]) -> None:
    src = source(frames_per_block=1)
    await src.start()
    g = uneven_geometry()
    frames = iq_frames(g, 4, seed=5)
    seq = 0
    frags = []
    for i in range(4):
        frags.append(frame_datagrams(g, frames[i], seq=seq, index=i, t_us=83_333 * i, max_bytes=200, start=i == 0))
        seq += len(frags[-1])
    assert len(frags[0]) == 6
    raw = Raw(src.bound_port)
    raw.send(*frags[0][:2], *frags[0][3:])  # frame 0 loses fragment 2
    raw.send(frags[1][1], frags[1][0], *frags[1][2:])  # frame 1's first two fragments swapped: 0 is late
    raw.send(*frags[2], *frags[3])
    items = await collect(src, has_frame(83_333 * 3 - 166_666))
    raw.close()
    # Frames 0 and 1 never complete: the stream starts at frame 2, frames 2 and 3 exactly as sent.
    assert [b.first_frame for b in items if isinstance(b, RadarBlock)] == [0, 1]
    assert np.array_equal(frames_of(items), frames[2:])
    drops = src.drops()
    assert drops["incomplete_frames"] == 2 and drops["lost_datagrams"] == 2 and drops["late_datagrams"] == 1
    assert drops["lost_frames"] == 0


async def test_bad_datagrams_are_counted_and_named_in_the_log(
    source: Callable[..., RadarUdpSource], caplog: pytest.LogCaptureFixture
) -> None:
    src = source(frames_per_block=1)
    await src.start()
    g = range_geometry(n_sweeps=4)
    frames = iq_frames(g, 3, seed=6)
    good = [frame_datagrams(g, frames[i], seq=i, index=i, t_us=50_000 * i)[0] for i in range(3)]
    raw = Raw(src.bound_port)
    with caplog.at_level(logging.WARNING, logger="sensors.radar.udp"):
        raw.send(good[0][:20])  # truncated header
        raw.send(good[0], b"SWEV" + good[1][4:])  # a wrong magic breaks the burst of good ones
        raw.send(good[1][:4] + b"\x07" + good[1][5:], good[1][:-6])  # wrong version, payload cut short
        raw.send(good[1], good[2])
        items = await collect(src, has_frame(100_000))
    raw.close()
    assert np.array_equal(frames_of(items), frames)
    assert src.drops()["bad_datagrams"] == 4
    text = caplog.text
    assert "shorter than the 56-byte header" in text and "magic b'SWEV' is not b'SWRD'" in text
    assert "version 7" not in text  # one line per burst: the second burst logs its first problem only


async def test_sender_restart_ends_the_stream(source: Callable[..., RadarUdpSource]) -> None:
    src = source(frames_per_block=2)
    await src.start()
    a, b = chunk(range_geometry(n_sweeps=4), 3, seed=7), chunk(range_geometry(n_sweeps=4), 2, seed=8)
    await send_radar([a], LOOPBACK, src.bound_port, speed=None)
    await send_radar([b], LOOPBACK, src.bound_port, speed=None)  # the sender starts over: seq 0, frame 0
    items = await collect(src, lambda it: n_frames(it) == 5)
    ends = [i for i in items if isinstance(i, EndOfStream)]
    assert len(ends) == 1 and ends[0].meta == {"end": "restart"} and ends[0].t_end_us == a.t_us[-1] + 50_000
    k = items.index(ends[0])
    assert np.array_equal(frames_of(items[:k]), a.frames) and np.array_equal(frames_of(items[k:]), b.frames)
    assert items[k + 1].t_start_us == 0  # type: ignore[union-attr]
    assert src.drops()["restarts"] == 1
    src.close()
    rest = await collect(src, lambda it: False)
    assert [type(i) for i in rest] == [EndOfStream] and rest[0].meta == {"end": "closed"}  # type: ignore[union-attr]


async def test_frame_clock_going_back_without_the_flag_is_a_restart(source: Callable[..., RadarUdpSource]) -> None:
    src = source(frames_per_block=1)
    await src.start()
    g = range_geometry(n_sweeps=4)
    frames = iq_frames(g, 3, seed=9)
    raw = Raw(src.bound_port)
    raw.send(frame_datagrams(g, frames[0], seq=0, index=10, t_us=1_000_000, start=True)[0])
    raw.send(frame_datagrams(g, frames[1], seq=1, index=11, t_us=1_050_000)[0])
    raw.send(frame_datagrams(g, frames[2], seq=2, index=0, t_us=0)[0])  # device rebooted, flag not set
    items = await collect(src, lambda it: n_frames(it) == 3)
    raw.close()
    assert [type(i).__name__ for i in items] == ["RadarBlock", "RadarBlock", "EndOfStream", "RadarBlock"]
    assert items[1].t_us.tolist() == [50_000] and items[3].t_us.tolist() == [0]  # type: ignore[union-attr]
    assert src.drops()["restarts"] == 1


async def test_config_factory_builds_a_listening_source() -> None:
    cfg = RadarUdpSourceConfig(listen=f"{LOOPBACK}:0", frames_per_block=2, idle_flush_ms=20)
    src = radar_udp_source(cfg)
    try:
        await src.start()
        c = chunk(range_geometry(n_sweeps=2), 2)
        await send_radar([c], LOOPBACK, src.bound_port, speed=None)
        items = await collect(src, lambda it: n_frames(it) == 2)
        assert np.array_equal(frames_of(items), c.frames)
    finally:
        src.close()


async def test_busy_port_is_an_input_error(source: Callable[..., RadarUdpSource]) -> None:
    first = source()
    await first.start()
    second = RadarUdpSource(LOOPBACK, first.bound_port)
    with pytest.raises(InputError, match="cannot listen"):
        await second.start()


def test_config_rejects_a_bad_address_and_unknown_fields() -> None:
    with pytest.raises(ValueError, match="host:port"):
        RadarUdpSourceConfig(listen="7790")
    with pytest.raises(ValueError, match="extra"):
        RadarUdpSourceConfig(listen="0.0.0.0:7790", rate_hz=10)  # type: ignore[call-arg]
