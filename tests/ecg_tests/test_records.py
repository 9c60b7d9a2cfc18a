"""ECG readers against the real records in ../shared/data/ecg (see PROVENANCE.md section 1).

Expected values come from PROVENANCE.md and the record headers, and sample values from a
small numpy decoder of format 212 written here (independent of wfdb).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from sensors.blocks import InputError
from sensors.ecg import BEAT_SYMBOLS, read_annotations, read_csv_signal, read_wfdb


def decode_212(raw: bytes, n_signals: int) -> npt.NDArray[np.int32]:
    """Format 212: two 12-bit two's-complement samples in 3 bytes, signals interleaved."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    first = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    second = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    adu = np.stack([first, second], axis=1).reshape(-1)
    adu = np.where(adu >= 2048, adu - 4096, adu)
    return adu.reshape(-1, n_signals)


def copy_record(src_dir: Path, name: str, dst_dir: Path, suffixes: tuple[str, ...] = (".hea", ".dat")) -> Path:
    for suffix in suffixes:
        # copyfile, not copy: the shared data is read-only and the copies get edited.
        shutil.copyfile(src_dir / f"{name}{suffix}", dst_dir / f"{name}{suffix}")
    return dst_dir / name


@pytest.fixture(scope="module")
def ecg_dir(data_dir: Path) -> Path:
    return data_dir / "ecg"


@pytest.mark.parametrize(
    ("rel", "rate_hz", "n_samples", "leads", "units"),
    [
        ("mitdb/100", 360.0, 650_000, ("MLII", "V5"), ("mV", "mV")),
        ("mitdb/208", 360.0, 650_000, ("MLII", "V1"), ("mV", "mV")),
        ("mitdb_signals_only/106", 360.0, 650_000, ("MLII", "V1"), ("mV", "mV")),
        ("mitdb_signals_only/223", 360.0, 650_000, ("MLII", "V1"), ("mV", "mV")),
        ("challenge2015/v102s", 250.0, 75_000, ("II", "V", "PLETH", "RESP"), ("mV", "mV", "NU", "NU")),
    ],
)
def test_records_shape_rate_leads(
    ecg_dir: Path, rel: str, rate_hz: float, n_samples: int, leads: tuple[str, ...], units: tuple[str, ...]
) -> None:
    record = read_wfdb(ecg_dir / rel)
    assert record.name == Path(rel).name
    assert record.rate_hz == rate_hz
    assert record.signals_mv.dtype == np.float32
    assert record.signals_mv.shape == (n_samples, len(leads))
    assert record.leads == leads
    assert record.units == units
    assert record.path == ecg_dir / rel


def test_comments_are_kept(ecg_dir: Path) -> None:
    assert read_wfdb(ecg_dir / "challenge2015/v102s").comments == ("Ventricular_Tachycardia", "False alarm")
    assert "The PVCs are uniform." in " ".join(read_wfdb(ecg_dir / "mitdb/208").comments)


def test_record_100_matches_independent_212_decode(ecg_dir: Path) -> None:
    record = read_wfdb(ecg_dir / "mitdb/100")
    raw = (ecg_dir / "mitdb/100.dat").read_bytes()
    adu = decode_212(raw, n_signals=2)
    assert adu.shape == (650_000, 2)
    # Header: gain 200 adu/mV, ADC zero (baseline) 1024, and the first samples are the initial values 995, 1011.
    assert tuple(adu[0]) == (995, 1011)
    expected_mv = (adu - 1024) / 200.0
    for start in (0, 123_457, 649_000):
        np.testing.assert_allclose(
            record.signals_mv[start : start + 1000], expected_mv[start : start + 1000], atol=1e-6
        )


def test_v102s_per_signal_gains_and_invalid_samples(ecg_dir: Path) -> None:
    record = read_wfdb(ecg_dir / "challenge2015/v102s")
    adu = decode_212((ecg_dir / "challenge2015/v102s.dat").read_bytes(), n_signals=4)
    gains = np.array([2281.0, 1856.0, 1250.0, 38880.0])  # from the header; ADC zero is 0
    invalid = adu == -2048  # format 212 marks a missing sample with its most negative value
    assert invalid.any()
    assert record.n_invalid == tuple(int(n) for n in invalid.sum(axis=0))
    assert np.array_equal(np.isnan(record.signals_mv), invalid)
    expected = adu / gains
    np.testing.assert_allclose(record.signals_mv[~invalid], expected[~invalid], rtol=1e-6)


