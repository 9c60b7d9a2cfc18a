"""DVS file readers on bad input: every problem is an EventFormatError naming the file and the byte offset."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from dvs_fixtures import FORMATS, assert_same_events, random_events, write_format

from sensors.blocks import InputError
from sensors.dvs import writers
from sensors.dvs.eventfile import read_header_lines
from sensors.dvs.reader import EventFormatError, detect_format, open_events, read_events


def _events(name: str, n: int = 500) -> np.ndarray:
    fmt = FORMATS[name]
    return random_events(np.random.default_rng(11), n, fmt.width, fmt.height)


@pytest.mark.parametrize(("name", "record_bytes"), [("evt2", 4), ("evt3", 2), ("dat", 8), ("nmnist_bin", 5)])
def test_truncated_final_record_names_its_offset(tmp_path: Path, name: str, record_bytes: int) -> None:
    path = write_format(tmp_path, FORMATS[name], _events(name))
    whole = path.read_bytes()
    cut = len(whole) - record_bytes + 1
    path.write_bytes(whole[:cut])
    if name == "nmnist_bin":  # a cut .bin is no longer a multiple of 5 bytes: name the format
        with pytest.raises(EventFormatError, match="unknown event file format"):
            detect_format(path)
    with pytest.raises(EventFormatError) as info:
        read_events(path, fmt=name, chunk_events=64, buffer_bytes=128)
    assert info.value.path == path
    assert info.value.offset == len(whole) - record_bytes
    assert str(path) in str(info.value) and f"byte {info.value.offset}" in str(info.value)
    assert "file ends inside" in str(info.value)


def test_truncated_aedat2_record(tmp_path: Path) -> None:
    path = write_format(tmp_path, FORMATS["aedat2"], _events("aedat2"))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(EventFormatError, match=r"file ends inside a 8-byte AEDAT 2\.0 record") as info:
        read_events(path)
    assert info.value.offset == path.stat().st_size - 5


def test_aedat31_packet_longer_than_file(tmp_path: Path) -> None:
    path = write_format(tmp_path, FORMATS["aedat31"], _events("aedat31"))
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(EventFormatError, match="2 polarity events before the end of the last packet") as info:
        read_events(path, buffer_bytes=64)
    assert info.value.offset == path.stat().st_size


def test_aedat31_bad_packet_header(tmp_path: Path) -> None:
    path = write_format(tmp_path, FORMATS["aedat31"], _events("aedat31"))
    start = read_header_lines(path, b"#", end_line=b"#!END-HEADER").data_offset
    data = bytearray(path.read_bytes())
    struct.pack_into("<i", data, start + 4, 16)  # polarity events are 8 bytes
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="impossible eventSize") as info:
        read_events(path)
    assert info.value.offset == start


@pytest.mark.parametrize(("name", "word_bytes", "bad_word", "problem"), [
    ("evt2", 4, 0x3 << 28, "EVT2 word type 0x3 is not defined"),
    ("evt3", 2, 0x9 << 12, "EVT3 word type 0x9 is not defined"),
])  # fmt: skip
def test_undefined_word_type(tmp_path: Path, name: str, word_bytes: int, bad_word: int, problem: str) -> None:
    path = write_format(tmp_path, FORMATS[name], _events(name))
    start = read_header_lines(path, b"%", end_line=b"% end").data_offset
    data = bytearray(path.read_bytes())
    at = start + 40 * word_bytes
    data[at : at + word_bytes] = bad_word.to_bytes(word_bytes, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match=problem) as info:
        read_events(path, buffer_bytes=64)
    assert info.value.offset == at
    assert "expected one of" in str(info.value)


def test_dat_bad_polarity(tmp_path: Path) -> None:
    path = write_format(tmp_path, FORMATS["dat"], _events("dat"))
    data = bytearray(path.read_bytes())
    first = len(data) - 500 * 8
    data[first + 8 * 7 + 7] = 0x50  # polarity nibble 5 in event 7
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="DAT polarity 5") as info:
        read_events(path)
    assert info.value.offset == first + 8 * 7


def test_event_outside_sensor(tmp_path: Path) -> None:
    events = _events("nmnist_bin")
    events["x"][100] = 40  # N-Caltech-sized x in an N-MNIST file
    path = tmp_path / "caltech.bin"
    writers.write_nmnist_bin(path, events)
    with pytest.raises(EventFormatError, match=r"x=40 is outside the 34x34 sensor.*sensor_size") as info:
        read_events(path)
    assert info.value.offset == 500
    got, info_ok = read_events(path, sensor_size=(64, 48))
    assert (info_ok.width, info_ok.height) == (64, 48)
    assert_same_events(got, events)


def test_evt3_vector_outside_sensor(tmp_path: Path) -> None:
    words = np.array([0x8000, 0x6000, 0x0005, 0x3000 | 630, 0x4800], "<u2")  # bit 11 of a VECT_12: x = 641
    path = tmp_path / "v.raw"
    header = b"% evt 3.0\n% geometry 640x480\n"
    path.write_bytes(header + words.tobytes())
    with pytest.raises(EventFormatError, match="x=641 is outside the 640x480 sensor") as info:
        read_events(path)
    assert info.value.offset == len(header) + 4 * 2


def test_evt3_file_named_dat(tmp_path: Path) -> None:
    events = _events("evt3")
    raw = write_format(tmp_path, FORMATS["evt3"], events)
    misnamed = tmp_path / "really_evt3.dat"
    misnamed.write_bytes(raw.read_bytes())
    assert detect_format(misnamed) == "evt3"  # the header decides, not the extension
    assert_same_events(read_events(misnamed)[0], events)
    with pytest.raises(EventFormatError, match="DAT event type") as info:
        read_events(misnamed, fmt="dat")
    assert info.value.offset == read_header_lines(misnamed, b"%").data_offset


def test_random_bytes_named_raw(tmp_path: Path) -> None:
    path = tmp_path / "noise.raw"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(EventFormatError, match="unknown event file format") as info:
        read_events(path)
    assert (info.value.path, info.value.offset) == (path, 0)


@pytest.mark.parametrize(("head", "problem"), [
    (b"% evt 2.1\n", "Prophesee format '2.1' is not supported"),
    (b"% Date 2020\n", "'%' header"),
    (b"#!AER-DAT1.0\r\n", "AEDAT version '1.0' is not supported"),
])  # fmt: skip
def test_unsupported_headers(tmp_path: Path, head: bytes, problem: str) -> None:
    path = tmp_path / "x.raw"
    path.write_bytes(head + bytes(64))
    with pytest.raises(EventFormatError, match=problem):
        detect_format(path)


def test_unknown_aedat2_chip(tmp_path: Path) -> None:
    path = tmp_path / "x.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: org.example.Cochlea\r\n" + bytes(16))
    with pytest.raises(EventFormatError, match=r"AEChip 'org\.example\.Cochlea' has no known address layout"):
        read_events(path)


@pytest.mark.parametrize("problem", ["fields", "float", "negative_x"])
def test_bad_numpy_arrays(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "bad.npy"
    if problem == "fields":
        np.save(path, np.zeros((3, 4), np.int64))
        match = "expected a 1-D structured array with fields t, x, y, p"
    elif problem == "float":
        np.save(path, np.zeros(3, [("t", "<f8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")]))
        match = "field 't' has type float64"
    else:
        data = np.zeros(3, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
        data["x"][2] = -4
        np.save(path, data)
        match = "record 2: x=-4"
    with pytest.raises(EventFormatError, match=match):
        read_events(path)


def test_error_survives_pickling(tmp_path: Path) -> None:
    error = EventFormatError(tmp_path / "a.raw", 4096, "EVT3 word type 0x9 is not defined")
    again = pickle.loads(pickle.dumps(error))
    assert (again.path, again.offset, str(again)) == (error.path, error.offset, str(error))
    assert isinstance(again, InputError)


def test_bad_arguments(tmp_path: Path) -> None:
    path = write_format(tmp_path, FORMATS["evt2"], _events("evt2"))
    with pytest.raises(InputError, match="sensor_size"):
        open_events(path, sensor_size=(0, 10))
    with pytest.raises(InputError, match="buffer_bytes"):
        open_events(path, buffer_bytes=8)
    with pytest.raises(InputError, match="unknown event format 'mp4'"):
        open_events(path, fmt="mp4")
    with pytest.raises(InputError, match="no such event file"):
        open_events(tmp_path / "missing.raw", fmt="evt2")


def test_aedat4_description_not_utf8(data_dir: Path, tmp_path: Path) -> None:
    # aedat 2.3 aborts the process on such a header; the reader must refuse it first.
    data = bytearray((data_dir / "dvs/aedat4/tonic_sample_dvxplorer.aedat4").read_bytes())
    data[951] = 0xFB  # inside the IOHeader's XML description
    path = tmp_path / "bad.aedat4"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="IOHeader description is not UTF-8") as info:
        read_events(path)
    assert info.value.offset == 18


def test_aedat4_truncated(data_dir: Path, tmp_path: Path) -> None:
    data = (data_dir / "dvs/aedat4/tonic_sample_dvxplorer.aedat4").read_bytes()
    path = tmp_path / "cut.aedat4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFormatError, match=r"AEDAT 4\.0 packet"):
        read_events(path)
