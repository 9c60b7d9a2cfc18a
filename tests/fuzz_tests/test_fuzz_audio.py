"""Fuzzing the audio file reader (WAV, FLAC): damaged files read fully or raise an InputError naming the file."""

from __future__ import annotations

import functools
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import given
from hypothesis import strategies as st

from sensors.audio.file import _FileReader

RATE_HZ = 8000


def read_all(path: Path, rate_hz: float = 16000.0, channel: int | str = "mix") -> int:
    reader = _FileReader(path, rate_hz, 20.0, channel)  # type: ignore[arg-type]
    try:
        n = 0
        while (block := reader.read()) is not None:
            n += len(block)
        return n
    finally:
        reader.close()


def _tone(n: int = 800, channels: int = 2) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    return np.stack([np.sin(2 * np.pi * 440 * (c + 1) * t) * 0.5 for c in range(channels)], axis=1)


@functools.cache
def seed(name: str) -> bytes:
    """A small valid file (written in memory, not a fixture: hypothesis would print it with every failure)."""
    kinds = {"pcm16.wav": ("WAV", "PCM_16"), "float.wav": ("WAV", "FLOAT"), "pcm24.flac": ("FLAC", "PCM_24")}
    fmt, subtype = kinds[name]
    buf = io.BytesIO()
    sf.write(buf, _tone(), RATE_HZ, format=fmt, subtype=subtype)
    return buf.getvalue()


SEEDS = ("pcm16.wav", "float.wav", "pcm24.flac")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio_fuzz")


def test_seeds_are_valid(work: Path) -> None:
    for name in SEEDS:
        path = work / f"seed_{name}"
        path.write_bytes(seed(name))
        assert read_all(path) > 0


@FUZZ
@given(data=st.data(), name=st.sampled_from(SEEDS))
def test_damaged_audio_file(work: Path, data: st.DataObject, name: str) -> None:
    path = work / f"damaged_{name}"
    path.write_bytes(data.draw(mutated(seed(name), header_bytes=48)))
    rate = data.draw(st.sampled_from([16000.0, 8000.0, 44100.0]))
    guarded("audio", lambda: read_all(path, rate), names=str(path))


def _wav_header(*, channels: int, rate: int, bits: int, data_bytes: int, fmt_tag: int = 1) -> bytes:
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block_align & 0xFFFFFFFF, block_align & 0xFFFF, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))
    )


@FUZZ
@given(
    channels=st.sampled_from([0, 1, 2, 255, 65535]),
    rate=st.sampled_from([0, 1, 7, 8000, 2**31 - 1, 2**32 - 1]),
    bits=st.sampled_from([0, 8, 16, 24, 32, 64, 65535]),
    data_bytes=st.sampled_from([0, 1, 3, 64, 2**31, 2**32 - 1]),
    fmt_tag=st.sampled_from([1, 3, 0, 0xFFFE, 85]),
    body=st.binary(max_size=256),
)
def test_wav_header_extremes(
    work: Path, channels: int, rate: int, bits: int, data_bytes: int, fmt_tag: int, body: bytes
) -> None:
    """Zero/huge rates, channel counts, sample widths and data sizes: refused, never attempted."""
    path = work / "extreme.wav"
    header = _wav_header(channels=channels, rate=rate, bits=bits, data_bytes=data_bytes, fmt_tag=fmt_tag)
    path.write_bytes(header + body)
    guarded("audio", lambda: read_all(path), names=str(path))


@FUZZ
@given(
    where=st.integers(0, 799),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    fmt=st.sampled_from([("WAV", "FLOAT"), ("WAV", "DOUBLE")]),
)
def test_non_finite_samples(work: Path, where: int, value: float, fmt: tuple[str, str]) -> None:
    path = work / "nan.wav"
    tone = _tone()
    tone[where, where % 2] = value
    sf.write(path, tone, RATE_HZ, format=fmt[0], subtype=fmt[1])
    outcome = guarded("audio", lambda: read_all(path), names=str(path))
    assert outcome.error is not None
    assert "non-finite" in str(outcome.error)


@pytest.mark.parametrize("channel", [2, 9])
def test_missing_channel(work: Path, channel: int) -> None:
    path = work / "two.wav"
    path.write_bytes(seed("pcm16.wav"))
    outcome = guarded("audio", lambda: read_all(path, channel=channel), names=str(path))
    assert outcome.error is not None
    assert "channel" in str(outcome.error)


def test_odd_sample_rate_is_an_input_error(work: Path) -> None:
    """Found by the fuzzer: a header rate of 8001 Hz has no supported resampling ratio (bare ValueError)."""
    path = work / "odd_rate.wav"
    sf.write(path, _tone(), 8001, format="WAV", subtype="PCM_16")
    outcome = guarded("audio", lambda: read_all(path, 16000.0), names=str(path))
    assert outcome.error is not None
    assert "resample" in str(outcome.error)


def test_huge_odd_sample_rate_is_refused_before_the_filter_is_built(work: Path) -> None:
    """Found by the fuzzer: a header rate of 1515328 Hz asked for a 257 MB resampling filter (M = 23677)."""
    path = work / "huge_rate.wav"
    sf.write(path, _tone(), 1515328, format="WAV", subtype="PCM_16")
    outcome = guarded("audio", lambda: read_all(path, 16000.0), names=str(path))
    assert outcome.error is not None
    assert "M above" in str(outcome.error)
    assert outcome.peak_mb < 50
