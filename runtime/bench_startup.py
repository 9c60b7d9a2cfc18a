"""``spikewire bench startup``: time from ``spikewire run`` to its first decision.

Runs the real command (a new Python process each time) on a short replay config, the
built-in demo recording through kws-digits at ``speed = "max"``, and measures from just
before the process is spawned to the first classification line on its stdout. The first
run uses an empty ``NUMBA_CACHE_DIR`` (cold: every kernel is compiled); the next runs
reuse it (warm: kernels load from the cache, as on a device whose systemd unit keeps
``CacheDirectory=``). Target: first decision within 2 s with a warm cache.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime.daemon import demo_recording

# A StdoutSink classification line: "HH:MM:SS <pipeline> #<seq> <label> <score> ..."
_DECISION = re.compile(r"^\d\d:\d\d:\d\d \S+ #\d+ ")
TARGET_S = 2.0


def startup_config(path: Path, model: str = "kws-digits") -> Path:
    path.write_text(
        "stdout = true\n"
        "[[pipelines]]\n"
        'name = "startup"\n'
        f'model = "{model}"\n'
        "[pipelines.source]\n"
        'kind = "audio_file"\n'
        f"paths = [{str(demo_recording())!r}]\n"
        'speed = "max"\n',
        encoding="utf-8",
    )
    return path


def time_to_first_decision(config: Path, cache_dir: Path, timeout_s: float = 120.0) -> float:
    """Seconds from spawning ``spikewire run CONFIG`` to its first decision on stdout."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "--log-level", "WARNING", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _DECISION.match(line):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout_s:
                break
        msg = f"spikewire run {config} gave no decision (exit {proc.poll()})"
        raise RuntimeError(msg)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_startup(repeats: int = 5, model: str = "kws-digits") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spikewire-startup-") as tmp:
        work = Path(tmp)
        config = startup_config(work / "startup.toml", model)
        cache = work / "numba-cache"
        cache.mkdir()
        cold_s = time_to_first_decision(config, cache)
        warm_s = [time_to_first_decision(config, cache) for _ in range(max(1, repeats))]
    median = statistics.median(warm_s)
    return {
        "what": "spikewire run -> first classification on stdout (demo recording, speed max)",
        "model": model,
        "cold_cache_s": round(cold_s, 3),
        "warm_cache_s": [round(v, 3) for v in warm_s],
        "warm_cache_median_s": round(median, 3),
        "target_s": TARGET_S,
        "meets_target": median <= TARGET_S,
    }
