"""Fuzzing the ECG readers: WFDB header/.dat/.atr, EDF, CSV (sensors/ecg/reader.py open_ecg, annotations.py).

Seeds are written in the test with wfdb.wrsamp/wrann and edfio; each example damages one file of a record.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path

import edfio
import numpy as np
import pytest
import wfdb
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import example, given
from hypothesis import strategies as st

from sensors.ecg.annotations import read_annotations
from sensors.ecg.reader import open_ecg

RATE_HZ = 250
N = 500


def _signals() -> np.ndarray:
    t = np.arange(N) / RATE_HZ
    return np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 1.2 * t)], axis=1)


@functools.cache
def wfdb_seed(fmt: str) -> dict[str, bytes]:
    """``{".hea": ..., ".dat": ..., ".atr": ...}`` of a 2-lead record (not a fixture: hypothesis prints those)."""
    with tempfile.TemporaryDirectory() as tmp:
        wfdb.wrsamp("rec", fs=RATE_HZ, units=["mV", "mV"], sig_name=["I", "II"], p_signal=_signals(),
                    fmt=[fmt, fmt], write_dir=tmp)  # fmt: skip
        beats = np.arange(50, N, 200)
        wfdb.wrann("rec", "atr", beats, symbol=["N"] * len(beats), write_dir=tmp, fs=RATE_HZ)
        return {ext: (Path(tmp) / f"rec{ext}").read_bytes() for ext in (".hea", ".dat", ".atr")}


@functools.cache
def edf_seed() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.edf"
        sig = _signals()
        signals = [edfio.EdfSignal(sig[:, i], RATE_HZ, label=f"ECG {i}", physical_dimension="mV") for i in range(2)]
        edfio.Edf(signals, annotations=[edfio.EdfAnnotation(1.0, None, "beat")]).write(path)
        return path.read_bytes()


def csv_seed() -> bytes:
    sig = _signals()
    rows = [f"{i / RATE_HZ:.6f},{a:.4f},{b:.4f}" for i, (a, b) in enumerate(sig)]
    return ("t,I,II\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ecg_fuzz")


def read_all(path: Path, **kw: object) -> int:
    with open_ecg(path, lead=None, chunk_samples=128, **kw) as reader:  # type: ignore[arg-type]
        return sum(len(chunk) for chunk in reader)


def _write_record(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(exist_ok=True)
    for ext, data in files.items():
        (folder / f"rec{ext}").write_bytes(data)
    return folder / "rec"


def test_seeds_are_valid(work: Path) -> None:
    for fmt in ("16", "212"):
        base = _write_record(work / f"valid{fmt}", wfdb_seed(fmt))
        assert read_all(base.with_suffix(".hea")) == N
        assert len(read_annotations(base)) == 3
    (work / "valid.edf").write_bytes(edf_seed())
    assert read_all(work / "valid.edf") == N
    (work / "valid.csv").write_bytes(csv_seed())
    assert read_all(work / "valid.csv", csv_time_column="t") == N


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["16", "212"]), ext=st.sampled_from([".hea", ".dat"]))
def test_damaged_wfdb_record(work: Path, data: st.DataObject, fmt: str, ext: str) -> None:
    files = dict(wfdb_seed(fmt))
    files[ext] = data.draw(mutated(files[ext], header_bytes=96))
    base = _write_record(work / "wfdb", files)
    check = data.draw(st.booleans())
    # A damaged header may name another signal file of the record's folder: the error names that file.
    guarded("ecg:wfdb", lambda: read_all(base.with_suffix(".hea"), check_checksum=check), names=str(base.parent))


@FUZZ
@given(data=st.data())
def test_damaged_annotations(work: Path, data: st.DataObject) -> None:
    files = dict(wfdb_seed("16"))
    files[".atr"] = data.draw(mutated(files[".atr"], header_bytes=32))
    base = _write_record(work / "atr", files)
    guarded("ecg:atr", lambda: len(read_annotations(base)), names=str(base))


@FUZZ
@given(
    fs=st.sampled_from(["250", "0", "-250", "nan", "inf", "1e308", "x", "250/0", "0.0000001"]),
    sig_len=st.sampled_from(["500", "0", "-1", "1000000000000", "99999999999999999999", "", "x"]),
    n_sig=st.sampled_from(["1", "0", "2", "100000", "-1"]),
    gain=st.sampled_from(["200", "0", "-200", "nan", "inf", "1e-300", "x"]),
    fmt=st.sampled_from(["16", "212", "8", "0", "999", "x"]),
    baseline=st.sampled_from(["0", "-2147483649", "99999999999999999999"]),
    spf=st.sampled_from(["", "x0", "x2", "x100000000"]),
)
@example(fs="250", sig_len="1000000000000", n_sig="1", gain="200", fmt="16", baseline="0", spf="")
def test_wfdb_header_extremes(
    work: Path, fs: str, sig_len: str, n_sig: str, gain: str, fmt: str, baseline: str, spf: str
) -> None:
    """Header fields at extreme values (a 10^12-sample record, zero gain/rate): refused before any allocation."""
    folder = work / "header"
    folder.mkdir(exist_ok=True)
    lines = [f"rec {n_sig} {fs} {sig_len}".rstrip()]
    lines += [f"rec.dat {fmt}{spf} {gain}({baseline})/mV 16 0 0 0 0 I", f"rec.dat {fmt}{spf} {gain}/mV 16 0 0 0 0 II"]
    (folder / "rec.hea").write_text("\n".join(lines) + "\n")
    (folder / "rec.dat").write_bytes(wfdb_seed("16")[".dat"])
    base = folder / "rec"
    guarded("ecg:wfdb", lambda: read_all(base.with_suffix(".hea")), names=str(base))


@FUZZ
@given(data=st.data())
def test_damaged_edf(work: Path, data: st.DataObject) -> None:
    path = work / "damaged.edf"
    path.write_bytes(data.draw(mutated(edf_seed(), header_bytes=768)))
    guarded("ecg:edf", lambda: read_all(path), names=str(path))


@FUZZ
@given(
    field=st.sampled_from([(184, 8), (236, 8), (244, 8), (252, 4), (256 + 216 * 3, 8)]),
    value=st.sampled_from([b"0", b"-1", b"99999999", b"1e308", b"nan", b"inf", b"x", b" ", b"0.000001"]),
)
@example(field=(236, 8), value=b"99999999")
def test_edf_header_fields(work: Path, field: tuple[int, int], value: bytes) -> None:
    """EDF's ASCII header fields (header bytes, record count, record duration, signal count, samples per record)."""
    at, width = field
    data = bytearray(edf_seed())
    data[at : at + width] = value.ljust(width)[:width]
    path = work / "fields.edf"
    path.write_bytes(bytes(data))
    guarded("ecg:edf", lambda: read_all(path), names=str(path))


