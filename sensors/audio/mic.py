"""Live microphone capture through PortAudio (``sounddevice``), as an async iterator of blocks.

``sounddevice`` is imported only when a device is used: without the PortAudio library
its import raises OSError, and everything else in ``sensors`` must work without it.

Threading: PortAudio calls ``CaptureCallback`` on its own thread. The callback never
blocks: it copies the block (PortAudio reuses its buffer) and hands it to the event
loop with ``call_soon_threadsafe``. On the loop thread a ``DropOldestQueue`` keeps at most
``queue_blocks`` blocks; when the pipeline falls behind, the oldest block is dropped
and counted, so latency stays bounded and drops are never silent.

Stream time counts captured samples, so dropped blocks leave a gap in ``first_sample``
and ``t0_us`` (the encoder splices over it). Samples PortAudio itself lost (an
``input_overflow``) cannot be counted: ``overflows`` counts the blocks PortAudio flagged
(the pipeline reports it as ``device_overflows``).

Capture is 16-bit integer: it is what nearly every capture device delivers natively, so
ALSA and PortAudio pass the samples through unconverted, and a raw PCM device (ALSA's
``file`` plugin, used by the end-to-end test) delivers exactly the samples in its file.

Failures are ``DeviceError``s that say what is wrong and what is there instead: a device
that does not exist lists the input devices; a rate the device refuses lists the standard
rates it offers. A stream that ends without ``close()`` (device unplugged, driver error)
raises ``DeviceError`` from the iterator, which ``sensors.retry.RetryingSource`` turns into
a reopen with backoff. When a device is not found and no stream is open in this process,
PortAudio re-scans its devices first (it lists them only once, when it starts), so a
device plugged in after start-up is found on the next reopen.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from sensors.audio.resample import StreamingResampler, rate_ratio, sample_time_us
from sensors.blocks import EndOfStream, SampleBlock
from sensors.queues import DropOldestQueue

CaptureQueue = DropOldestQueue  # the name the microphone tests and callers know

log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """The audio device or the PortAudio library is missing or refuses the settings."""


def _import_sounddevice() -> ModuleType:
    try:
        return importlib.import_module("sounddevice")
    except OSError as exc:
        msg = (
            "microphone capture needs the PortAudio library, which was not found "
            f"({exc}); install it, e.g. `apt-get install libportaudio2`"
        )
        raise DeviceError(msg) from exc
    except ImportError as exc:
        msg = f"microphone capture needs the Python package sounddevice: {exc}"
        raise DeviceError(msg) from exc


STANDARD_RATES_HZ = (8000, 11025, 16000, 22050, 32000, 44100, 48000)
"""Rates probed for ``spikewire devices`` and tried when the model's rate is refused."""

SAMPLE_DTYPE = "int16"
_INT16_SCALE = np.float32(1.0 / 32768.0)

_open_streams = 0  # streams open in this process: PortAudio may only re-scan when there are none


