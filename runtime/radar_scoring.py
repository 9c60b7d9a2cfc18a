"""Window-by-window figures of a radar replay, against pseudo-labels from Acconeer's reference detectors.

Each decision window is scored when its recording's label names a class of the model
(``[training] label_patterns``) and the reference detector output beside the recording
confirms that class in at least half of the window's frames (``sensors.radar.reference``).
These are pseudo-labels, not human ground truth; every figure says so. Windows the
reference does not confirm are counted as ``unconfirmed``, not scored.

``held_out`` counts only windows that start at or after ``[training.held_out] from_fraction``
of their recording, the part the model never saw in training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensors.files import LabelLookup

CAVEAT = (
    "pseudo-labels: the recording's scenario where Acconeer's reference detector confirms it in at least "
    "half of the window's frames; not human ground truth"
)

Window = tuple[int, int, str]
"""(start_us, end_us, predicted label) of one decision."""


@dataclass
class _Tally:
    labels: Sequence[str]
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    unconfirmed: int = 0

    def add(self, truth: str | None, predicted: str) -> None:
        if truth is None:
            self.unconfirmed += 1
        else:
            self.confusion[(truth, predicted)] += 1

    def summary(self) -> dict[str, Any]:
        scored = sum(self.confusion.values())
        correct = sum(n for (t, p), n in self.confusion.items() if t == p)
        per_class: dict[str, dict[str, float | int | None]] = {}
        for lab in self.labels:
            n = sum(v for (t, _), v in self.confusion.items() if t == lab)
            predicted = sum(v for (_, p), v in self.confusion.items() if p == lab)
            hit = self.confusion[(lab, lab)]
            per_class[lab] = {
                "n": n,
                "sensitivity": hit / n if n else None,
                "ppv": hit / predicted if predicted else None,
            }
        return {
            "scored": scored,
            "unconfirmed": self.unconfirmed,
            "accuracy": correct / scored if scored else None,
            "per_class": per_class,
            "confusion": {f"{t}->{p}": n for (t, p), n in sorted(self.confusion.items())},
        }


def _frame_times(path: Path) -> tuple[np.ndarray, int]:
    """All frame times of a recording and its end, without loading its frames."""
    from sensors.radar.reader import open_radar

    reader = open_radar(path)
    try:
        return np.concatenate([s.t_us for s in reader.segments]), reader.end_time_us()
    finally:
        reader.close()


def score_windows(
    windows: Mapping[str, list[Window]],
    labels: Mapping[str, str] | None,
    model_labels: Sequence[str],
    training: Mapping[str, Any],
) -> dict[str, Any]:
    """Per-class figures over all windows and over the held-out part of each recording."""
    from sensors.radar.reference import load_reference, window_truth

    patterns: Mapping[str, str] = training.get("label_patterns", {})
    from_fraction = float(training.get("held_out", {}).get("from_fraction", 0.0))
    lookup = LabelLookup(labels)
    every, unseen = _Tally(model_labels), _Tally(model_labels)
    referenced: list[str] = []
    for stream in sorted(windows):
        path = Path(stream)
        ref = load_reference(path, lookup(path), patterns) if labels is not None else None
        if ref is None:
            continue
        referenced.append(path.name)
        frame_t_us, end_us = _frame_times(path)
        cut_us = from_fraction * end_us
        for start, end, predicted in windows[stream]:
            truth = window_truth(ref, frame_t_us, start, end)
            every.add(truth, predicted)
            if start >= cut_us:
                unseen.add(truth, predicted)
    if not referenced:
        return {"referenced_recordings": []}
    return {
        "labels": CAVEAT,
        "referenced_recordings": referenced,
        **every.summary(),
        "held_out": {
            "protocol": f"windows starting at or after {from_fraction:g} of each recording (trained on what precedes)",
            **unseen.summary(),
        },
    }
