"""``spikewire replay``: the daemon's pipeline fed from files, scored against labels.

Replay is lossless and deterministic: the file source never drops, every stream starts
from a reset chip, and the same files, model, chip and seed give the same decisions.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.bundle import read_manifest, resolve
from runtime.build import build_pipeline, read_labels
from runtime.config import (
    AudioFileSourceConfig,
    DvsFileSourceConfig,
    EcgFileSourceConfig,
    MqttConfig,
    PipelineConfig,
    RadarFileSourceConfig,
    ReadoutConfig,
    SourceConfig,
)
from runtime.contract import Classification
from runtime.pipeline import status_payload
from runtime.readout import Decision, Mode
from runtime.replay_record import ReplayTrace, ShardResult, TracingCounters
from runtime.scoring import BeatTally
from runtime.sinks.base import Sink
from runtime.telemetry import percentiles
from sensors.dvs.preprocess_config import DvsPreprocessConfig


@dataclass
class ReplayOptions:
    paths: Sequence[Path]
    model: str
    chip: str | None = None
    speed: float | Literal["max"] = "max"
    mqtt_url: str | None = None
    labels_csv: Path | None = None
    label_column: str = "label"
    mismatch: bool | None = None
    seed: int = 0
    readout_mode: Mode | None = None
    """None: the model's own readout mode, else auto."""
    block_ms: float | None = None
    preprocess: DvsPreprocessConfig | None = None
    """Event files: the DVS front end's settings (default: the model's)."""
    sensor_size: tuple[int, int] | None = None
    event_format: str = "auto"
    chirp: str | None = None
    """TI mmWave captures: a chirp preset name or a mmWave SDK ``.cfg`` path."""
    device: str = "replay"
    progress: bool = False
    sinks: list[Sink] = field(default_factory=list)
    report_dir: Path | None = None
    """Write ``summary.json`` and figures here (needs the ``report`` extra: matplotlib)."""
    workers: int = 1
    """Replay the files in this many processes (or Ray/Dask tasks), in ordered shards."""
    executor: Literal["process", "ray", "dask"] = "process"
    executor_address: str | None = None
    """Ray or Dask: the cluster to join (default: start a local one with ``workers`` workers)."""
    max_records: int = 10_000
    """Per-decision records kept for the report (the first ones); everything else is binned."""
    pipeline_name: str = "replay"
    mqtt_client_id: str | None = None


def _progress(n_done: int, n_files: int, t0: float) -> None:
    rate = n_done / max(time.monotonic() - t0, 1e-9)
    sys.stderr.write(f"\r  {n_done}/{n_files} decisions, {rate:.0f}/s ")
    sys.stderr.flush()


def _source_config(opts: ReplayOptions, block_ms: float) -> SourceConfig:
    """The file source the model's modality needs."""
    modality = read_manifest(resolve(opts.model) / "manifest.toml").model.modality
    if modality == "ecg":
        return EcgFileSourceConfig(paths=list(opts.paths), speed=opts.speed, block_ms=block_ms)
    if modality == "radar":
        chirp = None if opts.chirp is None else "openradar" if opts.chirp == "openradar" else Path(opts.chirp)
        return RadarFileSourceConfig(paths=list(opts.paths), speed=opts.speed, chirp=chirp)
    if modality == "dvs":
        return DvsFileSourceConfig(
            paths=list(opts.paths),
            speed=opts.speed,
            block_ms=block_ms,
            preprocess=opts.preprocess,
            sensor_size=opts.sensor_size,
            format=opts.event_format,
        )
    return AudioFileSourceConfig(paths=list(opts.paths), speed=opts.speed, block_ms=block_ms)


