"""Chunked reading of one ECG recording (WFDB, EDF/EDF+, CSV) without loading all of it.

``open_ecg(path, lead=...)`` detects the format from the path and returns an ``EcgReader``
that yields ``(n, n_leads)`` float32 chunks in mV (other units kept and named in ``units``).
WFDB records are read with ``wfdb.rdrecord(sampfrom, sampto)`` on local files only (never
``pn_dir``), after the header checks of ``records.checked_header``; their checksums are
summed chunk by chunk and compared at the end. EDF is memory-mapped by ``edfio``. CSV is
small and read whole. Chunks concatenate to exactly what the whole-record readers return.
Samples a file marks invalid stay NaN and are counted per lead in ``n_invalid``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError
from sensors.ecg.edf import EDF_SUFFIXES, EdfFile, leads_of, unit_to_mv
from sensors.ecg.records import (
    Lead,
    check_checksums,
    checked_header,
    quiet_wfdb,
    read_csv_signal,
    read_wfdb,
    record_base,
    wfdb,
)

CHUNK_SAMPLES = 65_536
"""Samples per chunk by default: a few hundred kB per lead as float32, a few wfdb calls per record."""

EcgFormat = Literal["wfdb", "edf", "csv"]
Leads = Lead | Sequence[Lead] | None
"""One lead (name or 0-based index), a list of leads, or None for all of them."""


def detect_format(path: Path) -> EcgFormat:
    """Format of ``path``: ``.edf``, ``.csv``, or a WFDB record (``.hea``, ``.dat`` or no extension)."""
    suffix = path.suffix.lower()
    if suffix in EDF_SUFFIXES:
        return "edf"
    if suffix == ".csv":
        return "csv"
    if suffix in (".hea", ".dat") or path.with_name(path.name + ".hea").is_file():
        return "wfdb"
    msg = f"{path}: unknown ECG format (expected a WFDB record with its .hea, an .edf or a .csv file)"
    raise InputError(msg)


def expand_ecg_paths(paths: Sequence[Path]) -> list[Path]:
    """Paths as given; folders replaced by their records (each ``.hea`` once, as the record
    path without extension; ``.edf``; ``.csv``), sorted. A missing path is an ``InputError``."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p.with_suffix("") if p.suffix.lower() == ".hea" else p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in (".hea", ".csv", *EDF_SUFFIXES)
            )
            if not found:
                msg = f"{path}: folder holds no ECG records (.hea, .edf, .csv)"
                raise InputError(msg)
            out.extend(found)
        elif path.is_file() or path.with_name(path.name + ".hea").is_file():
            out.append(path)
        else:
            msg = f"{path}: no such file, folder or WFDB record"
            raise InputError(msg)
    return out


