"""SWEC datagrams and the UDP ECG source over real loopback sockets, with real MIT-BIH samples."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from ecg_live_util import Item, collect

from sensors.audio.resample import sample_time_us
from sensors.blocks import EndOfStream, InputError, SampleBlock
from sensors.datagram import DatagramError
from sensors.ecg.live_config import EcgUdpSourceConfig, ecg_udp_source
from sensors.ecg.records import read_wfdb
from sensors.ecg.udp import UdpEcgSource, pack_datagram, send_record, unpack_datagram

RATE = 360.0
ADU_PER_MV = 200  # mitdb/100 header: gain 200 adu/mV
SCALE = np.float32(1 / ADU_PER_MV)


@pytest.fixture(scope="module")
def counts(data_dir: Path) -> npt.NDArray[np.int16]:
    """The first 4 s of mitdb/100, both leads, as the ADC counts of the recording (relative to baseline)."""
    rec = read_wfdb(data_dir / "ecg" / "mitdb" / "100")
    adu = np.rint(rec.signals_mv[:1440].astype(np.float64) * ADU_PER_MV)
    assert np.allclose(adu / ADU_PER_MV, rec.signals_mv[:1440], atol=1e-6)  # whole ADC counts
    return adu.astype(np.int16)


def as_mv(c: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """What the protocol defines: value_mv = sample * scale, in float32."""
    return c.astype(np.float32) * SCALE


@pytest.fixture
async def source() -> AsyncIterator[Callable[..., UdpEcgSource]]:
    made: list[UdpEcgSource] = []

    def make(**kw: object) -> UdpEcgSource:
        args: dict[str, object] = {"channels": 2, "rate_hz": RATE, "block_ms": 100.0, "idle_flush_ms": 30.0}
        args.update(kw)
        src = UdpEcgSource("127.0.0.1", 0, **args)  # type: ignore[arg-type]
        made.append(src)
        return src

    yield make
    for src in made:
        src.close()


def n_samples(items: list[Item]) -> int:
    return sum(i.n_samples for i in items if isinstance(i, SampleBlock))


def streams(items: list[Item]) -> list[npt.NDArray[np.float32]]:
    """Samples of each stream, checking that blocks are contiguous and timed exactly."""
    out: list[npt.NDArray[np.float32]] = []
    parts: list[npt.NDArray[np.float32]] = []
    pos = 0
    for item in items:
        if isinstance(item, EndOfStream):
            assert item.t_end_us == sample_time_us(pos, RATE)
            out.append(np.concatenate(parts))
            parts, pos = [], 0
            continue
        assert item.first_sample == pos
        assert item.t0_us == sample_time_us(pos, item.rate_hz)
        parts.append(item.data)
        pos += item.n_samples
    if parts:
        out.append(np.concatenate(parts))
    return out


def test_datagram_round_trip_int16_and_float32(counts: npt.NDArray[np.int16]) -> None:
    dg = unpack_datagram(pack_datagram(9, 1234, RATE, counts[:36], scale=float(SCALE), start=True))
    assert (dg.seq, dg.first_sample, dg.rate_mhz, dg.n_channels, dg.flags & 1) == (9, 1234, 360_000, 2, 1)
    assert dg.raw.dtype == np.int16 and np.array_equal(dg.raw, counts[:36])
    mv = as_mv(counts[:36])
    dg = unpack_datagram(pack_datagram(10, 0, RATE, mv))
    assert dg.raw.dtype == np.float32 and np.array_equal(dg.samples_mv(), mv)


def test_header_layout_is_what_the_docstring_says(counts: npt.NDArray[np.int16]) -> None:
    data = pack_datagram(7, 2**33, RATE, counts[:3], scale=0.5)
    fields = struct.unpack_from("<4sBBHIQIHHf", data)
    assert fields == (b"SWEC", 1, 0, 2, 7, 2**33, 360_000, 3, 0, 0.5)
    assert len(data) == 32 + 3 * 2 * 2
    assert np.array_equal(np.frombuffer(data[32:], "<i2").reshape(3, 2), counts[:3])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:20], "shorter than the 32-byte header"),
        (lambda b: b"SWEV" + b[4:], "magic"),
        (lambda b: b[:-1], "header says 4 samples x 2 channels"),
        (lambda b: b[:6] + b"\x00\x00" + b[8:], "n_channels is 0"),
        (lambda b: b[:20] + bytes(4) + b[24:], "rate_mhz is 0"),
    ],
)
def test_bad_datagrams_say_why(counts: npt.NDArray[np.int16], mutate: Callable[[bytes], bytes], reason: str) -> None:
    with pytest.raises(DatagramError, match=reason):
        unpack_datagram(mutate(pack_datagram(0, 0, RATE, counts[:4])))


def test_nan_float_sample_is_a_bad_datagram() -> None:
    with pytest.raises(DatagramError, match="NaN"):
        unpack_datagram(pack_datagram(0, 0, RATE, np.array([[1.0, np.nan]], dtype=np.float32)))


async def test_send_record_delivers_every_sample_bit_exact(
    source: Callable[..., UdpEcgSource], counts: npt.NDArray[np.int16]
) -> None:
    src = source()
    await src.start()
    sent = await send_record(
        counts, "127.0.0.1", src.bound_port, rate_hz=RATE, speed=None, sample_format="int16", scale_mv=float(SCALE)
    )
    assert sent == len(counts) // 36
    items = await collect(src, lambda got: n_samples(got) >= len(counts))
    (got,) = streams(items)
    assert all(i.rate_hz == RATE and i.data.dtype == np.float32 for i in items if isinstance(i, SampleBlock))
    assert np.array_equal(got, as_mv(counts))
    assert not any(src.drops().values())


async def test_wfdb_path_float32_paced_one_lead(source: Callable[..., UdpEcgSource], data_dir: Path) -> None:
    record = data_dir / "ecg" / "mitdb" / "100"
    src = source(lead=1, block_ms=50.0)
    await src.start()
    send = send_record(record, "127.0.0.1", src.bound_port, speed=10.0, samples_per_datagram=18, duration_s=1.0)
    sent, items = await asyncio.gather(send, collect(src, lambda got: n_samples(got) >= 360))
    (got,) = streams(items)
    assert sent == 20
    assert np.array_equal(got, read_wfdb(record).signals_mv[:360, 1:2])


async def test_loss_reorder_duplicate_restart_and_bad_datagrams_are_counted(
    source: Callable[..., UdpEcgSource], counts: npt.NDArray[np.int16]
) -> None:
    src = source(max_gap_ms=1000.0)
    await src.start()
    n = 36
    dgs = [
        pack_datagram(100 + k, 5000 + k * n, RATE, counts[k * n : (k + 1) * n], scale=float(SCALE)) for k in range(8)
    ]
    wrong_channels = pack_datagram(200, 0, RATE, np.zeros((4, 3), np.int16))
    wrong_rate = pack_datagram(201, 0, 250.0, counts[:4])
    restart = [
        pack_datagram(k, k * n, RATE, counts[k * n : (k + 1) * n], scale=float(SCALE), start=k == 0) for k in range(3)
    ]
    # Datagram 2 is lost, 4 arrives after 5 (late: dropped), 3 and 6 arrive twice.
    order = [
        dgs[0],
        dgs[1],
        dgs[3],
        dgs[3],
        dgs[5],
        dgs[4],
        wrong_channels,
        b"junk",
        wrong_rate,
        dgs[6],
        dgs[6],
        dgs[7],
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for data in [*order, *restart]:
            tx.sendto(data, ("127.0.0.1", src.bound_port))
    items = await collect(src, lambda got: n_samples(got) >= 8 * n + 3 * n)
    first, second = streams(items)
    eos = next(i for i in items if isinstance(i, EndOfStream))
    assert eos.meta == {"device_first_sample": "5000", "end": "restart"}
    # Lost datagrams 2 and 4 are filled with the last value before them.
    expected = as_mv(counts[: 8 * n]).copy()
    expected[2 * n : 3 * n] = expected[2 * n - 1]
    expected[4 * n : 5 * n] = expected[4 * n - 1]
    assert np.array_equal(first, expected)
    assert np.array_equal(second, as_mv(counts[: 3 * n]))
    assert src.drops() == {
        "lost_datagrams": 2,
        "late_datagrams": 1,
        "duplicate_datagrams": 2,
        "restarts": 1,
        "bad_datagrams": 3,
        "lost_samples": 2 * n,
        "long_gaps": 0,
        "overflow_datagrams": 0,
        "dropped_blocks": 0,
    }


async def test_long_gap_and_silence_end_the_stream(
    source: Callable[..., UdpEcgSource], counts: npt.NDArray[np.int16]
) -> None:
    src = source(max_gap_ms=200.0)
    await src.start()
    gap = round(0.5 * RATE)  # longer than max_gap_ms: not filled
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(pack_datagram(0, 0, RATE, counts[:36]), ("127.0.0.1", src.bound_port))
        tx.sendto(pack_datagram(1, 36 + gap, RATE, counts[36:72]), ("127.0.0.1", src.bound_port))
    items = await collect(src, lambda got: sum(isinstance(i, EndOfStream) for i in got) == 2)
    ends = [i.meta["end"] for i in items if isinstance(i, EndOfStream)]
    assert ends == ["gap", "silence"]
    first, second = streams(items)
    assert np.array_equal(first, counts[:36].astype(np.float32))
    assert np.array_equal(second, counts[36:72].astype(np.float32))
    assert src.drops()["long_gaps"] == 1 and src.drops()["lost_samples"] == 0


async def test_nan_rows_are_not_sent_and_the_gap_is_filled(source: Callable[..., UdpEcgSource]) -> None:
    values = np.linspace(-1, 1, 200, dtype=np.float32).reshape(100, 2)
    values[40:45, 1] = np.nan
    src = source()
    await src.start()
    await send_record(values, "127.0.0.1", src.bound_port, rate_hz=RATE, speed=None, samples_per_datagram=10)
    (got,) = streams(await collect(src, lambda got: n_samples(got) >= 100))
    expected = values.copy()
    expected[40:45] = values[39]
    assert np.array_equal(got, expected)
    assert src.drops()["lost_samples"] == 5


async def test_resampled_to_the_model_rate_through_the_factory(counts: npt.NDArray[np.int16]) -> None:
    cfg = EcgUdpSourceConfig(
        listen="127.0.0.1:0",
        channels=2,
        lead=0,
        rate_hz=RATE,
        max_gap_ms=150.0,
        idle_flush_ms=30,
        queue_blocks=1024,  # sent unpaced and read afterwards: nothing may be dropped here
    )
    src = ecg_udp_source(cfg, model_rate_hz=250.0)
    try:
        await src.start()
        await send_record(counts[:720], "127.0.0.1", src.bound_port, rate_hz=RATE, speed=None, sample_format="int16")
        items = await collect(src, lambda got: isinstance(got[-1], EndOfStream))
    finally:
        src.close()
    blocks = [i for i in items if isinstance(i, SampleBlock)]
    assert {b.rate_hz for b in blocks} == {250.0} and {b.data.shape[1] for b in blocks} == {1}
    assert n_samples(items) == 500  # ceil(720 * 250 / 360)
    eos = items[-1]
    assert isinstance(eos, EndOfStream) and eos.t_end_us == 2_000_000


async def test_queue_overflow_drops_the_oldest_block_and_counts_it(
    source: Callable[..., UdpEcgSource], counts: npt.NDArray[np.int16]
) -> None:
    src = source(block_ms=1000 / RATE, queue_blocks=4)  # one sample per block
    await src.start()
    await send_record(counts[:360], "127.0.0.1", src.bound_port, rate_hz=RATE, speed=None, sample_format="int16")
    async with asyncio.timeout(5):
        while src.drops()["dropped_blocks"] < 356:  # noqa: ASYNC110 (polling a counter, no event to wait on)
            await asyncio.sleep(0.01)
    items = await collect(src, lambda got: len(got) == 4)
    assert [i.first_sample for i in items if isinstance(i, SampleBlock)] == [356, 357, 358, 359]


async def test_busy_port_is_a_clear_error(source: Callable[..., UdpEcgSource]) -> None:
    first = source()
    await first.start()
    second = UdpEcgSource("127.0.0.1", first.bound_port, channels=1, rate_hz=RATE)
    with pytest.raises(InputError, match=f"udp://127.0.0.1:{first.bound_port}: cannot listen"):
        await second.start()


def test_config_checks_lead_and_address() -> None:
    with pytest.raises(ValueError, match="lead 2 does not exist"):
        EcgUdpSourceConfig(channels=2, lead=2)
    with pytest.raises(ValueError, match="host:port"):
        EcgUdpSourceConfig(listen="nowhere")
    with pytest.raises(ValueError, match="extra"):
        EcgUdpSourceConfig.model_validate({"kind": "ecg_udp", "colour": "red"})
