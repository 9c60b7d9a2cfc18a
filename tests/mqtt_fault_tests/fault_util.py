"""Helpers for the fault tests: a daemon config, its decisions, waiting on files."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mqtt_helpers import Received

from runtime.contract import Classification
from runtime.daemon import demo_recording

DEVICE = "faultdev"


def popen_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``spikewire <args>`` as a child process, stdout and stderr captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def daemon_config(tmp_path: Path, url: str, *, mqtt_extra: str = "", speed: float = 10.0, loop: bool = True) -> Path:
    """``spikewire run`` on the demo recording (a digit every ~1.4 s of audio) at ``speed``."""
    path = tmp_path / "spikewire.toml"
    path.write_text(
        f"""
device = "{DEVICE}"
stdout = false
[jsonl]
path = "{tmp_path / "decisions.jsonl"}"
[mqtt]
url = "{url}"
client_id = "spikewire-{DEVICE}"
reconnect_min_s = 0.05
reconnect_max_s = 0.5
{mqtt_extra}
[[pipelines]]
name = "kws"
model = "kws-digits"
telemetry_interval_s = 1.0
[pipelines.source]
kind = "audio_file"
paths = ["{demo_recording()}"]
speed = {speed}
loop = {"true" if loop else "false"}
""",
        encoding="utf-8",
    )
    return path


def jsonl_seqs(tmp_path: Path) -> list[int]:
    """``seq`` of every classification the daemon decided (its JSONL sink), complete lines only."""
    path = tmp_path / "decisions.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written
        if record.get("schema", "").startswith("spikewire.classification"):
            out.append(int(record["seq"]))
    return out


def decisions(messages: list[Received]) -> list[Classification]:
    return [Classification.model_validate_json(m.payload) for m in messages if m.topic.endswith("/classification")]


async def wait_for(predicate: object, what: str, timeout_s: float = 60.0) -> None:
    """Poll ``predicate()`` until true; AssertionError naming ``what`` if it never is."""
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout_s:g} s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.05)
