"""EDF/EDF+ reading (sensors/ecg/edf.py) against files written by edfio itself, and damaged copies of them."""

from __future__ import annotations

from pathlib import Path

import edfio
import numpy as np
import numpy.typing as npt
import pytest

from sensors.blocks import InputError
from sensors.ecg.edf import EdfFile, read_edf, unit_to_mv

RATE_HZ = 256
SECONDS = 10


def waves() -> dict[str, npt.NDArray[np.float64]]:
    t = np.arange(RATE_HZ * SECONDS) / RATE_HZ
    rng = np.random.default_rng(7)
    return {
        "ECG I": 800.0 * np.sin(2 * np.pi * 1.2 * t) + rng.normal(0, 20, t.size),  # uV
        "ECG II": 1.5 * np.cos(2 * np.pi * 1.2 * t),  # mV
        "ECG V": 0.002 * np.sin(2 * np.pi * 0.7 * t),  # V
        "Pleth": 50 + 10 * np.sin(2 * np.pi * 1.2 * t),  # %, not a voltage
        "Resp": np.sin(2 * np.pi * 0.25 * t[::2]),  # 128 Hz, mV
    }


def write_edf(path: Path) -> dict[str, npt.NDArray[np.float64]]:
    w = waves()
    signals = [
        edfio.EdfSignal(w["ECG I"], RATE_HZ, label="ECG I", physical_dimension="uV"),
        edfio.EdfSignal(w["ECG II"], RATE_HZ, label="ECG II", physical_dimension="mV"),
        edfio.EdfSignal(w["ECG V"], RATE_HZ, label="ECG V", physical_dimension="V"),
        edfio.EdfSignal(w["Pleth"], RATE_HZ, label="Pleth", physical_dimension="%"),
        edfio.EdfSignal(w["Resp"], RATE_HZ // 2, label="Resp", physical_dimension="mV"),
    ]
    edfio.Edf(signals, annotations=[edfio.EdfAnnotation(1.0, None, "beat")]).write(path)
    return w


def resolution(x: npt.NDArray[np.float64]) -> float:
    """One step of edfio's 16-bit quantisation of ``x`` (physical range from the data)."""
    return float(x.max() - x.min()) / 65535


@pytest.fixture
def edf_path(tmp_path: Path) -> Path:
    path = tmp_path / "rec.edf"
    write_edf(path)
    return path


def test_values_round_trip_in_mv(edf_path: Path) -> None:
    w = waves()
    for lead, scale in (("ECG I", 1e-3), ("ECG II", 1.0), ("ECG V", 1e3)):
        rec = read_edf(edf_path, lead=lead)
        assert rec.leads == (lead,)
        assert rec.units == ("mV",)
        assert rec.rate_hz == RATE_HZ
        assert rec.signals_mv.dtype == np.float32
        assert rec.signals_mv.shape == (RATE_HZ * SECONDS, 1)
        tol = resolution(w[lead]) * scale
        np.testing.assert_allclose(rec.signals_mv[:, 0], w[lead] * scale, atol=tol, rtol=1e-6)


def test_other_units_are_kept_and_named(edf_path: Path) -> None:
    rec = read_edf(edf_path, lead="Pleth")
    assert rec.units == ("%",)
    np.testing.assert_allclose(rec.signals_mv[:, 0], waves()["Pleth"], atol=resolution(waves()["Pleth"]), rtol=1e-6)


def test_annotation_channel_is_not_a_lead(edf_path: Path) -> None:
    edf = EdfFile(edf_path)
    assert edf.leads == ("ECG I", "ECG II", "ECG V", "Pleth", "Resp")
    with pytest.raises(InputError, match="EDF Annotations") as info:
        read_edf(edf_path, lead="EDF Annotations")
    assert "'Resp'" in str(info.value)  # the message lists the leads there are


def test_lead_by_index_and_list_of_same_rate(edf_path: Path) -> None:
    by_index = read_edf(edf_path, lead=1)
    pair = read_edf(edf_path, lead=["ECG II", 0])
    assert by_index.leads == ("ECG II",)
    assert pair.leads == ("ECG II", "ECG I")
    np.testing.assert_array_equal(pair.signals_mv[:, 0], by_index.signals_mv[:, 0])


def test_other_rate_lead_alone_is_fine(edf_path: Path) -> None:
    rec = read_edf(edf_path, lead="Resp")
    assert rec.rate_hz == RATE_HZ / 2
    assert rec.n_samples == RATE_HZ // 2 * SECONDS


@pytest.mark.parametrize("lead", [None, ["ECG I", "Resp"]])
def test_mixed_rates_in_chosen_leads_are_refused(edf_path: Path, lead: list[str] | None) -> None:
    with pytest.raises(InputError, match=r"different sampling rates .*Resp 128 Hz") as info:
        read_edf(edf_path, lead=lead)
    assert str(edf_path) in str(info.value)


def test_missing_lead_lists_the_leads(edf_path: Path) -> None:
    with pytest.raises(InputError, match=r"no lead 'MLII'.*'ECG I', 'ECG II'"):
        read_edf(edf_path, lead="MLII")
    with pytest.raises(InputError, match="no lead 9"):
        read_edf(edf_path, lead=9)


@pytest.mark.parametrize(("unit", "factor"), [("uV", 1e-3), ("µV", 1e-3), ("mV", 1.0), ("V", 1e3), ("nV", 1e-6)])
def test_unit_factors(unit: str, factor: float) -> None:
    assert unit_to_mv(unit) == factor


@pytest.mark.parametrize("unit", ["", "NU", "%", "mmHg"])
def test_non_voltage_units(unit: str) -> None:
    assert unit_to_mv(unit) is None


def test_truncated_data_record(edf_path: Path) -> None:
    raw = edf_path.read_bytes()
    edf_path.write_bytes(raw[:-100])
    with pytest.raises(InputError, match=r"damaged EDF file: Incomplete data record") as info:
        EdfFile(edf_path)
    assert str(edf_path) in str(info.value)


def test_header_lying_about_number_of_records(edf_path: Path) -> None:
    raw = bytearray(edf_path.read_bytes())
    assert raw[236:244] == f"{SECONDS:<8}".encode()
    raw[236:244] = f"{SECONDS + 5:<8}".encode()
    edf_path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=rf"header indicates {SECONDS + 5} data records.*contains {SECONDS}") as info:
        EdfFile(edf_path)
    assert str(edf_path) in str(info.value)


