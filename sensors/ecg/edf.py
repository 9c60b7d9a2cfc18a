"""EDF and EDF+ recordings through ``edfio``, read lazily (memory-mapped) and converted to mV.

Only continuous recordings are replayed: EDF and EDF+C, and EDF+D whose data records turn
out to be contiguous anyway. An EDF+D file with gaps between its data records is refused:
its samples do not lie on one uniform time axis.

``edfio`` forgives damaged files: it cuts a partial last data record and corrects a header
that declares more or fewer data records than the file holds, with a warning only. Here
every such warning is an ``InputError`` naming the file, because a damaged copy of a
recording must not replay as a shorter one.

Physical values in uV, mV or V are converted to mV; signals in other units (``NU``,
``%``, ``degC``, none) keep their values and say so in ``units``. "EDF Annotations"
channels are not signals and are skipped.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import edfio
import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError
from sensors.ecg.records import EcgRecord, Lead, resolve_lead

EDF_SUFFIXES = (".edf",)
_MV_PER_UNIT = {"nv": 1e-6, "uv": 1e-3, "mv": 1.0, "v": 1e3}
_VERSION = b"0       "
_T = TypeVar("_T")


def unit_to_mv(unit: str) -> float | None:
    """Factor from ``unit`` (a voltage: nV, uV/µV, mV, V) to mV; None for anything else."""
    key = unit.strip().replace("Âµ", "u").replace("µ", "u").replace("μ", "u").lower()
    return _MV_PER_UNIT.get(key)


def leads_of(path: Path, name: str, leads: Sequence[str], lead: Lead | Sequence[Lead] | None) -> tuple[int, ...]:
    """Indices of ``lead`` (one lead, a list of them, or None for all); ``InputError`` naming the leads there are."""
    if lead is None:
        return tuple(range(len(leads)))
    chosen = [lead] if isinstance(lead, str | int) else list(lead)
    if not chosen:
        msg = f"{path}: the list of leads is empty"
        raise InputError(msg)
    return tuple(resolve_lead(path, name, leads, one) for one in chosen)


class EdfFile:
    """An open EDF file: its ordinary signals (annotation channels left out), data not loaded yet."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._check_version()
        edf = self._strict(lambda: edfio.read_edf(self.path, lazy_load_data=True, header_encoding="latin-1"))
        self._check_continuous(edf)
        self._edf = edf
        self._signals = edf.signals
        if not self._signals:
            msg = f"{self.path}: EDF file holds no signals (only annotations)"
            raise InputError(msg)
        self.leads = tuple(s.label.strip() for s in self._signals)
        self.rates_hz = tuple(float(s.sampling_frequency) for s in self._signals)
        self.n_samples = tuple(int(edf.num_data_records) * int(s.samples_per_data_record) for s in self._signals)
        scales = [unit_to_mv(s.physical_dimension) for s in self._signals]
        self.scales = tuple(1.0 if f is None else f for f in scales)
        """Factor from each signal's physical unit to ``units``."""
        self.units = tuple(
            "mV" if f is not None else s.physical_dimension.strip() for f, s in zip(scales, self._signals, strict=True)
        )
        self.comments = tuple(
            c for c in (edf.local_patient_identification.strip(), edf.local_recording_identification.strip()) if c
        )
        for i, rate in enumerate(self.rates_hz):
            if not (math.isfinite(rate) and rate > 0):
                msg = f"{self.path}: signal {i} ({self.leads[i]}) has sampling rate {rate} Hz (data record duration?)"
                raise InputError(msg)

    @property
    def name(self) -> str:
        return self.path.stem

    def select(self, lead: Lead | Sequence[Lead] | None) -> tuple[int, ...]:
        """Indices of the chosen leads, which must share one sampling rate."""
        idx = leads_of(self.path, self.name, self.leads, lead)
        rates = {self.rates_hz[i] for i in idx}
        if len(rates) > 1:
            detail = ", ".join(f"{self.leads[i]} {self.rates_hz[i]:g} Hz" for i in idx)
            msg = f"{self.path}: the chosen leads have different sampling rates ({detail}); choose leads of one rate"
            raise InputError(msg)
        return idx

    def read(self, idx: Sequence[int], start: int, stop: int) -> npt.NDArray[np.float32]:
        """Samples ``start..stop-1`` of the signals ``idx`` (same rate), shape ``(n, len(idx))``, float32."""
        rate = self.rates_hz[idx[0]]
        out = np.empty((stop - start, len(idx)), dtype=np.float32)
        for col, i in enumerate(idx):
            signal = self._signals[i]
            # edfio slices by seconds and rounds back to samples: exact for any realistic index.
            data = self._strict(functools.partial(signal.get_data_slice, start / rate, stop / rate))
            if data.shape[0] != stop - start:
                got = data.shape[0]
                msg = f"{self.path}: signal {self.leads[i]}: read {got} samples at {start}, wanted {stop - start}"
                raise InputError(msg)
            out[:, col] = data * self.scales[i]
        return out

    def record(self, lead: Lead | Sequence[Lead] | None = None) -> EcgRecord:
        idx = self.select(lead)
        n = self.n_samples[idx[0]]
        return EcgRecord(
            name=self.name,
            rate_hz=self.rates_hz[idx[0]],
            signals_mv=self.read(idx, 0, n),
            leads=tuple(self.leads[i] for i in idx),
            units=tuple(self.units[i] for i in idx),
            comments=self.comments,
            path=self.path,
        )

    def _strict(self, fn: Callable[[], _T]) -> _T:
        """Run an edfio call with its warnings and exceptions turned into an ``InputError`` naming the file."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn()
            # edfio also fails with UnboundLocalError (record duration 0) and OverflowError (negative header
            # size reaching np.memmap) on damaged headers (found by the fuzz suite): any error is a bad file.
            except Exception as exc:
                msg = f"{self.path}: malformed EDF file: {type(exc).__name__}: {exc}"
                raise InputError(msg) from exc
        problems = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
        if problems:
            msg = f"{self.path}: damaged EDF file: {'; '.join(problems)}"
            raise InputError(msg)
        return result

    def _check_version(self) -> None:
        try:
            with self.path.open("rb") as fh:
                head = fh.read(256)
        except OSError as exc:
            msg = f"{self.path}: cannot read: {exc.strerror or exc}"
            raise InputError(msg) from exc
        if len(head) < 256:
            msg = f"{self.path}: not an EDF file: {len(head)} bytes, shorter than the 256-byte EDF header"
            raise InputError(msg)
        if head[:8] != _VERSION:
            msg = f"{self.path}: not an EDF file: version field is {head[:8]!r}, EDF needs {_VERSION!r}"
            raise InputError(msg)

    def _check_continuous(self, edf: edfio.Edf) -> None:
        reserved = edf.reserved.strip()
        if not reserved.startswith("EDF+D"):
            return
        if not self._strict(lambda: edf.is_continuous):
            msg = (
                f"{self.path}: discontinuous EDF+D recording (gaps between data records) is not supported; "
                "only continuous EDF/EDF+C can be replayed"
            )
            raise InputError(msg)


def read_edf(path: Path, *, lead: Lead | Sequence[Lead] | None = None) -> EcgRecord:
    """Read a whole EDF/EDF+C file; ``lead`` keeps one lead or a list (name or 0-based index), None all of them."""
    return EdfFile(path).record(lead)
