"""Readout: chip output over a window -> a decision (label, score, per-class scores).

Pure logic on the chip's per-batch results, no I/O. Windows are built from whole batches
(a batch is one source block, 20 ms by default), in stream time. Modes:

* ``stream``: one decision per stream, at its end (a segmented dataset: one file, one label).
* ``utterance``: one decision per burst of input activity, closed by ``silence_ms`` of quiet
  (a continuous stream of spoken commands). Bursts shorter than ``min_utterance_ms`` are
  counted as ignored; longer than ``max_utterance_ms`` are decided and restarted.
* ``window``: one decision per ``hop_ms``, over the last ``window_ms``.
* ``auto``: ``stream`` for streams shorter than ``max_utterance_ms``, switching to
  ``utterance`` once a stream runs longer (replay of mixed folders).
* ``beat``: one decision per event (a heart beat's QRS complex): the first active batch
  (input rate at least ``activity_threshold``) opens a window of ``beat_window_ms``; the next
  window may open ``refractory_ms`` after this one opened. The decision's ``start_us`` is the
  onset batch's start, which is what scoring matches against annotated beat times.

Scores are ``softmax(r / temperature)`` of the readout ``r``: the mean membrane of each
output neuron over the window's ticks (``membrane_mean``), its maximum (``membrane_max``),
its spike count, or its rise (``membrane_rise``): the window's mean minus the mean over the
batch just before the window. On an analog chip every neuron rests at its own level (mismatch
of the currents that set it); the rise cancels that offset, which no training can know.
``offsets`` (per label, from the model) are subtracted before the softmax: a calibration for
one chip instance.

A population readout has ``m`` output neurons per label (label-major: neurons
``[k*m, (k+1)*m)`` vote for label ``k``) and a label's ``r`` is the median over its
neurons: on an analog chip each neuron's gain and resting level are off by its own mismatch,
and a non-spiking DPI neuron whose exponential feedback once overtakes its leak runs away to
the ceiling and never resets; the median of ``m`` neurons follows the typical one and ignores
up to ``(m - 1) // 2`` such outliers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from runtime.chips.base import ChipResult, ChipStats

Mode = Literal["stream", "utterance", "window", "auto", "beat"]


@dataclass(frozen=True, slots=True)
class ReadoutSettings:
    mode: Mode
    kind: Literal["membrane_mean", "membrane_max", "spike_count", "membrane_rise"]
    temperature: float
    n_inputs: int
    window_ms: float = 1000.0
    hop_ms: float = 500.0
    min_confidence: float = 0.0
    activity_threshold: float = 0.02
    silence_ms: float = 150.0
    min_utterance_ms: float = 120.0
    max_utterance_ms: float = 2500.0
    beat_window_ms: float = 200.0
    refractory_ms: float = 250.0
    batch_ms: float | None = None
    """Stream time per chip result (the pipeline cuts batches at its multiples); None: per source block."""
    offsets: tuple[float, ...] | None = None
    """Subtracted from each label's readout before the softmax (a chip instance's calibration)."""


@dataclass(frozen=True, slots=True)
class Decision:
    stream: str
    label_index: int
    score: float
    scores: npt.NDArray[np.float64]
    start_us: int
    end_us: int
    captured_ns: int
    """Host capture time of the last block in the window."""
    energy_uj: float
    gated: bool
    """Below ``min_confidence``: counted, not published."""
    truth: str | None = None


@dataclass(slots=True)
class _Acc:
    """Sums over a run of batches."""

    start_us: int
    end_us: int
    v_sum: npt.NDArray[np.float64]
    v_max: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    baseline: npt.NDArray[np.float64]
    """Mean membrane over the batch before the window (``membrane_rise``)."""
    ticks: int = 0
    energy_uj: float = 0.0
    captured_ns: int = 0

    def add(self, r: ChipResult, captured_ns: int) -> None:
        s = r.stats
        self.end_us = s.t_end_us
        self.v_sum += s.readout_v_sum
        np.maximum(self.v_max, s.readout_v_max, out=self.v_max)
        if len(r.spike_ch):
            self.counts += np.bincount(r.spike_ch, minlength=len(self.counts))
        self.ticks += s.ticks
        self.energy_uj += s.energy_uj
        self.captured_ns = captured_ns


class Readout:
    def __init__(self, settings: ReadoutSettings, n_outputs: int, n_labels: int | None = None) -> None:
        self.s = settings
        self.n_outputs = n_outputs
        self.n_labels = n_labels or n_outputs
        if n_outputs % self.n_labels:
            msg = f"{n_outputs} output neurons cannot be split evenly among {self.n_labels} labels"
            raise ValueError(msg)
        if settings.offsets is not None and len(settings.offsets) != self.n_labels:
            msg = f"{len(settings.offsets)} readout offsets for {self.n_labels} labels"
            raise ValueError(msg)
        self.ignored_bursts = 0
        self._last_mean = np.zeros(n_outputs)
        self._reset_stream()

    def _new_acc(self, t_us: int) -> _Acc:
        n = self.n_outputs
        return _Acc(t_us, t_us, np.zeros(n), np.full(n, -np.inf), np.zeros(n), self._last_mean.copy())

    def _reset_stream(self) -> None:
        self._last_mean = np.zeros(self.n_outputs)
        self._stream_acc: _Acc | None = None
        self._utt: _Acc | None = None
        self._quiet_us = 0
        self._recent: deque[tuple[int, _Acc]] = deque()
        self._next_hop_us: int | None = None
        self._switched = False
        self._beat: _Acc | None = None
        self._next_beat_us = 0

    def push(self, stream: str, result: ChipResult, captured_ns: int) -> list[Decision]:
        """Feed one batch's chip result; returns the decisions it completes."""
        out = self._push(stream, result, captured_ns)
        st = result.stats
        if st.ticks:
            self._last_mean = st.readout_v_sum / st.ticks
        return out

    def _push(self, stream: str, result: ChipResult, captured_ns: int) -> list[Decision]:
        st = result.stats
        mode = self.s.mode
        if mode == "auto":
            if not self._switched and st.t_end_us > self.s.max_utterance_ms * 1000:
                self._switched = True  # a long recording: decide per utterance from here on
                self._stream_acc = None
            mode = "utterance" if self._switched else "stream"
        if mode == "stream":
            if self._stream_acc is None:
                self._stream_acc = self._new_acc(st.t_start_us)
            self._stream_acc.add(result, captured_ns)
            return []
        if mode == "utterance":
            return self._push_utterance(stream, result, captured_ns)
        if mode == "beat":
            return self._push_beat(stream, result, captured_ns)
        return self._push_window(stream, result, captured_ns)

    def end_of_stream(self, stream: str, truth: str | None) -> list[Decision]:
        out: list[Decision] = []
        if self._stream_acc is not None and self._stream_acc.ticks:
            out.append(self._decide(stream, self._stream_acc, truth))
        elif self._utt is not None:
            out += self._close_utterance(stream)
        elif self._beat is not None:
            # A beat cut by the end of the stream is still a beat: decide on what was seen.
            out.append(self._decide(stream, self._beat, None))
        self._reset_stream()
        return out

    def _active(self, st: ChipStats) -> bool:
        dur_us = st.t_end_us - st.t_start_us
        return dur_us > 0 and st.input_events / (self.s.n_inputs * dur_us / 1000) >= self.s.activity_threshold

    def _push_beat(self, stream: str, r: ChipResult, captured_ns: int) -> list[Decision]:
        st = r.stats
        if self._beat is None:
            if st.t_start_us < self._next_beat_us or not self._active(st):
                return []
            self._beat = self._new_acc(st.t_start_us)
            self._next_beat_us = st.t_start_us + int(self.s.refractory_ms * 1000)
        self._beat.add(r, captured_ns)
        if self._beat.end_us - self._beat.start_us < self.s.beat_window_ms * 1000:
            return []
        beat, self._beat = self._beat, None
        return [self._decide(stream, beat, None)]

    def _push_utterance(self, stream: str, r: ChipResult, captured_ns: int) -> list[Decision]:
        st = r.stats
        dur_us = st.t_end_us - st.t_start_us
        active = self._active(st)
        out: list[Decision] = []
        if self._utt is None:
            if not active:
                return out
            self._utt = self._new_acc(st.t_start_us)
            self._quiet_us = 0
        self._utt.add(r, captured_ns)
        self._quiet_us = 0 if active else self._quiet_us + dur_us
        length_us = self._utt.end_us - self._utt.start_us
        if self._quiet_us >= self.s.silence_ms * 1000 or length_us >= self.s.max_utterance_ms * 1000:
            out += self._close_utterance(stream)
        return out

    def _close_utterance(self, stream: str) -> list[Decision]:
        utt, self._utt = self._utt, None
        if utt is None:
            return []
        active_us = utt.end_us - utt.start_us - self._quiet_us
        if active_us < self.s.min_utterance_ms * 1000:
            self.ignored_bursts += 1
            return []
        return [self._decide(stream, utt, None)]

    def _push_window(self, stream: str, r: ChipResult, captured_ns: int) -> list[Decision]:
        st = r.stats
        acc = self._new_acc(st.t_start_us)
        acc.add(r, captured_ns)
        self._recent.append((st.t_end_us, acc))
        window_us, hop_us = int(self.s.window_ms * 1000), int(self.s.hop_ms * 1000)
        while self._recent and self._recent[0][0] <= st.t_end_us - window_us:
            self._recent.popleft()
        if self._next_hop_us is None:
            self._next_hop_us = window_us
        out: list[Decision] = []
        if st.t_end_us >= self._next_hop_us:
            total = self._new_acc(self._recent[0][1].start_us)
            total.baseline = self._recent[0][1].baseline
            for _, part in self._recent:
                total.v_sum += part.v_sum
                np.maximum(total.v_max, part.v_max, out=total.v_max)
                total.counts += part.counts
                total.ticks += part.ticks
                total.energy_uj += part.energy_uj
                total.end_us, total.captured_ns = part.end_us, part.captured_ns
            out.append(self._decide(stream, total, None))
            while self._next_hop_us <= st.t_end_us:
                self._next_hop_us += hop_us
        return out

    def _decide(self, stream: str, acc: _Acc, truth: str | None) -> Decision:
        if self.s.kind == "membrane_mean":
            r = acc.v_sum / max(acc.ticks, 1)
        elif self.s.kind == "membrane_rise":
            r = acc.v_sum / max(acc.ticks, 1) - acc.baseline
        elif self.s.kind == "membrane_max":
            r = acc.v_max
        else:
            r = acc.counts
        if self.n_labels != self.n_outputs:
            r = np.median(r.reshape(self.n_labels, -1), axis=1)
        if self.s.offsets is not None:
            r = r - np.asarray(self.s.offsets)
        z = r / self.s.temperature
        e = np.exp(z - z.max())
        scores = e / e.sum()
        best = int(np.argmax(scores))
        score = float(scores[best])
        return Decision(
            stream=stream,
            label_index=best,
            score=score,
            scores=scores,
            start_us=acc.start_us,
            end_us=acc.end_us,
            captured_ns=acc.captured_ns,
            energy_uj=acc.energy_uj,
            gated=score < self.s.min_confidence,
            truth=truth,
        )
