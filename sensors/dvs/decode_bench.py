"""Decode throughput of the streaming DVS readers, one core, one synthetic file per binary format.

``bench_decode()`` writes each file (DVS-like events at ~1 MHz, see ``writers.dvs_like_events``) into a
temporary directory, reads it once to warm numba's compile cache and the page cache, then times
``repeat`` full streaming reads (``open_events`` with its default chunk and buffer sizes; chunks are
dropped as a consumer that keeps up would). Figures are events decoded per second of wall time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sensors.dvs import writers
from sensors.dvs.reader import open_events

Writer = Callable[[Path, writers.Events], object]

# format -> (file suffix, sensor width, height, writer)
BENCH_FORMATS: dict[str, tuple[str, int, int, Writer]] = {
    "evt2": (".raw", 640, 480, lambda p, e: writers.write_evt2(p, e, width=640, height=480)),
    "evt3": (".raw", 1280, 720, lambda p, e: writers.write_evt3(p, e, width=1280, height=720)),
    "dat": (".dat", 640, 480, lambda p, e: writers.write_dat(p, e, width=640, height=480)),
    "nmnist_bin": (".bin", 34, 34, writers.write_nmnist_bin),
    "aedat2": (".aedat", 346, 260, writers.write_aedat2),
    "aedat31": (".aedat", 640, 480, lambda p, e: writers.write_aedat31(p, e, source="DVXplorer")),
    "npy": (".npy", 640, 480, writers.write_npy),
}
NMNIST_MAX_US = (1 << 23) - 1


def _rate_hz(fmt: str, n_events: int) -> float:
    """~1 MHz, except N-MNIST whose 23-bit clock must not wrap: then as fast as needed to fit."""
    if fmt == "nmnist_bin":
        return max(1e6, 1.1 * n_events * 1e6 / NMNIST_MAX_US)
    return 1e6


def time_read(path: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this thread, and events of one full streaming read."""
    start, start_cpu = time.perf_counter(), time.thread_time()
    events = 0
    with open_events(path) as reader:
        for chunk in reader:
            events += chunk.shape[0]
    return time.perf_counter() - start, time.thread_time() - start_cpu, events


def bench_format(fmt: str, n_events: int, repeat: int, workdir: Path) -> dict[str, float | list[float]]:
    suffix, width, height, write = BENCH_FORMATS[fmt]
    events = writers.dvs_like_events(n_events, width, height, rate_hz=_rate_hz(fmt, n_events), seed=1)
    path = workdir / f"bench_{fmt}{suffix}"
    write(path, events)
    del events
    try:
        decoded = time_read(path)[2]  # warm-up: numba compile cache, page cache
        if decoded != n_events:
            msg = f"{fmt}: decoded {decoded} events, wrote {n_events}"
            raise RuntimeError(msg)
        timings = [time_read(path) for _ in range(repeat)]
        size = path.stat().st_size
    finally:
        path.unlink(missing_ok=True)
    runs = [n_events / wall / 1e6 for wall, _, _ in timings]
    cpu_runs = [n_events / cpu / 1e6 for _, cpu, _ in timings]
    return {
        "mev_per_s": statistics.median(runs),
        "runs": runs,
        # On a shared host wall time includes waiting for the core; CPU time shows the decoder alone.
        "cpu_mev_per_s": statistics.median(cpu_runs),
        "events": n_events,
        "bytes": size,
    }


def bench_decode(
    n_events: int = 20_000_000,
    repeat: int = 5,
    formats: Sequence[str] | None = None,
    workdir: Path | None = None,
) -> dict[str, dict[str, float | list[float]]]:
    """Median streaming decode rate (M events/s) per format, with the single runs, event count and file size.

    ``mev_per_s`` is wall time; ``cpu_mev_per_s`` the median over this thread's CPU time, which excludes
    time the host gave to other processes.
    """
    chosen = list(formats) if formats is not None else list(BENCH_FORMATS)
    unknown = [f for f in chosen if f not in BENCH_FORMATS]
    if unknown:
        msg = f"no decode benchmark for {unknown} (expected some of {', '.join(BENCH_FORMATS)})"
        raise ValueError(msg)
    with tempfile.TemporaryDirectory(prefix="dvs-bench-", dir=workdir) as tmp:
        return {fmt: bench_format(fmt, n_events, repeat, Path(tmp)) for fmt in chosen}


if __name__ == "__main__":
    import json
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000_000
    print(json.dumps(bench_decode(count), indent=1))
