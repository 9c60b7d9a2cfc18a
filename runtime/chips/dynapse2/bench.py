"""Benchmark of the dynapse2 kernel on an ECG-like workload (a figure, not a test).

``python -m runtime.chips.dynapse2.bench`` runs a 30-minute record: Poisson input on 16
channels at ~50 spikes/s each into 128 recurrent AdEx neurons (16 input + ~32 recurrent
synapses each) and 2 readout neurons, fed in batches of ``batch_s``; it reports the median of
5 runs in ticks/s and as a real-time factor.

``python -m runtime.chips.dynapse2.bench --ecg ../shared/data/ecg/mitdb`` runs the real workload
instead: MIT-BIH record 208 (30 min) through the ``ecg-beats`` encoder and reservoir with a
random readout, on the chip as ``models.recipes.ecg_beats.run_chip`` feeds it (20 ms batches,
the whole chip path including ``Dynapse2Chip.run``) and as the pipeline does (100 ms and 1 s
source blocks through ``Dynapse2Chip.run_split`` into 20 ms results); it reports ticks/s, ns
per neuron-tick (wall time / (ticks x neurons), Python included) and the real-time factor,
median of 5, with and without mismatch. ``--block-ms`` picks one block size,
``--ecg-minutes`` a shorter stretch of the record.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.network import Network, Population, Projection
from runtime.chips.base import ChipResult
from runtime.chips.dynapse2.chip import Dynapse2Chip
from runtime.chips.dynapse2.compile import compile_dynapse2
from runtime.chips.profile import AdexCoreProfile, load_profile
from sensors.blocks import SpikeBatch

if TYPE_CHECKING:
    from models.recipes.ecg_beats import Record


def ecg_like_network(seed: int = 0, n_in: int = 16, hidden: int = 128, n_out: int = 2) -> Network:
    rng = np.random.default_rng(seed)

    def pop(name: str, n: int, v_th: float) -> Population:
        return Population(
            name, n, np.full(n, 5e-3), np.full(n, 20e-3), np.ones(n), np.zeros(n), np.full(n, v_th), np.zeros(n)
        )

    rec = rng.normal(0.0, 0.3, (hidden, hidden)) * (rng.random((hidden, hidden)) < 32 / hidden)
    return Network(
        n_in,
        (pop("hidden", hidden, 1.0), pop("out", n_out, np.inf)),
        (
            Projection("fc_in", "input", "hidden", rng.normal(0.6, 0.6, (hidden, n_in))),
            Projection("fc_rec", "hidden", "hidden", rec),
            Projection(
                "fc_out", "hidden", "out", rng.normal(0.0, 0.3, (n_out, hidden)) * (rng.random((n_out, hidden)) < 0.4)
            ),
        ),
        output="out",
    )


def bench_dynapse2(
    *, minutes: float = 30.0, rate_hz: float = 50.0, batch_s: float = 1.0, repeats: int = 5, mismatch: bool = True
) -> dict[str, float | int]:
    profile = load_profile("dynapse2")
    assert isinstance(profile, AdexCoreProfile)
    net = ecg_like_network()
    chip = Dynapse2Chip(compile_dynapse2(net, profile, mismatch=mismatch, seed=1))
    t_end = int(minutes * 60e6)
    rng = np.random.default_rng(2)
    n_ev = rng.poisson(rate_hz * net.n_inputs * minutes * 60)
    t = np.sort(rng.integers(0, t_end, n_ev)).astype(np.int64)
    ch = rng.integers(0, net.n_inputs, n_ev).astype(np.int32)
    step = int(batch_s * 1e6)
    edges = np.arange(0, t_end + step, step)
    idx = np.searchsorted(t, edges)
    batches = [
        SpikeBatch(
            "bench", t[idx[k] : idx[k + 1]], ch[idx[k] : idx[k + 1]], net.n_inputs, int(edges[k]), int(edges[k + 1]), 0
        )
        for k in range(len(edges) - 1)
    ]
    chip.run(batches[0])  # compile the kernel outside the timing
    times, spikes, sops, ticks = [], 0, 0, 0
    for _ in range(repeats):
        chip.reset()
        t0 = time.perf_counter()
        spikes = sops = ticks = 0
        for b in batches:
            r = chip.run(b)
            spikes += r.stats.spikes
            sops += r.stats.sops
            ticks += r.stats.ticks
        times.append(time.perf_counter() - t0)
    wall = float(np.median(times))
    return {
        "record_s": minutes * 60,
        "input_events": int(n_ev),
        "neurons": net.n_neurons,
        "ticks": ticks,
        "spikes": spikes,
        "sops": sops,
        "wall_s": round(wall, 3),
        "ticks_per_s": round(ticks / wall),
        "realtime_factor": round(minutes * 60 / wall, 1),
    }


def _ecg_blocks(rec: Record, n_in: int, block_us: int, until_us: int) -> list[SpikeBatch]:
    edges = [*range(0, until_us, block_us), until_us]
    cut = np.searchsorted(rec.t_us, edges)
    return [
        SpikeBatch(
            rec.name, rec.t_us[cut[k] : cut[k + 1]], rec.ch[cut[k] : cut[k + 1]], n_in, edges[k], edges[k + 1], 0
        )
        for k in range(len(edges) - 1)
    ]


def bench_ecg(
    data: Path,
    *,
    record: str = "208",
    repeats: int = 5,
    mismatch: bool = False,
    block_ms: float | None = None,
    minutes: float | None = None,
) -> dict[str, float | int | str]:
    """The ``ecg-beats`` reservoir on a real MIT-BIH record, fed as the pipeline feeds it.

    ``block_ms`` None: ``models.recipes.ecg_beats.run_chip`` (one ``run`` per 20 ms batch);
    else source blocks of ``block_ms`` through ``run_split(block, 20 ms)`` as the pipeline
    calls it. ``minutes`` cuts the record short.
    """
    from models.recipes.ecg_beats import BLOCK_MS, Recipe, load_record, make_chip, reservoir, run_chip, with_readout
    from sensors.ecg.encoder_config import EcgEncoderConfig

    r = Recipe()
    enc = EcgEncoderConfig(rate_hz=360.0, thresholds_mv=r.thresholds_mv)
    rec = load_record(data, record, enc)
    end_us = rec.end_us if minutes is None else min(rec.end_us, int(minutes * 60e6))
    w_out = np.abs(np.random.default_rng(0).normal(0.0, 0.01, (2, r.n_groups * r.group_size)))
    w_out[:, 64:] = 0.0  # a readout neuron's CAM holds 64 synapses
    chip = make_chip(with_readout(reservoir(enc.n_channels, r), w_out, r), mismatch=mismatch, seed=0)
    assert isinstance(chip, Dynapse2Chip)
    step_us = int(BLOCK_MS * 1000)
    blocks = [] if block_ms is None else _ecg_blocks(rec, chip.n_inputs, int(block_ms * 1000), end_us)

    def once() -> list[ChipResult]:
        if block_ms is None:
            return run_chip(chip, rec, end_us)
        chip.reset()
        return [x for b in blocks for x in chip.run_split(b, step_us)]

    once()  # compile the kernel outside the timing
    times, ticks, spikes = [], 0, 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = once()
        times.append(time.perf_counter() - t0)
        ticks = sum(x.stats.ticks for x in results)
        spikes = sum(x.stats.spikes for x in results)
    wall = float(np.median(times))
    n = chip.compiled.n_neurons
    return {
        "record_s": round(end_us * 1e-6, 1),
        "input_events": int(np.searchsorted(rec.t_us, end_us)),
        "neurons": n,
        "mismatch": int(mismatch),
        "call": "run 20 ms" if block_ms is None else f"run_split {block_ms:g} ms blocks",
        "results": len(results),
        "ticks": ticks,
        "spikes": spikes,
        "wall_s": round(wall, 3),
        "ticks_per_s": round(ticks / wall),
        "ns_per_neuron_tick": round(wall / (ticks * n) * 1e9, 2),
        "realtime_factor": round(end_us * 1e-6 / wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--batch-s", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ecg", type=Path, help="MIT-BIH folder: run the real ecg-beats workload instead")
    ap.add_argument("--ecg-minutes", type=float, help="only the first minutes of the record")
    ap.add_argument("--block-ms", type=float, help="only run_split with these source blocks (default: all three)")
    args = ap.parse_args()
    if args.ecg is not None:
        blocks: list[float | None] = [None, 100.0, 1000.0] if args.block_ms is None else [args.block_ms]
        out: list[dict[str, float | int | str]] = [
            bench_ecg(args.ecg, repeats=args.repeats, mismatch=mm, block_ms=b, minutes=args.ecg_minutes)
            for mm in (False, True)
            for b in blocks
        ]
        print(json.dumps(out, indent=2))
        return
    print(json.dumps(bench_dynapse2(minutes=args.minutes, batch_s=args.batch_s, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
