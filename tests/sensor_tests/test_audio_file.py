"""AudioFileSource: exact replay, resampling, channels, pacing, looping and bad files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from sensors.audio.file import READ_CHUNK_FRAMES, AudioFileSource
from sensors.audio.resample import StreamingResampler
from sensors.blocks import EndOfStream, InputError, SampleBlock

Item = SampleBlock | EndOfStream


async def _collect(source: AudioFileSource) -> list[Item]:
    return [item async for item in source]


def _tone(n: int, rate_hz: float, f_hz: float = 440.0, amp: float = 0.5) -> npt.NDArray[np.float32]:
    return (amp * np.sin(2 * np.pi * f_hz * np.arange(n) / rate_hz)).astype(np.float32)


def _write(path: Path, data: npt.NDArray[np.float32], rate_hz: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, data, rate_hz, subtype=subtype)
    return path


def _blocks(items: list[Item]) -> list[SampleBlock]:
    return [i for i in items if isinstance(i, SampleBlock)]


def _ends(items: list[Item]) -> list[EndOfStream]:
    return [i for i in items if isinstance(i, EndOfStream)]


async def test_wav_replays_exactly_with_exact_timestamps(tmp_path: Path) -> None:
    n = 8000 + 77
    path = _write(tmp_path / "a.wav", _tone(n, 8000), 8000)
    expected, _ = sf.read(path, dtype="float32")
    labels = {str(path.resolve()): "seven"}
    items = await _collect(AudioFileSource([path], 8000, block_ms=20, speed=None, labels=labels))
    blocks = _blocks(items)
    assert isinstance(items[-1], EndOfStream)
    assert [b.n_samples for b in blocks] == [160] * 50 + [77]
    for i, b in enumerate(blocks):
        assert b.stream == str(path)
        assert b.first_sample == 160 * i
        assert b.t0_us == 20_000 * i
        assert b.rate_hz == 8000.0
        assert b.data.dtype == np.float32 and b.data.shape[1] == 1
    assert blocks[0].captured_ns <= blocks[-1].captured_ns
    np.testing.assert_array_equal(np.concatenate([b.data for b in blocks])[:, 0], expected)
    end = items[-1]
    assert (end.stream, end.t_end_us, end.label, end.meta) == (str(path), n * 1_000_000 // 8000, "seven", {})


async def test_flac_is_mixed_and_resampled_to_the_model_rate(tmp_path: Path) -> None:
    n = 16000 + 123
    left, right = _tone(n, 16000, 300.0), _tone(n, 16000, 1000.0, amp=0.25)
    path = _write(tmp_path / "b.flac", np.stack([left, right], axis=1), 16000)
    stereo, _ = sf.read(path, dtype="float32", always_2d=True)
    blocks = _blocks(await _collect(AudioFileSource([path], 8000, block_ms=20, speed=None)))
    got = np.concatenate([b.data for b in blocks])
    rs = StreamingResampler(16000, 8000, 1)
    mix = stereo.mean(axis=1, keepdims=True, dtype=np.float32)
    expected = np.concatenate([rs.process(mix), rs.flush()])
    np.testing.assert_array_equal(got, expected)  # block-wise equals one-shot
    assert got.shape[0] == -(-n // 2)
    assert all(b.n_samples == 160 for b in blocks[:-1])
    assert [b.first_sample for b in blocks] == list(range(0, got.shape[0], 160))


async def test_channel_selection(tmp_path: Path) -> None:
    n = 4000
    path = _write(tmp_path / "c.wav", np.stack([np.zeros(n, np.float32), _tone(n, 8000)], axis=1), 8000)
    ch0 = np.concatenate(
        [b.data for b in _blocks(await _collect(AudioFileSource([path], 8000, speed=None, channel=0)))]
    )
    ch1 = np.concatenate(
        [b.data for b in _blocks(await _collect(AudioFileSource([path], 8000, speed=None, channel=1)))]
    )
    assert not ch0.any()
    assert np.abs(ch1).max() > 0.4
    with pytest.raises(InputError, match=r"c\.wav.*channel 2 requested.*2 channel"):
        await _collect(AudioFileSource([path], 8000, speed=None, channel=2))


async def test_folders_expand_to_sorted_audio_files(tmp_path: Path) -> None:
    for name, seconds in (("b.wav", 0.5), ("a.flac", 0.25), ("c.ogg", 0.25)):
        _write(
            tmp_path / name,
            _tone(int(8000 * seconds), 8000),
            8000,
            subtype="VORBIS" if name.endswith("ogg") else "PCM_16",
        )
    (tmp_path / "notes.txt").write_text("not audio")
    source = AudioFileSource([tmp_path], 8000, speed=None)
    assert source.n_files == 3
    assert [p.name for p in source.files] == ["a.flac", "b.wav", "c.ogg"]
    assert source.stream_seconds_total == pytest.approx(1.0)
    ends = _ends(await _collect(source))
    assert [Path(e.stream).name for e in ends] == ["a.flac", "b.wav", "c.ogg"]
    assert source.files_done == 3
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty_dir: folder holds no"):
        AudioFileSource([empty], 8000)


async def test_pacing_follows_the_stream_clock_without_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake loop clock that only sleeping and the consumer's "work" advance. Each block
    # must come out when its end is due at speed x real time counted from the start, or at
    # once if the consumer is already late; being late once must not shift later blocks.
    paths = [_write(tmp_path / f"{i}.wav", _tone(1600 + 37 * i, 8000), 8000) for i in range(2)]
    loop = asyncio.get_running_loop()
    clock = [1000.0]
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: object = None) -> object:
        clock[0] += max(0.0, delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(loop, "time", lambda: clock[0])
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    speed = 2.0
    played_us = 0
    asked = clock[0]
    lateness: list[float] = []
    async for item in AudioFileSource(paths, 8000, block_ms=20, speed=speed):
        if isinstance(item, EndOfStream):
            played_us += item.t_end_us
            continue
        due = 1000.0 + (played_us + item.t0_us + item.duration_us) / 1e6 / speed
        assert clock[0] == pytest.approx(max(due, asked), abs=1e-9)
        lateness.append(clock[0] - due)
        clock[0] += 0.1 if len(lateness) == 3 else 0.0005  # one slow step of the consumer
        asked = clock[0]
    assert len(lateness) == 10 + 11
    assert max(lateness) > 0.05  # the slow step made some blocks late...
    assert lateness[-8:] == pytest.approx([0.0] * 8, abs=1e-9)  # ...and pacing got back on schedule


async def test_loop_restarts_and_can_be_stopped(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.wav", _tone(800, 8000), 8000)
    source = AudioFileSource([path], 8000, speed=None, loop=True)
    ends = 0
    async for item in source:
        if isinstance(item, EndOfStream):
            ends += 1
            if ends == 3:
                break
        else:
            assert item.first_sample < 800  # each pass is a new stream from sample 0
    assert source.files_done == 3


async def test_large_blocks_are_read_off_the_loop_with_the_same_result(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.wav", _tone(8000 * 2, 8000), 8000)
    small = _blocks(await _collect(AudioFileSource([path], 8000, block_ms=20, speed=None)))
    large = _blocks(await _collect(AudioFileSource([path], 8000, block_ms=500, speed=None)))
    assert [b.n_samples for b in large] == [4000] * 4
    np.testing.assert_array_equal(np.concatenate([b.data for b in small]), np.concatenate([b.data for b in large]))


# --- bad input -------------------------------------------------------------------------


def _truncated_wav(tmp_path: Path) -> Path:
    good = _write(tmp_path / "good.wav", _tone(8000, 8000), 8000)
    raw = good.read_bytes()
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(raw[: len(raw) // 2])
    return bad


def _text_as_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 20)
    return path


def _empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.touch()
    return path


def _nan_wav(tmp_path: Path) -> Path:
    x = _tone(8000, 8000)
    x[5000] = np.nan
    return _write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")


def _no_frames_wav(tmp_path: Path) -> Path:
    return _write(tmp_path / "zero.wav", np.zeros(0, np.float32), 8000)


def _truncated_flac(tmp_path: Path) -> Path:
    good = _write(tmp_path / "good.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32), 8000)
    raw = good.read_bytes()
    bad = tmp_path / "truncated.flac"
    bad.write_bytes(raw[: len(raw) // 2])
    return bad


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_truncated_wav, "truncated"),
        (_text_as_wav, "unreadable or corrupt"),
        (_empty_file, "empty file"),
        (_nan_wav, r"NaN or Inf\) at sample offset 5000"),
        (_no_frames_wav, "zero-length"),
        (_truncated_flac, "corrupt or truncated"),
    ],
)
async def test_bad_files_raise_input_error_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError, match=reason) as info:
        await _collect(AudioFileSource([path], 8000, speed=None))
    assert path.name in str(info.value)


def test_missing_path_raises_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.wav: no such file"):
        AudioFileSource([tmp_path / "nowhere.wav"], 8000)


async def test_skip_mode_records_bad_files_and_goes_on(tmp_path: Path) -> None:
    good_a = _write(tmp_path / "a_good.wav", _tone(1600, 8000), 8000)
    text = _text_as_wav(tmp_path)
    # NaN after the first read chunk: some blocks go out before the error shows.
    late = _tone(READ_CHUNK_FRAMES + 2000, 8000)
    late[READ_CHUNK_FRAMES + 100] = np.nan
    late_nan = _write(tmp_path / "late_nan.wav", late, 8000, subtype="FLOAT")
    good_b = _write(tmp_path / "z_good.wav", _tone(800, 8000), 8000)
    source = AudioFileSource([good_a, text, late_nan, good_b], 8000, speed=None, on_error="skip")
    items = await _collect(source)
    ends = _ends(items)
    assert [Path(e.stream).name for e in ends] == ["a_good.wav", "late_nan.wav", "z_good.wav"]
    assert ends[0].meta == {} and ends[2].meta == {}
    assert f"sample offset {READ_CHUNK_FRAMES + 100}" in ends[1].meta["error"]
    # Whole 160-sample blocks of the first chunk went out before the NaN showed.
    assert ends[1].t_end_us == READ_CHUNK_FRAMES // 160 * 160 * 125
    assert source.skipped_files == 2
    assert source.files_done == 2
    assert [type(e) for e in source.errors] == [InputError, InputError]
    assert "notes.wav" in str(source.errors[0]) and "late_nan.wav" in str(source.errors[1])


async def test_looping_over_only_bad_files_stops_with_an_error(tmp_path: Path) -> None:
    source = AudioFileSource([_text_as_wav(tmp_path)], 8000, speed=None, loop=True, on_error="skip")
    with pytest.raises(InputError, match="none of them could be played"):
        await _collect(source)
    assert source.skipped_files == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_hz": 0}, "rate_hz"),
        ({"block_ms": -1}, "block_ms"),
        ({"speed": 0}, "speed"),
        ({"channel": -1}, "channel"),
        ({"on_error": "ignore"}, "on_error"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    path = _write(tmp_path / "a.wav", _tone(80, 8000), 8000)
    args: dict[str, object] = {"rate_hz": 8000} | kwargs
    with pytest.raises(ValueError, match=message):
        AudioFileSource([path], **args)  # type: ignore[arg-type]


async def test_real_fsdd_file(data_dir: Path) -> None:
    path = data_dir / "audio" / "fsdd" / "7_george_0.wav"
    info = sf.info(str(path))
    labels = {str(path.resolve()): "7"}
    items = await _collect(AudioFileSource([path], 8000, block_ms=20, speed=None, labels=labels))
    blocks = _blocks(items)
    data = np.concatenate([b.data for b in blocks])
    assert info.samplerate == 8000
    assert data.shape == (info.frames, 1)
    assert 0.01 < float(np.abs(data).max()) <= 1.0
    assert items[-1] == EndOfStream(str(path), info.frames * 125, items[-1].captured_ns, "7", {})
