"""Replay split over processes, or over a Ray or Dask cluster, with the serial run's results.

The files are expanded once, here, and cut into ``workers`` contiguous shards of about
equal size in bytes, in file order. Each shard is replayed by ``run_shard`` (its own
pipeline, built in the worker) and the shards' raw measurements come back in shard order;
``runtime.replay.summarize`` merges them as if one replay had read every file in order, so
counts, confusion, per-class and energy figures equal the serial run's. Wall time, the
real-time factor and host latencies are measured per worker and differ from run to run.

Each shard's pipeline is reset at every file anyway (chip and encoder state do not carry
over), which is what makes the split invisible in the results.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import functools
import itertools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.bundle import read_manifest, resolve
from runtime.config import ConfigError
from runtime.replay_record import ShardResult

if TYPE_CHECKING:
    from runtime.replay import ReplayOptions


def expand_files(opts: ReplayOptions) -> list[Path]:
    """The files the replay's source would read, in its order (folders expanded)."""
    modality = read_manifest(resolve(opts.model) / "manifest.toml").model.modality
    expand: Callable[[Sequence[Path]], list[Path]]
    if modality == "ecg":
        from sensors.ecg.reader import expand_ecg_paths as expand
    elif modality == "radar":
        from sensors.radar.reader import expand_radar_paths as expand
    elif modality == "dvs":
        from sensors.dvs.source import DVS_SUFFIXES
        from sensors.files import expand_paths

        expand = functools.partial(expand_paths, suffixes=DVS_SUFFIXES)
    else:
        from sensors.audio.file import expand_paths as expand
    return expand(list(opts.paths))


def _size(path: Path) -> int:
    """Bytes of a file (a WFDB record named without extension: its signal file), at least 1."""
    for p in (path, path.with_suffix(".dat"), path.with_name(path.name + ".dat")):
        if p.is_file():
            return max(p.stat().st_size, 1)
    return 1


def split_shards(files: Sequence[Path], n: int) -> list[list[Path]]:
    """At most ``n`` non-empty contiguous runs of ``files``, of about equal total size, in order."""
    n = max(1, min(n, len(files)))
    before = list(itertools.accumulate((_size(f) for f in files), initial=0))  # bytes before each file; last: all
    cuts = [0]
    for k in range(1, n):
        i = bisect.bisect_left(before, k * before[-1] / n)
        cuts.append(min(max(i, cuts[-1] + 1), len(files) - (n - k)))
    cuts.append(len(files))
    return [list(files[a:b]) for a, b in itertools.pairwise(cuts)]


def shard_options(opts: ReplayOptions, absolute: bool = False) -> list[ReplayOptions]:
    """One ``ReplayOptions`` per shard: serial, no report, no progress line.

    With MQTT each shard publishes as its own pipeline (``replay-1`` ...) with its own client
    id: a pipeline's ``seq`` stays contiguous and each file's decisions stay in order.
    """
    if opts.sinks:
        msg = "replay: extra sinks cannot be sent to worker processes; use --mqtt, or --workers 1"
        raise ConfigError(msg)
    files = expand_files(opts)
    if absolute:  # remote workers may run in another folder
        files = [f.absolute() for f in files]
    shards = split_shards(files, opts.workers)
    labels_csv = opts.labels_csv.absolute() if absolute and opts.labels_csv else opts.labels_csv
    many = len(shards) > 1 and opts.mqtt_url is not None
    return [
        dataclasses.replace(
            opts,
            paths=shard,
            workers=1,
            executor="process",
            executor_address=None,
            report_dir=None,
            progress=False,
            labels_csv=labels_csv,
            pipeline_name=f"{opts.pipeline_name}-{k + 1}" if many else opts.pipeline_name,
            mqtt_client_id=f"spikewire-{opts.device}-{opts.pipeline_name}-{k + 1}" if many else opts.mqtt_client_id,
        )
        for k, shard in enumerate(shards)
    ]


def run_shard(opts: ReplayOptions) -> ShardResult:
    """One shard, in a worker: its own pipeline, its own event loop."""
    from runtime.replay import replay_shard

    return asyncio.run(replay_shard(opts))


def replay_sharded(opts: ReplayOptions) -> list[ShardResult]:
    """Every shard's result, in file order, from processes, Ray or Dask."""
    if opts.workers < 1:
        msg = f"replay: --workers must be at least 1, got {opts.workers}"
        raise ConfigError(msg)
    if opts.executor == "dask":
        return _on_dask(shard_options(opts, absolute=True), opts.workers, opts.executor_address)
    if opts.executor == "ray":
        return _on_ray(shard_options(opts, absolute=True), opts.workers, opts.executor_address)
    parts = shard_options(opts)
    if len(parts) == 1:
        return [run_shard(parts[0])]
    # Not fork: numba's and the pipeline's threads do not survive it. forkserver starts
    # workers from a clean server process that has imported the runtime once (as spawn
    # would, but without each worker importing it again).
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["runtime.replay", "runtime.replay_parallel"])
    # This process replays the first shard itself while the pool replays the others: one
    # worker fewer to start, and this process has already loaded the runtime.
    with ProcessPoolExecutor(max_workers=len(parts) - 1, mp_context=ctx) as pool:
        others = [pool.submit(run_shard, p) for p in parts[1:]]
        first = run_shard(parts[0])
        return [first, *(f.result() for f in others)]


def _missing(extra: str, exc: ImportError) -> ConfigError:
    return ConfigError(f"replay --executor {extra} needs the '{extra}' extra: pip install 'spikewire[{extra}]' ({exc})")


def _on_dask(parts: list[ReplayOptions], workers: int, address: str | None) -> list[ShardResult]:
    try:
        import dask.distributed
    except ImportError as exc:
        raise _missing("dask", exc) from exc
    dd: Any = dask.distributed  # untyped library
    cluster: Any = None
    if address is None:
        cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with dd.Client(address or cluster) as client:
            # pure=False: two shards never share a result, even with equal options.
            futures = client.map(run_shard, parts, pure=False)
            results: list[ShardResult] = client.gather(futures)
            return results
    finally:
        if cluster is not None:
            cluster.close()


def _on_ray(parts: list[ReplayOptions], workers: int, address: str | None) -> list[ShardResult]:
    try:
        import ray
    except ImportError as exc:
        raise _missing("ray", exc) from exc
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(run_shard)
        results: list[ShardResult] = ray.get([task.remote(p) for p in parts])
        return results
    finally:
        if started:
            ray.shutdown()