def test_bad_version_field(edf_path: Path) -> None:
    raw = edf_path.read_bytes()
    edf_path.write_bytes(b"PK\x03\x04" + raw[4:])
    with pytest.raises(InputError, match="not an EDF file: version field"):
        EdfFile(edf_path)


def test_non_numeric_header_field(edf_path: Path) -> None:
    raw = bytearray(edf_path.read_bytes())
    raw[236:244] = b"ten     "  # number of data records
    edf_path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"malformed EDF file: ValueError.*'ten'") as info:
        EdfFile(edf_path)
    assert str(edf_path) in str(info.value)


def test_file_shorter_than_header(tmp_path: Path) -> None:
    path = tmp_path / "short.edf"
    path.write_bytes(b"0       abc")
    with pytest.raises(InputError, match="shorter than the 256-byte EDF header"):
        EdfFile(path)


def test_only_annotations(tmp_path: Path) -> None:
    path = tmp_path / "ann.edf"
    edfio.Edf([], annotations=[edfio.EdfAnnotation(0.0, None, "start")]).write(path)
    with pytest.raises(InputError, match="no signals"):
        EdfFile(path)


def _as_edf_d(path: Path, gap_record: int | None) -> None:
    """Mark an EDF+C file EDF+D; with ``gap_record``, move that data record's onset 5 s later."""
    raw = path.read_bytes()
    assert raw[192:197] == b"EDF+C"
    raw = raw[:192] + b"EDF+D" + raw[197:]
    if gap_record is not None:
        old = f"+{gap_record}\x14\x14".encode()
        new = f"+{gap_record + 5}\x14\x14".encode()
        assert raw.count(old) == 1 and len(old) == len(new)
        raw = raw.replace(old, new)
    path.write_bytes(raw)


def test_edf_d_with_contiguous_records_is_read(edf_path: Path) -> None:
    whole = read_edf(edf_path, lead=0)
    _as_edf_d(edf_path, None)
    np.testing.assert_array_equal(read_edf(edf_path, lead=0).signals_mv, whole.signals_mv)


def test_edf_d_with_gaps_is_refused(edf_path: Path) -> None:
    _as_edf_d(edf_path, 3)
    with pytest.raises(InputError, match="discontinuous EDF\\+D") as info:
        EdfFile(edf_path)
    assert str(edf_path) in str(info.value)