class EcgReader:
    """Chunks of one recording, shape ``(n, n_leads)`` float32; iterate or call ``read``."""

    def __init__(
        self,
        path: Path,
        record: Path,
        rate_hz: float,
        leads: tuple[str, ...],
        units: tuple[str, ...],
        n_samples: int,
        chunk_samples: int,
    ) -> None:
        if n_samples <= 0:
            msg = f"{path}: the recording holds no samples"
            raise InputError(msg)
        self.path = path
        """The path as given (or as a folder expanded to)."""
        self.record = record
        """The record path without extension."""
        self.rate_hz = rate_hz
        self.leads = leads
        self.units = units
        """Unit of each lead's values: mV unless the file's unit is not a voltage."""
        self.n_samples = n_samples
        self.chunk_samples = chunk_samples
        self.position = 0
        """Samples read so far."""
        self.n_invalid = [0] * len(leads)
        """Invalid (NaN) samples per lead among those read so far."""

    @property
    def n_leads(self) -> int:
        return len(self.leads)

    @property
    def n_invalid_total(self) -> int:
        return sum(self.n_invalid)

    def read(self, n: int | None = None) -> npt.NDArray[np.float32] | None:
        """The next ``n`` samples (default ``chunk_samples``; fewer at the end); None after the end."""
        if self.position >= self.n_samples:
            return None
        stop = min(self.n_samples, self.position + (self.chunk_samples if n is None else max(1, n)))
        chunk = self._read(self.position, stop)
        self.position = stop
        bad = np.isnan(chunk).sum(axis=0)
        for i, count in enumerate(bad):
            self.n_invalid[i] += int(count)
        if stop == self.n_samples:
            self._finished()
        return chunk

    def __iter__(self) -> Iterator[npt.NDArray[np.float32]]:
        while (chunk := self.read()) is not None:
            yield chunk

    def close(self) -> None:
        """Release the file (EDF memory map); reading afterwards is an error."""

    def __enter__(self) -> EcgReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _read(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def _finished(self) -> None:
        """Whole-record checks once the last chunk is read."""


class _MemoryReader(EcgReader):
    """Chunks of a record already in memory (CSV, WFDB without a declared length)."""

    def __init__(self, path: Path, record: Path, data: npt.NDArray[np.float32], rate_hz: float, leads: tuple[str, ...],
                 units: tuple[str, ...], chunk_samples: int) -> None:  # fmt: skip
        super().__init__(path, record, rate_hz, leads, units, int(data.shape[0]), chunk_samples)
        self._data = data

    def _read(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        return self._data[start:stop].copy()


class _WfdbReader(EcgReader):
    def __init__(self, path: Path, header: wfdb.Record, idx: tuple[int, ...], check_checksum: bool, chunk: int) -> None:
        base = record_base(path)
        units = [str(header.units[i]) for i in idx]
        self._scales = np.array([unit_to_mv(u) or 1.0 for u in units], dtype=np.float32)
        self._scaled = bool(np.any(self._scales != 1.0))
        units = ["mV" if unit_to_mv(u) is not None else u for u in units]
        leads = tuple(str(header.sig_name[i]) for i in idx)
        super().__init__(path, base, float(header.fs), leads, tuple(units), int(header.sig_len), chunk)
        self._header = header
        self._idx = idx
        self._check = check_checksum
        self._sums = [0] * len(idx)

    def _read(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        try:
            with quiet_wfdb():
                rec = wfdb.rdrecord(str(self.record), sampfrom=start, sampto=stop, channels=list(self._idx),
                                    physical=False, return_res=32, pn_dir=None)  # fmt: skip
                digital = np.asarray(rec.d_signal)
                physical = np.asarray(rec.dac(return_res=32), dtype=np.float32)
        except Exception as exc:  # wfdb raises bare ValueError/KeyError/IndexError on bad data
            msg = f"{self.record}: WFDB samples {start}..{stop} could not be decoded: {type(exc).__name__}: {exc}"
            raise InputError(msg) from exc
        if physical.shape != (stop - start, len(self._idx)):
            msg = f"{self.record}: wfdb returned {physical.shape} samples for {start}..{stop}"
            raise InputError(msg)
        if self._check:
            for col, total in enumerate(digital.astype(np.int64).sum(axis=0)):
                self._sums[col] += int(total)
        # Same float32 values as read_wfdb for mV records: scaled only when the unit is not mV.
        return np.ascontiguousarray(physical * self._scales if self._scaled else physical)

    def _finished(self) -> None:
        if self._check:
            check_checksums(self.record, self._header, self._idx, self._sums)


class _EdfReader(EcgReader):
    def __init__(self, path: Path, edf: EdfFile, idx: tuple[int, ...], chunk_samples: int) -> None:
        leads = tuple(edf.leads[i] for i in idx)
        units = tuple(edf.units[i] for i in idx)
        record = path.with_suffix("")
        super().__init__(path, record, edf.rates_hz[idx[0]], leads, units, edf.n_samples[idx[0]], chunk_samples)
        self._edf: EdfFile | None = edf
        self._idx = idx

    def _read(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        if self._edf is None:
            msg = f"{self.path}: reader is closed"
            raise InputError(msg)
        return self._edf.read(self._idx, start, stop)

    def close(self) -> None:
        self._edf = None  # drops edfio's memory map


def open_ecg(
    path: Path,
    *,
    lead: Leads = 0,
    chunk_samples: int = CHUNK_SAMPLES,
    check_checksum: bool = True,
    csv_rate_hz: float | None = None,
    csv_time_column: str | None = None,
    csv_unit: str = "mV",
) -> EcgReader:
    """Open one recording for chunked reading; ``lead`` picks one lead, a list, or None for all.

    CSV files do not say their rate: give ``csv_rate_hz`` or ``csv_time_column`` (see
    ``read_csv_signal``), and ``csv_unit`` if the values are not in mV.
    """
    path = Path(path)
    if chunk_samples < 1:
        msg = f"chunk_samples must be at least 1, got {chunk_samples}"
        raise ValueError(msg)
    fmt = detect_format(path)
    if fmt == "edf":
        edf = EdfFile(path)
        return _EdfReader(path, edf, edf.select(lead), chunk_samples)
    if fmt == "csv":
        rec = read_csv_signal(path, rate_hz=csv_rate_hz, time_column=csv_time_column, unit=csv_unit)
        idx = leads_of(path, rec.name, rec.leads, lead)
        return _from_memory(path, path.with_suffix(""), rec.signals_mv[:, idx], rec.rate_hz,
                            tuple(rec.leads[i] for i in idx), (csv_unit,) * len(idx), chunk_samples)  # fmt: skip
    header = checked_header(path)
    base = record_base(path)
    idx = leads_of(path, str(header.record_name), [str(s) for s in header.sig_name], lead)
    if header.sig_len is None:
        # Length not declared: wfdb infers it from the file size on a whole read.
        whole = read_wfdb(path, check_checksum=check_checksum)
        units = tuple(whole.units[i] for i in idx)
        return _from_memory(path, base, whole.signals_mv[:, idx], whole.rate_hz,
                            tuple(whole.leads[i] for i in idx), units, chunk_samples)  # fmt: skip
    return _WfdbReader(path, header, idx, check_checksum, chunk_samples)


def _from_memory(path: Path, record: Path, data: npt.NDArray[np.float32], rate_hz: float, leads: tuple[str, ...],
                 units: tuple[str, ...], chunk_samples: int) -> EcgReader:  # fmt: skip
    scales = np.array([unit_to_mv(u) or 1.0 for u in units], dtype=np.float32)
    if np.any(scales != 1.0):
        data = data * scales
    units = tuple("mV" if unit_to_mv(u) is not None else u for u in units)
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        msg = f"{path}: sampling rate {rate_hz} Hz is not positive"
        raise InputError(msg)
    return _MemoryReader(path, record, np.ascontiguousarray(data, dtype=np.float32), rate_hz, leads, units,
                         chunk_samples)  # fmt: skip
