"""``spikewire bench dvs``: workload W2 on the emulated DynapCNN, chip alone and whole pipeline.

W2 (``runtime.chips.dynapcnn.bench``): a 128x128x2 DVS stream at 200k events/s for 10 s
through conv 2->8 3x3 stride 2, sum-pool 2, conv 8->16 3x3, sum-pool 2, dense -> 10.

* chip: the stream's SpikeBatches straight into ``DynapcnnChip.run`` (10 ms batches).
* pipeline: the same events written once to a Prophesee EVT 2.0 file, then
  ``spikewire replay --speed max`` in this process: file -> decode -> DVS front end -> chip
  -> readout -> decision, through the same code as the daemon. Reported as events read
  per wall second (median of the runs), with every run listed.

Measured, never asserted. The pipeline decodes in a worker thread while the chip runs in
the pipeline's own worker thread; both release the GIL, so on a 2-core host the stages
overlap.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.nir_conv import write_convnet
from runtime.chips.dynapcnn.bench import W2_SHAPE, bench_w2, w2_events, w2_network
from sensors.blocks import EVENT_DTYPE
from sensors.dvs.writers import write_evt2

_MANIFEST = """labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

[model]
name = "w2"
version = "0"
description = "Benchmark workload W2 (random weights)"
modality = "dvs"
target_chip = "dynapcnn"

[encoder]
polarity = "both"
pool = 1

[readout]
kind = "spike_count"
"""


def _w2_file(folder: Path, seconds: float, rate_hz: float, seed: int) -> tuple[Path, int]:
    t_us, ch = w2_events(seconds, rate_hz, seed + 1)
    _, h, w = W2_SHAPE
    events = np.empty(len(t_us), EVENT_DTYPE)
    events["t"] = t_us
    events["p"] = ch // (h * w) == 1
    events["y"] = (ch % (h * w)) // w
    events["x"] = ch % w
    path = folder / "w2.raw"
    write_evt2(path, events, width=w, height=h)
    return path, len(events)


def _w2_bundle(folder: Path, seed: int) -> Path:
    root = folder / "w2-bundle"
    root.mkdir()
    write_convnet(w2_network(seed), root / "model.nir")
    (root / "manifest.toml").write_text(_MANIFEST, encoding="utf-8")
    return root


def bench_pipeline(seconds: float = 10.0, rate_hz: float = 200_000, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    from runtime.replay import ReplayOptions, run_replay

    with tempfile.TemporaryDirectory(prefix="spikewire-w2-") as tmp:
        folder = Path(tmp)
        path, n_events = _w2_file(folder, seconds, rate_hz, seed)
        bundle = _w2_bundle(folder, seed)
        opts = ReplayOptions(paths=[path], model=str(bundle), speed="max", readout_mode="stream")
        run_replay(opts)  # warm-up: numba caches, page cache
        runs: list[float] = []
        summary: dict[str, Any] = {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            summary = run_replay(opts)
            runs.append(n_events / (time.perf_counter() - t0))
        size = path.stat().st_size
    return {
        "events": n_events,
        "file_bytes": size,
        "events_per_s": float(np.median(runs)),
        "runs_events_per_s": runs,
        "rtf": float(np.median(runs)) / rate_hz,
        "chip_input_events": summary.get("chip_input_events"),
        "decisions": summary.get("decisions"),
        "drops": summary.get("drops"),
    }


def run_bench_dvs(seconds: float = 10.0, repeats: int = 5) -> dict[str, Any]:
    return {
        "workload": "W2: 128x128x2 DVS at 200k ev/s; conv 2->8 s2, pool 2, conv 8->16, pool 2, dense -> 10",
        "chip": bench_w2(seconds=seconds),
        "pipeline": bench_pipeline(seconds=seconds, repeats=repeats),
    }