def test_header_path_with_extension(ecg_dir: Path) -> None:
    by_hea = read_wfdb(ecg_dir / "mitdb/100.hea", lead=0)
    assert by_hea.name == "100"
    assert by_hea.leads == ("MLII",)


def test_lead_selection_by_name_and_index(ecg_dir: Path) -> None:
    full = read_wfdb(ecg_dir / "mitdb/100")
    by_name = read_wfdb(ecg_dir / "mitdb/100", lead="V5")
    by_index = read_wfdb(ecg_dir / "mitdb/100", lead=1)
    for one in (by_name, by_index):
        assert one.leads == ("V5",)
        assert one.units == ("mV",)
        assert one.signals_mv.shape == (650_000, 1)
        assert np.array_equal(one.signals_mv[:, 0], full.signals_mv[:, 1])
    pleth = read_wfdb(ecg_dir / "challenge2015/v102s", lead="PLETH")
    assert pleth.leads == ("PLETH",)
    assert pleth.units == ("NU",)
    assert pleth.n_invalid == read_wfdb(ecg_dir / "challenge2015/v102s").n_invalid[2:3]


@pytest.mark.parametrize("lead", ["V1", 2, -1, True])
def test_unknown_lead_names_record_and_leads(ecg_dir: Path, lead: str | int) -> None:
    with pytest.raises(InputError, match=r"100") as info:
        read_wfdb(ecg_dir / "mitdb/100", lead=lead)
    if not isinstance(lead, bool):
        assert "MLII" in str(info.value)
        assert "V5" in str(info.value)


def test_annotation_counts_record_100(ecg_dir: Path) -> None:
    ann = read_annotations(ecg_dir / "mitdb/100")
    assert ann.rate_hz == 360.0
    assert ann.counts() == {"N": 2239, "A": 33, "V": 1, "+": 1}
    assert ann.beats().counts() == {"N": 2239, "A": 33, "V": 1}
    rhythm = ann.rhythm_changes()
    assert rhythm.aux == ("(N",)  # NUL padding removed
    assert ann.sample.dtype == np.int64


def test_annotation_counts_record_208(ecg_dir: Path) -> None:
    ann = read_annotations(ecg_dir / "mitdb/208")
    assert len(ann) == 3040
    beats = ann.beats()
    assert beats.counts() == {"N": 1586, "V": 992, "F": 373, "S": 2, "Q": 2}
    assert set(beats.symbol) <= BEAT_SYMBOLS
    assert np.all(np.diff(beats.sample) >= 0)
    assert beats.sample[-1] < 650_000
    rhythm = ann.rhythm_changes()
    assert len(rhythm) == 53
    assert sorted(set(rhythm.aux)) == ["(N", "(T"]
    assert rhythm.aux.count("(N") == 27
    assert {s: ann.symbol.count(s) for s in "~|"} == {"~": 24, "|": 8}
    # Stream time of sample n is n * 1e6 // rate (sensors.blocks).
    assert beats.t_us[0] == beats.sample[0] * 1_000_000 // 360


def test_missing_annotation_file(ecg_dir: Path) -> None:
    with pytest.raises(InputError, match=r"223\.atr.*not found"):
        read_annotations(ecg_dir / "mitdb_signals_only/223")


