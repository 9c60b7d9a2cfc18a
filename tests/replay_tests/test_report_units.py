"""Report pieces without real data: exact sums, bounded traces, shards, figures from a synthetic replay."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_util import assert_readable_png

from runtime.chips.base import ChipStats
from runtime.config import ConfigError
from runtime.replay_parallel import split_shards
from runtime.replay_record import ExactSum, ReplayTrace, Timeline


def _stats(t0_us: int, t1_us: int, energy_uj: float, spikes: int) -> ChipStats:
    empty = np.zeros(0)
    return ChipStats(t0_us, t1_us, 0, 0, 0, spikes, 0, energy_uj, energy_uj * 0.9, 0.0, empty, empty)


def test_exact_sum_does_not_depend_on_grouping() -> None:
    rng = np.random.default_rng(1)
    xs = (rng.standard_normal(5000) * 10.0 ** rng.integers(-8, 8, 5000)).tolist()
    whole = ExactSum()
    for x in xs:
        whole.add(x)
    parts = [ExactSum() for _ in range(3)]
    for i, x in enumerate(xs):
        parts[i * 3 // len(xs)].add(x)
    merged = ExactSum()
    for p in parts:
        merged.merge(p)
    assert whole.value == merged.value == math.fsum(xs)
    assert sum(xs) != math.fsum(xs)  # plain summation would have differed


def test_timeline_stays_bounded_and_keeps_totals() -> None:
    tl = Timeline(max_bins=64)
    for k in range(10_000):
        tl.add(k * 100_000, 100_000, 1.0, 0.5, 3)
    assert len(tl.energy_uj) <= 64
    assert tl.width_us == 100_000 * 256
    assert sum(tl.spikes) == 30_000 and sum(tl.stream_us) == 10_000 * 100_000
    assert math.isclose(sum(tl.energy_uj), 10_000.0)


def test_trace_keeps_the_first_records_and_counts_all() -> None:
    tr = ReplayTrace(max_records=5)
    for f in range(4):
        for b in range(3):  # the chip clock restarts with each file
            tr.add_chip(_stats(b * 100_000, (b + 1) * 100_000, 2.0, 1))
        for d in range(3):
            tr.add_decision(f"f{f}.wav", d * 100_000, (d + 1) * 100_000, "a", "a", 0.9, 1.5, 1.0 + d, False)
    assert tr.records_total == 12 and len(tr.records) == 5
    assert tr.segments_total == 4
    assert [s for s, _ in tr.segments] == [0.0, 0.3, 0.6, 0.9]
    assert [tr.files[i] for _, i in tr.segments if i is not None] == ["f0.wav", "f1.wav", "f2.wav", "f3.wav"]
    assert tr.chip_energy.value == 24.0 and tr.decision_energy.value == 18.0
    assert int(tr.latency_counts.sum()) == 12
    doc = tr.to_json()
    assert doc["decisions"]["kept"] == 5 and doc["decisions"]["total"] == 12
    json.dumps(doc, allow_nan=False)


def test_merged_traces_equal_one_trace_of_all_files() -> None:
    def run(files: range) -> ReplayTrace:
        tr = ReplayTrace(max_records=7)
        for f in files:
            tr.add_chip(_stats(0, 100_000, 0.1 * (f + 1), f))
            tr.add_decision(f"f{f}", 0, 100_000, "x", None, 0.5, 0.1 * (f + 1), 2.0, False)
        return tr

    whole, merged = run(range(6)), ReplayTrace.merged([run(range(3)), run(range(3, 6))], max_records=7)
    assert merged.records == whole.records and merged.files == whole.files
    assert merged.segments == whole.segments and merged.pos_us == whole.pos_us
    assert merged.chip_energy.value == whole.chip_energy.value
    assert (merged.latency_counts == whole.latency_counts).all()


def test_shards_are_contiguous_ordered_and_balanced(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([10, 10, 10, 10, 100, 10, 10, 10, 10, 10]):
        p = tmp_path / f"{i:02}.wav"
        p.write_bytes(b"x" * size)
        files.append(p)
    shards = split_shards(files, 2)
    assert [f for s in shards for f in s] == files
    assert len(shards) == 2 and files[4] in shards[0]
    assert split_shards(files[:3], 8) == [[f] for f in files[:3]]  # never an empty shard
    assert split_shards(files, 1) == [files]


def _synthetic_summary() -> tuple[dict[str, object], ReplayTrace]:
    labels = ["N", "V"]
    tr = ReplayTrace()
    rng = np.random.default_rng(0)
    for f in range(3):
        for b in range(20):
            tr.add_chip(_stats(b * 100_000, (b + 1) * 100_000, 100.0 + rng.random(), int(rng.integers(0, 50))))
        for d in range(15):
            tr.add_decision(f"rec{f}", d * 130_000, d * 130_000 + 1, labels[d % 2], labels[d % 3 == 0], 0.8, 0.01,
                            float(rng.lognormal(0.5, 0.5)), False)  # fmt: skip
    summary = {
        "model": "synthetic@0", "chip": "snp", "mismatch": False, "stream_s": 6.0, "power_mw_mean": 1.0,
        "accuracy": None, "latency_ms": {"p50": 1.6, "p95": 3.5, "p99": 4.8}, "beats": 45, "tolerance_ms": 150.0,
        "confusion": {"N->N": 20, "N->V": 3, "V->N": 5, "V->V": 17},
        "per_class": {"N": {"n": 23, "sensitivity": 0.87, "ppv": 0.8},
                      "V": {"n": 22, "sensitivity": 0.77, "ppv": None}},
        "held_out": {"per_class": {"N": {"n": 10, "sensitivity": 0.9, "ppv": 0.85},
                                   "V": {"n": 0, "sensitivity": None, "ppv": None}}},
    }  # fmt: skip
    return summary, tr


def test_report_from_a_synthetic_replay_is_readable(tmp_path: Path) -> None:
    from runtime.report import write_report

    summary, trace = _synthetic_summary()
    written = write_report(tmp_path / "out", summary, trace)
    names = sorted(p.name for p in written)
    assert names == ["confusion.png", "latency.png", "per_class.png", "summary.json", "timeline.png"]
    for p in written:
        if p.suffix == ".png":
            assert_readable_png(p)
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {k: doc[k] for k in summary} == summary
    assert doc["report"]["figures"] == ["confusion.png", "per_class.png", "latency.png", "timeline.png"]
    assert doc["report"]["decisions"]["total"] == 45


def test_unlabelled_replay_draws_no_confusion(tmp_path: Path) -> None:
    from runtime.report import write_report

    summary, trace = _synthetic_summary()
    for k in ("confusion", "per_class", "held_out", "beats"):
        summary.pop(k)
    names = sorted(p.name for p in write_report(tmp_path, summary, trace))
    assert names == ["latency.png", "summary.json", "timeline.png"]


def test_missing_matplotlib_says_which_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from runtime import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'spikewire\[report\]'"):
        report.require_matplotlib()


def test_missing_matplotlib_fails_the_cli_before_replaying(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from runtime.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    wav = tmp_path / "nothing.wav"  # never read: the check comes first
    wav.write_bytes(b"")
    code = main(["replay", str(wav), "--model", "kws-digits", "--report", str(tmp_path / "r")])
    assert code == 2
    assert "spikewire[report]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("executor", ["ray", "dask"])
def test_missing_executor_extra_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, executor: str) -> None:
    from runtime.replay import ReplayOptions
    from runtime.replay_parallel import replay_sharded

    monkeypatch.setitem(sys.modules, executor, None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    opts = ReplayOptions(paths=[wav], model="kws-digits", workers=2, executor=executor)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=rf"spikewire\[{executor}\]"):
        replay_sharded(opts)
