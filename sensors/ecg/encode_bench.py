"""Throughput of the ECG encoder on a real record (mitdb/208, lead MLII), and spike rates per threshold.

Run: ``.venv/bin/python -c "from sensors.ecg.encode_bench import bench_ecg_encoder; print(bench_ecg_encoder())"``
(``SPIKEWIRE_DATA`` points at the shared data folder; default ``../shared/data``).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from sensors.audio.resample import sample_time_us
from sensors.blocks import SampleBlock
from sensors.ecg.annotations import read_annotations
from sensors.ecg.encode import EcgEncoder
from sensors.ecg.encoder_config import EcgEncoderConfig
from sensors.ecg.records import read_wfdb

_DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _record_path() -> Path:
    return Path(os.environ.get("SPIKEWIRE_DATA", _DEFAULT_DATA)) / "ecg" / "mitdb" / "208"


def _stream(encoder: EcgEncoder, x: np.ndarray, rate_hz: float, block: int) -> int:
    """Encode ``x`` (samples, 1) in blocks as a source would deliver them; returns the spike count."""
    encoder.reset()
    n_spikes = 0
    for first in range(0, x.shape[0], block):
        data = x[first : first + block]
        t0_us = sample_time_us(first, rate_hz)
        n_spikes += len(encoder.encode(SampleBlock("208", t0_us, rate_hz, data, 0, first)))
    return n_spikes


def bench_ecg_encoder(repeats: int = 5, block_samples: int = 360, record: Path | None = None) -> dict[str, object]:
    """Median over ``repeats`` runs of the default encoder streaming 208 MLII in ``block_samples`` blocks.

    Also gives, per threshold (0.02, 0.05, 0.1 mV, default settings otherwise), the mean
    spikes per second of ECG and per annotated beat, with and without normalisation.
    """
    path = record or _record_path()
    rec = read_wfdb(path, lead="MLII")
    n_beats = len(read_annotations(path).beats())
    x = np.ascontiguousarray(rec.signals_mv, dtype=np.float32)
    rate_hz = rec.rate_hz
    duration_s = x.shape[0] / rate_hz
    encoder = EcgEncoder(EcgEncoderConfig(rate_hz=rate_hz))
    _stream(encoder, x[: 10 * int(rate_hz)], rate_hz, block_samples)  # compile / load the numba cache
    times_s: list[float] = []
    n_spikes = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n_spikes = _stream(encoder, x, rate_hz, block_samples)
        times_s.append(time.perf_counter() - t0)
    wall_s = statistics.median(times_s)
    per_threshold: dict[str, dict[str, float]] = {}
    for normalise in (False, True):
        for thr in (0.02, 0.05, 0.1):
            cfg = EcgEncoderConfig(rate_hz=rate_hz, thresholds_mv=(thr,), normalise=normalise)
            count = _stream(EcgEncoder(cfg), x, rate_hz, block_samples)
            per_threshold[f"{thr:g}mV{' normalised' if normalise else ''}"] = {
                "spikes_per_s": round(count / duration_s, 1),
                "spikes_per_beat": round(count / n_beats, 1),
            }
    return {
        "record": f"{path} lead MLII",
        "duration_s": round(duration_s, 1),
        "block_samples": block_samples,
        "median_wall_s": round(wall_s, 4),
        "samples_per_s": round(x.shape[0] / wall_s),
        "realtime_factor": round(duration_s / wall_s),
        "spikes": n_spikes,
        "spikes_per_s_of_ecg": round(n_spikes / duration_s, 1),
        "beats": n_beats,
        "per_threshold": per_threshold,
    }
