"""ECG encoder: band-pass + level crossing, against analytic expectations and the real MIT-BIH records.

Expected values come from closed forms (ramp crossing times, sine spike counts from the
filter's gain computed by scipy.signal.sosfreqz), from scipy.signal.sosfilt as an
independent filter reference, and from the records' own beat annotations.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import signal

from sensors.audio.resample import sample_time_us
from sensors.blocks import InputError, SampleBlock
from sensors.ecg import read_annotations, read_wfdb
from sensors.ecg.encode import EcgEncoder, design_filter, encode_signal
from sensors.ecg.encode_kernel import NO_SPIKE_YET, level_cross
from sensors.ecg.encoder_config import EcgEncoderConfig

RATE_HZ = 360.0


def block(data: npt.ArrayLike, first: int = 0, rate_hz: float = RATE_HZ, stream: str = "s") -> SampleBlock:
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    return SampleBlock(stream, sample_time_us(first, rate_hz), rate_hz, arr, 0, first)


def modulate(
    y_mv: npt.ArrayLike, thr: float, refractory_us: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], int]:
    """The level-crossing kernel alone on one lead, reference starting at 0."""
    y = np.asarray(y_mv, dtype=np.float64)
    ref = np.zeros((1, 1))
    last_t = np.full(2, NO_SPIKE_YET, dtype=np.int64)
    dropped = np.zeros(1, dtype=np.int64)
    cap = 100_000
    out_t = np.empty(cap, dtype=np.int64)
    out_ch = np.empty(cap, dtype=np.int32)
    stop, n_out, _ = level_cross(
        np.ascontiguousarray(y[None, :]), 0, 0, int(RATE_HZ), 1, np.array([thr]), ref, last_t, refractory_us,
        dropped, out_t, out_ch,
    )  # fmt: skip
    assert stop == y.shape[0]
    return out_t[:n_out], out_ch[:n_out], int(dropped[0])


def ecg_like(rng: np.random.Generator, n: int, n_leads: int) -> npt.NDArray[np.float32]:
    """Spiky pulses at ~1.2 Hz plus wander and noise, different per lead."""
    t = np.arange(n) / RATE_HZ
    out = np.empty((n, n_leads), dtype=np.float32)
    for lead in range(n_leads):
        phase = (t * 1.2 + rng.uniform()) % 1.0
        qrs = (1.0 + lead) * np.exp(-(((phase - 0.5) / 0.015) ** 2))
        wander = 0.3 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6))
        out[:, lead] = 2.0 + qrs + wander + 0.02 * rng.standard_normal(n)
    return out


# --- level-crossing kernel -------------------------------------------------------------------------


def test_ramp_gives_evenly_spaced_up_spikes_at_the_crossing_samples() -> None:
    # Dyadic step and threshold: the ramp's values and the reference levels are exact in float64.
    step_mv, thr_mv = 2.0**-10, 2.0**-5
    n = 2000
    t_us, ch, dropped = modulate(np.arange(n) * step_mv, thr_mv)
    # Spike k fires at the first sample strictly above k * thr.
    k = np.arange(1, int((n - 1) * step_mv / thr_mv) + 1)
    first_above = np.floor(k * thr_mv / step_mv).astype(np.int64) + 1
    first_above = first_above[first_above < n]
    assert np.array_equal(t_us, [sample_time_us(int(s), RATE_HZ) for s in first_above])
    assert np.all(ch == 0)
    assert dropped == 0


def test_a_jump_of_several_thresholds_gives_several_spikes_at_that_sample() -> None:
    y = np.array([0.0, 0.0, 0.37, 0.37, -0.05])
    t_us, ch, _ = modulate(y, 0.1)
    # 0.37 passes 0.1, 0.2, 0.3 (ref ends at 0.3); -0.05 is below 0.3 - 0.1, 0.2 - 0.1 and 0.1 - 0.1.
    assert t_us.tolist() == [sample_time_us(2, RATE_HZ)] * 3 + [sample_time_us(4, RATE_HZ)] * 3
    assert ch.tolist() == [0, 0, 0, 1, 1, 1]


def test_refractory_drops_are_counted_and_the_reference_keeps_moving() -> None:
    y = np.arange(400) * 0.03  # crosses 0.1 every 3-4 samples (~9.3 ms apart)
    all_t, _, none_dropped = modulate(y, 0.1)
    kept_t, _, dropped = modulate(y, 0.1, refractory_us=20_000)
    assert none_dropped == 0
    assert len(kept_t) + dropped == len(all_t)  # same crossings: the reference moved through the drops
    assert dropped > 0
    assert np.all(np.diff(kept_t) >= 20_000)


# --- filters and whole-encoder behaviour ---------------------------------------------------------


def test_filter_matches_scipy_sosfilt_settled_on_the_first_sample() -> None:
    cfg = EcgEncoderConfig(notch_hz=60, thresholds_mv=(0.01,))
    x = ecg_like(np.random.default_rng(1), 5000, 1)[:, 0].astype(np.float64)
    sos, zi = design_filter(cfg)
    ref, _ = signal.sosfilt(sos, x, zi=zi * x[0])
    enc = EcgEncoder(cfg)
    y = enc._filter(np.ascontiguousarray(x[:, None], dtype=np.float32))
    np.testing.assert_allclose(y[0], ref, atol=1e-9)


def test_dc_offset_gives_no_spikes() -> None:
    cfg = EcgEncoderConfig(thresholds_mv=(0.02,))
    t_us, _ = encode_signal(np.full(20 * int(RATE_HZ), -3.7), RATE_HZ, cfg)
    assert len(t_us) == 0


def test_baseline_wander_is_removed() -> None:
    cfg = EcgEncoderConfig(thresholds_mv=(0.05,))
    sos, _ = design_filter(cfg)
    gain = abs(signal.sosfreqz(sos, [0.2], fs=RATE_HZ)[1][0])
    # Wander whose filtered swing stays within half a threshold of its start.
    amp_mv = 0.25 * cfg.thresholds_mv[0] / gain
    t = np.arange(60 * int(RATE_HZ)) / RATE_HZ
    x = 1.5 + amp_mv * np.sin(2 * np.pi * 0.2 * t)
    t_us, _ = encode_signal(x, RATE_HZ, cfg)
    assert len(t_us) == 0
    # Unfiltered, the same wander would cross the threshold 4 * amp / thr times per cycle.
    assert 4 * amp_mv / cfg.thresholds_mv[0] > 5


def test_sine_spike_count_per_cycle() -> None:
    cfg = EcgEncoderConfig(thresholds_mv=(0.05,))
    f_hz, amp_mv, n_s = 5.0, 1.0, 20
    sos, _ = design_filter(cfg)
    gain = abs(signal.sosfreqz(sos, [f_hz], fs=RATE_HZ)[1][0])
    t = np.arange(n_s * int(RATE_HZ)) / RATE_HZ
    t_us, ch = encode_signal(amp_mv * np.sin(2 * np.pi * f_hz * t), RATE_HZ, cfg)
    settled = t_us >= 4_000_000  # past the high-pass transient
    per_cycle = np.count_nonzero(settled) / ((n_s - 4) * f_hz)
    # A half cycle of peak P ends with the reference within one step below P (rising) or above
    # -P (falling), so it gives between 2P/thr - 2 and 2P/thr spikes; 0.5 allows for the window edges.
    expected = 4 * amp_mv * gain / cfg.thresholds_mv[0]
    assert expected - 4.5 <= per_cycle <= expected + 0.5
    assert abs(np.count_nonzero(ch[settled] == 0) - np.count_nonzero(ch[settled] == 1)) <= 1


@pytest.mark.parametrize("mains_hz", [50, 60])
def test_notch_removes_mains_on_a_flat_line(mains_hz: int) -> None:
    t = np.arange(20 * int(RATE_HZ)) / RATE_HZ
    x = 0.2 * np.sin(2 * np.pi * mains_hz * t)
    without, _ = encode_signal(x, RATE_HZ, EcgEncoderConfig(thresholds_mv=(0.02,)))
    with_notch, _ = encode_signal(x, RATE_HZ, EcgEncoderConfig(thresholds_mv=(0.02,), notch_hz=mains_hz))
    assert len(without) > 1000
    assert len(with_notch) <= len(without) / 100
    assert np.all(with_notch < 1_000_000)  # only the notch's start-up transient


def test_normalisation_makes_spike_rate_independent_of_amplitude() -> None:
    x = ecg_like(np.random.default_rng(3), 90 * int(RATE_HZ), 1)[:, 0]
    counts = {}
    for normalise in (False, True):
        cfg = EcgEncoderConfig(thresholds_mv=(0.05,), normalise=normalise, normalise_tau_s=5.0)
        for scale in (1.0, 3.0):
            t_us, _ = encode_signal(x * scale, RATE_HZ, cfg)
            counts[normalise, scale] = np.count_nonzero(t_us >= 45_000_000)  # after ~9 time constants
    assert counts[False, 3.0] > 2.5 * counts[False, 1.0]
    assert abs(counts[True, 3.0] - counts[True, 1.0]) <= 0.05 * counts[True, 1.0]


def test_spikes_are_sorted_at_exact_sample_times_in_the_channel_layout() -> None:
    rate_hz = 250.5  # non-integral: sample times are not multiples of a whole period
    cfg = EcgEncoderConfig(rate_hz=rate_hz, n_leads=2, thresholds_mv=(0.02, 0.05, 0.2))
    x = ecg_like(np.random.default_rng(4), 5000, 3)  # a third column the encoder must ignore
    t_us, ch = encode_signal(x, rate_hz, cfg)
    assert cfg.n_channels == 12
    assert set(np.unique(ch).tolist()) == set(range(12))
    order = np.lexsort((ch, t_us))
    assert np.array_equal(order, np.arange(len(t_us)))
    times = np.array([sample_time_us(n, rate_hz) for n in range(5000)])
    assert np.all(np.isin(t_us, times))
    # Lead 1 has twice the pulse height of lead 0: more spikes on each of its channels.
    counts = np.bincount(ch, minlength=12)
    for k in range(3):
        for d in (0, 1):
            assert counts[cfg.channel(1, k, bool(d))] > counts[cfg.channel(0, k, bool(d))]
    # Coarser thresholds give fewer spikes.
    assert counts[cfg.channel(0, 0, False)] > counts[cfg.channel(0, 1, False)] > counts[cfg.channel(0, 2, False)]
    assert cfg.channel_label(cfg.channel(1, 2, True)) == "lead1/0.2mV/down"


# --- streaming -------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    refractory_us=st.sampled_from([0, 4000]),
    normalise=st.booleans(),
    thresholds=st.sampled_from([(0.05,), (0.01, 0.1)]),
)
def test_any_block_split_gives_bit_identical_spikes(
    seed: int, cuts: list[int], refractory_us: int, normalise: bool, thresholds: tuple[float, ...]
) -> None:
    cfg = EcgEncoderConfig(
        n_leads=2, thresholds_mv=thresholds, refractory_us=refractory_us, normalise=normalise, notch_hz=50
    )
    x = ecg_like(np.random.default_rng(seed), 3000, 2)
    whole = EcgEncoder(cfg)
    one = whole.encode(block(x))
    enc = EcgEncoder(cfg)
    bounds = [0, *sorted(cuts), 3000]
    batches = [enc.encode(block(x[a:b], first=a)) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate([b.t_us for b in batches]), one.t_us)
    assert np.array_equal(np.concatenate([b.ch for b in batches]), one.ch)
    assert enc.dropped == whole.dropped
    # The batches tile the stream: each starts where the previous ended.
    assert batches[0].t_start_us == 0
    assert [b.t_start_us for b in batches[1:]] == [b.t_end_us for b in batches[:-1]]
    assert batches[-1].t_end_us == sample_time_us(3000, RATE_HZ) == one.t_end_us


def test_gap_and_reset() -> None:
    cfg = EcgEncoderConfig()
    x = ecg_like(np.random.default_rng(5), 2000, 1)
    enc = EcgEncoder(cfg)
    first = enc.encode(block(x[:1000]))
    after_gap = enc.encode(block(x[1000:], first=1500))
    assert after_gap.t_start_us == first.t_end_us
    assert after_gap.t_end_us == sample_time_us(2500, RATE_HZ)
    assert len(after_gap) > 0 and after_gap.t_us[0] >= sample_time_us(1500, RATE_HZ)
    with pytest.raises(ValueError, match="before the end of the previous block"):
        enc.encode(block(x[:10], first=0))
    enc.reset()
    again = enc.encode(block(x[:1000]))
    assert np.array_equal(again.t_us, first.t_us) and np.array_equal(again.ch, first.ch)


# --- errors ----------------------------------------------------------------------------------------


def test_non_finite_sample_names_stream_and_time() -> None:
    x = np.zeros((100, 2), dtype=np.float32)
    x[37, 1] = np.nan
    enc = EcgEncoder(EcgEncoderConfig(n_leads=2))
    with pytest.raises(InputError, match=rf"rec42: non-finite sample at t = {sample_time_us(137, RATE_HZ)} us"):
        enc.encode(block(x, first=100, stream="rec42"))
    # A NaN in a column the encoder does not use is not its business.
    EcgEncoder(EcgEncoderConfig(n_leads=1)).encode(block(x, stream="rec42"))


def test_wrong_rate_and_too_few_leads_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"rec7: block rate 250.0 Hz, the ECG encoder expects 360.0 Hz"):
        EcgEncoder(EcgEncoderConfig()).encode(block(np.zeros(10), rate_hz=250.0, stream="rec7"))
    with pytest.raises(InputError, match=r"rec7: block has 1 channels, the ECG encoder needs 2 leads"):
        EcgEncoder(EcgEncoderConfig(n_leads=2)).encode(block(np.zeros(10), stream="rec7"))
    with pytest.raises(InputError, match=r"signal: block rate 250\.0 Hz"):
        encode_signal(np.zeros(10), 250.0, EcgEncoderConfig())
    bad_t0 = SampleBlock("rec7", 5, RATE_HZ, np.zeros((10, 1), np.float32), 0, 0)
    with pytest.raises(InputError, match="t0_us 5 is not the time of its first_sample 0"):
        EcgEncoder(EcgEncoderConfig()).encode(bad_t0)


def test_absurd_jump_is_an_input_error_not_a_memory_blowup() -> None:
    x = np.zeros(100, dtype=np.float32)
    x[50:] = 1e6  # volts read as millivolts, say
    with pytest.raises(InputError, match="is the input in mV"):
        encode_signal(x, RATE_HZ, EcgEncoderConfig(thresholds_mv=(0.01,)))


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"lowpass_hz": 180.0}, "lowpass_hz", "below Nyquist"),
        ({"highpass_hz": 45.0}, "highpass_hz", "must be below lowpass_hz"),
        ({"highpass_hz": 0.0}, "highpass_hz", "must be positive"),
        ({"thresholds_mv": ()}, "thresholds_mv", "at least 1"),
        ({"thresholds_mv": (0.1, 0.05)}, "thresholds_mv", "strictly increasing"),
        ({"thresholds_mv": (0.0,)}, "thresholds_mv", "positive"),
        ({"notch_hz": 55}, "notch_hz", "50"),
        ({"notch_hz": 60, "rate_hz": 100.0, "lowpass_hz": 30.0}, "notch_hz", "below Nyquist"),
        ({"refractory_us": -1}, "refractory_us", "greater than or equal"),
        ({"n_leads": 0}, "n_leads", "greater than or equal"),
        ({"rate_hz": float("nan")}, "rate_hz", "positive finite"),
        ({"filter_order": 9}, "filter_order", "less than or equal"),
        ({"thresholds": (0.1,)}, "thresholds", "Extra inputs"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, object], field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        EcgEncoderConfig.model_validate(kwargs)
    assert field in str(info.value)
    assert text in str(info.value)


def test_config_round_trips_through_plain_values() -> None:
    cfg = EcgEncoderConfig(n_leads=2, thresholds_mv=(0.02, 0.1), notch_hz=50, normalise=True)
    plain = cfg.model_dump()
    assert all(isinstance(v, bool | int | float | list | tuple) or v is None for v in plain.values())
    assert EcgEncoderConfig.model_validate(plain) == cfg
    assert cfg.n_channels == 2 * 2 * 2
    assert [cfg.channel(lead, k, d) for lead in (0, 1) for k in (0, 1) for d in (False, True)] == list(range(8))


# --- real records ----------------------------------------------------------------------------------


def distance_to_nearest(t_us: npt.NDArray[np.int64], beats_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    i = np.searchsorted(beats_us, t_us)
    before = beats_us[np.clip(i - 1, 0, len(beats_us) - 1)]
    after = beats_us[np.clip(i, 0, len(beats_us) - 1)]
    return np.asarray(np.minimum(np.abs(t_us - before), np.abs(after - t_us)), dtype=np.int64)


@pytest.mark.parametrize("record", ["100", "208"])
def test_spikes_cluster_at_annotated_beats(data_dir: Path, record: str) -> None:
    path = data_dir / "ecg" / "mitdb" / record
    rec = read_wfdb(path, lead="MLII")
    beats_us = read_annotations(path).beats().t_us
    t_us, _ = encode_signal(rec.signals_mv, rec.rate_hz, EcgEncoderConfig(rate_hz=rec.rate_hz))
    window_us = 100_000
    near = distance_to_nearest(t_us, beats_us) <= window_us
    # Share of the record's time within the windows, from the annotations alone (windows merged).
    grid = np.arange(0, sample_time_us(rec.n_samples, rec.rate_hz), 1000, dtype=np.int64)
    covered = np.mean(distance_to_nearest(grid, beats_us) <= window_us)
    assert near.mean() > 0.5
    assert near.mean() > 1.5 * covered
    # Nearly every annotated beat has spikes around it.
    beat_hit = distance_to_nearest(beats_us, t_us) <= window_us
    assert beat_hit.mean() > 0.98
