"""A bad input takes down its own pipeline only: the daemon with three pipelines, two fed broken files
(a WAV cut short, a WAV with a NaN sample half a second in), keeps publishing the third's decisions."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from runtime.daemon import demo_recording

pytestmark = pytest.mark.slow


def _tone_wav(rate_hz: int = 16000, seconds: float = 2.0, subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate_hz, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_corrupt_files_stop_only_their_pipelines(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(_tone_wav()[:3000])  # the header still declares 2 s of audio
    with_nan = tmp_path / "nan.wav"
    t = np.arange(32000) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    samples[8000] = np.nan
    sf.write(with_nan, samples, 16000, format="WAV", subtype="FLOAT")
    jsonl = tmp_path / "out.jsonl"

    def pipeline(name: str, path: Path, loop: bool) -> str:
        return f"""
[[pipelines]]
name = "{name}"
model = "kws-digits"
telemetry_interval_s = 1.0
[pipelines.source]
kind = "audio_file"
paths = ["{path}"]
speed = 4.0
loop = {"true" if loop else "false"}
"""

    config = tmp_path / "spikewire.toml"
    config.write_text(
        f'device = "fuzz-e2e"\nstdout = false\n[jsonl]\npath = "{jsonl}"\n'
        + pipeline("good", demo_recording(), True)
        + pipeline("cut", truncated, False)
        + pipeline("nan", with_nan, False)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", str(config), "--duration", "10"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Each bad pipeline's error names its file and the problem.
    assert "pipeline 'cut' failed" in proc.stderr and str(truncated) in proc.stderr, proc.stderr
    assert "truncated" in proc.stderr
    assert "pipeline 'nan' failed" in proc.stderr and "non-finite" in proc.stderr, proc.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    decisions = [r for r in records if r.get("pipeline") == "good" and "label" in r and "window" in r]
    # The good pipeline kept deciding after the others failed (at 4x, the 10 s run covers ~40 s of audio).
    assert len(decisions) >= 5, f"{len(decisions)} decisions from the good pipeline"
    assert [d["seq"] for d in decisions] == list(range(1, len(decisions) + 1))
    # The cut file is refused when opened; the NaN one after its first blocks (those may give a decision).
    assert not [r for r in records if r.get("pipeline") == "cut" and "label" in r and "window" in r]
