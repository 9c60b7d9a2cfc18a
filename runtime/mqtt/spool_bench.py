"""Spool write throughput per fsync policy: ``python -m runtime.mqtt.spool_bench [DIR] [N]``.

Appends N classification-sized records (about 600 bytes) to a fresh spool in DIR (default:
a temporary directory under the current one, so the measured disk is the one you run on),
then acknowledges them all, and prints records/s for each policy.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from runtime.mqtt.queue import Message
from runtime.mqtt.spool import FsyncPolicy, SpoolQueue

_POLICIES: tuple[FsyncPolicy, ...] = ("always", "interval", "never")


def bench(folder: Path, policy: FsyncPolicy, count: int) -> tuple[float, float]:
    """(appends/s, acks/s) for ``count`` records with ``policy``."""
    message = Message("spikewire/dev/kws/classification", b"x" * 600, 1, "kws", "spikewire.classification/1")
    queue = SpoolQueue(folder / policy, max_bytes=1 << 30, fsync=policy, fsync_interval_ms=200.0)
    try:
        start = time.perf_counter()
        for _ in range(count):
            queue.append(message)
        appended = time.perf_counter()
        while queue.head() is not None:
            queue.pop_head()
        acked = time.perf_counter()
    finally:
        queue.close()
    return count / (appended - start), count / (acked - appended)


def main(argv: list[str]) -> int:
    base = Path(argv[0]) if argv else Path.cwd()
    count = int(argv[1]) if len(argv) > 1 else 2000
    with tempfile.TemporaryDirectory(dir=base, prefix="spool-bench-") as tmp:
        for policy in _POLICIES:
            appends, acks = bench(Path(tmp), policy, count)
            print(f"fsync={policy:8s} {appends:10.0f} appends/s {acks:10.0f} acks/s ({count} records of ~680 B)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
