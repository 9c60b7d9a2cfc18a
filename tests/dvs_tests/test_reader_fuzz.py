"""Fuzzing the DVS readers: random and damaged files either decode or raise EventFormatError, nothing else.

Each example is small (a few KB) so a decoder that looped or allocated without bound would show up as a
stuck or failed run; every decoder also runs with tiny chunks and buffers to cross its carry-over paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dvs_fixtures import FORMATS, random_events, write_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.dvs import writers
from sensors.dvs.reader import EventFormatError, read_events

# One test per kind of damage, the format drawn per example: ~40 examples per format in a few seconds.
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADERS = {
    "evt2": b"% evt 2.0\n",
    "evt3": b"% evt 3.0\n",
    "dat": b"% Data file containing EventCD events.\n% Version 2\n\x0c\x08",
    "nmnist_bin": b"",
    "aedat2": b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.Davis346red\r\n",
    "aedat31": b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n",
    "npy": b"\x93NUMPY",
}
SIZES = st.sampled_from([(16, 64), (64, 100), (1 << 18, 1 << 20)])
MUTATIONS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid_files(workdir: Path) -> dict[str, bytes]:
    """A small valid file of every format we can write."""
    files = {}
    for name, fmt in FORMATS.items():
        events = random_events(np.random.default_rng(1), 300, fmt.width, fmt.height)
        files[name] = write_format(workdir, fmt, events, stem=f"valid_{name}").read_bytes()
    events = random_events(np.random.default_rng(1), 300, 64, 64)
    writers.write_npy(workdir / "valid.npy", events, dtype=writers.TONIC_DTYPE)
    files["npy"] = (workdir / "valid.npy").read_bytes()
    writers.write_npz(workdir / "valid.npz", events)
    files["npz"] = (workdir / "valid.npz").read_bytes()
    writers.write_evt3(workdir / "vec.raw", writers.dvs_like_events(300, 1280, 720))
    files["evt3_vectors"] = (workdir / "vec.raw").read_bytes()
    return files


@pytest.fixture(autouse=True)
def quiet_rust_panics() -> Iterator[None]:
    """The aedat package's Rust panics print a backtrace when RUST_BACKTRACE is set; they are expected here."""
    before = os.environ.pop("RUST_BACKTRACE", None)
    yield
    if before is not None:
        os.environ["RUST_BACKTRACE"] = before


def decode_or_format_error(path: Path, fmt: str | None, sizes: tuple[int, int]) -> None:
    chunk_events, buffer_bytes = sizes
    try:
        events, _ = read_events(path, fmt=fmt, chunk_events=chunk_events, buffer_bytes=buffer_bytes)
    except EventFormatError as exc:
        assert exc.path == path
        assert str(path) in str(exc)
        return
    assert events.dtype.names == ("t", "x", "y", "p")


def _mutate(data: bytes, mutations: list[tuple[int, int]], keep: int) -> bytes:
    damaged = bytearray(data)
    for at, value in mutations:
        damaged[at % len(damaged)] = value
    return bytes(damaged[: max(1, keep % (len(damaged) + 1))])


@SETTINGS
@given(fmt=st.sampled_from(sorted(HEADERS)), body=st.binary(max_size=3000), sizes=SIZES)
def test_random_bytes(workdir: Path, fmt: str, body: bytes, sizes: tuple[int, int]) -> None:
    path = workdir / f"random_{fmt}.bin"
    path.write_bytes(HEADERS[fmt] + body)
    decode_or_format_error(path, fmt, sizes)


DAMAGED = ["evt2", "evt3", "evt3_vectors", "dat", "nmnist_bin", "aedat2", "aedat31", "npy", "npz"]


@SETTINGS
@given(name=st.sampled_from(DAMAGED), mutations=MUTATIONS, keep=st.integers(0, 1 << 20), sizes=SIZES)
def test_damaged_valid_files(
    workdir: Path,
    valid_files: dict[str, bytes],
    name: str,
    mutations: list[tuple[int, int]],
    keep: int,
    sizes: tuple[int, int],
) -> None:
    suffix = {"evt3_vectors": ".raw", "npy": ".npy", "npz": ".npz"}.get(name) or FORMATS[name].suffix
    path = workdir / f"damaged_{name}{suffix}"
    path.write_bytes(_mutate(valid_files[name], mutations, keep))
    decode_or_format_error(path, None, sizes)  # detection included: damage may change the format


@settings(max_examples=60, deadline=None)
@given(mutations=MUTATIONS, keep=st.integers(0, 1 << 20))
def test_damaged_aedat4(data_dir: Path, workdir: Path, mutations: list[tuple[int, int]], keep: int) -> None:
    sample = (data_dir / "dvs/aedat4/tonic_sample_dvxplorer.aedat4").read_bytes()
    path = workdir / "damaged.aedat4"
    # Damage the first 64 KB (header and early packets) where the decoder has the most to parse.
    local = [(at % 65536, value) for at, value in mutations]
    path.write_bytes(_mutate(sample, local, keep if keep < len(sample) else len(sample)))
    decode_or_format_error(path, "aedat4", (1 << 18, 1 << 20))
