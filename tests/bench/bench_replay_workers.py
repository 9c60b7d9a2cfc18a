"""Wall time of ``spikewire replay`` of the FSDD folder with --workers 1 and 2 (median of 3), and the ratio.

    .venv/bin/python tests/bench/bench_replay_workers.py [--case fsdd|ecg] [--repeats 3] [--workers 1 2]

``fsdd``: the 2000 FSDD recordings through kws-digits; ``ecg``: MIT-BIH records 100 and 208
(30 min each) through ecg-beats, a heavier load per file.

Each run is a fresh ``run_replay`` call, worker start-up (forkserver, imports, model compile,
numba cache load) included. The merged summaries of every run are checked to be equal,
wall-clock figures aside. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from runtime.replay import ReplayOptions, run_replay

WALL_CLOCK = {"wall_s", "rtf", "latency_ms", "events_read_per_s_wall", "chip_input_events_per_s_wall"}


def _options(case: str, data: Path, workers: int) -> ReplayOptions:
    if case == "ecg":
        records = [data / "ecg" / "mitdb" / r for r in ("100", "208")]
        return ReplayOptions(paths=records, model="ecg-beats", workers=workers)
    fsdd = data / "audio" / "fsdd"
    return ReplayOptions(
        paths=[fsdd], model="kws-digits", labels_csv=fsdd / "labels.csv", label_column="digit", workers=workers
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("SPIKEWIRE_DATA", Path(__file__).parents[2] / ".." / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--case", choices=["fsdd", "ecg"], default="fsdd")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    results: dict[int, list[float]] = {}
    reference: dict[str, Any] | None = None
    for rep in range(args.repeats):
        for n in args.workers:
            opts = _options(args.case, args.data, n)
            t0 = time.perf_counter()
            summary = run_replay(opts)
            wall = time.perf_counter() - t0
            results.setdefault(n, []).append(wall)
            same = {k: v for k, v in summary.items() if k not in WALL_CLOCK}
            if reference is None:
                reference = same
            elif same != reference:
                diff = sorted(k for k in same if same[k] != reference.get(k))
                print(f"bench: --workers {n} summary differs from the first run in {diff}", file=sys.stderr)
                return 1
            print(f"run {rep + 1}: --workers {n}: {wall:.2f} s", file=sys.stderr)
    medians = {n: statistics.median(v) for n, v in results.items()}
    base = medians[args.workers[0]]
    out = {
        "case": args.case,
        "load_average_1min": os.getloadavg()[0],
        "files": reference["files"] if reference else 0,
        "stream_s": reference["stream_s"] if reference else 0,
        "accuracy": reference["accuracy"] if reference else None,
        "cpus": os.cpu_count(),
        "wall_s": {str(n): v for n, v in results.items()},
        "median_wall_s": {str(n): m for n, m in medians.items()},
        "speedup_vs_first": {str(n): base / m for n, m in medians.items()},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
