"""MicrophoneSource on a real ALSA capture device (the ``file`` plugin fed through a FIFO).

What PortAudio delivers is checked sample by sample against what was written, and a stream
that PortAudio itself ends is reopened by RetryingSource. Each case runs in a child process
(``alsa_mic_proc.py``): PortAudio reads the ALSA configuration once, when it starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from alsa_helpers import DEVICE, alsa_env, feeding, require_alsa, s16_recording, write_alsa_config

from runtime.daemon import demo_recording


@pytest.fixture(autouse=True)
def _alsa() -> None:
    require_alsa()


REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("alsa_mic_proc.py")


def _capture(tmp_path: Path, mode: str, n_samples: int, out: Path) -> tuple[dict[str, Any], npt.NDArray[np.int16]]:
    samples, rate_hz = s16_recording(demo_recording())
    fifo = tmp_path / "mic.fifo"
    env = {
        **os.environ,
        **alsa_env(write_alsa_config(tmp_path, fifo)),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with feeding(fifo, samples, rate_hz) as feeder:
        feeder.start()
        proc = subprocess.run(
            [sys.executable, str(CHILD), mode, str(n_samples), str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=REPO,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), samples


def _where(segment: npt.NDArray[np.int16], samples: npt.NDArray[np.int16]) -> int:
    """Offset of ``segment`` in ``samples`` (exact match), or -1."""
    for i in np.flatnonzero(samples[: samples.size - segment.size + 1] == segment[0]):
        if np.array_equal(samples[i : i + segment.size], segment):
            return int(i)
    return -1


def test_samples_arrive_unchanged_and_in_order(tmp_path: Path) -> None:
    n = 5 * 16000  # covers the first three spoken digits
    result, samples = _capture(tmp_path, "exact", n, tmp_path / "got.npy")
    got = np.load(tmp_path / "got.npy")
    assert result["stream"] == f"mic:{DEVICE}"
    assert result["capture_rate_hz"] == 16000  # the model's rate here: no resampling
    assert result["contiguous"]
    assert result["dropped_blocks"] == 0
    assert result["overflows"] == 0
    # 16-bit capture: what was written is what the pipeline gets, scaled to [-1, 1).
    np.testing.assert_array_equal(np.round(got * 32768).astype(np.int16), samples[:n])


def test_a_stream_portaudio_ends_is_reopened_and_capture_goes_on(tmp_path: Path) -> None:
    n = 2 * 16000
    result, samples = _capture(tmp_path, "abort", n, tmp_path / "got.npz")
    with np.load(tmp_path / "got.npz") as npz:
        first, second = (np.round(npz[k] * 32768).astype(np.int16) for k in ("arr_0", "arr_1"))
    assert result["streams"] == 2
    assert result["ends"] == [{"end": "device error"}]
    assert result["drops"]["device_reopens"] == 1
    # Before the failure: the recording from its start. After the reopen: the recording goes
    # on from where the new stream started reading (what the old one had read is lost).
    np.testing.assert_array_equal(first, samples[: first.size])
    assert first.size == 30 * 320
    at = _where(second[:4000], samples)
    assert at >= first.size, at
    np.testing.assert_array_equal(second, samples[at : at + second.size])