async def replay_shard(opts: ReplayOptions) -> ShardResult:
    """Replay ``opts.paths`` through one pipeline and return what was measured, unsummarised."""
    labels = read_labels(opts.labels_csv, opts.label_column) if opts.labels_csv else None
    manifest = read_manifest(resolve(opts.model) / "manifest.toml")
    block_ms = opts.block_ms or (100.0 if opts.speed == "max" else 20.0)
    mode = opts.readout_mode or manifest.readout.mode or "auto"
    cfg = PipelineConfig(
        name=opts.pipeline_name,
        source=_source_config(opts, block_ms),
        model=opts.model,
        chip=opts.chip,
        mismatch=opts.mismatch,
        seed=opts.seed,
        readout=ReadoutConfig(mode=mode),
        telemetry_interval_s=5.0,
    )
    sinks: list[Sink] = list(opts.sinks)
    if opts.mqtt_url:
        from runtime.mqtt.sink import MqttSink

        sinks.append(MqttSink(MqttConfig(url=opts.mqtt_url, client_id=opts.mqtt_client_id), opts.device))
    trace = ReplayTrace(max_records=opts.max_records)
    t0 = time.monotonic()

    def on_decision(d: Decision, payload: Classification | None) -> None:
        predicted = pipeline.info.labels[d.label_index]
        # The telemetry has just appended this decision's host latency (gated ones have none).
        latency_ms = None if d.gated else pipeline.telemetry.total.host_latency_ms[-1]
        trace.add_decision(
            d.stream, d.start_us, d.end_us, predicted, d.truth, d.score, d.energy_uj, latency_ms, d.gated
        )
        t_us = d.start_us if mode == "beat" else (d.start_us + d.end_us) // 2
        out.events.setdefault(d.stream, []).append((t_us, predicted))
        out.windows.setdefault(d.stream, []).append((d.start_us, d.end_us, predicted))
        if d.truth is not None:
            out.scored += 1
            out.correct += int(predicted == d.truth)
            out.confusion[(d.truth, predicted)] += 1
        if opts.progress:
            _progress(pipeline.telemetry.total.decisions, source.n_files, t0)

    pipeline = build_pipeline(cfg, opts.device, sinks, labels=labels, on_error="skip", on_decision=on_decision)
    pipeline.telemetry.total = TracingCounters(trace=trace)
    info = pipeline.info
    chip: Any = pipeline.chip
    mismatch = bool(getattr(chip.compiled.report, "mismatch", False))
    out = ShardResult(model=info.model, chip=info.chip, mismatch=mismatch, labels=list(info.labels), trace=trace)
    source: Any = pipeline.source
    status = status_payload(opts.device, [pipeline])
    for sink in sinks:
        await sink.start(status)
    try:
        await pipeline.run()
    finally:
        for sink in sinks:
            await sink.close(drain_timeout_s=30.0)
    out.wall_s = time.monotonic() - t0
    if opts.progress:
        sys.stderr.write("\n")
    total = pipeline.telemetry.total
    out.n_files, out.skipped_files = int(source.n_files), int(source.skipped_files)
    out.errors = [str(e) for e in source.errors]
    out.decisions, out.stream_us, out.input_events = total.decisions, total.stream_us, total.input_events
    out.spikes, out.sops, out.latency_ms = total.spikes, total.sops, list(total.host_latency_ms)
    out.events_read = getattr(source, "events_read", None)
    out.drops = pipeline.drops()
    out.sinks = {s.name: {"delivered": s.stats().delivered, "dropped": s.stats().dropped} for s in sinks}
    return out


def summarize(opts: ReplayOptions, shards: Sequence[ShardResult], wall_s: float) -> tuple[dict[str, Any], ReplayTrace]:
    """The replay's summary (what ``--json`` prints) from its shards, merged in file order, and the trace."""
    r = ShardResult.merge(shards, opts.max_records)
    manifest = read_manifest(resolve(opts.model) / "manifest.toml")
    labelled = opts.labels_csv is not None
    summary = _summary(r, wall_s, labelled)
    if manifest.model.modality == "ecg":
        summary.update(score_annotated(r.events, r.labels, manifest.training.get("held_out")))
    if manifest.model.modality == "radar":
        from runtime.radar_scoring import score_windows

        labels = read_labels(opts.labels_csv, opts.label_column) if opts.labels_csv else None
        summary["windows"] = score_windows(r.windows, labels, r.labels, manifest.training)
    return summary, r.trace