def test_missing_header(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothere\.hea.*not found"):
        read_wfdb(tmp_path / "nothere")


def test_missing_dat(ecg_dir: Path, tmp_path: Path) -> None:
    base = copy_record(ecg_dir / "mitdb", "100", tmp_path, suffixes=(".hea",))
    with pytest.raises(InputError, match=r"100\.dat.*not found"):
        read_wfdb(base)


def test_header_longer_than_dat(ecg_dir: Path, tmp_path: Path) -> None:
    base = copy_record(ecg_dir / "mitdb", "100", tmp_path)
    dat = tmp_path / "100.dat"
    dat.write_bytes(dat.read_bytes()[:1_000_000])
    with pytest.raises(InputError, match=r"100\.dat.*1000000 bytes.*650000 samples.*1950000 bytes"):
        read_wfdb(base)


@pytest.mark.parametrize("code", ["999", "508", "abc"])
def test_wrong_format_code(ecg_dir: Path, tmp_path: Path, code: str) -> None:
    base = copy_record(ecg_dir / "mitdb", "100", tmp_path)
    hea = tmp_path / "100.hea"
    hea.write_bytes(hea.read_bytes().replace(b"100.dat 212 ", f"100.dat {code} ".encode(), 1))
    with pytest.raises(InputError, match=r"100\.hea") as info:
        read_wfdb(base)
    # An unknown numeric code is named; a non-numeric one makes the line unparseable.
    if code.isdigit():
        assert f"format code '{code}'" in str(info.value)


def test_checksum_mismatch(ecg_dir: Path, tmp_path: Path) -> None:
    base = copy_record(ecg_dir / "mitdb", "100", tmp_path)
    dat = tmp_path / "100.dat"
    raw = bytearray(dat.read_bytes())
    raw[3000] ^= 0x01  # one bit of the first signal's low byte
    dat.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"checksum of signal 0 \(MLII\)"):
        read_wfdb(base)
    relaxed = read_wfdb(base, check_checksum=False)
    assert relaxed.n_samples == 650_000


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_csv_rate_from_time_column(tmp_path: Path) -> None:
    t = np.arange(500) / 250.0
    rows = [f"{ti:.6f},{0.001 * i:.4f},{-0.002 * i:.4f}" for i, ti in enumerate(t)]
    path = write_csv(tmp_path / "ecg.csv", "time_s,lead_i,lead_ii", rows)
    record = read_csv_signal(path, time_column="time_s")
    assert record.rate_hz == pytest.approx(250.0, rel=1e-6)
    assert record.leads == ("lead_i", "lead_ii")
    assert record.signals_mv.dtype == np.float32
    assert record.signals_mv.shape == (500, 2)
    np.testing.assert_allclose(record.signals_mv[:, 1], -0.002 * np.arange(500), atol=1e-6)
    assert read_csv_signal(path, time_column="time_s", lead="lead_ii").leads == ("lead_ii",)


def test_csv_rate_given(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", "mlii", ["0.1", "0.2", "0.3"])
    record = read_csv_signal(path, rate_hz=360.0)
    assert record.rate_hz == 360.0
    assert record.name == "x"
    np.testing.assert_allclose(record.signals_mv[:, 0], [0.1, 0.2, 0.3], rtol=1e-6)


def test_csv_without_rate(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", "mlii", ["0.1", "0.2"])
    with pytest.raises(InputError, match=r"x\.csv.*rate_hz or a time_column"):
        read_csv_signal(path)


def test_csv_nonuniform_time(tmp_path: Path) -> None:
    times = [0.0, 0.004, 0.008, 0.012, 0.0175, 0.020, 0.024]  # step 3 is 5.5 ms instead of 4 ms
    path = write_csv(tmp_path / "jitter.csv", "t,v", [f"{t},1.0" for t in times])
    with pytest.raises(InputError, match=r"jitter\.csv.*not uniform.*rows 3 and 4 \(line 6\)"):
        read_csv_signal(path, time_column="t")


def test_csv_time_within_one_percent_is_accepted(tmp_path: Path) -> None:
    times = [0.0, 0.004, 0.00802, 0.012, 0.016]  # 0.5 % jitter
    path = write_csv(tmp_path / "ok.csv", "t,v", [f"{t},1.0" for t in times])
    assert read_csv_signal(path, time_column="t").rate_hz == pytest.approx(250.0)


def test_csv_nan(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gap.csv", "t,v", ["0.0,1.0", "0.004,nan", "0.008,1.0"])
    with pytest.raises(InputError, match=r"gap\.csv.*NaN.*'v'.*data row 1 \(line 3\)"):
        read_csv_signal(path, time_column="t")


@pytest.mark.parametrize(
    ("header", "rows", "kwargs", "pattern"),
    [
        ("t,v", ["0,1", "0.004,1"], {"time_column": "time"}, r"no time column 'time'"),
        ("t,v", ["0,1", "0.004,1"], {"time_column": "t", "rate_hz": 360.0}, r"250 Hz but rate_hz=360"),
        ("v", ["1", "abc"], {"rate_hz": 100.0}, r"not a numeric CSV"),
        ("v", [], {"rate_hz": 100.0}, r"no data rows"),
        ("a,b", ["1", "2"], {"rate_hz": 100.0}, r"2 columns but the rows have 1"),
        ("v", ["1", "2"], {"rate_hz": 0.0}, r"rate_hz must be positive"),
    ],
)
def test_csv_errors(tmp_path: Path, header: str, rows: list[str], kwargs: dict[str, object], pattern: str) -> None:
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(InputError, match=r"bad\.csv.*" + pattern):
        read_csv_signal(path, **kwargs)  # type: ignore[arg-type]


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "none.csv"))):
        read_csv_signal(tmp_path / "none.csv", rate_hz=100.0)
