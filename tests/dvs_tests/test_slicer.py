"""Slicing event chunks into fixed stream-time blocks: rebasing, repairs counted, nothing lost."""

from __future__ import annotations

import numpy as np

from sensors.blocks import EVENT_DTYPE
from sensors.dvs.slicer import EventSlicer


def events(ts: list[int]) -> np.ndarray:
    ev = np.zeros(len(ts), EVENT_DTYPE)
    ev["t"] = ts
    ev["x"] = np.arange(len(ts))
    return ev


def all_blocks(sl: EventSlicer, chunks: list[np.ndarray]) -> list[tuple[np.ndarray, int, int]]:
    out = []
    for c in chunks:
        sl.add(c)
        out += list(sl.blocks(final=False))
    out += list(sl.blocks(final=True))
    return out


def test_blocks_are_contiguous_rebased_and_complete() -> None:
    rng = np.random.default_rng(3)
    ts = (5_000_000 + np.sort(rng.integers(0, 95_000, 500))).tolist()
    chunks = [events(ts[i : i + 37]) for i in range(0, 500, 37)]
    blocks = all_blocks(EventSlicer(10_000), chunks)
    assert [b[1] for b in blocks] == list(range(0, 10_000 * len(blocks), 10_000))
    assert all(b[2] - b[1] == 10_000 for b in blocks[:-1])
    assert blocks[-1][2] == ts[-1] - ts[0] + 1  # the last block ends just after the last event
    got = np.concatenate([b[0] for b in blocks])
    np.testing.assert_array_equal(got["t"], np.array(ts) - ts[0])
    for ev, t0, t1 in blocks:
        assert ((ev["t"] >= t0) & (ev["t"] < t1)).all()


def test_out_of_order_events_are_sorted_and_counted() -> None:
    sl = EventSlicer(1000)
    blocks = all_blocks(sl, [events([100, 50, 300, 200]), events([250, 5000])])
    got = np.concatenate([b[0] for b in blocks])["t"]
    # Rebased to the first event read (100 -> 0); 50 lies before stream time 0, so it is
    # clamped to 0 and counted late; the rest is sorted, also across the chunk boundary.
    assert got.tolist() == [0, 0, 100, 150, 200, 4900]
    assert sl.late == 1
    assert sl.reordered > 0


def test_event_older_than_a_sent_block_moves_to_the_current_block() -> None:
    sl = EventSlicer(1000)
    sl.add(events([0, 2500]))
    sent = list(sl.blocks(final=False))
    assert [(b[1], b[2]) for b in sent] == [(0, 1000), (1000, 2000)]
    sl.add(events([1500, 2600]))  # 1500 belongs to a block already sent
    rest = list(sl.blocks(final=True))
    got = np.concatenate([b[0] for b in rest])["t"].tolist()
    assert got == [2000, 2500, 2600]
    assert sl.late == 1


def test_empty_stream_gives_no_blocks() -> None:
    sl = EventSlicer(1000)
    assert list(sl.blocks(final=True)) == []
    assert sl.sent_until_us == 0
