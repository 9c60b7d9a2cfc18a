"""Fuzzing every DVS event reader (Prophesee EVT2/EVT3/DAT, AEDAT2/3.1/4, N-MNIST .bin, .npy/.npz).

Seeds are small files written by the project's own writers (sensors/dvs/writers.py); the fuzzer damages
them (and their ASCII headers), or builds headers that claim gigantic sizes. tests/dvs_tests/test_reader_fuzz.py
fuzzes the decoders' carry-over paths in more depth; here every format runs through the shared guard.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import example, given
from hypothesis import strategies as st

from sensors.blocks import EVENT_DTYPE
from sensors.dvs import writers
from sensors.dvs.reader import read_events

SUFFIX = {"evt2": ".raw", "evt3": ".raw", "dat": ".dat", "nmnist": ".bin", "aedat2": ".aedat", "aedat31": ".aedat"}
SUFFIX |= {"npy": ".npy", "npz": ".npz", "npz_columns": ".npz"}


def _events(n: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    events = np.empty(n, EVENT_DTYPE)
    events["t"] = np.cumsum(rng.integers(0, 3, n))
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["p"] = rng.random(n) < 0.5
    return events


@functools.cache
def seed(name: str) -> bytes:
    """A valid file of format ``name`` with 200 events (not a fixture: hypothesis would print it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"seed{SUFFIX[name]}"
        if name == "evt2":
            writers.write_evt2(path, _events(200, 640, 480), width=640, height=480)
        elif name == "evt3":
            writers.write_evt3(path, writers.dvs_like_events(200, 1280, 720), width=1280, height=720)
        elif name == "dat":
            writers.write_dat(path, _events(200, 304, 240))
        elif name == "nmnist":
            writers.write_nmnist_bin(path, _events(200, 34, 34))
        elif name == "aedat2":
            writers.write_aedat2(path, _events(200, 346, 260))
        elif name == "aedat31":
            writers.write_aedat31(path, _events(200, 128, 128))
        elif name == "npy":
            writers.write_npy(path, _events(200, 64, 64))
        elif name == "npz":
            writers.write_npz(path, _events(200, 64, 64), compressed=False)
        else:
            writers.write_npz(path, _events(200, 64, 64), columns=True)
        return path.read_bytes()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dvs_fuzz")


def read(path: Path, chunk_events: int = 64, buffer_bytes: int = 256) -> int:
    events, _ = read_events(path, chunk_events=chunk_events, buffer_bytes=buffer_bytes)
    return len(events)


@pytest.mark.parametrize("name", list(SUFFIX))
def test_seeds_are_valid(work: Path, name: str) -> None:
    path = work / f"valid_{name}{SUFFIX[name]}"
    path.write_bytes(seed(name))
    assert read(path) == 200


@FUZZ
@given(data=st.data(), name=st.sampled_from(list(SUFFIX)), sizes=st.sampled_from([(16, 64), (1 << 16, 1 << 20)]))
def test_damaged_event_file(work: Path, data: st.DataObject, name: str, sizes: tuple[int, int]) -> None:
    path = work / f"damaged_{name}{SUFFIX[name]}"
    path.write_bytes(data.draw(mutated(seed(name), header_bytes=128)))
    guarded(f"dvs:{name.split('_')[0]}", lambda: read(path, *sizes), names=str(path))


def _npy(header: str, body: bytes = b"") -> bytes:
    head = header.encode("latin-1")
    pad = 64 - (10 + len(head) + 1) % 64
    head += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + body


@FUZZ
@given(
    descr=st.sampled_from(
        [
            "[('t', '<i8'), ('x', '<i2'), ('y', '<i2'), ('p', '<i1')]",
            "[('t', '<u8'), ('x', '<u2'), ('y', '<u2'), ('p', '?')]",
            "'<f8'",
            "'<i8'",
            "'|O'",
            "[('t', '<i8')]",
            "'<U10'",
        ]
    ),
    shape=st.sampled_from(["(10**12,)", "(4294967295,)", "(1000000000000, 4)", "(0,)", "(-1,)", "(3,)", "()", "x"]),
    fortran=st.booleans(),
    body=st.binary(max_size=64),
)
@example(descr="[('t', '<i8'), ('x', '<i2'), ('y', '<i2'), ('p', '<i1')]", shape="(10**12,)", fortran=False, body=b"")
def test_npy_header_claims(work: Path, descr: str, shape: str, fortran: bool, body: bytes) -> None:
    """A .npy header that claims 10^12 events (or an odd dtype) is refused, never allocated or unpickled."""
    path = work / "claims.npy"
    shape_text = str(10**12) + "," if shape == "(10**12,)" else shape.strip("()")
    path.write_bytes(_npy(f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': ({shape_text}), }}", body))
    guarded("dvs:npy", lambda: read(path), names=str(path))


@FUZZ
@given(
    kind=st.sampled_from(["evt2", "evt3", "dat"]),
    width=st.sampled_from(["0", "-1", "65536", "4294967296", "99999999999999999999", "nan", "x", ""]),
    height=st.sampled_from(["0", "1", "480", "4294967296", "-5"]),
    body=st.binary(max_size=256),
)
def test_prophesee_header_geometry(work: Path, kind: str, width: str, height: str, body: bytes) -> None:
    """Absurd sensor sizes in a Prophesee header: a clear error, or events checked against that size."""
    if kind == "dat":
        head = f"% Data file containing EventCD events.\n% Version 2\n% Height {height}\n% Width {width}\n"
        data = head.encode() + b"\x0c\x08" + body
    else:
        fmt = "EVT3" if kind == "evt3" else "EVT2"
        head = f"% evt {'3.0' if kind == 'evt3' else '2.0'}\n% format {fmt};height={height};width={width}\n% end\n"
        data = head.encode() + body
    path = work / f"geometry_{kind}{'.dat' if kind == 'dat' else '.raw'}"
    path.write_bytes(data)
    guarded(f"dvs:{kind}", lambda: read(path), names=str(path))


@FUZZ
@given(body=st.binary(max_size=512), size=st.sampled_from([0, 7, 8, 64, 1 << 24, (1 << 31) - 1, -(1 << 31), -1]))
def test_aedat4_random_after_magic(work: Path, body: bytes, size: int) -> None:
    """AEDAT 4.0: no project writer exists (FlatBuffers + LZ4), so random IOHeaders behind the magic."""
    path = work / "random.aedat4"
    path.write_bytes(b"#!AER-DAT4.0\r\n" + size.to_bytes(4, "little", signed=True) + body)
    guarded("dvs:aedat4", lambda: read(path), names=str(path))


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".raw", ".dat", ".bin", ".aedat", ".npy", ".npz"]))
def test_random_bytes(work: Path, data: bytes, suffix: str) -> None:
    path = work / f"random{suffix}"
    path.write_bytes(data)
    guarded("dvs:random", lambda: read(path), names=str(path))


