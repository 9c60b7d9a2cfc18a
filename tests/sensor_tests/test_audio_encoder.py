"""Audio spike encoder: block invariance, timing, selectivity, AGC, errors, real FSDD digits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from sensors.audio.encoder import (
    AudioEncoder,
    AudioEncoderConfig,
    _ln_positive,
    design_filterbank,
    encode_signal,
)
from sensors.blocks import InputError, SampleBlock, SpikeBatch


def _block(x: npt.NDArray[np.float32], first: int, rate_hz: float = 8000.0, stream: str = "s") -> SampleBlock:
    return SampleBlock(stream, first * 1_000_000 // int(rate_hz), rate_hz, x[:, None], 123, first)


def _stream(enc: AudioEncoder, x: npt.NDArray[np.float32], sizes: list[int]) -> list[SpikeBatch]:
    batches, pos = [], 0
    for size in sizes:
        batches.append(enc.encode(_block(x[pos : pos + size], pos, enc.cfg.rate_hz)))
        pos += size
    assert pos == x.shape[0]
    return batches


def _speechlike(rate_hz: int, seconds: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """Chirps and noise bursts with pauses: exercises every channel, the AGC and silence."""
    rng = np.random.default_rng(seed)
    n = int(rate_hz * seconds)
    t = np.arange(n) / rate_hz
    chirp = np.sin(2 * np.pi * (150 * t + 600 * t**2))
    gate = (np.sin(2 * np.pi * 1.3 * t) > -0.2).astype(np.float64)
    x = 0.3 * chirp * gate + 0.02 * rng.standard_normal(n) * (1 - gate)
    return x.astype(np.float32)


def _sine(f_hz: float, seconds: float, amp: float, rate_hz: int = 8000) -> npt.NDArray[np.float32]:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (amp * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)


@pytest.mark.parametrize("rate_hz", [8000, 22050])
def test_any_block_split_gives_identical_spikes(rate_hz: int) -> None:
    # 22050 Hz makes frames of 22.05 samples: frame ends fall on uneven sample counts.
    cfg = AudioEncoderConfig(rate_hz=rate_hz)
    x = _speechlike(rate_hz, 2.0)
    t_ref, ch_ref = encode_signal(x, cfg)
    assert t_ref.shape[0] > 1000
    rng = np.random.default_rng(1)
    for max_size in (7, 160, 5000):
        sizes: list[int] = []
        while sum(sizes) < x.shape[0]:
            sizes.append(int(min(rng.integers(1, max_size + 1), x.shape[0] - sum(sizes))))
        batches = _stream(AudioEncoder(cfg), x, sizes)
        np.testing.assert_array_equal(np.concatenate([b.t_us for b in batches]), t_ref)
        np.testing.assert_array_equal(np.concatenate([b.ch for b in batches]), ch_ref)


def test_batches_are_contiguous_sorted_and_on_the_frame_grid() -> None:
    cfg = AudioEncoderConfig()
    x = _speechlike(8000, 1.0)
    batches = _stream(AudioEncoder(cfg), x, [100, 3, 160, 1000] * 6 + [x.shape[0] - 1263 * 6])
    t_prev_end = 0
    for b in batches:
        assert b.t_start_us == t_prev_end
        assert b.n_channels == cfg.n_channels
        assert b.captured_ns == 123
        if len(b):
            assert np.all(b.t_us % cfg.frame_us == 0)
            assert b.t_us[0] > b.t_start_us
            assert b.t_us[-1] <= b.t_end_us
            key = b.t_us * cfg.n_channels + b.ch
            assert np.all(np.diff(key) > 0)  # by time, then channel; one spike per channel per frame
        t_prev_end = b.t_end_us
    # 8000 samples = 1000 complete frames of 1 ms.
    assert batches[-1].t_end_us == 1_000_000
    # A block shorter than a frame may complete none: the batch is empty and does not advance.
    enc = AudioEncoder(cfg)
    b = enc.encode(_block(x[:5], 0))
    assert len(b) == 0
    assert (b.t_start_us, b.t_end_us) == (0, 0)
    assert enc.encode(_block(x[5:8], 5)).t_end_us == 1000


def test_tone_excites_the_channel_at_its_frequency() -> None:
    cfg = AudioEncoderConfig()
    centres = cfg.centre_frequencies_hz()
    for k in (2, 10, 20, 30):
        _, ch = encode_signal(_sine(float(centres[k]), 0.5, 0.3), cfg)
        counts = np.bincount(ch, minlength=cfg.n_channels)
        assert abs(int(np.argmax(counts)) - k) <= 1
        # At the AGC peak a channel fires at max_rate_hz.
        assert counts[k] == pytest.approx(cfg.max_rate_hz * 0.5, rel=0.1)
        # The log compression over dr_db = 40 dB makes tuning curves broad, but most
        # spikes stay near the tone and channels far from it are nearly silent.
        distance = np.abs(np.arange(cfg.n_channels) - k)
        assert counts[distance <= 3].sum() >= 0.6 * counts.sum()
        assert counts[distance >= 8].sum() <= 0.1 * counts.sum()


def test_agc_levels_out_loudness_and_floor_keeps_silence_quiet() -> None:
    cfg = AudioEncoderConfig()
    f = float(cfg.centre_frequencies_hz()[12])
    loud = encode_signal(_sine(f, 1.0, 0.5), cfg)[0].shape[0]
    quiet = encode_signal(_sine(f, 1.0, 0.5e-2), cfg)[0].shape[0]  # -40 dB
    assert quiet == pytest.approx(loud, rel=0.05)
    assert encode_signal(np.zeros(8000, np.float32), cfg)[0].shape[0] == 0
    # Far below the -60 dBFS floor (a sine at -110 dBFS): beyond the 40 dB range, no spikes.
    assert encode_signal(_sine(f, 1.0, 10 ** (-110 / 20)), cfg)[0].shape[0] == 0
    # 10 dB above the floor's lower edge it does spike, but sparsely.
    faint = encode_signal(_sine(f, 1.0, 10 ** (-90 / 20)), cfg)[0].shape[0]
    assert 0 < faint < loud / 2


def test_agc_releases_after_a_loud_burst() -> None:
    cfg = AudioEncoderConfig()
    f = float(cfg.centre_frequencies_hz()[12])
    x = np.concatenate([_sine(f, 0.5, 0.9), _sine(f, 4.0, 0.009)])  # then 40 dB quieter
    t, _ = encode_signal(x, cfg)
    rate_just_after = np.sum((t > 520_000) & (t <= 1_020_000)) / 0.5
    rate_late = np.sum(t > 4_000_000) / 0.5
    assert rate_just_after < 0.5 * rate_late  # right after the burst the quiet tone is near the range's bottom
    assert rate_late > 0.8 * cfg.max_rate_hz  # seconds later the AGC has released to it


def test_reset_and_stream_checks() -> None:
    enc = AudioEncoder()
    x = _speechlike(8000, 0.2)
    first = enc.encode(_block(x, 0, stream="a"))
    with pytest.raises(ValueError, match="reset"):
        enc.encode(_block(x, x.shape[0], stream="b"))
    with pytest.raises(ValueError, match="before the end"):
        enc.encode(_block(x, 0, stream="a"))
    enc.reset()
    again = enc.encode(_block(x, 0, stream="b"))
    np.testing.assert_array_equal(again.t_us, first.t_us)
    np.testing.assert_array_equal(again.ch, first.ch)


def test_gap_in_samples_jumps_the_clock() -> None:
    enc = AudioEncoder()
    x = _speechlike(8000, 0.2)
    enc.encode(_block(x[:800], 0))
    b = enc.encode(_block(x[800:1600], 8000))  # 0.9 s of blocks were dropped upstream
    assert b.t_start_us == 100_000
    assert b.t_end_us == 1_100_000
    assert len(b) == 0 or b.t_us.min() > 1_000_000


def test_nan_and_inf_raise_input_error_naming_the_stream() -> None:
    enc = AudioEncoder()
    x = _speechlike(8000, 0.1)
    enc.encode(_block(x[:400], 0, stream="mic:usb"))
    bad = x[400:].copy()
    bad[17] = np.nan
    with pytest.raises(InputError, match=r"mic:usb.*sample 417"):
        enc.encode(_block(bad, 400, stream="mic:usb"))
    bad[17] = np.inf
    with pytest.raises(InputError, match="mic:usb"):
        enc.encode(_block(bad, 400, stream="mic:usb"))


def test_wrong_rate_or_channels_are_rejected() -> None:
    enc = AudioEncoder()
    with pytest.raises(ValueError, match="16000"):
        enc.encode(SampleBlock("s", 0, 16000.0, np.zeros((16, 1), np.float32), 0, 0))
    with pytest.raises(ValueError, match="mono"):
        enc.encode(SampleBlock("s", 0, 8000.0, np.zeros((16, 2), np.float32), 0, 0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"f_hi_hz": 4000.0}, "Nyquist"),
        ({"f_lo_hz": 3000.0, "f_hi_hz": 2000.0}, "f_lo_hz < f_hi_hz"),
        ({"rate_hz": 8000.5}, "whole number"),
        ({"max_rate_hz": 2000.0}, "one spike per frame"),
        ({"frame_us": 50}, "shorter than one sample"),
        ({"n_stages": 3}, "n_stages"),
        ({"agc_floor_dbfs": 3.0}, "agc_floor_dbfs"),
        ({"n_channels": 0}, "n_channels"),
    ],
)
def test_config_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioEncoderConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("stages", [1, 2])
def test_filterbank_peaks_at_0_db_with_the_asked_bandwidth(stages: int) -> None:
    cfg = AudioEncoderConfig(n_stages=stages)
    b0, a1, a2 = design_filterbank(cfg)
    fc = cfg.centre_frequencies_hz()
    target_bw = fc / cfg.channel_q()
    f = np.linspace(1.0, cfg.rate_hz / 2 - 1.0, 40_000)
    zi = np.exp(-2j * np.pi * f / cfg.rate_hz)
    for k in range(cfg.n_channels):
        gain = np.abs((b0[k] * (1 - zi**2) / (1 + a1[k] * zi + a2[k] * zi**2)) ** stages)
        assert gain.max() == pytest.approx(1.0, abs=1e-3)
        assert f[np.argmax(gain)] == pytest.approx(fc[k], rel=0.01)
        passband = f[gain >= 2**-0.5]
        # Near Nyquist the band is squeezed against it and comes out a little wider.
        assert passband[-1] - passband[0] == pytest.approx(target_bw[k], rel=0.2)


def test_fast_log_matches_numpy() -> None:
    x = np.concatenate([np.random.default_rng(0).random(10_000), np.logspace(-300, 0, 500), [1.0, 0.5, 2**-0.5]])
    out = np.empty_like(x)
    _ln_positive(x, np.empty_like(x), np.empty_like(x), out)
    np.testing.assert_allclose(out, np.log(x), rtol=0, atol=1e-9)
    zero = np.zeros(1)
    _ln_positive(zero, np.empty(1), np.empty(1), out[:1])
    assert math.isfinite(out[0]) and out[0] < -700


def test_fsdd_digits_give_plausible_and_distinct_patterns(data_dir: Path) -> None:
    fsdd = data_dir / "audio" / "fsdd"
    cfg = AudioEncoderConfig()
    high: dict[str, float] = {}
    for name in ("1_george_0.wav", "6_george_0.wav", "1_theo_3.wav", "6_theo_3.wav"):
        x, rate = sf.read(fsdd / name, dtype="float32")
        assert rate == cfg.rate_hz
        t, ch = encode_signal(x, cfg)
        rate_total = t.shape[0] / (x.shape[0] / rate)
        assert 500 < rate_total < 5000  # all 32 channels together, spikes per second
        high[name] = float(np.mean(ch >= 24))
    # "six" has two /s/ fricatives (energy near 3-4 kHz); "one" has none.
    assert high["6_george_0.wav"] > 2 * high["1_george_0.wav"]
    assert high["6_theo_3.wav"] > 2 * high["1_theo_3.wav"]
