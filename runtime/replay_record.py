"""What a replay keeps for its report, in bounded memory, mergeable across shards.

A replay of millions of decisions must not keep millions of records, so:

* decision records (time, label, truth, score, energy, latency) are kept for the first
  ``max_records`` decisions only; ``records_total`` says how many there were;
* chip activity over stream time is binned on the fly (energy, spikes, stream time per bin);
  when the bins would pass ``max_bins``, neighbours are merged and the bin width doubles;
* host latency goes into a fixed log-spaced histogram (the summary's percentiles still come
  from the telemetry's samples);
* file boundaries on the stream-time axis are kept for the first ``max_records`` files.

Sums of floats (energies) are kept exactly (Shewchuk partials, as ``math.fsum``), so a
replay split into shards and merged gives the same totals as the serial one to the last bit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.chips.base import ChipStats
from runtime.telemetry import Counters

LATENCY_EDGES_MS: npt.NDArray[np.float64] = np.logspace(-2, 4, 121)
"""Host latency histogram edges: 0.01 ms to 10 s, 20 bins per decade (out-of-range values go to the end bins)."""

_FIRST_BIN_US = 100_000


@dataclass
class ExactSum:
    """An exactly rounded running sum of floats, mergeable: ``value`` equals ``math.fsum`` of all added."""

    partials: list[float] = field(default_factory=list)

    def add(self, x: float) -> None:
        # Shewchuk's algorithm: the partials are non-overlapping and sum exactly to the total.
        out: list[float] = []
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                out.append(lo)
            x = hi
        out.append(x)
        self.partials = out

    def merge(self, other: ExactSum) -> None:
        for p in other.partials:
            self.add(p)

    @property
    def value(self) -> float:
        return math.fsum(self.partials)


@dataclass
class Timeline:
    """Chip energy, spikes and stream time in bins over the concatenated stream time of all files."""

    max_bins: int = 1024
    width_us: int = _FIRST_BIN_US
    energy_uj: list[float] = field(default_factory=list)
    static_uj: list[float] = field(default_factory=list)
    spikes: list[int] = field(default_factory=list)
    stream_us: list[int] = field(default_factory=list)

    def add(
        self,
        start_us: int,
        dur_us: int,
        energy_uj: float,
        static_uj: float,
        spikes: int,
        min_bins_per_span: float = 0.5,
    ) -> None:
        """A span of stream time starting at ``start_us`` (on the concatenated axis); binned by its start.

        Bins are kept at least ``1 / min_bins_per_span`` spans wide (twice a chip batch by default)
        so that every bin holds the start of some batch: no empty bins between long radar frames.
        """
        while self.width_us * min_bins_per_span < dur_us:
            self._coarsen()
        idx = start_us // self.width_us
        while idx >= self.max_bins:
            self._coarsen()
            idx = start_us // self.width_us
        while len(self.energy_uj) <= idx:
            self.energy_uj.append(0.0)
            self.static_uj.append(0.0)
            self.spikes.append(0)
            self.stream_us.append(0)
        self.energy_uj[idx] += energy_uj
        self.static_uj[idx] += static_uj
        self.spikes[idx] += spikes
        self.stream_us[idx] += dur_us

    def _coarsen(self) -> None:
        def pairs(xs: list[Any]) -> list[Any]:
            return [sum(xs[i : i + 2]) for i in range(0, len(xs), 2)]

        self.width_us *= 2
        self.energy_uj, self.static_uj = pairs(self.energy_uj), pairs(self.static_uj)
        self.spikes, self.stream_us = pairs(self.spikes), pairs(self.stream_us)

    def to_json(self) -> dict[str, Any]:
        return {
            "bin_s": self.width_us / 1e6,
            "energy_uj": self.energy_uj,
            "static_energy_uj": self.static_uj,
            "spikes": self.spikes,
            "stream_s": [u / 1e6 for u in self.stream_us],
        }


_COLUMNS = ("file", "start_s", "end_s", "label", "truth", "score", "energy_uj", "latency_ms", "gated")


@dataclass
class ReplayTrace:
    """The bounded per-decision and per-batch data a replay report draws from."""

    max_records: int = 10_000
    records: list[tuple[Any, ...]] = field(default_factory=list)
    """(file index, start s, end s, label, truth, score, energy µJ, latency ms or None, gated), first decisions only."""
    records_total: int = 0
    files: list[str] = field(default_factory=list)
    """Stream names in the order their first decision came (indices of ``records``' file column)."""
    segments: list[tuple[float, int | None]] = field(default_factory=list)
    """(start s on the concatenated axis, index into ``files`` or None while no decision named it), per file."""
    segments_total: int = 0
    timeline: Timeline = field(default_factory=Timeline)
    latency_counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(len(LATENCY_EDGES_MS) - 1, np.int64))
    chip_energy: ExactSum = field(default_factory=ExactSum)
    decision_energy: ExactSum = field(default_factory=ExactSum)
    pos_us: int = 0
    """Stream time consumed so far on the concatenated axis."""
    _last_end_us: int = -1
    _file_index: dict[str, int] = field(default_factory=dict)

    # -- collecting ------------------------------------------------------------------------

    def add_chip(self, s: ChipStats) -> None:
        # The chip restarts its clock at each file: a batch starting before the previous one
        # ended is the first of a new file.
        if s.t_start_us < self._last_end_us or self._last_end_us < 0:
            self._new_segment(self.pos_us / 1e6)
        self._last_end_us = s.t_end_us
        dur = s.t_end_us - s.t_start_us
        self.timeline.add(self.pos_us, dur, s.energy_uj, s.static_energy_uj, s.spikes)
        self.chip_energy.add(s.energy_uj)
        self.pos_us += dur

    def _new_segment(self, start_s: float) -> None:
        self.segments_total += 1
        if len(self.segments) < self.max_records:
            self.segments.append((start_s, None))

    def add_decision(
        self, stream: str, start_us: int, end_us: int, label: str, truth: str | None, score: float,
        energy_uj: float, latency_ms: float | None, gated: bool,
    ) -> None:  # fmt: skip
        self.decision_energy.add(energy_uj)
        idx = self._file_id(stream)
        if self.segments and self.segments[-1][1] is None and self.segments_total == len(self.segments):
            self.segments[-1] = (self.segments[-1][0], idx)
        if latency_ms is not None:
            k = int(np.searchsorted(LATENCY_EDGES_MS, latency_ms, side="right")) - 1
            self.latency_counts[min(max(k, 0), len(self.latency_counts) - 1)] += 1
        self.records_total += 1
        if len(self.records) < self.max_records:
            self.records.append(
                (idx, start_us / 1e6, end_us / 1e6, label, truth, float(score), float(energy_uj), latency_ms, gated)
            )

    # -- merging shards ----------------------------------------------------------------------

    @classmethod
    def merged(cls, shards: Sequence[ReplayTrace], max_records: int) -> ReplayTrace:
        """The shards' traces one after the other, as if one replay had read all their files in order."""
        out = cls(max_records=max_records)
        for sh in shards:
            offset_us = out.pos_us
            remap = [out._file_id(name) for name in sh.files]
            for rec in sh.records:
                if len(out.records) < max_records:
                    out.records.append((remap[rec[0]], *rec[1:]))
            out.records_total += sh.records_total
            for start_s, idx in sh.segments:
                if len(out.segments) < max_records:
                    out.segments.append((start_s + offset_us / 1e6, None if idx is None else remap[idx]))
            out.segments_total += sh.segments_total
            tl = sh.timeline
            bins = zip(tl.energy_uj, tl.static_uj, tl.spikes, tl.stream_us, strict=True)
            for i, (e, st, n, u) in enumerate(bins):
                if u or n or e:
                    out.timeline.add(offset_us + i * tl.width_us, u, e, st, n, min_bins_per_span=1.0)
            out.latency_counts += sh.latency_counts
            out.chip_energy.merge(sh.chip_energy)
            out.decision_energy.merge(sh.decision_energy)
            out.pos_us += sh.pos_us
        return out

    def _file_id(self, name: str) -> int:
        idx = self._file_index.get(name)
        if idx is None:
            idx = self._file_index[name] = len(self.files)
            self.files.append(name)
        return idx

    def to_json(self) -> dict[str, Any]:
        return {
            "decisions": {
                "columns": list(_COLUMNS),
                "rows": [list(r) for r in self.records],
                "kept": len(self.records),
                "total": self.records_total,
                "cap": self.max_records,
            },
            "files": self.files,
            "segments": {
                "start_s": [s for s, _ in self.segments],
                "file": [f for _, f in self.segments],
                "total": self.segments_total,
            },
            "timeline": self.timeline.to_json(),
            "latency_hist": {"edges_ms": LATENCY_EDGES_MS.tolist(), "counts": self.latency_counts.tolist()},
        }


