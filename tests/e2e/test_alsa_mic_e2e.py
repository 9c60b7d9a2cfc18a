"""The microphone through the real device stack: sounddevice, PortAudio, ALSA, a capture device.

The device is ALSA's ``file`` plugin reading the project's demo recording from a FIFO (see
``tests/alsa_helpers.py`` for why a FIFO, and what alsa-lib does at the end of a plain file). Runs on a
machine with no sound card: everything it needs is in libasound2 and libportaudio2.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import IO

import pytest
from alsa_helpers import DEVICE, alsa_env, feeding, require_alsa, s16_recording, write_alsa_config
from e2e_util import SPIKEWIRE, run_cli
from mqtt_helpers import Broker, Collector, wait_until

from runtime.contract import Classification, Telemetry
from runtime.daemon import demo_recording


@pytest.fixture(autouse=True)
def _alsa() -> None:
    require_alsa()


STANDARD_RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000]


def _daemon_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "spikewire.toml"
    # rate_hz: capture at the recording's 16 kHz, resampled to the model's 8 kHz by the source.
    # queue_blocks: the whole recording arrives at once (the device has no clock): nothing may drop.
    path.write_text(
        f"""
device = "alsa-test"
stdout = false
[mqtt]
url = "{url}"
[[pipelines]]
name = "kws"
model = "kws-digits"
telemetry_interval_s = 1.0
readout = {{ mode = "utterance" }}
source = {{ kind = "microphone", device = "{DEVICE}", rate_hz = 16000, block_ms = 20, queue_blocks = 4000 }}
"""
    )
    return path


def test_devices_lists_the_alsa_device_with_its_rates(tmp_path: Path) -> None:
    raw = tmp_path / "silence.raw"
    raw.write_bytes(bytes(3200))
    env = alsa_env(write_alsa_config(tmp_path, raw))
    out = run_cli("devices", "--json", env=env, timeout_s=60)
    assert out.returncode == 0, out.stderr
    devices = {d["name"]: d for d in json.loads(out.stdout)}
    mic = devices[DEVICE]
    assert mic["hostapi"] == "ALSA"
    assert mic["max_input_channels"] >= 1
    assert mic["rates_hz"] == STANDARD_RATES  # the null slave takes any rate
    text = run_cli("devices", env=env, timeout_s=60)
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if DEVICE in x)
    assert f"{mic['index']:3}  {DEVICE}  (ALSA, " in line
    assert "accepts 8000, 11025, 16000, 22050, 32000, 44100, 48000" in line


def test_a_missing_device_is_named_with_the_devices_there_are(tmp_path: Path) -> None:
    raw = tmp_path / "silence.raw"
    raw.write_bytes(bytes(3200))
    env = alsa_env(write_alsa_config(tmp_path, raw))
    code = (
        "import asyncio\n"
        "from sensors.audio.mic import MicrophoneSource, DeviceError\n"
        "try:\n"
        "    asyncio.run(MicrophoneSource(device='USB Headset', rate_hz=8000).start())\n"
        "except DeviceError as exc:\n"
        "    print(exc)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [SPIKEWIRE[0], "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, **env}, cwd=repo
    )
    assert out.returncode == 0, out.stderr
    assert "no input device 'USB Headset'" in out.stdout
    assert f"'{DEVICE}' (ALSA)" in out.stdout


def _spoken() -> list[tuple[float, float, str]]:
    rows = csv.DictReader(demo_recording().with_name("demo.labels.csv").open())
    return [(float(r["start_s"]), float(r["end_s"]), r["digit"]) for r in rows]


def _log_text(path: Path) -> str:
    return path.read_text(errors="replace")


def _start_daemon(config: Path, env: dict[str, str], log: IO[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*SPIKEWIRE, "run", str(config)], stdout=subprocess.DEVNULL, stderr=log, env=env)


@pytest.mark.broker
@pytest.mark.slow
async def test_daemon_waits_for_the_device_then_publishes_the_spoken_digits(mosquitto: Broker, tmp_path: Path) -> None:
    """The device is not there when the daemon starts; it appears; the digits spoken into it are published."""
    samples, rate_hz = s16_recording(demo_recording())
    assert rate_hz == 16000
    fifo = tmp_path / "mic.fifo"
    env = {**os.environ, **alsa_env(write_alsa_config(tmp_path, fifo)), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "daemon.log"
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/alsa-test/#") as sub:
        with feeding(fifo, samples, rate_hz) as feeder, log_path.open("w") as log:
            proc = _start_daemon(_daemon_config(tmp_path, mosquitto.url), env, log)
            try:
                # No FIFO yet: ALSA cannot open the device, PortAudio does not list it.
                missing = f"no input device '{DEVICE}'"
                await wait_until(lambda: missing in _log_text(log_path), timeout_s=60, what="the device error")
                feeder.start()  # plugged in: the next reopen re-scans and finds it
                await sub.wait_for(
                    lambda ms: sum(m.topic.endswith("/kws/classification") for m in ms) >= 12, timeout_s=90
                )
                # A few more telemetry reports, while silence flows: no decision may follow the last word.
                n_tel = sum(m.topic.endswith("/kws/telemetry") for m in sub.messages)
                await sub.wait_for(lambda ms: sum(m.topic.endswith("/kws/telemetry") for m in ms) >= n_tel + 2)
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)
            finally:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, _log_text(log_path)
    cls = [Classification.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/classification")]
    spoken = _spoken()
    assert len(cls) == len(spoken) == 12, [(c.label, c.window.start_us) for c in cls]
    for c, (s0, s1, _) in zip(cls, spoken, strict=True):
        # Stream time is the device's sample count: it matches the recording's time.
        w0, w1 = c.window.start_us / 1e6, c.window.end_us / 1e6
        assert s0 - 0.05 <= w0 <= s0 + 0.12, (w0, s0)
        assert s1 - 0.25 <= w1 <= s1 + 0.3, (w1, s1)
        assert c.window.stream == f"mic:{DEVICE}"
    right = sum(c.label == digit for c, (_, _, digit) in zip(cls, spoken, strict=True))
    assert right >= 10, [c.label for c in cls]
    tel = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/telemetry")]
    last = tel[-1].drops
    assert last["source_blocks"] == 0  # the queue held the whole recording
    assert last["source_device_reopens"] >= 1  # opened only after the device appeared
    assert "reopening in" in _log_text(log_path)