def _summary(r: ShardResult, wall_s: float, labelled: bool) -> dict[str, Any]:
    stream_s = r.stream_us / 1e6
    lat = percentiles(r.latency_ms)
    per_class: dict[str, dict[str, float | int | None]] = {}
    if labelled:
        for lab in r.labels:
            n = sum(v for (t, _), v in r.confusion.items() if t == lab)
            hit = r.confusion[(lab, lab)]
            predicted = sum(v for (_, p), v in r.confusion.items() if p == lab)
            per_class[lab] = {
                "n": n,
                "sensitivity": hit / n if n else None,
                "ppv": hit / predicted if predicted else None,
            }
    chip_energy_uj = r.trace.chip_energy.value
    events_read = r.events_read
    return {
        "model": r.model,
        "chip": r.chip,
        "mismatch": r.mismatch,
        "files": r.n_files - r.skipped_files,
        "skipped_files": r.skipped_files,
        "errors": r.errors,
        "decisions": r.decisions,
        "scored": r.scored,
        "accuracy": r.correct / r.scored if labelled and r.scored else None,
        "per_class": per_class or None,
        "confusion": {f"{t}->{p}": n for (t, p), n in sorted(r.confusion.items())} or None,
        "stream_s": stream_s,
        "wall_s": wall_s,
        "rtf": stream_s / wall_s if wall_s > 0 else None,
        "latency_ms": {"p50": lat.p50, "p95": lat.p95, "p99": lat.p99},
        "energy_uj_per_decision": r.trace.decision_energy.value / r.decisions if r.decisions else None,
        "power_mw_mean": chip_energy_uj / stream_s * 1e-3 if stream_s > 0 else None,
        "events_read": events_read,
        "events_read_per_s_wall": (events_read or 0) / wall_s if wall_s > 0 else None,
        "chip_input_events": r.input_events,
        "chip_input_events_per_s_wall": r.input_events / wall_s if wall_s > 0 else None,
        "drops": r.drops,
        "sops_per_s": r.sops / stream_s if stream_s > 0 else None,
        "spikes_per_s": r.spikes / stream_s if stream_s > 0 else None,
        "sinks": r.sinks,
    }


def score_annotated(
    events: dict[str, list[tuple[int, str]]], labels: Sequence[str], held_out: dict[str, Any] | None
) -> dict[str, Any]:
    """Beat-by-beat figures for the streams that have reference annotations next to them.

    ``held_out`` (the model manifest's ``[training.held_out]``: ``records`` and ``from_s``) says
    which part of which record the model never saw in training: ``held_out`` figures count only
    beats and decisions there (records not named are wholly held out); ``per_class`` counts all.
    """
    from sensors.ecg.annotations import read_annotations
    from sensors.ecg.records import record_base

    every, unseen = BeatTally(labels), BeatTally(labels)
    annotated: list[str] = []
    train_records = set(held_out.get("records", [])) if held_out else set()
    from_us = int(float(held_out.get("from_s", 0.0)) * 1e6) if held_out else 0
    for stream in sorted(events):
        base = record_base(Path(stream))
        if not base.with_suffix(".atr").is_file():
            continue
        annotated.append(base.name)
        beats = read_annotations(base).beats()
        t_dec = np.array([t for t, _ in events[stream]], np.int64)
        lab_dec = [lab for _, lab in events[stream]]
        every.add(t_dec, lab_dec, beats.t_us, list(beats.symbol))
        start = from_us if base.name in train_records else 0
        keep_d, keep_b = t_dec >= start, beats.t_us >= start
        unseen.add(
            t_dec[keep_d],
            [lab for lab, k in zip(lab_dec, keep_d, strict=True) if k],
            beats.t_us[keep_b],
            [s for s, k in zip(beats.symbol, keep_b, strict=True) if k],
        )
    if not annotated:
        return {"annotated_records": []}
    return {
        "annotated_records": annotated,
        **every.summary(),
        "held_out": {
            "protocol": f"records {sorted(train_records)} from {from_us / 1e6:g} s; other records whole"
            if train_records
            else "the model names no training records: all of it",
            **unseen.summary(),
        },
    }


async def replay(opts: ReplayOptions) -> dict[str, Any]:
    """Replay in this process (``opts.workers`` and ``opts.executor`` are for ``run_replay``)."""
    _check_report(opts)
    t0 = time.monotonic()
    shard = await replay_shard(opts)
    return _finish(opts, [shard], time.monotonic() - t0)


def _check_report(opts: ReplayOptions) -> None:
    if opts.report_dir is not None:
        from runtime.report import require_matplotlib

        require_matplotlib()  # before the replay, not after it


def _finish(opts: ReplayOptions, shards: Sequence[ShardResult], wall_s: float) -> dict[str, Any]:
    summary, trace = summarize(opts, shards, wall_s)
    if opts.report_dir is not None:
        from runtime.report import write_report

        write_report(opts.report_dir, summary, trace)
    return summary


def run_replay(opts: ReplayOptions) -> dict[str, Any]:
    """Replay serially, or in ``opts.workers`` processes / on a Ray or Dask cluster, and summarise."""
    if opts.workers == 1 and opts.executor == "process":
        return asyncio.run(replay(opts))
    from runtime.replay_parallel import replay_sharded

    _check_report(opts)
    t0 = time.monotonic()
    shards = replay_sharded(opts)
    return _finish(opts, shards, time.monotonic() - t0)