@dataclass
class TracingCounters(Counters):
    """The telemetry's running totals, also feeding a ``ReplayTrace`` with every chip batch.

    Replay swaps this in for ``pipeline.telemetry.total``: it is the one place that sees each
    batch's stats with its stream time, and the pipeline itself stays unaware of reports.
    """

    trace: ReplayTrace = field(default_factory=ReplayTrace)

    def add_chip(self, s: ChipStats) -> None:
        super().add_chip(s)
        self.trace.add_chip(s)


@dataclass
class ShardResult:
    """Everything one replay (of all files, or of one shard of them) measured, before summarising.

    Picklable, so that process, Ray and Dask workers can send it back; ``merge`` of the shards
    in file order gives what one replay of all their files would have measured (wall-clock
    figures and host latencies aside).
    """

    model: str
    chip: str
    mismatch: bool
    labels: list[str]
    n_files: int = 0
    skipped_files: int = 0
    errors: list[str] = field(default_factory=list)
    decisions: int = 0
    stream_us: int = 0
    input_events: int = 0
    spikes: int = 0
    sops: int = 0
    latency_ms: list[float] = field(default_factory=list)
    scored: int = 0
    correct: int = 0
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """Per stream: (decision time µs, label), for scoring against annotations by time."""
    windows: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    """Per stream: (window start µs, end µs, label), for scoring radar windows against pseudo-labels."""
    events_read: int | None = None
    drops: dict[str, int] = field(default_factory=dict)
    sinks: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_s: float = 0.0
    trace: ReplayTrace = field(default_factory=ReplayTrace)

    @classmethod
    def merge(cls, shards: Sequence[ShardResult], max_records: int) -> ShardResult:
        first = shards[0]
        out = cls(first.model, first.chip, first.mismatch, list(first.labels))
        for sh in shards:
            out.n_files += sh.n_files
            out.skipped_files += sh.skipped_files
            out.errors += sh.errors
            out.decisions += sh.decisions
            out.stream_us += sh.stream_us
            out.input_events += sh.input_events
            out.spikes += sh.spikes
            out.sops += sh.sops
            out.latency_ms += sh.latency_ms
            out.scored += sh.scored
            out.correct += sh.correct
            out.confusion.update(sh.confusion)
            out.events.update(sh.events)
            out.windows.update(sh.windows)
            if sh.events_read is not None:
                out.events_read = (out.events_read or 0) + sh.events_read
            for k, v in sh.drops.items():
                out.drops[k] = out.drops.get(k, 0) + v
            for name, st in sh.sinks.items():
                mine = out.sinks.setdefault(name, {"delivered": 0, "dropped": 0})
                for k, v in st.items():
                    mine[k] = mine.get(k, 0) + v
            out.wall_s = max(out.wall_s, sh.wall_s)
        out.trace = ReplayTrace.merged([sh.trace for sh in shards], max_records)
        return out
