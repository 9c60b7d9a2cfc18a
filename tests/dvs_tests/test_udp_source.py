"""UDP event source: datagram format, loss and garbage counting, over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from sensors.blocks import EVENT_DTYPE, EventBlock
from sensors.dvs.udp import HEADER, MAX_EVENTS_PER_DATAGRAM, UdpEventSource, pack_datagram, unpack_datagram


def random_events(n: int, t0: int = 1_000_000, seed: int = 0, width: int = 64, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = t0 + np.sort(rng.integers(0, 200_000, n))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


def test_datagram_round_trip() -> None:
    ev = random_events(100)
    dg = unpack_datagram(pack_datagram(7, 64, 48, ev))
    assert (dg.seq, dg.width, dg.height) == (7, 64, 48)
    np.testing.assert_array_equal(dg.events, ev)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "shorter than the 20-byte header"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([2]) + b[5:], "version 2"),
        (lambda b: b[:-1], "header says 10 events"),
    ],
)
def test_bad_datagrams_say_why(mutate, reason: str) -> None:
    good = pack_datagram(0, 64, 48, random_events(10))
    with pytest.raises(ValueError, match=reason):
        unpack_datagram(mutate(good))


def test_event_outside_declared_sensor_is_rejected() -> None:
    ev = random_events(5)
    ev["x"][2] = 64
    with pytest.raises(ValueError, match="outside the declared 64x48"):
        unpack_datagram(pack_datagram(0, 64, 48, ev))


def test_too_many_events_for_one_datagram() -> None:
    with pytest.raises(ValueError, match="do not fit one datagram"):
        pack_datagram(0, 64, 48, random_events(MAX_EVENTS_PER_DATAGRAM + 1))


async def _collect(src: UdpEventSource, until_us: int) -> list[EventBlock]:
    blocks: list[EventBlock] = []
    async for block in src:
        blocks.append(block)
        if block.t_end_us >= until_us:
            return blocks
    return blocks


async def test_loopback_stream_is_rebased_sliced_and_counts_losses() -> None:
    src = UdpEventSource("127.0.0.1", 0, block_ms=10.0, idle_flush_ms=50.0)
    await src.start()
    ev = random_events(3000)
    parts = np.array_split(ev, 30)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for seq, part in enumerate(parts):
            if seq == 5:
                continue  # lost on the way
            tx.sendto(pack_datagram(seq, 64, 48, part), ("127.0.0.1", src.bound_port))
        tx.sendto(b"garbage that is long enough to have a header", ("127.0.0.1", src.bound_port))
        span_us = int(ev["t"][-1] - ev["t"][0])
        blocks = await asyncio.wait_for(_collect(src, span_us), 10)
    finally:
        tx.close()
        src.close()
    got = np.concatenate([b.events for b in blocks])
    expected = np.concatenate([p for i, p in enumerate(parts) if i != 5]).copy()
    expected["t"] -= ev["t"][0]
    n = len(got)
    np.testing.assert_array_equal(got, expected[:n])
    assert n >= len(expected) - len(parts[-1])  # only the newest, still-open block may be pending
    starts = [b.t_start_us for b in blocks]
    assert starts == list(range(0, 10_000 * len(blocks), 10_000))
    assert all(b.t_end_us - b.t_start_us == 10_000 for b in blocks)
    assert all((b.events["t"] >= b.t_start_us).all() and (b.events["t"] < b.t_end_us).all() for b in blocks)
    drops = src.drops()
    assert drops["lost_datagrams"] == 1
    assert drops["bad_datagrams"] == 1


async def test_quiet_camera_lets_stream_time_run_on() -> None:
    src = UdpEventSource("127.0.0.1", 0, block_ms=10.0, idle_flush_ms=30.0)
    await src.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.sendto(pack_datagram(0, 64, 48, random_events(50)), ("127.0.0.1", src.bound_port))
        # No more datagrams: blocks must still come, empty, as wall time passes.
        blocks = await asyncio.wait_for(_collect(src, 400_000), 10)
    finally:
        tx.close()
        src.close()
    assert blocks[-1].t_end_us >= 400_000
    assert sum(len(b) for b in blocks) <= 50
    assert any(len(b) == 0 for b in blocks)


async def test_slow_consumer_drops_oldest_blocks_and_counts_them() -> None:
    src = UdpEventSource("127.0.0.1", 0, block_ms=1.0, queue_blocks=4)
    await src.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.sendto(pack_datagram(0, 64, 48, random_events(400)), ("127.0.0.1", src.bound_port))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if src.counters.datagrams:
                break
        assert src.drops()["dropped_blocks"] > 0
        first = await src.__aiter__().__anext__()
    finally:
        tx.close()
        src.close()
    assert first.t_start_us > 0  # the oldest blocks went
    assert HEADER.size == 20


async def test_late_and_repeated_datagrams_are_dropped_and_counted() -> None:
    ev = random_events(400)
    parts = np.array_split(ev, 8)
    src = UdpEventSource("127.0.0.1", 0, block_ms=10.0)
    await src.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # 0 1 3 2 3 4 5 6 7: datagram 2 arrives after 3 (late: dropped, never glued in behind
        # newer events) and 3 arrives twice (the copy is dropped).
        for seq in (0, 1, 3, 2, 3, 4, 5, 6, 7):
            tx.sendto(pack_datagram(seq, 64, 48, parts[seq]), ("127.0.0.1", src.bound_port))
            await asyncio.sleep(0.002)  # keep loopback order
        span_us = int(ev["t"][-1] - ev["t"][0])
        blocks = await asyncio.wait_for(_collect(src, span_us), 10)
    finally:
        tx.close()
        src.close()
    got = np.concatenate([b.events for b in blocks])
    expected = np.concatenate([parts[i] for i in (0, 1, 3, 4, 5, 6, 7)]).copy()
    expected["t"] -= ev["t"][0]
    np.testing.assert_array_equal(got, expected[: len(got)])
    assert len(got) >= len(expected) - len(parts[7])
    drops = src.drops()
    assert (drops["lost_datagrams"], drops["late_datagrams"], drops["duplicate_datagrams"]) == (1, 1, 1)
    assert drops["late_events"] == 0  # nothing behind the stream's time reached the slicer


async def test_a_full_datagram_queue_drops_the_oldest_and_counts_it() -> None:
    from sensors.dvs.udp import _Protocol

    queue: asyncio.Queue[bytes] = asyncio.Queue(2)
    overflow = [0]
    proto = _Protocol(queue, overflow)
    for data in (b"a", b"b", b"c"):
        proto.datagram_received(data, ("127.0.0.1", 1))
    assert overflow == [1]
    assert [queue.get_nowait(), queue.get_nowait()] == [b"b", b"c"]
