"""Child process for test_alsa_mic.py: captures from the ALSA device, prints what it got as JSON.

It runs in its own process because PortAudio reads ``ALSA_CONFIG_PATH`` once, when it starts.

    python alsa_mic_proc.py exact <n_samples> <out.npy>
        MicrophoneSource at 16 kHz: the first n samples, as floats.
    python alsa_mic_proc.py abort <n_samples> <out.npz>
        RetryingSource over MicrophoneSource; the first stream is ended by PortAudio itself
        (the callback answers "abort", as PortAudio does for a failed device) after 30 blocks;
        then n samples from the reopened device.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import sounddevice as sd

from sensors.audio import mic
from sensors.audio.mic import MicrophoneSource
from sensors.blocks import EndOfStream, SampleBlock
from sensors.retry import RetryingSource

DEVICE = "spikewire_mic"


async def exact(n_samples: int, out: Path) -> dict[str, Any]:
    got: list[np.ndarray] = []
    firsts: list[int] = []
    async with MicrophoneSource(device=DEVICE, rate_hz=16000, block_ms=20, queue_blocks=10_000) as src:
        async for item in src:
            assert isinstance(item, SampleBlock)
            got.append(item.data[:, 0])
            firsts.append(item.first_sample)
            if sum(g.size for g in got) >= n_samples:
                break
        result = {
            "stream": src.stream_name,
            "capture_rate_hz": src.capture_rate_hz,
            "dropped_blocks": src.dropped_blocks,
            "overflows": src.overflows,
            "contiguous": firsts == [sum(g.size for g in got[:i]) for i in range(len(got))],
        }
    np.save(out, np.concatenate(got)[:n_samples])
    return result


class _AbortingCallback(mic.CaptureCallback):
    """The first stream's callback tells PortAudio to abort after 30 blocks."""

    streams = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _AbortingCallback.streams += 1
        self.aborts = _AbortingCallback.streams == 1

    def __call__(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if self.aborts and self.blocks >= 30:
            raise sd.CallbackAbort
        super().__call__(indata, frames, time_info, status)


async def abort(n_samples: int, out: Path) -> dict[str, Any]:
    mic.CaptureCallback = _AbortingCallback  # type: ignore[misc]
    retrying = RetryingSource(
        lambda: MicrophoneSource(device=DEVICE, rate_hz=16000, block_ms=20, queue_blocks=10_000),
        name="mic",
        min_s=0.05,
    )
    segments: list[list[np.ndarray]] = [[]]
    ends: list[dict[str, Any]] = []
    async for item in retrying:
        if isinstance(item, EndOfStream):
            ends.append(dict(item.meta))
            segments.append([])
            continue
        segments[-1].append(item.data[:, 0])
        if len(segments) == 2 and sum(g.size for g in segments[1]) >= n_samples:
            break
    await retrying.close()
    np.savez(out, *[np.concatenate(s) for s in segments])
    return {"ends": ends, "drops": retrying.drops(), "streams": _AbortingCallback.streams}


def main() -> None:
    mode, n, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    result = asyncio.run(exact(n, out) if mode == "exact" else abort(n, out))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