def test_npz_with_a_pickled_object_array_is_refused(work: Path) -> None:
    """An .npz member holding Python objects must not be unpickled (allow_pickle stays off)."""
    path = work / "objects.npz"
    buf = io.BytesIO()
    np.savez(buf, events=np.array([{"t": 1}], dtype=object))
    path.write_bytes(buf.getvalue())
    outcome = guarded("dvs:npz", lambda: read(path), names=str(path))
    assert outcome.error is not None


@pytest.mark.parametrize("kind", ["evt2", "evt3", "dat"])
def test_prophesee_header_size_beyond_int64(work: Path, kind: str) -> None:
    """Found by the fuzzer: width=99999999999999999999 reached the numba kernel (bare OverflowError)."""
    huge = "99999999999999999999"
    if kind == "dat":
        head = f"% Data file containing EventCD events.\n% Version 2\n% Height 1\n% Width {huge}\n"
        data = head.encode() + b"\x0c\x08"
    else:
        data = f"% evt {'3.0' if kind == 'evt3' else '2.0'}\n% format X;height=0;width={huge}\n% end\n".encode()
    path = work / f"huge_{kind}.raw"
    path.write_bytes(data)
    outcome = guarded(f"dvs:{kind}", lambda: read(path), names=str(path))
    assert outcome.error is not None
    assert "sensor size" in str(outcome.error)
