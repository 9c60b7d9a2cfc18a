"""ECG signal records: WFDB (``.hea`` + ``.dat``) through the ``wfdb`` package, and numeric CSV.

WFDB is read from local files only: ``wfdb`` is always called with ``pn_dir=None`` so it
never reaches PhysioNet. Before ``wfdb`` decodes anything, the header is checked here
(supported format code, every ``.dat`` present and long enough for the samples the header
declares), because ``wfdb`` reports those cases with unrelated errors (a numpy broadcast
error, a ``KeyError`` on the format code). After decoding, the per-signal 16-bit checksums
in the header are compared with the data. Every problem is an ``InputError`` naming the file.

Samples the format marks as invalid (e.g. -2048 in format 212: a gap in the recording) are
NaN in ``signals_mv`` and counted per lead in ``n_invalid``; they are never silently replaced.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():
    # wfdb's import calls pandas APIs that pandas deprecates; nothing we can act on.
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb as wfdb  # re-exported so sibling modules get it without the warnings

from sensors.blocks import InputError

SUPPORTED_FORMATS = ("8", "16", "24", "32", "61", "80", "160", "212", "310", "311")
"""WFDB signal format codes read here (``wfdb``'s uncompressed ones; FLAC 508/516/524 are not)."""

_BITS_PER_SAMPLE = {"8": 8.0, "16": 16.0, "24": 24.0, "32": 32.0, "61": 16.0, "80": 8.0, "160": 16.0, "212": 12.0}
# 310 and 311 pack three 10-bit samples into 4 bytes.
_BITS_PER_SAMPLE.update({"310": 32.0 / 3.0, "311": 32.0 / 3.0})

RATE_TOLERANCE = 0.01
"""Largest relative deviation of a CSV time step from the mean step (1 %)."""

Lead = str | int


@contextmanager
def quiet_wfdb() -> Iterator[None]:
    """Silence the pandas deprecation warnings wfdb triggers on every call (not about our data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@dataclass(frozen=True, slots=True)
class EcgRecord:
    """A whole recording, shape ``(n_samples, n_leads)`` float32, in physical units (``units``, mostly mV)."""

    name: str
    rate_hz: float
    signals_mv: npt.NDArray[np.float32]
    leads: tuple[str, ...]
    units: tuple[str, ...]
    comments: tuple[str, ...]
    path: Path
    """The record path as given (WFDB: without extension; CSV: the file)."""
    n_invalid: tuple[int, ...] = ()
    """Samples per lead that the file marks invalid (NaN in ``signals_mv``); empty means none."""

    def __post_init__(self) -> None:
        if self.signals_mv.ndim != 2 or self.signals_mv.shape[1] != len(self.leads):
            msg = f"{self.path}: signals shape {self.signals_mv.shape} does not match {len(self.leads)} leads"
            raise ValueError(msg)

    @property
    def n_samples(self) -> int:
        return int(self.signals_mv.shape[0])

    @property
    def n_leads(self) -> int:
        return int(self.signals_mv.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.rate_hz

    def lead_index(self, lead: Lead) -> int:
        """Column of ``lead`` (a name or a 0-based index); ``InputError`` naming the leads there are."""
        return resolve_lead(self.path, self.name, self.leads, lead)

    def select(self, lead: Lead) -> EcgRecord:
        """The same record with only ``lead``."""
        i = self.lead_index(lead)
        n_invalid = (self.n_invalid[i],) if self.n_invalid else ()
        return replace(
            self,
            signals_mv=np.ascontiguousarray(self.signals_mv[:, i : i + 1]),
            leads=(self.leads[i],),
            units=(self.units[i],),
            n_invalid=n_invalid,
        )


def resolve_lead(path: Path, name: str, leads: Sequence[str], lead: Lead) -> int:
    """Index of ``lead`` (a name or a 0-based index) among ``leads``; ``InputError`` naming the leads there are."""
    if isinstance(lead, bool) or not isinstance(lead, str | int):
        msg = f"{path}: lead must be a name or an index, got {lead!r}"
        raise InputError(msg)
    if isinstance(lead, int):
        if 0 <= lead < len(leads):
            return lead
    elif lead in leads:
        return list(leads).index(lead)
    msg = f"record {name} ({path}) has no lead {lead!r}; its leads are {list(leads)} (index 0..)"
    raise InputError(msg)


def record_base(path: Path) -> Path:
    """WFDB record path without extension (``.hea`` or ``.dat`` are accepted and removed)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat") else path


def read_wfdb(path: Path, *, lead: Lead | None = None, check_checksum: bool = True) -> EcgRecord:
    """Read a local WFDB record; ``path`` is the record without extension or its ``.hea``.

    ``lead`` keeps one lead (name or 0-based index); ``None`` keeps them all.
    ``check_checksum=False`` accepts a ``.dat`` whose checksums disagree with the header.
    """
    base = record_base(path)
    header = _read_header(base)
    _check_header(base, header)
    try:
        with quiet_wfdb():
            record = wfdb.rdrecord(str(base), physical=False, return_res=32, pn_dir=None)
            digital = np.asarray(record.d_signal)
            physical = np.asarray(record.dac(return_res=32), dtype=np.float32)
    except Exception as exc:  # wfdb raises bare ValueError/KeyError/IndexError on bad data
        msg = f"{base}: WFDB record could not be decoded: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc
    if check_checksum:
        _check_checksums(base, header, digital)
    n_invalid = tuple(int(n) for n in np.isnan(physical).sum(axis=0))
    out = EcgRecord(
        name=str(header.record_name),
        rate_hz=float(header.fs),
        signals_mv=np.ascontiguousarray(physical),
        leads=tuple(str(s) for s in header.sig_name),
        units=tuple(str(u) for u in header.units),
        comments=tuple(str(c).strip() for c in (header.comments or [])),
        path=Path(path),
        n_invalid=n_invalid if any(n_invalid) else (),
    )
    return out if lead is None else out.select(lead)


def checked_header(path: Path) -> wfdb.Record:
    """The header of a local WFDB record after the checks ``read_wfdb`` makes before decoding
    (format codes supported, every ``.dat`` present and long enough); for chunked reads."""
    base = record_base(path)
    header = _read_header(base)
    _check_header(base, header)
    return header


def _read_header(base: Path) -> wfdb.Record:
    hea = base.with_name(base.name + ".hea")
    if not hea.is_file():
        msg = f"{hea}: WFDB header not found"
        raise InputError(msg)
    try:
        with quiet_wfdb():
            header = wfdb.rdheader(str(base), pn_dir=None)
    except Exception as exc:  # wfdb's header parser raises assorted errors on malformed lines
        msg = f"{hea}: malformed WFDB header: {type(exc).__name__}: {exc}"
        raise InputError(msg) from exc
    if not isinstance(header, wfdb.Record):
        msg = f"{hea}: multi-segment WFDB records are not supported"
        raise InputError(msg)
    if not header.n_sig:
        msg = f"{hea}: header declares no signals"
        raise InputError(msg)
    specs = (header.fmt, header.file_name, header.sig_name)
    if any(spec is None or len(spec) != header.n_sig for spec in specs):
        # wfdb accepts a record line without its signal lines and leaves these None (found by the fuzz suite).
        found = len(header.fmt or ())
        msg = f"{hea}: header declares {header.n_sig} signal(s) but has {found} signal line(s)"
        raise InputError(msg)
    return header


def _check_header(base: Path, header: wfdb.Record) -> None:
    hea = base.with_name(base.name + ".hea")
    if header.fs is None or not float(header.fs) > 0:
        msg = f"{hea}: sampling frequency {header.fs!r} is not positive"
        raise InputError(msg)
    for i, fmt in enumerate(header.fmt):
        if fmt not in SUPPORTED_FORMATS:
            msg = (
                f"{hea}: signal {i} ({header.sig_name[i]}) has format code {fmt!r}, "
                f"which is not a supported WFDB format ({', '.join(SUPPORTED_FORMATS)})"
            )
            raise InputError(msg)
    # Samples each .dat must hold: sig_len frames x samples per frame of every signal stored in it.
    per_file: dict[str, tuple[float, int]] = {}
    for i, file_name in enumerate(header.file_name):
        bits, offset = per_file.get(file_name, (0.0, 0))
        spf = int(header.samps_per_frame[i] or 1)
        offset = max(offset, int((header.byte_offset or [None] * header.n_sig)[i] or 0))
        per_file[file_name] = (bits + spf * _BITS_PER_SAMPLE[header.fmt[i]], offset)
    for file_name, (bits_per_frame, offset) in per_file.items():
        dat = hea.with_name(file_name)
        if not dat.is_file():
            msg = f"{dat}: signal file named in {hea.name} not found"
            raise InputError(msg)
        if header.sig_len is None:
            continue  # no declared length: wfdb takes it from the file size
        need = offset + math.floor(header.sig_len * bits_per_frame / 8.0)
        size = dat.stat().st_size
        if size < need:
            msg = (
                f"{dat}: holds {size} bytes but {hea.name} declares {header.sig_len} samples per signal, "
                f"which need at least {need} bytes (truncated file or wrong header)"
            )
            raise InputError(msg)


def _check_checksums(base: Path, header: wfdb.Record, digital: npt.NDArray[np.int32]) -> None:
    if header.checksum is None or any(int(s or 1) != 1 for s in header.samps_per_frame):
        return  # frames with several samples of a signal are smoothed by wfdb: checksums no longer apply
    sums = digital.astype(np.int64).sum(axis=0)
    check_checksums(base, header, range(header.n_sig), [int(v) for v in sums])


def check_checksums(base: Path, header: wfdb.Record, signals: Sequence[int], sums: Sequence[int]) -> None:
    """Compare the sums of the digital samples of ``signals`` (whole record) with the header's checksums."""
    if header.checksum is None or any(int(s or 1) != 1 for s in header.samps_per_frame):
        return  # frames with several samples of a signal are smoothed by wfdb: checksums no longer apply
    for i, total in zip(signals, sums, strict=True):
        expected = header.checksum[i]
        low = total % 65536
        actual = low - 65536 if low >= 32768 else low
        # The header's checksum is 16-bit signed by the spec; some writers (wfdb-python's wrsamp)
        # store it unsigned. Both name the same residue modulo 2**16.
        if expected is not None and (actual - int(expected)) % 65536:
            msg = (
                f"{base}.dat: checksum of signal {i} ({header.sig_name[i]}) is {actual}, "
                f"header says {int(expected)}: the data does not match its header"
            )
            raise InputError(msg)


def read_csv_signal(
    path: Path,
    *,
    rate_hz: float | None = None,
    time_column: str | None = None,
    lead: Lead | None = None,
    unit: str = "mV",
) -> EcgRecord:
    """Read a numeric CSV with a header row: one column per lead, optionally a time column in seconds.

    The rate comes from ``time_column`` (uniform within 1 %) or from ``rate_hz``; if both are
    given they must agree within 1 %. ``unit`` is what the values are in (CSV does not say).
    """
    path = Path(path)
    columns, values = _load_csv(path)
    if time_column is not None:
        if time_column not in columns:
            msg = f"{path}: no time column {time_column!r}; the columns are {columns}"
            raise InputError(msg)
        t_col = columns.index(time_column)
        inferred = _rate_from_times(path, values[:, t_col])
        if rate_hz is not None and abs(inferred - rate_hz) > RATE_TOLERANCE * rate_hz:
            msg = f"{path}: time column gives {inferred:.6g} Hz but rate_hz={rate_hz:g} was given"
            raise InputError(msg)
        rate_hz = inferred
        values = np.delete(values, t_col, axis=1)
        columns = [c for i, c in enumerate(columns) if i != t_col]
    if rate_hz is None:
        msg = f"{path}: the sampling rate is unknown: give rate_hz or a time_column"
        raise InputError(msg)
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        msg = f"{path}: rate_hz must be positive, got {rate_hz}"
        raise InputError(msg)
    if not columns:
        msg = f"{path}: no signal column besides the time column"
        raise InputError(msg)
    out = EcgRecord(
        name=path.stem,
        rate_hz=float(rate_hz),
        signals_mv=np.ascontiguousarray(values, dtype=np.float32),
        leads=tuple(columns),
        units=(unit,) * len(columns),
        comments=(),
        path=path,
    )
    return out if lead is None else out.select(lead)


def _load_csv(path: Path) -> tuple[list[str], npt.NDArray[np.float64]]:
    try:
        with path.open(newline="") as f:
            header = next(csv.reader(f), None)
            if header is None:
                msg = f"{path}: empty CSV file (a header row is required)"
                raise InputError(msg)
            body = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read CSV: {exc}"
        raise InputError(msg) from exc
    if not body.strip():
        msg = f"{path}: no data rows"
        raise InputError(msg)
    try:
        values = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:  # loadtxt names the offending line (counted from the first data row)
        msg = f"{path}: not a numeric CSV after the header row: {exc}"
        raise InputError(msg) from exc
    columns = [c.strip() for c in header]
    if values.shape[1] != len(columns):
        msg = f"{path}: header has {len(columns)} columns but the rows have {values.shape[1]}"
        raise InputError(msg)
    _check_finite(path, values, columns)
    return columns, values


def _check_finite(path: Path, values: npt.NDArray[np.float64], columns: Sequence[str]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        n_bad = int(bad.sum())
        # Line numbers in the file: the header is line 1, data row 0 is line 2.
        msg = (
            f"{path}: {n_bad} non-finite value(s) (NaN/Inf); the first is in column {columns[col]!r} "
            f"at data row {row} (line {row + 2})"
        )
        raise InputError(msg)


def _rate_from_times(path: Path, t_s: npt.NDArray[np.float64]) -> float:
    if t_s.size < 2:
        msg = f"{path}: at least two rows are needed to infer the rate from the time column"
        raise InputError(msg)
    dt = np.diff(t_s)
    mean_dt = (t_s[-1] - t_s[0]) / (t_s.size - 1)
    if not mean_dt > 0:
        msg = f"{path}: the time column does not increase"
        raise InputError(msg)
    off = np.abs(dt - mean_dt) > RATE_TOLERANCE * mean_dt
    if off.any():
        i = int(np.argmax(off))
        msg = (
            f"{path}: time column is not uniform within 1 %: step {dt[i]:.6g} s between data rows {i} and {i + 1} "
            f"(line {i + 3}) vs mean step {mean_dt:.6g} s"
        )
        raise InputError(msg)
    return float(1.0 / mean_dt)
