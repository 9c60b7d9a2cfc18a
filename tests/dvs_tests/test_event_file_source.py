"""The event-file replay source over the real sample recordings: lossless, sliced, labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensors.blocks import EVENT_DTYPE, EndOfStream, EventBlock, InputError
from sensors.dvs.reader import read_events
from sensors.dvs.source import EventFileSource
from sensors.dvs.writers import write_nmnist_bin

SAMPLES = [
    "prophesee_evt2/faery_evt2_gen3_640x480.raw",
    "prophesee_evt3/expelliarmus_evt3_sample_gen41_1280x720.raw",
    "aedat4/tonic_sample_dvxplorer.aedat4",
    "nmnist_bin_misc/tonic_sample_nmnist.bin",
]


async def drain(src: EventFileSource) -> list[EventBlock | EndOfStream]:
    return [item async for item in src]


@pytest.mark.parametrize("name", SAMPLES)
async def test_every_event_arrives_rebased_in_contiguous_blocks(data_dir: Path, name: str) -> None:
    path = data_dir / "dvs" / name
    expected, info = read_events(path)
    items = await drain(EventFileSource([path], block_ms=5.0, speed=None))
    blocks = [b for b in items if isinstance(b, EventBlock)]
    assert isinstance(items[-1], EndOfStream)
    assert items[-1].t_end_us == blocks[-1].t_end_us
    got = np.concatenate([b.events for b in blocks])
    assert len(got) == len(expected)
    # Rebased: the first event is stream time 0; order repaired (stable), nothing lost.
    t = expected["t"] - expected["t"][0]
    np.testing.assert_array_equal(got["t"], np.sort(t, kind="stable"))
    assert [b.t_start_us for b in blocks] == [5000 * k for k in range(len(blocks))]
    assert all(((b.events["t"] >= b.t_start_us) & (b.events["t"] < b.t_end_us)).all() for b in blocks)
    assert {(b.width, b.height) for b in blocks} == {(info.width, info.height)}


async def test_header_only_file_is_a_stream_with_no_events(data_dir: Path) -> None:
    path = data_dir / "dvs" / "aedat2" / "tonic_sample_aedat_header_only.aedat"
    items = await drain(EventFileSource([path], speed=None))
    assert len(items) == 1 and isinstance(items[0], EndOfStream) and items[0].t_end_us == 0


async def test_file_without_sensor_size_needs_one(data_dir: Path) -> None:
    path = data_dir / "dvs" / "prophesee_dat" / "tonic_sample_ncars.dat"
    with pytest.raises(InputError, match="sensor_size"):
        await drain(EventFileSource([path], speed=None))
    items = await drain(EventFileSource([path], speed=None, sensor_size=(304, 240)))
    assert sum(len(b) for b in items if isinstance(b, EventBlock)) == 2009


async def test_labels_and_skipped_bad_files(tmp_path: Path, data_dir: Path) -> None:
    good = data_dir / "dvs" / "nmnist_bin_misc" / "tonic_sample_nmnist.bin"
    bad = tmp_path / "cut.bin"
    bad.write_bytes(good.read_bytes()[:1003])  # not a whole number of 5-byte events
    src = EventFileSource([good, bad], speed=None, labels={str(good.resolve()): "3"}, on_error="skip")
    items = await drain(src)
    ends = [i for i in items if isinstance(i, EndOfStream)]
    assert ends[0].label == "3"
    assert src.skipped_files == 1 and str(bad) in str(src.errors[0])
    with pytest.raises(InputError, match=r"cut\.bin"):
        await drain(EventFileSource([good, bad], speed=None))


async def test_sensor_check_rejects_a_file_before_reading_it(data_dir: Path) -> None:
    path = data_dir / "dvs" / "prophesee_evt2" / "faery_evt2_gen3_640x480.raw"
    seen: list[tuple[int, int]] = []

    def check(p: Path, w: int, h: int) -> None:
        seen.append((w, h))
        msg = f"{p}: too big"
        raise InputError(msg)

    src = EventFileSource([path], speed=None, check_sensor=check, on_error="skip")
    assert await drain(src) == []
    assert seen == [(640, 480)] and src.skipped_files == 1 and src.events_read == 0


async def test_paced_replay_follows_sensor_time(tmp_path: Path) -> None:
    import time

    events = np.zeros(300, EVENT_DTYPE)
    events["t"] = np.linspace(0, 300_000, 300).astype(np.int64)  # 0.3 s of sensor time
    path = tmp_path / "a.bin"
    write_nmnist_bin(path, events)
    t0 = time.monotonic()
    items = await drain(EventFileSource([path], block_ms=20.0, speed=2.0))
    wall = time.monotonic() - t0
    assert sum(len(b) for b in items if isinstance(b, EventBlock)) == 300
    assert wall >= 0.14  # 0.3 s at 2x real time is 0.15 s; pacing never runs ahead
