"""Serial ECG source through a real pseudo-terminal pair, fed with real MIT-BIH samples."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from ecg_live_util import Item, collect
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.audio.resample import sample_time_us
from sensors.blocks import EndOfStream, InputError, SampleBlock
from sensors.ecg.live_config import EcgSerialSourceConfig, ecg_serial_source
from sensors.ecg.records import read_wfdb
from sensors.ecg.serial import FrameParser, SerialEcgSource, TextParser

RATE = 360.0
BASELINE = 1024  # mitdb/100: ADC zero and baseline 1024, gain 200 adu/mV


@pytest.fixture(scope="module")
def adc(data_dir: Path) -> npt.NDArray[np.int64]:
    """The first 2 s of mitdb/100 as the ADC values of the recording (both leads)."""
    mv = read_wfdb(data_dir / "ecg" / "mitdb" / "100").signals_mv[:720].astype(np.float64)
    return np.rint(mv * 200).astype(np.int64) + BASELINE


def to_mv(values: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """The documented conversion: (value - offset) * scale_mv."""
    return ((values - BASELINE) * (1 / 200)).astype(np.float32)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd the test writes the device's bytes into, slave path the source opens)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fds = [master, slave]
    yield master, os.ttyname(slave)
    for fd in fds:
        with contextlib.suppress(OSError):  # the test closed it already (device unplugged)
            os.close(fd)


@pytest.fixture
def sources() -> Iterator[list[SerialEcgSource]]:
    made: list[SerialEcgSource] = []
    yield made
    for src in made:
        src.close()
        assert src._thread is None or not src._thread.is_alive()


def serial_source(made: list[SerialEcgSource], path: str, **kw: object) -> SerialEcgSource:
    args: dict[str, object] = {"channels": 2, "rate_hz": RATE, "scale_mv": 1 / 200, "offset": BASELINE}
    args.update(kw)
    src = SerialEcgSource(path, **args)  # type: ignore[arg-type]
    made.append(src)
    return src


def ended(items: list[Item]) -> bool:
    return isinstance(items[-1], EndOfStream)


def one_stream(items: list[Item]) -> npt.NDArray[np.float32]:
    """The samples of a single stream ending in an EndOfStream, checking exact block timing."""
    assert isinstance(items[-1], EndOfStream) and not any(isinstance(i, EndOfStream) for i in items[:-1])
    blocks = [i for i in items if isinstance(i, SampleBlock)]
    pos = 0
    for b in blocks:
        assert (b.first_sample, b.t0_us) == (pos, sample_time_us(pos, b.rate_hz))
        pos += b.n_samples
    assert items[-1].t_end_us == sample_time_us(pos, blocks[0].rate_hz)
    return np.concatenate([b.data for b in blocks])


def frame(seq: int, row: npt.NDArray[np.int64]) -> bytes:
    return struct.pack(f"<2sH{len(row)}h", b"\xa5\x5a", seq & 0xFFFF, *row.tolist())


async def write_all(fd: int, data: bytes, chunk: int = 1000) -> None:
    for i in range(0, len(data), chunk):
        os.write(fd, data[i : i + chunk])
        await asyncio.sleep(0)  # let delivered blocks through while the reader thread drains


async def test_text_lines_with_malformed_ones_counted_and_skipped(
    pty_pair: tuple[int, str], sources: list[SerialEcgSource], adc: npt.NDArray[np.int64], data_dir: Path
) -> None:
    master, path = pty_pair
    src = serial_source(sources, path, protocol="text", max_gap_ms=150.0)
    await src.start()
    seps, ends = [",", ", ", " ", "\t"], ["\n", "\r\n", "\r\n"]
    lines = [f"{a}{seps[k % 4]}{b}{ends[k % 3]}" for k, (a, b) in enumerate(adc.tolist())]
    bad = ["abc,def\n", "1,2,3\n", "995\n", "\n", "nan,1\r\n", "12,\n"]
    for k, line in enumerate(bad):
        lines.insert(100 * k + 7, line)
    await write_all(master, "".join(lines).encode())
    got = one_stream(await collect(src, ended))  # ends on silence (max_gap_ms)
    assert np.array_equal(got, to_mv(adc))
    assert np.allclose(got, read_wfdb(data_dir / "ecg" / "mitdb" / "100").signals_mv[:720], atol=1e-6)
    assert src.drops()["malformed_lines"] == len(bad)


async def test_int16_frames_resynchronise_after_a_lost_byte_and_fill_gaps(
    pty_pair: tuple[int, str], sources: list[SerialEcgSource], adc: npt.NDArray[np.int64]
) -> None:
    master, path = pty_pair
    cfg = EcgSerialSourceConfig(
        port=path,
        protocol="int16",
        channels=2,
        lead=1,
        rate_hz=RATE,
        scale_mv=1 / 200,
        offset=BASELINE,
        max_gap_ms=150,
        queue_blocks=1024,  # the whole recording arrives at once; nothing may be dropped here
    )
    src = ecg_serial_source(cfg)
    sources.append(src)
    await src.start()
    first_seq = 65_500  # wraps to 0 within the recording
    frames = [frame(first_seq + k, row) for k, row in enumerate(adc)]
    size = len(frames[0])
    k_byte, k_sync, k_garbage, k_dup = 100, 300, 500, 600
    garbage = b"\x00\x13\x37\xff\x01"
    frames[k_byte] = frames[k_byte][:5] + frames[k_byte][6:]  # one byte lost on the line
    frames[k_sync] = b"\xa4" + frames[k_sync][1:]  # corrupted sync word
    frames[k_garbage] += garbage  # noise between two frames
    frames[k_dup] += frames[k_dup]  # sent twice
    await write_all(master, b"".join(frames))
    got = one_stream(await collect(src, ended))
    # A frame counts only when the next sync word follows it: the frame with the lost byte,
    # the one before the corrupted sync and that one, and the one the noise follows are lost.
    lost = [k_byte, k_sync - 1, k_sync, k_garbage]
    expected = to_mv(adc[:, 1:2]).copy()
    for k in lost:
        expected[k] = expected[k - 1] if k - 1 not in lost else expected[k - 2]
    assert np.array_equal(got, expected)
    assert src.drops() == {
        "malformed_lines": 0,
        "bad_frames": 3,
        "skipped_bytes": (size - 1) + 2 * size + (size + len(garbage)),
        "lost_frames": 4,
        "duplicate_frames": 1,
        "restarts": 0,
        "lost_samples": 4,
        "long_gaps": 0,
        "dropped_blocks": 0,
    }


async def test_device_restart_and_resampling(
    pty_pair: tuple[int, str], sources: list[SerialEcgSource], adc: npt.NDArray[np.int64]
) -> None:
    master, path = pty_pair
    src = serial_source(sources, path, protocol="int16", lead=0, model_rate_hz=250.0, max_gap_ms=150.0)
    await src.start()
    data = b"".join(frame(5000 + k, row) for k, row in enumerate(adc[:360]))
    data += b"".join(frame(k, row) for k, row in enumerate(adc[:360]))  # the device rebooted
    await write_all(master, data)
    items = await collect(src, lambda got: sum(isinstance(i, EndOfStream) for i in got) == 2)
    ends = [i for i in items if isinstance(i, EndOfStream)]
    assert [e.meta["end"] for e in ends] == ["restart", "silence"]
    assert [e.t_end_us for e in ends] == [1_000_000, 1_000_000]  # 360 samples at 360 Hz -> 250 at 250 Hz
    assert {i.rate_hz for i in items if isinstance(i, SampleBlock)} == {250.0}
    assert src.drops()["restarts"] == 1 and src.drops()["lost_frames"] == 0


async def test_port_closing_mid_stream_is_a_clear_error(
    pty_pair: tuple[int, str], sources: list[SerialEcgSource], adc: npt.NDArray[np.int64]
) -> None:
    master, path = pty_pair
    src = serial_source(sources, path, protocol="text", block_ms=50.0)
    await src.start()
    os.write(master, "".join(f"{a},{b}\n" for a, b in adc[:100].tolist()).encode())
    items: list[Item] = []
    with pytest.raises(InputError, match=f"serial port {path}: read failed"):
        async with asyncio.timeout(5):
            async for item in src:
                items.append(item)
                if len(items) == 4:
                    os.close(master)  # the device is unplugged
    got = one_stream(items)  # what arrived before is delivered and the stream ended
    assert np.array_equal(got, to_mv(adc[: len(got)])) and len(got) >= 4 * 18
    assert items[-1].meta["end"] == "error"  # type: ignore[union-attr]
    src.close()
    assert src._thread is not None and not src._thread.is_alive()


async def test_missing_port_is_a_clear_error(tmp_path: Path, sources: list[SerialEcgSource]) -> None:
    path = str(tmp_path / "ttyNOPE")
    src = serial_source(sources, path)
    with pytest.raises(InputError, match=f"serial port {path}: cannot open"):
        await src.start()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="lead 1 does not exist"):
        EcgSerialSourceConfig(port="/dev/ttyUSB0", lead=1)
    with pytest.raises(ValueError, match="scale_mv must be a non-zero"):
        EcgSerialSourceConfig(port="/dev/ttyUSB0", scale_mv=0)
    with pytest.raises(ValueError, match="protocol"):
        EcgSerialSourceConfig.model_validate({"port": "/dev/ttyUSB0", "protocol": "ascii"})


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(0, 65535))
@settings(max_examples=100, deadline=None)
def test_frame_parser_does_not_depend_on_how_bytes_arrive(cuts: list[int], seq0: int) -> None:
    rows = np.arange(60, dtype=np.int64).reshape(20, 3) * 37 - 500
    data = b"".join(frame(seq0 + k, row) for k, row in enumerate(rows))
    parser = FrameParser(3)
    seqs: list[int] = []
    values: list[tuple[int, ...]] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        s, v = parser.feed(data[pos : pos + cut])
        seqs += s
        values += v
        pos += cut
        if pos >= len(data):
            break
    s, v = parser.drain()
    assert seqs + s == [(seq0 + k) & 0xFFFF for k in range(20)]
    assert np.array_equal(np.array(values + v), rows)
    assert parser.bad_frames == parser.skipped_bytes == 0


def test_text_parser_keeps_a_split_line_for_the_next_read() -> None:
    p = TextParser(2)
    first = p.feed(b"1,2\n3,")
    second = p.feed(b"4\r\n")
    assert first.tolist() == [[1, 2]] and second.tolist() == [[3, 4]] and p.malformed_lines == 0
