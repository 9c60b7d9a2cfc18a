"""``Dynapse2Chip.run_split``: one kernel call per block, the same results as running each piece of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dynapse2_util import D2, batch
from netutil import poisson, random_network

from runtime.chips.base import ChipResult
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.compile import compile_dynapse2
from runtime.pipeline import split_batch
from sensors.blocks import SpikeBatch

STEP_US = 20_000


def _blocks(t: np.ndarray, ch: np.ndarray, n_in: int, edges: list[int]) -> list[SpikeBatch]:
    cut = np.searchsorted(t, edges)
    return [
        SpikeBatch("s", t[cut[k] : cut[k + 1]], ch[cut[k] : cut[k + 1]], n_in, edges[k], edges[k + 1], 0)
        for k in range(len(edges) - 1)
    ]


def _assert_same(split: list[ChipResult], pieces: list[ChipResult]) -> None:
    assert len(split) == len(pieces)
    for a, b in zip(split, pieces, strict=True):
        assert a.spike_t_us.dtype == b.spike_t_us.dtype and a.spike_ch.dtype == b.spike_ch.dtype
        np.testing.assert_array_equal(a.spike_t_us, b.spike_t_us)
        np.testing.assert_array_equal(a.spike_ch, b.spike_ch)
        # Bit for bit: the counters, the energy floats and the readout sums and maxima.
        assert a.stats[:10] == b.stats[:10]
        np.testing.assert_array_equal(a.stats.readout_v_sum, b.stats.readout_v_sum, strict=True)
        np.testing.assert_array_equal(a.stats.readout_v_max, b.stats.readout_v_max, strict=True)


def _compare(chip_a: Dynapse2Chip, chip_b: Dynapse2Chip, blocks: list[SpikeBatch], step_us: int = STEP_US) -> int:
    """Stream ``blocks`` through ``run_split`` on one chip, piece by piece on the other; returns the pieces."""
    chip_a.reset()
    chip_b.reset()
    n = 0
    for blk in blocks:
        split = chip_a.run_split(blk, step_us)
        pieces = [chip_b.run(b) for b in split_batch(blk, step_us)]
        _assert_same(split, pieces)
        n += len(split)
    np.testing.assert_array_equal(chip_a.S, chip_b.S)
    np.testing.assert_array_equal(chip_a.Z, chip_b.Z)
    np.testing.assert_array_equal(chip_a.Q, chip_b.Q)
    assert chip_a.routed_hops == chip_b.routed_hops
    return n


def _chips(**kw: object) -> tuple[Dynapse2Chip, Dynapse2Chip]:
    net = random_network(2, spiking_out=True, out_scale=1.5, **kw)  # type: ignore[arg-type]
    c = compile_dynapse2(net, D2, mismatch=True, seed=3)
    return Dynapse2Chip(c), Dynapse2Chip(c)


@pytest.mark.parametrize("block_us", [100_000, 1_000_000, 37_501, 20_000, 7_300, 999])
def test_split_equals_running_each_piece(block_us: int) -> None:
    a, b = _chips()
    t_end = 1_200_000
    t, ch = poisson(7, 16, t_end, 12_000)
    # Pieces with nothing in them: a silent stretch longer than several steps.
    keep = (t < 400_000) | (t >= 530_000)
    edges = [*range(0, t_end, block_us), t_end]
    n = _compare(a, b, _blocks(t[keep], ch[keep], 16, edges))
    assert n >= t_end // STEP_US


def test_split_of_blocks_that_start_anywhere_and_of_odd_steps() -> None:
    a, b = _chips()
    t, ch = poisson(8, 16, 700_000, 7000)
    # Blocks starting inside a step and inside a tick, one shorter than a step, one empty, one of zero length.
    edges = [0, 3, 15_250, 19_999, 20_000, 20_000, 20_001, 250_500, 250_500, 251_000, 700_000]
    _compare(a, b, _blocks(t, ch, 16, edges))
    _compare(a, b, _blocks(t, ch, 16, edges), step_us=7_777)
    _compare(a, b, _blocks(t, ch, 16, edges), step_us=1_000)


def test_split_grows_the_spike_record_and_keeps_each_piece_s_spikes() -> None:
    # Many readout spikes in one call: more than the record buffer holds at first.
    a, b = _chips(n_out=8)
    cap = a._out.shape[1]
    t, ch = poisson(9, 16, 2_000_000, 40_000)
    blocks = _blocks(t, ch, 16, [0, 2_000_000])
    _compare(a, b, blocks)
    a.reset()
    total = sum(len(r.spike_t_us) for r in a.run_split(blocks[0], STEP_US))
    assert total > cap and a._out.shape[1] > cap
    _compare(a, b, blocks)  # and again with the grown buffer


def test_split_reports_a_bad_channel_as_run_does() -> None:
    a, _ = _chips()
    blk = batch(np.array([1_000, 30_000, 45_000]), np.array([1, 2, 99]), 16, 60_000)
    with pytest.raises(ValueError, match=r"t=45000 us has channel 99, the chip has inputs 0\.\.15"):
        a.run_split(blk, STEP_US)
    with pytest.raises(ValueError, match="step_us > 0"):
        a.run_split(blk, 0)


def test_split_equals_pieces_on_real_ecg_spikes(data_dir: Path) -> None:
    from models.recipes.ecg_beats import Recipe, load_record, make_chip, reservoir, with_readout
    from sensors.ecg.encoder_config import EcgEncoderConfig

    r = Recipe()
    enc = EcgEncoderConfig(rate_hz=360.0, thresholds_mv=r.thresholds_mv)
    rec = load_record(data_dir / "ecg" / "mitdb", "208", enc)
    w_out = np.abs(np.random.default_rng(0).normal(0.0, 0.01, (2, r.n_groups * r.group_size)))
    w_out[:, 64:] = 0.0  # a readout neuron's CAM holds 64 synapses
    net = with_readout(reservoir(enc.n_channels, r), w_out, r)
    a, b = make_chip(net, mismatch=True, seed=0), make_chip(net, mismatch=True, seed=0)
    assert isinstance(a, Dynapse2Chip) and isinstance(b, Dynapse2Chip)
    t_end = 20_000_000
    m = rec.t_us < t_end
    t, ch = rec.t_us[m], rec.ch[m]
    assert len(t) > 1000
    # 100 ms blocks, then blocks that do not line up with the 20 ms steps.
    _compare(a, b, _blocks(t, ch, a.n_inputs, [*range(0, t_end, 100_000), t_end]))
    _compare(a, b, _blocks(t, ch, a.n_inputs, [*range(0, t_end, 333_333), t_end]))
