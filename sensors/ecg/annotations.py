"""WFDB annotations (``.atr`` and others) through the ``wfdb`` package, local files only.

Beat annotations are what the classifier is scored against; rhythm changes (``+`` with an
aux string such as ``(N`` or ``(T``) and signal-quality marks (``~``, ``|``) are kept too,
so nothing in the file is dropped: ``beats()`` and ``rhythm_changes()`` are views of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError
from sensors.ecg.records import quiet_wfdb, record_base, wfdb

BEAT_SYMBOLS = frozenset("NLRAaJSVFejE/fQ")
"""Standard MIT-BIH beat codes (N normal, L/R bundle branch block, A/a/J/S supraventricular,
V/E ventricular, F fusion, e/j escape, / paced, f paced fusion, Q unclassifiable)."""

RHYTHM_SYMBOL = "+"


def _definitions(potential_definition_inds: set[int], aux_note: list[str | None]) -> tuple[object, object]:
    """``wfdb.io.annotation.interpret_defintion_annotations`` without its endless loop.

    wfdb 4.3's version never advances past a ``## `` note that is neither a time resolution (once one
    was found) nor a type-definition block, so a damaged ``.atr`` hung ``rdann`` forever (found by the
    fuzz suite). Same results otherwise; a definition block without its end marker is an error here.
    """
    rx_fs, rx_label = wfdb.io.annotation.rx_fs, wfdb.io.annotation.rx_custom_label
    fs: float | None = None
    labels: list[tuple[int, str, str]] = []
    notes = [note or "" for note in aux_note]
    i = 0
    while i < len(potential_definition_inds):
        note = notes[i]
        if note.startswith("## ") and not fs and (found := rx_fs.findall(note)):
            fs = float(found[0])
            fs = int(fs) if round(fs, 8) == float(int(fs)) else fs
        elif note == "## annotation type definitions":
            i += 1
            while i < len(notes) and notes[i] != "## end of definitions":
                match = rx_label.findall(notes[i])
                if not match:
                    msg = f"malformed annotation type definition {notes[i]!r}"
                    raise ValueError(msg)
                labels.append((int(match[0][0]), match[0][1], match[0][2]))
                i += 1
            if i >= len(notes):
                msg = "annotation type definitions lack '## end of definitions'"
                raise ValueError(msg)
        i += 1
    return fs, (labels or None)


if hasattr(wfdb.io.annotation, "interpret_defintion_annotations"):
    wfdb.io.annotation.interpret_defintion_annotations = _definitions


@dataclass(frozen=True, slots=True)
class Annotations:
    """Annotations of one record, sorted by ``sample`` (index into the record's signals)."""

    record: str
    sample: npt.NDArray[np.int64]
    symbol: tuple[str, ...]
    aux: tuple[str, ...]
    """Aux strings with their NUL padding removed ('' where there is none)."""
    rate_hz: float
    path: Path

    def __post_init__(self) -> None:
        if not (len(self.sample) == len(self.symbol) == len(self.aux)):
            msg = f"{self.path}: sample, symbol and aux lengths differ"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.symbol)

    @property
    def t_us(self) -> npt.NDArray[np.int64]:
        """Stream time of each annotation, as ``sensors.blocks`` defines it (``n * 1e6 // rate``)."""
        return np.floor_divide(self.sample * 1_000_000, self.rate_hz).astype(np.int64)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.symbol))

    def _subset(self, keep: npt.NDArray[np.bool_]) -> Annotations:
        idx = np.flatnonzero(keep)
        return Annotations(
            record=self.record,
            sample=self.sample[idx],
            symbol=tuple(self.symbol[i] for i in idx),
            aux=tuple(self.aux[i] for i in idx),
            rate_hz=self.rate_hz,
            path=self.path,
        )

    def beats(self) -> Annotations:
        """Only the beat annotations (``BEAT_SYMBOLS``)."""
        return self._subset(np.array([s in BEAT_SYMBOLS for s in self.symbol], dtype=bool))

    def rhythm_changes(self) -> Annotations:
        """Only the rhythm changes (``+``); the rhythm is in ``aux``, e.g. ``(N``, ``(T``, ``(AFIB``."""
        return self._subset(np.array([s == RHYTHM_SYMBOL for s in self.symbol], dtype=bool))


def read_annotations(record_path: Path, extension: str = "atr") -> Annotations:
    """Annotations ``<record>.<extension>`` of a local WFDB record (path without extension or ``.hea``)."""
    base = record_base(Path(record_path))
    ann_path = base.with_name(f"{base.name}.{extension}")
    if not ann_path.is_file():
        msg = f"{ann_path}: annotation file not found (record {base.name} has no .{extension} annotations)"
        raise InputError(msg)
    try:
        with quiet_wfdb():
            ann = wfdb.rdann(str(base), extension, pn_dir=None, summarize_labels=False)
    except Exception as exc:  # wfdb raises bare ValueError/IndexError on a corrupt file
        msg = f"{ann_path}: annotation file could not be decoded: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc
    rate_hz = ann.fs
    if rate_hz is None:  # old .atr files carry no rate: it is in the record's header
        rate_hz = _header_rate(base, ann_path)
    sample = np.asarray(ann.sample, dtype=np.int64)
    if sample.size and (np.any(np.diff(sample) < 0) or sample[0] < 0):
        msg = f"{ann_path}: annotation sample times are negative or not sorted"
        raise InputError(msg)
    return Annotations(
        record=base.name,
        sample=sample,
        symbol=tuple(str(s) for s in ann.symbol),
        aux=tuple(str(a).rstrip("\x00") for a in ann.aux_note),
        rate_hz=float(rate_hz),
        path=ann_path,
    )


def _header_rate(base: Path, ann_path: Path) -> float:
    try:
        with quiet_wfdb():
            return float(wfdb.rdheader(str(base), pn_dir=None).fs)
    except Exception as exc:  # missing or malformed header
        msg = f"{ann_path}: annotation file has no sampling rate and the record header cannot give one: {exc}"
        raise InputError(msg) from exc
