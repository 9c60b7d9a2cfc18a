"""The pipeline cuts spike batches at absolute multiples of the readout's batch length."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.pipeline import split_batch
from sensors.blocks import SpikeBatch


def _batch(t0: int, t1: int, t_us: list[int]) -> SpikeBatch:
    t = np.asarray(sorted(t_us), np.int64)
    return SpikeBatch("s", t, (t % 7).astype(np.int32), 7, t0, t1, 123)


def test_cut_at_multiples_of_the_step() -> None:
    parts = split_batch(_batch(15_000, 65_000, [15_000, 19_999, 20_000, 41_000, 64_999]), 20_000)
    assert [(p.t_start_us, p.t_end_us) for p in parts] == [
        (15_000, 20_000),
        (20_000, 40_000),
        (40_000, 60_000),
        (60_000, 65_000),
    ]
    assert [p.t_us.tolist() for p in parts] == [[15_000, 19_999], [20_000], [41_000], [64_999]]
    assert all(p.captured_ns == 123 and p.n_channels == 7 for p in parts)


def test_a_batch_inside_one_step_is_left_whole() -> None:
    b = _batch(20_000, 40_000, [25_000])
    assert split_batch(b, 20_000) == [b]


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 100_000),
    st.integers(0, 300_000),
    st.lists(st.integers(0, 299_999), max_size=50),
    st.integers(1, 50_000),
)
def test_pieces_tile_the_batch(t0: int, length: int, offsets: list[int], step: int) -> None:
    t1 = t0 + length
    b = _batch(t0, t1, [t0 + o for o in offsets if o < length])
    parts = split_batch(b, step)
    assert parts[0].t_start_us == t0 and parts[-1].t_end_us == t1
    assert all(p.t_end_us == q.t_start_us for p, q in itertools.pairwise(parts))
    assert all(p.t_end_us % step == 0 for p in parts[:-1])
    assert np.array_equal(np.concatenate([p.t_us for p in parts]), b.t_us)
    assert np.array_equal(np.concatenate([p.ch for p in parts]), b.ch)
    assert all(np.all((p.t_us >= p.t_start_us) & (p.t_us < p.t_end_us)) for p in parts if len(p))
