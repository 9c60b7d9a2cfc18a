"""MicrophoneSource without a device: callback hand-off, drop-oldest queue, rates, errors.

A fake ``sounddevice`` module stands in for PortAudio; the tests call the capture
callback themselves, as PortAudio's thread would.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import logging
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sensors.audio import mic
from sensors.audio.mic import (
    CaptureCallback,
    CaptureQueue,
    DeviceError,
    InputDevice,
    MicrophoneSource,
    list_input_devices,
)
from sensors.blocks import EndOfStream, SampleBlock


class _Status:
    def __init__(self, input_overflow: bool = False) -> None:
        self.input_overflow = input_overflow


def _frames(n: int, value: int, channels: int = 1) -> npt.NDArray[np.int16]:
    """What PortAudio hands the callback: 16-bit samples, (frames, channels)."""
    return np.full((n, channels), value, dtype=np.int16)


async def _settle() -> None:
    """Let the loop run the callbacks handed over with call_soon_threadsafe."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _turns_until(predicate: Callable[[], bool], turns: int = 100) -> None:
    """Let the loop run until ``predicate`` holds (the fake device never sleeps: no wall-clock wait)."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    msg = f"not reached after {turns} loop turns"
    raise AssertionError(msg)


async def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    queue = CaptureQueue(3)
    callback = CaptureCallback(asyncio.get_running_loop(), queue, channel=0)
    for i in range(5):
        callback(_frames(160, i), 160, None, _Status(input_overflow=i == 1))
    await _settle()
    assert queue.dropped_blocks == 2
    assert callback.overflows == 1
    kept = [await queue.get() for _ in range(3)]
    assert [item.data[0] * 32768 for item in kept if item is not None] == [2.0, 3.0, 4.0]
    assert [item.first_sample for item in kept if item is not None] == [320, 480, 640]
    assert len(queue) == 0


async def test_callback_copies_the_driver_buffer_and_picks_its_channel() -> None:
    queue = CaptureQueue(4)
    callback = CaptureCallback(asyncio.get_running_loop(), queue, channel=1)
    buffer = np.stack([np.zeros(64, np.int16), np.arange(64, dtype=np.int16) * 512], axis=1)
    callback(buffer, 64, None, _Status())
    buffer[:] = -1  # PortAudio reuses its buffer for the next block
    await _settle()
    item = await queue.get()
    assert item is not None
    assert item.data.dtype == np.float32
    np.testing.assert_array_equal(item.data, np.arange(64, dtype=np.float32) / 64)
    assert item.captured_ns > 0


async def test_callback_from_the_driver_thread_reaches_the_loop() -> None:
    queue = CaptureQueue(100)
    callback = CaptureCallback(asyncio.get_running_loop(), queue, channel=0)

    def driver() -> None:
        for i in range(20):
            callback(_frames(80, i), 80, None, _Status())

    thread = threading.Thread(target=driver)
    thread.start()
    await asyncio.to_thread(thread.join)
    await _settle()
    items = [await queue.get() for _ in range(20)]
    assert [item.first_sample for item in items if item is not None] == [80 * i for i in range(20)]
    assert queue.dropped_blocks == 0


async def test_closed_queue_drains_then_ends() -> None:
    queue = CaptureQueue(4)
    callback = CaptureCallback(asyncio.get_running_loop(), queue, channel=0)
    callback(_frames(10, 1.0), 10, None, _Status())
    await _settle()
    queue.close()
    assert (await queue.get()) is not None
    assert (await queue.get()) is None


# --- MicrophoneSource on a fake sounddevice ----------------------------------------------


class _FakeSoundDevice(types.ModuleType):
    """The parts of sounddevice that MicrophoneSource uses."""

    class PortAudioError(Exception):
        pass

    def __init__(self, accepted_rates: set[float], default_rate_hz: float = 48000.0, channels: int = 2) -> None:
        super().__init__("sounddevice")
        self.accepted_rates = accepted_rates
        self.default_rate_hz = default_rate_hz
        self.channels = channels
        self.streams: list[_FakeStream] = []
        fake = self

        class InputStream(_FakeStream):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                fake.streams.append(self)

        self.InputStream = InputStream

    def _devices(self) -> list[dict[str, Any]]:
        return [
            {
                "index": 0,
                "name": "Fake Mic",
                "hostapi": 0,
                "max_input_channels": self.channels,
                "default_samplerate": self.default_rate_hz,
            },
            {"index": 1, "name": "Speakers", "hostapi": 1, "max_input_channels": 0, "default_samplerate": 44100.0},
        ]

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if kind is None:
            return self._devices()
        if device not in (None, 0, "Fake Mic"):
            msg = f"No input device matching {device!r}"
            raise ValueError(msg)
        return self._devices()[0]

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}, {"name": "JACK"}]

    def check_input_settings(
        self, device: Any = None, channels: Any = None, dtype: Any = None, samplerate: Any = None
    ) -> None:
        if samplerate not in self.accepted_rates:
            msg = "Invalid sample rate [PaErrorCode -9997]"
            raise self.PortAudioError(msg)


class _FakeStream:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.callback: Callable[..., None] = kwargs["callback"]
        self.started = False
        self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.kwargs["finished_callback"]()


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> Callable[..., _FakeSoundDevice]:
    def install(accepted_rates: set[float], **kwargs: Any) -> _FakeSoundDevice:
        fake = _FakeSoundDevice(accepted_rates, **kwargs)
        monkeypatch.setattr(mic, "_import_sounddevice", lambda: fake)
        return fake

    return install


async def test_capture_at_the_model_rate(fake_sd: Callable[..., _FakeSoundDevice]) -> None:
    fake = fake_sd({8000.0, 48000.0})
    source = MicrophoneSource(device=None, rate_hz=8000, block_ms=20, queue_blocks=10)
    await source.start()
    stream = fake.streams[0]
    assert stream.started
    assert (stream.kwargs["samplerate"], stream.kwargs["blocksize"], stream.kwargs["channels"]) == (8000.0, 160, 1)
    for i in range(3):
        stream.callback(_frames(160, 100 * i), 160, None, _Status())
    await _settle()
    blocks = [await anext(source) for _ in range(3)]
    assert all(isinstance(b, SampleBlock) for b in blocks)
    assert [(b.first_sample, b.t0_us) for b in blocks] == [(0, 0), (160, 20_000), (320, 40_000)]
    assert blocks[2].data.shape == (160, 1)
    assert blocks[1].stream == "mic:Fake Mic"
    source.close()
    assert stream.stopped
    end = await anext(source)
    assert isinstance(end, EndOfStream)
    assert end.t_end_us == 60_000
    with pytest.raises(StopAsyncIteration):
        await anext(source)


async def test_refused_model_rate_falls_back_to_the_default_and_resamples(
    fake_sd: Callable[..., _FakeSoundDevice], caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_sd({48000.0})
    caplog.set_level(logging.INFO, logger="sensors.audio.mic")
    async with MicrophoneSource(rate_hz=8000, block_ms=20) as source:
        assert source.capture_rate_hz == 48000.0
        assert "capturing at 48000 Hz, resampled to 8000 Hz" in caplog.text
        stream = fake.streams[0]
        assert stream.kwargs["blocksize"] == 960
        t = np.arange(960 * 10) / 48000
        tone = np.round(16384 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)[:, None]
        for i in range(10):
            stream.callback(np.repeat(tone[960 * i : 960 * (i + 1)], 2, axis=1), 960, None, _Status())
        await _settle()
        source.close()
        items = [item async for item in source]
    blocks = [i for i in items if isinstance(i, SampleBlock)]
    assert isinstance(items[-1], EndOfStream)
    out = np.concatenate([b.data for b in blocks])[:, 0]
    assert out.shape[0] == 1600  # 0.2 s at 8 kHz, the resampler's tail included
    assert [b.first_sample for b in blocks] == list(np.cumsum([0] + [b.n_samples for b in blocks[:-1]]))
    assert np.abs(out[200:-200]).max() == pytest.approx(0.5, abs=0.01)


async def test_dropped_blocks_leave_a_gap_in_stream_time(fake_sd: Callable[..., _FakeSoundDevice]) -> None:
    fake = fake_sd({8000.0})
    source = MicrophoneSource(rate_hz=8000, block_ms=10, queue_blocks=2)
    await source.start()
    stream = fake.streams[0]
    stream.callback(_frames(80, 0), 80, None, _Status())
    await _settle()
    first = await anext(source)
    for i in range(1, 6):  # the pipeline stalls: 5 blocks arrive, 2 fit
        stream.callback(_frames(80, i), 80, None, _Status(input_overflow=i == 5))
    await _settle()
    later = [await anext(source) for _ in range(2)]
    assert source.dropped_blocks == 3
    assert source.overflows == 1
    assert isinstance(first, SampleBlock)
    assert [b.first_sample for b in later if isinstance(b, SampleBlock)] == [320, 400]
    assert [b.t0_us for b in later if isinstance(b, SampleBlock)] == [40_000, 50_000]
    source.close()


async def test_device_errors(fake_sd: Callable[..., _FakeSoundDevice]) -> None:
    fake_sd({8000.0}, channels=1)
    with pytest.raises(DeviceError, match="refuses capture at 44100 Hz"):
        await MicrophoneSource(rate_hz=8000, capture_rate_hz=44100).start()
    with pytest.raises(DeviceError, match="channel 1 requested, device has 1"):
        await MicrophoneSource(rate_hz=8000, channel=1).start()
    with pytest.raises(DeviceError, match=r"no input device 'USB Headset' .*; input devices: 0 'Fake Mic' \(ALSA\)"):
        await MicrophoneSource(device="USB Headset", rate_hz=8000).start()
    with pytest.raises(DeviceError, match=r"no input device 7 .*input devices: 0 'Fake Mic'"):
        await MicrophoneSource(device=7, rate_hz=8000).start()
    fake_sd(set())
    with pytest.raises(DeviceError, match="refuses 8000 Hz, its default 48000 Hz and every standard rate"):
        await MicrophoneSource(rate_hz=8000).start()


async def test_refused_model_and_default_rates_pick_another_offered_rate(
    fake_sd: Callable[..., _FakeSoundDevice],
) -> None:
    fake = fake_sd({11025.0, 22050.0, 44100.0}, default_rate_hz=48000.0)
    async with MicrophoneSource(rate_hz=16000, block_ms=20) as source:
        # The lowest offered rate at or above the model's, resampled down.
        assert source.capture_rate_hz == 22050.0
        assert fake.streams[0].kwargs["samplerate"] == 22050.0
        assert fake.streams[0].kwargs["dtype"] == "int16"
    with pytest.raises(DeviceError, match=r"refuses capture at 16000 Hz .*it offers 11025 Hz, 22050 Hz, 44100 Hz"):
        await MicrophoneSource(rate_hz=16000, capture_rate_hz=16000).start()


async def test_a_stream_that_ends_by_itself_is_a_device_error(fake_sd: Callable[..., _FakeSoundDevice]) -> None:
    """PortAudio finishing the stream without close() (unplugged): an error, so the retry layer reopens it."""
    fake = fake_sd({8000.0})
    source = MicrophoneSource(rate_hz=8000, block_ms=10)
    await source.start()
    stream = fake.streams[0]
    stream.callback(_frames(80, 5), 80, None, _Status())
    stream.kwargs["finished_callback"]()  # what PortAudio calls when its stream thread ends
    await _settle()
    assert isinstance(await anext(source), SampleBlock)  # what was captured is still delivered
    with pytest.raises(DeviceError, match="stopped delivering audio"):
        await anext(source)
    assert stream.stopped
    assert mic._open_streams == 0


async def test_retrying_source_reopens_a_failed_microphone(fake_sd: Callable[..., _FakeSoundDevice]) -> None:
    from sensors.retry import RetryingSource

    fake = fake_sd({8000.0})
    waits: list[float] = []

    async def no_wait(s: float) -> None:
        waits.append(s)

    missing = iter([True, False, False])
    sources: list[MicrophoneSource] = []

    def make() -> MicrophoneSource:
        src = MicrophoneSource(device="USB Headset" if next(missing) else 0, rate_hz=8000, block_ms=10)
        sources.append(src)
        return src

    retrying = RetryingSource(make, name="mic", min_s=0.25, sleep=no_wait)
    items = aiter(retrying)
    task = asyncio.ensure_future(anext(items))
    await _turns_until(lambda: bool(fake.streams))  # the first open fails (no such device), the second opens
    fake.streams[0].callback(_frames(80, 1), 80, None, _Status(input_overflow=True))
    first = await task
    assert isinstance(first, SampleBlock)
    fake.streams[0].kwargs["finished_callback"]()  # unplugged
    end = await anext(items)
    assert isinstance(end, EndOfStream) and end.meta == {"end": "device error"}
    task = asyncio.ensure_future(anext(items))
    await _turns_until(lambda: len(fake.streams) == 2)
    fake.streams[1].callback(_frames(80, 2), 80, None, _Status())
    assert isinstance(await task, SampleBlock)
    assert waits == [0.25, 0.25]  # the wait returned to min_s once the device delivered
    assert retrying.drops()["device_reopens"] == 2
    assert retrying.overflows == 1  # counted over every source opened
    await retrying.close()


def test_list_input_devices(fake_sd: Callable[..., _FakeSoundDevice]) -> None:
    fake_sd({8000.0})
    assert list_input_devices() == [InputDevice(0, "Fake Mic", "ALSA", 2, 48000.0, (8000,))]


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """Imports sounddevice the way it fails without libportaudio2 installed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "sounddevice":
            msg = "PortAudio library not found"
            raise OSError(msg)
        return None


def test_missing_portaudio_gives_a_clear_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(DeviceError, match=r"PortAudio.*apt-get install libportaudio2") as info:
        list_input_devices()
    assert isinstance(info.value.__cause__, OSError)
    # Only capture needs PortAudio: the source can still be built, and fails on start.
    source = MicrophoneSource(rate_hz=8000)
    with pytest.raises(DeviceError, match="libportaudio2"):
        asyncio.run(source.start())


def test_sensors_import_neither_sounddevice_nor_runtime() -> None:
    code = (
        "import sys; import sensors.audio.file, sensors.audio.encoder, sensors.audio.mic, sensors.audio.resample; "
        "print(sorted(m for m in ('sounddevice', 'runtime') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"