@dataclass(frozen=True, slots=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    default_rate_hz: float
    rates_hz: tuple[int, ...] = ()
    """The standard rates the device accepts for 16-bit capture on one channel."""


def _accepts(sd: ModuleType, device: int | str | None, channels: int, rate_hz: float) -> str | None:
    """None when the device takes this capture setting, else PortAudio's reason."""
    try:
        sd.check_input_settings(device=device, channels=channels, dtype=SAMPLE_DTYPE, samplerate=rate_hz)
    except (ValueError, sd.PortAudioError) as exc:
        return str(exc)
    return None


def _offered_rates(sd: ModuleType, device: int | str | None, channels: int) -> tuple[int, ...]:
    return tuple(r for r in STANDARD_RATES_HZ if _accepts(sd, device, channels, r) is None)


def _input_devices(sd: ModuleType, *, probe_rates: bool) -> list[InputDevice]:
    try:
        hostapis = [str(api["name"]) for api in sd.query_hostapis()]
        devices = list(sd.query_devices())
    except sd.PortAudioError as exc:
        msg = f"cannot list audio devices: {exc}"
        raise DeviceError(msg) from exc
    return [
        InputDevice(
            index=int(dev["index"]),
            name=str(dev["name"]),
            hostapi=hostapis[int(dev["hostapi"])] if int(dev["hostapi"]) < len(hostapis) else "?",
            max_input_channels=int(dev["max_input_channels"]),
            default_rate_hz=float(dev["default_samplerate"]),
            rates_hz=_offered_rates(sd, int(dev["index"]), 1) if probe_rates else (),
        )
        for dev in devices
        if int(dev["max_input_channels"]) > 0
    ]


def list_input_devices(*, probe_rates: bool = True) -> list[InputDevice]:
    """Devices that can capture, with the standard rates each accepts, for ``spikewire devices``."""
    return _input_devices(_import_sounddevice(), probe_rates=probe_rates)


def _describe(devices: list[InputDevice]) -> str:
    if not devices:
        return "no input devices found"
    return "input devices: " + "; ".join(f"{d.index} {d.name!r} ({d.hostapi})" for d in devices)


def _rescan(sd: ModuleType) -> None:
    """Make PortAudio list the devices again (it does so only when it starts).

    Restarting PortAudio would break streams that are open, so it only happens when this
    process has none. ``_terminate``/``_initialize`` are sounddevice's documented way to do it.
    """
    terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if _open_streams > 0 or terminate is None or initialize is None:
        return
    try:
        terminate()
        initialize()
    except Exception as exc:  # a failed re-scan leaves the old list; the lookup then says what is missing
        log.debug("PortAudio re-scan failed: %s", exc)


def find_input_device(sd: ModuleType, device: str | int | None, *, rescan: bool = True) -> dict[str, Any]:
    """PortAudio's info for an input device: an exact name first, then sounddevice's own matching.

    A ``DeviceError`` names the device and lists the input devices there are.
    """
    query: str | int | None = device
    if isinstance(device, str):
        exact = [d for d in _input_devices(sd, probe_rates=False) if d.name == device]
        if len(exact) == 1:
            query = exact[0].index  # "hw" would otherwise also match "hw:1,0" and be ambiguous
    try:
        return dict(sd.query_devices(query, "input"))
    except (ValueError, sd.PortAudioError) as exc:
        if rescan and _open_streams == 0 and hasattr(sd, "_terminate"):
            _rescan(sd)
            return find_input_device(sd, device, rescan=False)
        shown = "the default input device" if device is None else f"input device {device!r}"
        msg = f"no {shown} ({exc}); {_describe(_input_devices(sd, probe_rates=False))}"
        raise DeviceError(msg) from exc


@dataclass(frozen=True, slots=True)
class Captured:
    """One block as the callback saw it, at the capture rate."""

    data: npt.NDArray[np.float32]
    """Mono samples, shape ``(n,)``."""
    captured_ns: int
    first_sample: int
    """Index of the first sample among all samples the callback received."""


class CaptureCallback:
    """The PortAudio callback: runs on the driver thread and must never block."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: DropOldestQueue[Captured], channel: int) -> None:
        self._loop = loop
        self._queue = queue
        self._channel = channel
        self._next_sample = 0
        self.overflows = 0
        self.blocks = 0

    def __call__(self, indata: npt.NDArray[np.int16], frames: int, time_info: Any, status: Any) -> None:
        captured_ns = time.monotonic_ns()
        if getattr(status, "input_overflow", False):
            self.overflows += 1  # only this thread writes it; readers tolerate a stale value
        # The multiply makes a new array: PortAudio reuses its buffer for the next block.
        samples = indata[:frames, self._channel].astype(np.float32) * _INT16_SCALE
        item = Captured(samples, captured_ns, self._next_sample)
        self._next_sample += frames
        self.blocks += 1
        # A closed loop means shutdown: the block has nowhere to go.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put, item)


class MicrophoneSource:
    """Async iterator of ``SampleBlock``s at ``rate_hz`` from a PortAudio input device.

    Use as ``async with MicrophoneSource(...) as mic: async for block in mic: ...``, or
    iterate directly (the stream opens on the first block) and call ``close()``. After
    ``close()`` the iterator yields what is queued, one ``EndOfStream``, and stops.
    """

    def __init__(
        self,
        device: str | int | None = None,
        rate_hz: float = 8000.0,
        capture_rate_hz: float | None = None,
        block_ms: float = 20.0,
        queue_blocks: int = 50,
        channel: int = 0,
    ) -> None:
        if rate_hz <= 0 or (capture_rate_hz is not None and capture_rate_hz <= 0):
            msg = f"rates must be positive, got rate_hz={rate_hz}, capture_rate_hz={capture_rate_hz}"
            raise ValueError(msg)
        if block_ms <= 0:
            msg = f"block_ms must be positive, got {block_ms}"
            raise ValueError(msg)
        if channel < 0:
            msg = f"channel must be >= 0, got {channel}"
            raise ValueError(msg)
        self.device = device
        self.rate_hz = float(rate_hz)
        self.capture_rate_hz = capture_rate_hz
        """The rate asked for; after ``start()`` the rate actually captured."""
        self.block_ms = float(block_ms)
        self.channel = channel
        self.stream_name = f"mic:{device if device is not None else 'default'}"
        self._queue: DropOldestQueue[Captured] = DropOldestQueue(queue_blocks)
        self._callback: CaptureCallback | None = None
        self._stream: Any = None
        self._resampler: StreamingResampler | None = None
        self._ratio = (1, 1)
        self._expected = 0  # next capture-rate sample index if nothing was dropped
        self._out_pos = 0  # next output-rate sample index
        self._done = False
        self._eos_sent = False

    @property
    def dropped_blocks(self) -> int:
        return self._queue.dropped_blocks

    @property
    def overflows(self) -> int:
        return self._callback.overflows if self._callback is not None else 0

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Open the device and start capturing; a ``DeviceError`` says what is wrong."""
        global _open_streams
        if self._stream is not None or self._done:
            return
        sd = _import_sounddevice()
        channels = self.channel + 1
        info = find_input_device(sd, self.device)
        index = int(info["index"]) if "index" in info else self.device
        self.stream_name = f"mic:{info['name']}"
        if int(info["max_input_channels"]) < channels:
            n_in = info["max_input_channels"]
            msg = f"{self.stream_name}: channel {self.channel} requested, device has {n_in} input channel(s)"
            raise DeviceError(msg)
        rate = self._negotiate_rate(sd, index, channels, float(info["default_samplerate"]))
        self.capture_rate_hz = rate
        if rate != self.rate_hz:
            self._resampler = StreamingResampler(rate, self.rate_hz, 1)
            self._ratio = rate_ratio(rate, self.rate_hz)
        self._callback = CaptureCallback(asyncio.get_running_loop(), self._queue, self.channel)
        loop = asyncio.get_running_loop()
        try:
            self._stream = sd.InputStream(
                samplerate=rate,
                blocksize=max(1, round(rate * self.block_ms / 1000.0)),
                device=index,
                channels=channels,
                dtype=SAMPLE_DTYPE,
                callback=self._callback,
                finished_callback=lambda: _call_soon(loop, self._queue.close),
            )
            _open_streams += 1
            self._stream.start()
        except sd.PortAudioError as exc:
            self._close_stream()
            msg = f"{self.stream_name}: cannot start capture at {rate:g} Hz: {exc}"
            raise DeviceError(msg) from exc

    def _negotiate_rate(self, sd: ModuleType, device: int | str | None, channels: int, default_rate: float) -> float:
        """The asked capture rate, else the model's, else the default, else another rate the device offers."""
        if self.capture_rate_hz is not None:
            problem = _accepts(sd, device, channels, self.capture_rate_hz)
            if problem is not None:
                offered = _offered_rates(sd, device, channels)
                msg = (
                    f"{self.stream_name}: refuses capture at {self.capture_rate_hz:g} Hz ({problem}); "
                    f"it offers {_rates_text(offered)}"
                )
                raise DeviceError(msg)
            rate = float(self.capture_rate_hz)
        elif _accepts(sd, device, channels, self.rate_hz) is None:
            rate = self.rate_hz
        elif _accepts(sd, device, channels, default_rate) is None:
            rate = default_rate
        else:
            offered = _offered_rates(sd, device, channels)
            if not offered:
                msg = (
                    f"{self.stream_name}: refuses {self.rate_hz:g} Hz, its default {default_rate:g} Hz "
                    f"and every standard rate ({_rates_text(STANDARD_RATES_HZ)})"
                )
                raise DeviceError(msg)
            # The lowest rate at or above the model's keeps the band the model needs at the least cost.
            above = [r for r in offered if r >= self.rate_hz]
            rate = float(above[0] if above else offered[-1])
        if rate == self.rate_hz:
            log.info("%s: capturing at %g Hz", self.stream_name, rate)
        else:
            log.info("%s: capturing at %g Hz, resampled to %g Hz", self.stream_name, rate, self.rate_hz)
        return rate

    def _close_stream(self) -> None:
        global _open_streams
        stream, self._stream = self._stream, None
        if stream is None:
            return
        _open_streams -= 1
        try:
            stream.stop()
            stream.close()
        except Exception as exc:  # the device may already be gone; closing must not fail
            log.warning("%s: error while closing: %s", self.stream_name, exc)

    def close(self) -> None:
        """Stop capturing; the iterator drains the queue and ends with an EndOfStream."""
        self._done = True
        self._close_stream()
        self._queue.close()

    async def __aenter__(self) -> MicrophoneSource:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> MicrophoneSource:
        return self

    async def __anext__(self) -> SampleBlock | EndOfStream:
        if self._stream is None and not self._done:
            await self.start()
        while True:
            item = await self._queue.get()
            if item is None:
                if not self._done:
                    # PortAudio ended the stream by itself: the device failed or was unplugged.
                    # An error, not an end, so that RetryingSource reopens it.
                    self._done = True
                    self._close_stream()
                    msg = f"{self.stream_name}: the device stopped delivering audio (unplugged or failed)"
                    raise DeviceError(msg)
                return self._finish()
            block = self._convert(item)
            if block is not None:
                return block

    def _convert(self, item: Captured) -> SampleBlock | None:
        if item.first_sample != self._expected:
            # Blocks were dropped: restart the resampler after the gap (its history is
            # from before it) and jump the output clock to the first sample after it.
            up, down = self._ratio
            self._out_pos = item.first_sample * up // down
            if self._resampler is not None:
                self._resampler.reset()
        self._expected = item.first_sample + item.data.shape[0]
        data = item.data[:, None]
        if self._resampler is not None:
            data = self._resampler.process(data)
        return self._block(data, item.captured_ns)

    def _block(self, data: npt.NDArray[np.float32], captured_ns: int) -> SampleBlock | None:
        if data.shape[0] == 0:
            return None
        first = self._out_pos
        self._out_pos += data.shape[0]
        return SampleBlock(
            self.stream_name, sample_time_us(first, self.rate_hz), self.rate_hz, data, captured_ns, first
        )

    def _finish(self) -> SampleBlock | EndOfStream:
        if self._resampler is not None:
            tail = self._block(self._resampler.flush(), time.monotonic_ns())
            if tail is not None:
                return tail
        if self._eos_sent:
            raise StopAsyncIteration
        self._eos_sent = True
        self._done = True
        return EndOfStream(self.stream_name, sample_time_us(self._out_pos, self.rate_hz), time.monotonic_ns())


def _rates_text(rates: tuple[int, ...]) -> str:
    return ", ".join(f"{r} Hz" for r in rates) if rates else "none of the standard rates"


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Any) -> None:
    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(fn)
