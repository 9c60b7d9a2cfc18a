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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Startup:
    wall_s: float
    """Spawn to the first decision on stdout."""
    cpu_s: float
    """CPU time (user + system) the process used by then: unlike wall time, not inflated by a busy machine."""


def time_to_first_decision(config: Path, cache_dir: Path, timeout_s: float = 120.0) -> Startup:
    """Run ``spikewire run CONFIG`` until its first decision on stdout, then kill it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "--log-level", "WARNING", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    wall_s: float | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _DECISION.match(line):
                wall_s = time.perf_counter() - t0
                break
            if time.perf_counter() - t0 > timeout_s:
                break
    finally:
        # SIGKILL at once: the CPU time then covers start-up to the first decision, not a shutdown.
        proc.kill()
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stdout is not None:
            proc.stdout.close()
    if wall_s is None:
        msg = f"spikewire run {config} gave no decision (exit {proc.returncode})"
        raise RuntimeError(msg)
    return Startup(wall_s, usage.ru_utime + usage.ru_stime)


def bench_startup(repeats: int = 5, model: str = "kws-digits") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spikewire-startup-") as tmp:
        work = Path(tmp)
        config = startup_config(work / "startup.toml", model)
        cache = work / "numba-cache"
        cache.mkdir()
        cold = time_to_first_decision(config, cache)
        warm = [time_to_first_decision(config, cache) for _ in range(max(1, repeats))]
    median = statistics.median(w.wall_s for w in warm)
    return {
        "what": "spikewire run -> first classification on stdout (demo recording, speed max)",
        "model": model,
        "cold_cache_s": round(cold.wall_s, 3),
        "cold_cache_cpu_s": round(cold.cpu_s, 3),
        "warm_cache_s": [round(w.wall_s, 3) for w in warm],
        "warm_cache_median_s": round(median, 3),
        "warm_cache_cpu_median_s": round(statistics.median(w.cpu_s for w in warm), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "target_s": TARGET_S,
        "meets_target": median <= TARGET_S,
    }
