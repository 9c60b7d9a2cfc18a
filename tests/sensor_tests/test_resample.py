"""Streaming rational resampler: block invariance, length, frequency, amplitude, anti-aliasing."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from sensors.audio.resample import StreamingResampler, design_lowpass, rate_ratio, sample_time_us

RATE_PAIRS = [(16000, 8000), (44100, 8000), (8000, 16000), (22050, 16000), (48000, 44100)]


def _sine(rate_hz: float, f_hz: float, seconds: float, amp: float = 0.5, channels: int = 1) -> npt.NDArray[np.float32]:
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    x = (amp * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def _run(rs: StreamingResampler, x: npt.NDArray[np.float32], sizes: list[int] | None = None) -> npt.NDArray[np.float32]:
    if sizes is None:
        return np.concatenate([rs.process(x), rs.flush()])
    parts, i = [], 0
    for size in sizes:
        parts.append(rs.process(x[i : i + size]))
        i += size
    assert i == x.shape[0]
    parts.append(rs.flush())
    return np.concatenate(parts)


def _random_split(n: int, rng: np.random.Generator, max_size: int) -> list[int]:
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(0, max_size), n - sum(sizes))))
    return sizes


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
def test_any_block_split_gives_identical_output(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(rate_in + rate_out)
    x = rng.standard_normal((rate_in // 2, 2)).astype(np.float32) * 0.3
    one_shot = _run(StreamingResampler(rate_in, rate_out, 2), x)
    for max_size in (1 + rate_in // 1000, 700):  # tiny blocks (some empty) and large ones
        split = _run(StreamingResampler(rate_in, rate_out, 2), x, _random_split(x.shape[0], rng, max_size))
        np.testing.assert_array_equal(split, one_shot)


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
def test_total_length_is_n_times_out_over_in(rate_in: int, rate_out: int) -> None:
    for n in (1, 999, rate_in):
        rs = StreamingResampler(rate_in, rate_out, 1)
        y = _run(rs, np.zeros((n, 1), np.float32))
        assert y.shape == (-(-n * rate_out // rate_in), 1)
        assert abs(y.shape[0] - n * rate_out / rate_in) < 1


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
def test_sine_keeps_frequency_amplitude_and_timing(rate_in: int, rate_out: int) -> None:
    f_hz, amp = 1000.0, 0.5
    y = _run(StreamingResampler(rate_in, rate_out, 1), _sine(rate_in, f_hz, 1.0, amp))[:, 0]
    # Output sample k is the input at k / rate_out: compare with the ideal sine, skipping
    # the edges where the filter sees the zeros before and after the signal.
    t = np.arange(y.shape[0]) / rate_out
    ideal = amp * np.sin(2 * np.pi * f_hz * t)
    core = slice(rate_out // 20, -rate_out // 20)
    assert np.max(np.abs(y[core] - ideal[core])) < 1e-3 * amp
    spectrum = np.abs(np.fft.rfft(y[core] * np.hanning(y[core].shape[0])))
    peak_hz = np.argmax(spectrum) * rate_out / y[core].shape[0]
    assert abs(peak_hz - f_hz) < 2.0


def test_content_above_output_nyquist_is_suppressed_60_db() -> None:
    # 16 kHz -> 8 kHz: 5 kHz would alias to 3 kHz; it must come out at least 60 dB down.
    x = _sine(16000, 5000.0, 1.0, amp=0.9)
    y = _run(StreamingResampler(16000, 8000, 1), x)[400:-400, 0]
    rms_out = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert 20 * np.log10(rms_out / (0.9 / np.sqrt(2))) < -60


@pytest.mark.parametrize(("up", "down"), [(1, 2), (80, 441), (2, 1), (147, 160)])
def test_filter_stopband_at_least_60_db(up: int, down: int) -> None:
    poly = design_lowpass(up, down)
    proto = poly.T.reshape(-1)  # back to taps p + j * up
    n_fft = 1 << int(np.ceil(np.log2(proto.shape[0] * 8)))
    response = np.abs(np.fft.rfft(proto, n_fft))
    freqs = np.arange(response.shape[0]) / n_fft  # cycles per up-sampled sample
    f_nyq = 0.5 / max(up, down)
    passband = response[freqs <= 0.9 * f_nyq]
    stopband = response[freqs >= f_nyq]
    assert np.allclose(passband, up, rtol=0.01)  # flat to 0.1 dB, gain L for zero stuffing
    assert 20 * np.log10(stopband.max() / up) < -60


def test_equal_rates_pass_through() -> None:
    rs = StreamingResampler(8000, 8000, 1)
    x = _sine(8000, 440.0, 0.1)
    np.testing.assert_array_equal(_run(rs, x), x)


def test_rate_ratio_and_sample_time() -> None:
    assert rate_ratio(44100, 8000) == (80, 441)
    assert rate_ratio(11025.0, 22050.0) == (2, 1)
    assert sample_time_us(8000, 8000) == 1_000_000
    assert sample_time_us(1, 44100) == 22  # floor of 22.67
    # Exact for huge indices (a month of audio): no float drift.
    n = 44100 * 86400 * 31
    assert sample_time_us(n, 44100) == 86400 * 31 * 1_000_000


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamingResampler(0, 8000, 1)
    with pytest.raises(ValueError, match="not supported"):
        StreamingResampler(8000, 8000.001 * 1.0001, 1)
    rs = StreamingResampler(16000, 8000, 1)
    with pytest.raises(ValueError, match="block"):
        rs.process(np.zeros((10, 2), np.float32))
    rs.flush()
    with pytest.raises(RuntimeError, match="reset"):
        rs.process(np.zeros((10, 1), np.float32))
