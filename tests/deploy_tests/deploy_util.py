"""Helpers for the deployment tests: run the real ``spikewire`` command, tools the CI must have."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SPIKEWIRE = [sys.executable, "-m", "runtime.cli"]


def need_tool(name: str, package: str) -> str:
    """Path of ``name``; missing fails on CI (./dev installs ``package``) and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found (apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def spawn(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SPIKEWIRE, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def demo_pipeline_toml(name: str = "demo", *, loop: bool = True, speed: str = "1.0", extra: str = "") -> str:
    """A pipeline on the built-in demo recording (kws-digits)."""
    from runtime.daemon import demo_recording

    return (
        "[[pipelines]]\n"
        f'name = "{name}"\n'
        'model = "kws-digits"\n'
        "telemetry_interval_s = 0.5\n"
        f"{extra}"
        "[pipelines.source]\n"
        'kind = "audio_file"\n'
        f"paths = [{str(demo_recording())!r}]\n"
        f"speed = {speed}\n"
        f"loop = {'true' if loop else 'false'}\n"
    )


class Daemon:
    """``spikewire run CONFIG`` in the background; stderr collected by a thread, JSONL output read on demand."""

    def __init__(self, config: Path, jsonl: Path | None = None, env: dict[str, str] | None = None) -> None:
        import threading

        self.jsonl = jsonl
        self.proc = spawn("run", config, env=env)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def records(self) -> list[dict[str, object]]:
        import json

        if self.jsonl is None or not self.jsonl.exists():
            return []
        lines = self.jsonl.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, predicate: object, what: str, timeout_s: float = 60.0) -> None:
        import time

        assert callable(predicate)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        msg = f"never saw {what} (exit {self.proc.poll()}); stderr:\n{''.join(self.stderr)[-3000:]}"
        raise AssertionError(msg)

    def stop(self, timeout_s: float = 30.0) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reader.join(timeout=5)
