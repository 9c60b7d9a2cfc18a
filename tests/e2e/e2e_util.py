"""Helpers for end-to-end tests that run the real ``spikewire`` command."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

SPIKEWIRE = [sys.executable, "-m", "runtime.cli"]


def fsdd_sample(
    data_dir: Path, per_digit: int, speakers: tuple[str, ...] = ("george", "nicolas", "theo", "yweweler")
) -> list[Path]:
    """``per_digit`` files of every digit, spread over the speakers, in a fixed order."""
    folder = data_dir / "audio" / "fsdd"
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    chosen: list[Path] = []
    for digit in range(10):
        mine = [r for r in rows if r["digit"] == str(digit) and r["speaker"] in speakers]
        for k in range(per_digit):
            r = mine[(k * 53 + digit * 7) % len(mine)]
            chosen.append(folder / r["file"])
    return chosen


def run_cli(
    *args: str | Path, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*SPIKEWIRE, *map(str, args)], capture_output=True, text=True, timeout=timeout_s, env=full_env, check=False
    )


def popen_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [*SPIKEWIRE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )
