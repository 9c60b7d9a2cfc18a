"""Chunked reading (sensors/ecg/reader.py): chunks of real records equal the whole-record readers bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import edfio
import numpy as np
import pytest

from sensors.blocks import InputError
from sensors.ecg import read_csv_signal, read_wfdb
from sensors.ecg.edf import read_edf
from sensors.ecg.reader import detect_format, expand_ecg_paths, open_ecg


@pytest.fixture(scope="module")
def ecg_dir(data_dir: Path) -> Path:
    return data_dir / "ecg"


def copy_record(src: Path, dst_dir: Path, suffixes: tuple[str, ...] = (".hea", ".dat")) -> Path:
    for suffix in suffixes:
        # copyfile, not copy: the shared data is read-only and the copies get edited.
        shutil.copyfile(src.with_name(src.name + suffix), dst_dir / (src.name + suffix))
    return dst_dir / src.name


def read_all(path: Path, **kw: object) -> tuple[np.ndarray, list[int]]:
    with open_ecg(path, **kw) as reader:  # type: ignore[arg-type]
        chunks = list(reader)
        assert reader.position == reader.n_samples
        assert sum(c.shape[0] for c in chunks) == reader.n_samples
        return np.concatenate(chunks), reader.n_invalid


@pytest.mark.parametrize(
    ("rel", "lead", "cols"),
    [
        ("mitdb/208", 0, [0]),
        ("mitdb/100", None, [0, 1]),
        ("mitdb_signals_only/106", "V1", [1]),
        ("mitdb_signals_only/223", ["V1", "MLII"], [1, 0]),
        ("challenge2015/v102s", None, [0, 1, 2, 3]),
    ],
)
def test_chunked_equals_whole_read(ecg_dir: Path, rel: str, lead: object, cols: list[int]) -> None:
    whole = read_wfdb(ecg_dir / rel)
    data, n_invalid = read_all(ecg_dir / rel, lead=lead, chunk_samples=49_999)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, whole.signals_mv[:, cols])  # NaNs in the same places too
    expected_invalid = [whole.n_invalid[c] if whole.n_invalid else 0 for c in cols]
    assert n_invalid == expected_invalid


def test_reader_properties(ecg_dir: Path) -> None:
    whole = read_wfdb(ecg_dir / "challenge2015/v102s")
    with open_ecg(ecg_dir / "challenge2015/v102s", lead=["II", "PLETH"]) as reader:
        assert reader.rate_hz == whole.rate_hz
        assert reader.leads == ("II", "PLETH")
        assert reader.units == ("mV", "NU")
        assert reader.n_samples == whole.n_samples
        assert reader.record == ecg_dir / "challenge2015/v102s"
        assert reader.n_invalid == [0, 0]  # nothing read yet
        first = reader.read(1000)
        assert first is not None and first.shape == (1000, 2)
        assert reader.position == 1000


@pytest.mark.parametrize("name", ["208", "208.hea", "208.dat"])
def test_record_path_with_or_without_extension(ecg_dir: Path, name: str) -> None:
    path = ecg_dir / "mitdb" / name
    assert detect_format(path) == "wfdb"
    with open_ecg(path, lead="V1", chunk_samples=300_000) as reader:
        assert reader.record == ecg_dir / "mitdb" / "208"
        assert reader.path == path
        first = reader.read()
    assert first is not None
    np.testing.assert_array_equal(first, read_wfdb(ecg_dir / "mitdb/208", lead="V1").signals_mv[:300_000])


def test_missing_lead_lists_leads(ecg_dir: Path) -> None:
    with pytest.raises(InputError, match=r"no lead 'II'; its leads are \['MLII', 'V1'\]"):
        open_ecg(ecg_dir / "mitdb/208", lead="II")


def test_folder_expansion(ecg_dir: Path, tmp_path: Path) -> None:
    copy_record(ecg_dir / "mitdb/208", tmp_path)
    copy_record(ecg_dir / "mitdb/100", tmp_path, (".hea", ".dat", ".atr"))
    (tmp_path / "a.csv").write_text("x\n1\n2\n")
    (tmp_path / "z.edf").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a record")
    (tmp_path / "sub").mkdir()
    found = expand_ecg_paths([tmp_path, ecg_dir / "mitdb" / "100.hea"])
    in_folder = [tmp_path / "100", tmp_path / "208", tmp_path / "a.csv", tmp_path / "z.edf"]
    assert found == [*in_folder, ecg_dir / "mitdb" / "100.hea"]


def test_expansion_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file, folder or WFDB record"):
        expand_ecg_paths([tmp_path / "nope"])
    with pytest.raises(InputError, match="holds no ECG records"):
        expand_ecg_paths([tmp_path])


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    path.write_bytes(b"RIFF")
    with pytest.raises(InputError, match=r"rec.wav: unknown ECG format"):
        open_ecg(path)


def test_missing_dat(ecg_dir: Path, tmp_path: Path) -> None:
    rec = copy_record(ecg_dir / "mitdb/208", tmp_path, (".hea",))
    with pytest.raises(InputError, match=r"208.dat: signal file named in 208.hea not found"):
        open_ecg(rec)


def test_header_lying_about_length(ecg_dir: Path, tmp_path: Path) -> None:
    rec = copy_record(ecg_dir / "mitdb/208", tmp_path)
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:300_000])
    with pytest.raises(InputError, match=r"208.dat: holds 300000 bytes but 208.hea declares 650000 samples"):
        open_ecg(rec)


def test_wrong_format_code(ecg_dir: Path, tmp_path: Path) -> None:
    rec = copy_record(ecg_dir / "mitdb/208", tmp_path)
    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("208.dat 212", "208.dat 999"))
    with pytest.raises(InputError, match=r"208.hea: signal 0 \(MLII\) has format code '999'"):
        open_ecg(rec)


def test_checksum_mismatch_found_at_the_end(ecg_dir: Path, tmp_path: Path) -> None:
    rec = copy_record(ecg_dir / "mitdb/208", tmp_path)
    dat = rec.with_suffix(".dat")
    raw = bytearray(dat.read_bytes())
    raw[-3] ^= 0x01  # last frame, MLII sample
    dat.write_bytes(bytes(raw))
    reader = open_ecg(rec, lead=0, chunk_samples=100_000)
    assert reader.read() is not None
    with pytest.raises(InputError, match=r"checksum of signal 0 \(MLII\)"):
        list(reader)
    unchecked, _ = read_all(rec, lead=0, check_checksum=False)
    assert unchecked.shape == (650_000, 1)


def test_edf_chunks_equal_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.edf"
    t = np.arange(5000) / 500
    signals = [
        edfio.EdfSignal(np.sin(t * 7) * 900, 500, label="ECG I", physical_dimension="uV"),
        edfio.EdfSignal(np.cos(t * 5), 500, label="ECG II", physical_dimension="mV"),
    ]
    edfio.Edf(signals, data_record_duration=0.5).write(path)
    assert detect_format(path) == "edf"
    data, n_invalid = read_all(path, lead=None, chunk_samples=333)
    np.testing.assert_array_equal(data, read_edf(path).signals_mv)
    assert n_invalid == [0, 0]
    with open_ecg(path, lead="ECG II") as reader:
        assert (reader.rate_hz, reader.n_samples, reader.leads, reader.units) == (500.0, 5000, ("ECG II",), ("mV",))


def test_csv_chunks(tmp_path: Path) -> None:
    path = tmp_path / "sig.csv"
    rows = "\n".join(f"{i / 200:.3f},{np.sin(i / 9):.6f},{i}" for i in range(900))
    path.write_text("t,ecg,count\n" + rows + "\n")
    with pytest.raises(InputError, match="rate is unknown"):
        open_ecg(path)
    data, _ = read_all(path, lead="count", chunk_samples=128, csv_time_column="t")
    expected = read_csv_signal(path, time_column="t", lead="count").signals_mv
    np.testing.assert_array_equal(data, expected)
    uv, _ = read_all(path, lead="count", csv_rate_hz=200.0, csv_time_column="t", csv_unit="uV")
    np.testing.assert_allclose(uv, expected * np.float32(1e-3))
