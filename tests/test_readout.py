"""Readout modes on synthetic chip results (pure logic, no chip needed)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.chips.base import ChipResult, ChipStats
from runtime.readout import Readout, ReadoutSettings

N_IN = 32


def result(t0_ms: int, t1_ms: int, v: list[float], events_per_ms: float, energy_uj: float = 1.0) -> ChipResult:
    ticks = t1_ms - t0_ms
    stats = ChipStats(
        t_start_us=t0_ms * 1000,
        t_end_us=t1_ms * 1000,
        input_events=int(events_per_ms * N_IN * ticks),
        sops=0,
        neuron_updates=0,
        spikes=0,
        ticks=ticks,
        energy_uj=energy_uj,
        static_energy_uj=energy_uj,
        latency_us=800.0,
        readout_v_sum=np.asarray(v, float) * ticks,
        readout_v_max=np.asarray(v, float),
    )
    return ChipResult(np.empty(0, np.int64), np.empty(0, np.int32), stats)


def settings(mode: str, **kw: float) -> ReadoutSettings:
    return ReadoutSettings(mode=mode, kind="membrane_mean", temperature=0.5, n_inputs=N_IN, **kw)  # type: ignore[arg-type]


def test_stream_mode_decides_once_at_the_end_of_each_stream() -> None:
    r = Readout(settings("stream"), 3)
    assert r.push("a.wav", result(0, 20, [0.1, 0.9, 0.0], 0.3), 5) == []
    assert r.push("a.wav", result(20, 40, [0.1, 0.5, 0.0], 0.3), 6) == []
    (d,) = r.end_of_stream("a.wav", "1")
    assert d.label_index == 1 and d.truth == "1"
    assert (d.start_us, d.end_us, d.captured_ns) == (0, 40_000, 6)
    assert d.energy_uj == pytest.approx(2.0)
    # softmax of the mean membrane over the window's ticks, at the bundle's temperature
    mean = np.array([0.1, 0.7, 0.0])
    expected = np.exp(mean / 0.5) / np.exp(mean / 0.5).sum()
    np.testing.assert_allclose(d.scores, expected)
    assert r.end_of_stream("b.wav", None) == [], "no input, no decision"


def test_utterance_mode_splits_on_silence_and_ignores_short_bursts() -> None:
    r = Readout(settings("utterance", silence_ms=60, min_utterance_ms=50), 2)
    decisions = []
    t = 0
    # silence, 200 ms of speech (class 0), 100 ms silence, a 20 ms click, 100 ms silence, 200 ms of class 1
    plan = [
        (5, 0.0, [0, 0]),
        (10, 0.4, [1, 0]),
        (5, 0.0, [0, 0]),
        (1, 0.4, [0, 0]),
        (5, 0.0, [0, 0]),
        (10, 0.4, [0, 1]),
        (5, 0.0, [0, 0]),
    ]
    for blocks, rate, v in plan:
        for _ in range(blocks):
            decisions += r.push("mic", result(t, t + 20, v, rate), t)
            t += 20
    assert [d.label_index for d in decisions] == [0, 1]
    assert decisions[0].start_us == 100_000 and decisions[1].start_us == 520_000
    assert decisions[0].end_us == 360_000, "closed after 60 ms of silence"
    assert r.ignored_bursts == 1


def test_utterance_is_cut_at_the_maximum_length() -> None:
    r = Readout(settings("utterance", max_utterance_ms=500), 2)
    out = []
    for k in range(60):  # 1.2 s of continuous activity
        out += r.push("mic", result(20 * k, 20 * k + 20, [1, 0], 0.5), k)
    assert len(out) == 2 and all(d.end_us - d.start_us == 500_000 for d in out)


def test_window_mode_hops() -> None:
    r = Readout(settings("window", window_ms=100, hop_ms=50), 2)
    out = []
    for k in range(20):  # 400 ms in 20 ms batches
        out += r.push("s", result(20 * k, 20 * k + 20, [0, 1], 0.0), k)
    assert [d.end_us for d in out] == [100_000, 160_000, 200_000, 260_000, 300_000, 360_000, 400_000]
    assert all(d.end_us - d.start_us <= 100_000 for d in out)


def test_confidence_gate_marks_but_keeps_count() -> None:
    r = Readout(settings("stream", min_confidence=0.9), 2)
    r.push("a", result(0, 20, [0.5, 0.45], 0.3), 1)
    (d,) = r.end_of_stream("a", None)
    assert d.gated and d.score < 0.9


def test_auto_switches_to_utterances_for_long_streams() -> None:
    r = Readout(settings("auto", max_utterance_ms=1000, silence_ms=60, min_utterance_ms=0), 2)
    out = []
    for k in range(100):  # 2 s: speech 0-0.4 s, silence, speech 1.2-1.6 s, silence
        active = (k < 20) or (60 <= k < 80)
        out += r.push("long.wav", result(20 * k, 20 * k + 20, [1, 0] if k < 50 else [0, 1], 0.4 if active else 0.0), k)
    out += r.end_of_stream("long.wav", None)
    assert [d.label_index for d in out] == [1]  # the first utterance was inside the stream-mode part
    short = Readout(settings("auto", max_utterance_ms=1000), 2)
    short.push("s.wav", result(0, 400, [1, 0], 0.4), 1)
    assert len(short.end_of_stream("s.wav", "0")) == 1


def test_membrane_max_takes_the_peak_over_batches() -> None:
    s = ReadoutSettings(mode="stream", kind="membrane_max", temperature=1.0, n_inputs=N_IN)
    r = Readout(s, 2)
    r.push("a", result(0, 20, [0.2, 0.9], 0.3), 1)
    r.push("a", result(20, 40, [0.8, 0.1], 0.3), 2)
    (d,) = r.end_of_stream("a", None)
    e = np.exp([0.8, 0.9])
    np.testing.assert_allclose(d.scores, e / e.sum())


def _beats(r: Readout, active_ms: set[int], until_ms: int, v: list[float] | None = None) -> list[tuple[int, int]]:
    """Feed 20 ms batches, active (0.3 events/ch/ms) at the given starts; return (start, end) of decisions."""
    out = []
    for t0 in range(0, until_ms, 20):
        rate = 0.3 if t0 in active_ms else 0.0
        for d in r.push("rec", result(t0, t0 + 20, v or [0.2, 0.1], rate), t0):
            out.append((d.start_us // 1000, d.end_us // 1000))
    return out


def test_beat_mode_opens_a_window_at_each_onset() -> None:
    r = Readout(settings("beat", beat_window_ms=100.0, refractory_ms=300.0), 2)
    # Onsets at 100 ms and 800 ms, each active for 60 ms (a QRS); the T wave at 300 ms is refractory.
    active = {100, 120, 140, 300, 800, 820, 840}
    assert _beats(r, active, 1200) == [(100, 200), (800, 900)]


def test_beat_mode_next_onset_waits_for_the_refractory_period() -> None:
    r = Readout(settings("beat", beat_window_ms=40.0, refractory_ms=200.0), 2)
    # Activity everywhere: one window per refractory period, each 40 ms long.
    assert _beats(r, set(range(0, 1000, 20)), 1000) == [(0, 40), (200, 240), (400, 440), (600, 640), (800, 840)]


def test_beat_mode_decides_a_beat_cut_by_the_end_of_the_stream() -> None:
    r = Readout(settings("beat", beat_window_ms=200.0, refractory_ms=250.0), 2)
    assert _beats(r, {60}, 100, v=[0.1, 0.6]) == []
    (d,) = r.end_of_stream("rec", None)
    assert (d.start_us, d.end_us, d.label_index) == (60_000, 100_000, 1)
    assert r.end_of_stream("rec", None) == []


def test_population_readout_takes_the_median_of_each_labels_neurons() -> None:
    # 2 labels x 3 neurons, label-major. Label 0's second neuron has run away (a non-spiking
    # analog neuron past its ignition): its mean would win, its median (0.2) does not.
    r = Readout(settings("stream"), 6, n_labels=2)
    r.push("a", result(0, 20, [0.1, 1e6, 0.2, 0.5, 0.4, 0.6], 0.3), 1)
    (d,) = r.end_of_stream("a", None)
    assert d.label_index == 1 and d.scores.shape == (2,)
    expected = np.exp(np.array([0.2, 0.5]) / 0.5)
    np.testing.assert_allclose(d.scores, expected / expected.sum())
    with pytest.raises(ValueError, match="cannot be split evenly among 4 labels"):
        Readout(settings("stream"), 6, n_labels=4)


def test_membrane_rise_subtracts_each_neurons_level_before_the_window() -> None:
    s = ReadoutSettings(
        mode="beat", kind="membrane_rise", temperature=0.5, n_inputs=N_IN, beat_window_ms=40.0, refractory_ms=100.0
    )
    r = Readout(s, 2)
    # Neuron 0 rests high (0.8), neuron 1 low (0.1): by level neuron 0 would always win.
    assert r.push("rec", result(0, 20, [0.8, 0.1], 0.0), 1) == []
    assert r.push("rec", result(20, 40, [0.9, 0.5], 0.3), 2) == []  # onset: the window opens here
    (d,) = r.push("rec", result(40, 60, [0.9, 0.5], 0.3), 3)
    assert (d.start_us, d.end_us) == (20_000, 60_000)
    rise = np.array([0.9 - 0.8, 0.5 - 0.1])
    assert d.label_index == 1
    np.testing.assert_allclose(d.scores, np.exp(rise / 0.5) / np.exp(rise / 0.5).sum())


def test_offsets_calibrate_each_labels_readout() -> None:
    s = ReadoutSettings(mode="stream", kind="membrane_mean", temperature=0.5, n_inputs=N_IN, offsets=(0.3, 0.0))
    r = Readout(s, 2)
    r.push("a", result(0, 20, [0.6, 0.4], 0.3), 1)
    (d,) = r.end_of_stream("a", None)
    assert d.label_index == 1  # 0.6 - 0.3 < 0.4: this chip's label-0 neurons read 0.3 high
    with pytest.raises(ValueError, match="1 readout offsets for 2 labels"):
        Readout(ReadoutSettings(mode="stream", kind="membrane_mean", temperature=1, n_inputs=1, offsets=(0.1,)), 2)
