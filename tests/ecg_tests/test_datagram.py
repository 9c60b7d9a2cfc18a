"""The shared datagram layer: common header and sequence-number classification."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.datagram import DatagramError, HeaderFormat, Seq, SequenceTracker

FMT = HeaderFormat(b"TEST", 3, "Qf")
MOD = 1 << 32


def test_header_round_trip_and_layout() -> None:
    data = FMT.pack(seq=MOD + 5, flags=0x81, word=513, fields=(2**40 + 1, 0.5)) + b"payload"
    assert FMT.size == 12 + 8 + 4
    # The common 12 bytes at fixed offsets, little-endian, as a C sender lays them out.
    assert data[:4] == b"TEST"
    assert data[4] == 3 and data[5] == 0x81
    assert struct.unpack_from("<HI", data, 6) == (513, 5)
    h = FMT.unpack(data)
    assert (h.version, h.flags, h.word, h.seq, h.fields) == (3, 0x81, 513, 5, (2**40 + 1, 0.5))
    assert data[h.payload_offset :] == b"payload"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"TEST\x03", "shorter than the 24-byte header"),
        (b"XXXX" + bytes(20), "magic b'XXXX'"),
        (b"TEST\x04" + bytes(19), "version 4 is not 3"),
    ],
)
def test_bad_headers_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(DatagramError, match=reason):
        FMT.unpack(data)


def test_header_fields_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        FMT.pack(seq=0, word=70_000, fields=(0, 0.0))
    with pytest.raises(ValueError, match="4 bytes"):
        HeaderFormat(b"TOOLONG", 1)


def kinds(tracker: SequenceTracker, seqs: list[int]) -> list[Seq]:
    return [tracker.classify(s % MOD).kind for s in seqs]


def test_each_class_is_recognised_and_counted() -> None:
    t = SequenceTracker(window=16)
    got = kinds(t, [10, 11, 14, 12, 12, 14, 15, 15, 3, 4])
    assert got == [
        Seq.FIRST, Seq.IN_ORDER, Seq.GAP, Seq.LATE, Seq.DUPLICATE, Seq.DUPLICATE,
        Seq.IN_ORDER, Seq.DUPLICATE, Seq.LATE, Seq.LATE,
    ]  # fmt: skip
    # 3 is 12 behind 15: within the window, so late (not a restart); then 4 is behind too.
    c = t.counts
    assert (c.received, c.accepted, c.lost, c.late, c.duplicates, c.restarts) == (10, 4, 2, 3, 3, 0)


def test_gap_reports_how_many_were_lost() -> None:
    t = SequenceTracker()
    t.classify(7)
    v = t.classify(11)
    assert (v.kind, v.lost) == (Seq.GAP, 3)


def test_restart_far_back_or_flagged_starts_a_new_stream() -> None:
    t = SequenceTracker(window=16)
    assert kinds(t, [1000, 1001, 0, 1]) == [Seq.FIRST, Seq.IN_ORDER, Seq.RESTART, Seq.IN_ORDER]
    # Within the window a jump back reads as a duplicate, unless the sender flags its start.
    assert t.classify(0).kind is Seq.DUPLICATE
    assert t.classify(0, start=True).kind is Seq.RESTART
    assert t.classify(1).kind is Seq.IN_ORDER
    assert t.counts.restarts == 2


def test_wrap_around_is_in_order() -> None:
    t = SequenceTracker()
    assert kinds(t, [MOD - 2, MOD - 1, MOD, MOD + 2, MOD + 1]) == [
        Seq.FIRST, Seq.IN_ORDER, Seq.IN_ORDER, Seq.GAP, Seq.LATE,
    ]  # fmt: skip
    assert t.counts.lost == 1


def test_16_bit_numbers_wrap_at_65536() -> None:
    t = SequenceTracker(bits=16)
    assert [t.classify(s).kind for s in (65535, 0, 2)] == [Seq.FIRST, Seq.IN_ORDER, Seq.GAP]
    with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
        t.classify(65536)


def test_reset_forgets_the_stream_but_keeps_counts() -> None:
    t = SequenceTracker()
    kinds(t, [5, 7])
    t.reset()
    assert t.classify(100).kind is Seq.FIRST
    assert t.counts.lost == 1


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A sender's numbers from a random start (often near the wrap), some lost, some duplicated,
    then locally shuffled (each moved at most a few places): ``(window, arrival order)``."""
    start = draw(st.one_of(st.integers(MOD - 40, MOD - 1), st.integers(0, MOD - 1)))
    n = draw(st.integers(1, 120))
    sent = [(start + i) % MOD for i in range(n)]
    kept = [s for s in sent if not draw(st.booleans()) or s == sent[0]] if draw(st.booleans()) else sent
    with_dups = [s for s in kept for _ in range(draw(st.integers(1, 2)))]
    keys = [i + draw(st.integers(0, 6)) for i in range(len(with_dups))]
    order = [s for _, s in sorted(zip(keys, with_dups, strict=True), key=lambda p: p[0])]
    # The first arrival defines the stream: keep the sender's first number first.
    order.remove(sent[0])
    return 64, [sent[0], *order]


@given(arrivals())
@settings(max_examples=300, deadline=None)
def test_accepted_numbers_rise_and_everything_is_accounted(case: tuple[int, list[int]]) -> None:
    window, order = case
    t = SequenceTracker(window=window)
    accepted: list[int] = []
    for s in order:
        v = t.classify(s)
        assert v.kind is not Seq.RESTART  # local shuffles never look like a restart
        if v.kind.accepted:
            accepted.append(s)
    c = t.counts
    # Nothing uncounted: each arrival is accepted, late or a duplicate.
    assert c.received == len(order) == c.accepted + c.late + c.duplicates
    # The accepted ones rise strictly (mod 2**32): nothing late is glued in, nothing twice.
    unwrapped = [(s - order[0]) % MOD for s in accepted]
    assert unwrapped == sorted(set(unwrapped))
    # Every number skipped between the first and the newest accepted is counted lost.
    assert c.lost == unwrapped[-1] + 1 - len(unwrapped)
    # Every copy after the first of a number is a duplicate (late ones are first copies).
    assert c.duplicates == len(order) - len(set(order))
