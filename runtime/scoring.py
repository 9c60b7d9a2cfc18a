"""Scoring decisions against reference annotations by time (beat-by-beat, as ANSI/AAMI EC57 does).

A stream with time-stamped reference events (an ECG record's beat annotations) is scored
by matching each decision to a reference beat within ``tolerance_us`` (150 ms by default,
EC57's match window). Matching is one-to-one: pairs are taken in order of increasing time
distance, so a decision never claims two beats and a beat is never claimed twice.

Per class ``c`` (a model label):

* ``n``: reference beats of class ``c``;
* ``sensitivity`` = TP / n, TP being beats of class ``c`` matched by a decision labelled ``c``;
* ``ppv`` = TP / (decisions labelled ``c``), unmatched decisions included: a decision with no
  beat near it is a false positive of the class it names.

Beats whose class is not a model label (``Q`` unclassifiable, or ``F`` fusion for a model without
it) still take part in the matching, so a decision on such a beat is not an extra decision, but
the pair counts neither for nor against any class (as EC57 treats Q beats); they are counted in
``unscored_beats`` and ``decisions_on_unscored``. A scored beat no decision matched is ``missed``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

TOLERANCE_US = 150_000

AAMI_CLASSES: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
"""MIT-BIH beat symbols -> AAMI EC57 classes (N normal, S supraventricular, V ventricular, F fusion, Q other)."""


@dataclass(frozen=True, slots=True)
class Match:
    """Indices of matched (decision, beat) pairs; everything else is unmatched."""

    decision: npt.NDArray[np.int64]
    beat: npt.NDArray[np.int64]


def match_by_time(decision_t_us: npt.NDArray[np.int64], beat_t_us: npt.NDArray[np.int64], tolerance_us: int) -> Match:
    """One-to-one matching of two sorted time series within ``tolerance_us``, closest pairs first."""
    d = np.asarray(decision_t_us, np.int64)
    b = np.asarray(beat_t_us, np.int64)
    if len(d) == 0 or len(b) == 0:
        empty = np.empty(0, np.int64)
        return Match(empty, empty)
    # Candidate pairs: for each decision, the beats within the tolerance (a narrow band: few per decision).
    lo = np.searchsorted(b, d - tolerance_us, side="left")
    hi = np.searchsorted(b, d + tolerance_us, side="right")
    counts = hi - lo
    di = np.repeat(np.arange(len(d)), counts)
    bi = np.concatenate([np.arange(a, z) for a, z in zip(lo, hi, strict=True)]) if counts.sum() else np.empty(0, int)
    bi = bi.astype(np.int64)
    dist = np.abs(d[di] - b[bi])
    order = np.lexsort((bi, di, dist))  # stable tie-break: earlier decision, then earlier beat
    used_d = np.zeros(len(d), bool)
    used_b = np.zeros(len(b), bool)
    out_d: list[int] = []
    out_b: list[int] = []
    # Greedy over at most a few candidates per decision: linear in the number of decisions.
    for k in order.tolist():
        x, y = int(di[k]), int(bi[k])
        if used_d[x] or used_b[y]:
            continue
        used_d[x] = used_b[y] = True
        out_d.append(x)
        out_b.append(y)
    idx = np.argsort(np.asarray(out_d, np.int64), kind="stable")
    return Match(np.asarray(out_d, np.int64)[idx], np.asarray(out_b, np.int64)[idx])


@dataclass
class BeatTally:
    """Counts accumulated over streams; ``summary()`` turns them into per-class figures."""

    labels: Sequence[str]
    symbol_class: Mapping[str, str] = field(default_factory=lambda: dict(AAMI_CLASSES))
    tolerance_us: int = TOLERANCE_US
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(reference class, predicted label) over matched pairs."""
    predicted: Counter[str] = field(default_factory=Counter)
    reference: Counter[str] = field(default_factory=Counter)
    unmatched_decisions: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)
    unscored_beats: int = 0
    decisions_on_unscored: int = 0

    def add(
        self,
        decision_t_us: npt.NDArray[np.int64],
        decision_labels: Sequence[str],
        beat_t_us: npt.NDArray[np.int64],
        beat_symbols: Sequence[str],
    ) -> None:
        """One stream's decisions (sorted by time) and reference beats (sorted by time)."""
        classes = [self.symbol_class.get(s, "?") for s in beat_symbols]
        scored = [c in self.labels for c in classes]
        self.unscored_beats += scored.count(False)
        m = match_by_time(np.asarray(decision_t_us, np.int64), np.asarray(beat_t_us, np.int64), self.tolerance_us)
        matched_d = np.zeros(len(decision_labels), bool)
        matched_d[m.decision] = True
        matched_b = np.zeros(len(classes), bool)
        matched_b[m.beat] = True
        for x, y in zip(m.decision.tolist(), m.beat.tolist(), strict=True):
            if scored[y]:
                self.confusion[(classes[y], decision_labels[x])] += 1
                self.predicted[decision_labels[x]] += 1
            else:
                self.decisions_on_unscored += 1
        for lab, hit in zip(decision_labels, matched_d.tolist(), strict=True):
            if not hit:
                self.predicted[lab] += 1
                self.unmatched_decisions[lab] += 1
        for c, ok, hit in zip(classes, scored, matched_b.tolist(), strict=True):
            if ok:
                self.reference[c] += 1
                if not hit:
                    self.missed[c] += 1

    def summary(self) -> dict[str, Any]:
        per_class: dict[str, dict[str, float | int | None]] = {}
        for lab in self.labels:
            tp = self.confusion[(lab, lab)]
            n = self.reference[lab]
            p = self.predicted[lab]
            per_class[lab] = {"sensitivity": tp / n if n else None, "ppv": tp / p if p else None, "n": n}
        n_beats = sum(self.reference.values())
        n_missed = sum(self.missed.values())
        return {
            "per_class": per_class,
            "confusion": {f"{t}->{p}": k for (t, p), k in sorted(self.confusion.items())},
            "beats": n_beats,
            "beats_detected": n_beats - n_missed,
            "missed_beats": dict(self.missed),
            "extra_decisions": dict(self.unmatched_decisions),
            "unscored_beats": self.unscored_beats,
            "decisions_on_unscored": self.decisions_on_unscored,
            "tolerance_ms": self.tolerance_us / 1000,
        }