@FUZZ
@given(
    data=st.data(),
    rate_hz=st.sampled_from([250.0, 0.0, -1.0, math.nan, math.inf, 1e-300, None]),
    time_column=st.sampled_from(["t", None, "missing"]),
)
def test_damaged_csv(work: Path, data: st.DataObject, rate_hz: float | None, time_column: str | None) -> None:
    path = work / "damaged.csv"
    path.write_bytes(data.draw(mutated(csv_seed(), header_bytes=16)))
    guarded("ecg:csv", lambda: read_all(path, csv_rate_hz=rate_hz, csv_time_column=time_column), names=str(path))


@FUZZ
@given(
    cells=st.lists(
        st.lists(st.sampled_from(["1", "0", "-1e308", "1e309", "nan", "inf", "", "x", "0.1", '"', "1,2"]), max_size=4),
        max_size=8,
    ),
    header=st.sampled_from(["t,I", "I", "", "t,t", "t,I,II,III", "\ufeffI"]),
)
def test_csv_cells(work: Path, cells: list[list[str]], header: str) -> None:
    """Ragged rows, empty cells, NaN/inf, text, duplicated column names."""
    path = work / "cells.csv"
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in cells), encoding="utf-8")
    guarded("ecg:csv", lambda: read_all(path, csv_rate_hz=250.0), names=str(path))
    guarded("ecg:csv", lambda: read_all(path, csv_time_column="t"), names=str(path))


def test_annotation_note_that_hung_wfdb(work: Path) -> None:
    """Found by the fuzzer: wfdb 4.3's rdann looped forever on a second '## ' note at sample 0 (now patched)."""
    files = dict(wfdb_seed("16"))
    files[".atr"] = (
        b"\x00X\x14\xfc## time resolution: 250\x00\x00\xec\xff\xff\xff\xff\x01\x002\x04\xc8\x04\xc8\x04\x00\x00"
    )
    base = _write_record(work / "hung", files)
    guarded("ecg:atr", lambda: len(read_annotations(base)), names=str(base), timeout_s=10)


def test_edf_zero_record_duration(work: Path) -> None:
    """Found by the fuzzer: a data record duration of 0 s made edfio raise a bare UnboundLocalError."""
    data = bytearray(edf_seed())
    data[244:252] = b"0       "
    path = work / "zero_duration.edf"
    path.write_bytes(bytes(data))
    outcome = guarded("ecg:edf", lambda: read_all(path), names=str(path))
    assert outcome.error is not None
    assert "malformed EDF" in str(outcome.error)


def test_edf_negative_header_size(work: Path) -> None:
    """Found by the fuzzer: a header size of -1 reached np.memmap (bare OverflowError)."""
    data = bytearray(edf_seed())
    data[184:192] = b"-1      "
    path = work / "negative_header.edf"
    path.write_bytes(bytes(data))
    assert guarded("ecg:edf", lambda: read_all(path), names=str(path)).error is not None


def test_wfdb_header_without_signal_lines(work: Path) -> None:
    """Found by the fuzzer: 'rec 2' (two signals declared, no signal lines) gave a bare TypeError."""
    files = dict(wfdb_seed("16"))
    files[".hea"] = b"rec 2"
    base = _write_record(work / "no_signal_lines", files)
    outcome = guarded("ecg:wfdb", lambda: read_all(base.with_suffix(".hea")), names=str(base))
    assert outcome.error is not None
    assert "signal line" in str(outcome.error)
