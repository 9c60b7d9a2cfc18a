"""DVS file readers: the real samples, round trips through every writer, streaming, wraps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dvs_fixtures import FORMATS, assert_same_events, evt3_word_types, random_events, write_format

from sensors.dvs import writers
from sensors.dvs.decode_bench import bench_decode
from sensors.dvs.eventfile import read_header_lines
from sensors.dvs.reader import detect_format, open_events, read_events

DVS = Path("dvs")


# ---------------------------------------------------------------------------------------------- samples


def test_evt2_sample_matches_provenance(data_dir: Path) -> None:
    events, info = read_events(data_dir / DVS / "prophesee_evt2/faery_evt2_gen3_640x480.raw")
    assert (info.format, info.width, info.height) == ("evt2", 640, 480)  # from plugin hal_plugin_gen3_fx3
    assert int((~events["p"]).sum()) == 335_391
    assert int(events["p"].sum()) == 185_861
    assert int(events["t"][0]) == 913_716_224
    assert int(events["t"].max()) + 1 == 913_812_096  # faery states the range with an exclusive end
    assert bool((np.diff(events["t"]) >= 0).all())


def test_evt3_sample_matches_provenance(data_dir: Path) -> None:
    path = data_dir / DVS / "prophesee_evt3/expelliarmus_evt3_sample_gen41_1280x720.raw"
    events, info = read_events(path)
    assert (info.format, info.width, info.height) == ("evt3", 1280, 720)
    assert events.shape == (219_596,)
    # Repeated TIME_HIGH words are not wraps: the range stays 8.8 ms.
    assert (int(events["t"].min()), int(events["t"].max())) == (11_718_656, 11_727_457)
    assert int(events["x"].max()) < 1280
    assert int(events["y"].max()) < 720


def test_evt3_sample_same_with_tiny_chunks_and_buffer(data_dir: Path) -> None:
    path = data_dir / DVS / "prophesee_evt3/expelliarmus_evt3_sample_gen41_1280x720.raw"
    whole, _ = read_events(path)
    pieces, _ = read_events(path, chunk_events=37, buffer_bytes=67)  # odd sizes split words and vectors
    assert_same_events(pieces, whole)


def test_dat_sample_matches_provenance(data_dir: Path) -> None:
    events, info = read_events(data_dir / DVS / "prophesee_dat/tonic_sample_ncars.dat")
    assert info.format == "dat"
    assert (info.width, info.height) == (None, None)  # the N-CARS header has no Width/Height lines
    assert events.shape == (2009,)
    assert (int(events["t"].min()), int(events["t"].max())) == (0, 99_952)
    assert int(events["x"].max()) <= 77
    assert int(events["y"].max()) <= 41


def _nmnist_numpy(path: Path) -> tuple[np.ndarray, ...]:
    """Independent decode of an N-MNIST file, straight from the documented byte layout."""
    raw = np.fromfile(path, np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return t, raw[:, 0], raw[:, 1], raw[:, 2] >> 7 == 1


def test_nmnist_sample_matches_numpy_decode(data_dir: Path) -> None:
    path = data_dir / DVS / "nmnist_bin_misc/tonic_sample_nmnist.bin"
    events, info = read_events(path)
    assert (info.format, info.width, info.height) == ("nmnist_bin", 34, 34)
    assert events.shape == (4325,)
    t, x, y, p = _nmnist_numpy(path)
    for name, expected in zip("txyp", (t, x, y, p), strict=True):
        np.testing.assert_array_equal(events[name], expected)


def test_every_nmnist_file_decodes(data_dir: Path) -> None:
    files = sorted((data_dir / DVS / "nmnist").glob("*/*.bin"))
    assert len(files) == 1090
    for path in files:
        events, _ = read_events(path)
        assert events.shape[0] == path.stat().st_size // 5 > 0, path
        assert int(events["x"].max()) < 34 and int(events["y"].max()) < 34, path
        assert bool((np.diff(events["t"]) >= 0).all()), path


def test_aedat4_sample(data_dir: Path) -> None:
    with open_events(data_dir / DVS / "aedat4/tonic_sample_dvxplorer.aedat4", chunk_events=5000) as reader:
        chunks = list(reader)
        assert (reader.info.format, reader.info.width, reader.info.height) == ("aedat4", 320, 240)
        assert reader.skipped["imu_samples"] == 475
        assert reader.skipped["triggers"] == 0
    events = np.concatenate(chunks)
    assert events.shape == (111_954,)
    assert max(len(c) for c in chunks) == 5000
    assert 1.6e15 < events["t"][0] < 1.7e15  # absolute Unix µs (2020-11-16), as stored
    assert int(events["t"][-1] - events["t"][0]) < 600_000


def test_aedat2_header_only_sample_gives_no_events(data_dir: Path) -> None:
    path = data_dir / DVS / "aedat2/tonic_sample_aedat_header_only.aedat"
    with open_events(path) as reader:
        assert list(reader) == []
        assert reader.info.header["AEChip"] == "eu.seebetter.ini.chips.davis.Davis346red"
        assert (reader.info.width, reader.info.height) == (346, 260)
        assert reader.bytes_read == path.stat().st_size == 599


def test_every_sample_file_is_detected(data_dir: Path) -> None:
    expected = {".raw": {"evt2", "evt3"}, ".dat": {"dat"}, ".bin": {"nmnist_bin"}, ".aedat": {"aedat2"}}
    expected[".aedat4"] = {"aedat4"}
    files = [p for p in (data_dir / DVS).rglob("*") if p.is_file() and p.suffix != ".csv"]
    assert files
    for path in files:
        assert detect_format(path) in expected[path.suffix], path


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize(("chunk_events", "buffer_bytes"), [(1 << 18, 1 << 20), (16, 64), (1000, 333)])
def test_round_trip(tmp_path: Path, name: str, chunk_events: int, buffer_bytes: int) -> None:
    fmt = FORMATS[name]
    events = random_events(np.random.default_rng(7), 20_000, fmt.width, fmt.height)
    path = write_format(tmp_path, fmt, events)
    assert detect_format(path) == name
    with open_events(path, chunk_events=chunk_events, buffer_bytes=buffer_bytes) as reader:
        chunks = list(reader)
        assert reader.events_read == events.shape[0]
        assert reader.bytes_read == path.stat().st_size
    assert all(0 < len(c) <= chunk_events for c in chunks)
    assert_same_events(np.concatenate(chunks), events)


@pytest.mark.parametrize("name", [n for n, f in sorted(FORMATS.items()) if f.wrap_us is not None])
def test_round_trip_across_counter_wraps(tmp_path: Path, name: str) -> None:
    fmt = FORMATS[name]
    assert fmt.wrap_us is not None
    rng = np.random.default_rng(3)
    # Start just below the wrap; for the short counters also cross it a few more times.
    max_dt = max(3, min(4096, fmt.wrap_us * 3 // 20_000))
    events = random_events(rng, 20_000, fmt.width, fmt.height, t0=fmt.wrap_us - 5_000, max_dt=max_dt)
    assert int(events["t"][-1]) > fmt.wrap_us
    path = write_format(tmp_path, fmt, events)
    got, _ = read_events(path, chunk_events=999, buffer_bytes=1000)
    assert_same_events(got, events)


def test_evt2_repeated_time_high_and_triggers(tmp_path: Path) -> None:
    events = random_events(np.random.default_rng(1), 10_000, 640, 480, t0=(1 << 34) - 3000, max_dt=2)
    path = tmp_path / "e.raw"
    writers.write_evt2(path, events, time_high_every=3, trigger_every=10)
    with open_events(path, chunk_events=100, buffer_bytes=100) as reader:
        got = np.concatenate(list(reader))
        assert reader.skipped["ext_trigger"] == 1000
    assert_same_events(got, events)


def test_evt3_vectors_repeated_time_high_and_wraps(tmp_path: Path) -> None:
    rows = writers.dvs_like_events(30_000, 1280, 720, rate_hz=2e3, seed=5)  # ~15 s: crosses 2**24 µs
    rows["t"] += (1 << 24) - 2_000_000
    path = tmp_path / "v.raw"
    writers.write_evt3(path, rows, time_high_every=5, trigger_every=1000)
    counts = evt3_word_types(path, read_header_lines(path, b"%", end_line=b"% end").data_offset)
    assert counts[0x4] > 100 and counts[0x5] > 100 and counts[0x3] > 100  # VECT_12, VECT_8, VECT_BASE_X
    assert counts[0x8] > np.unique(rows["t"] >> 12).size  # repeated TIME_HIGH words
    with open_events(path, chunk_events=16, buffer_bytes=64) as reader:
        got = np.concatenate(list(reader))
        assert reader.skipped["ext_trigger"] == 30
    assert_same_events(got, rows)
    flat = tmp_path / "flat.raw"
    writers.write_evt3(flat, rows, vectorize=False)
    assert evt3_word_types(flat, read_header_lines(flat, b"%", end_line=b"% end").data_offset)[0x4] == 0
    assert_same_events(read_events(flat)[0], rows)


def test_evt3_events_before_time_base_are_counted(tmp_path: Path) -> None:
    words = np.array([0x2005, 0x0003, 0x2006, 0x8001, 0x6002, 0x2007], "<u2")  # X, Y, X, TIME_HIGH, TIME_LOW, X
    path = tmp_path / "early.raw"
    path.write_bytes(b"% evt 3.0\n" + words.tobytes())
    with open_events(path) as reader:
        got = np.concatenate(list(reader))
        assert reader.skipped["before_time_high"] == 2
    assert got.tolist() == [((1 << 12) + 2, 7, 3, False)]


def test_evt3_wrap_before_the_first_row(tmp_path: Path) -> None:
    words = np.array([0x8005, 0x8003, 0x0009, 0x6010, 0x2804], "<u2")  # TIME_HIGH 5, 3 (wrap), Y, TIME_LOW, X
    path = tmp_path / "wrap.raw"
    path.write_bytes(b"% evt 3.0\n" + words.tobytes())
    events, _ = read_events(path)
    assert events.tolist() == [((1 << 24) + (3 << 12) + 0x10, 4, 9, True)]


def test_aedat2_layouts_and_skipped_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    davis = random_events(rng, 5000, 346, 260)
    path = tmp_path / "davis.aedat"
    writers.write_aedat2(path, davis, aps_every=4, imu_every=50)
    with open_events(path, chunk_events=64, buffer_bytes=100) as reader:
        got = np.concatenate(list(reader))
        assert reader.skipped["aps_samples"] == 1250
        assert reader.skipped["imu_samples"] == 100
    assert_same_events(got, davis)
    dvs128 = random_events(rng, 5000, 128, 128)
    path = tmp_path / "dvs128.aedat"
    writers.write_aedat2(path, dvs128, chip="dvs128")
    events, info = read_events(path)
    assert (info.width, info.height) == (128, 128)
    assert_same_events(events, dvs128)


def test_aedat31_skips_invalid_events_and_other_packets(tmp_path: Path) -> None:
    events = random_events(np.random.default_rng(4), 10_000, 128, 128, t0=(1 << 31) - 4000)
    path = tmp_path / "g.aedat"
    writers.write_aedat31(path, events, packet_events=500, invalid_every=10, special_every=2)
    with open_events(path, chunk_events=77, buffer_bytes=90) as reader:
        got = np.concatenate(list(reader))
        assert reader.info.format == "aedat31"
        assert (reader.info.width, reader.info.height) == (128, 128)
        assert reader.skipped["invalid"] == 1000
        assert reader.skipped["special"] > 0
    assert_same_events(got, events)


@pytest.mark.parametrize("layout", ["canonical", "tonic", "npz", "npz_columns", "npz_stored"])
def test_numpy_files(tmp_path: Path, layout: str) -> None:
    events = random_events(np.random.default_rng(5), 3000, 200, 100)
    path = tmp_path / ("e.npy" if layout in ("canonical", "tonic") else "e.npz")
    if layout == "canonical":
        writers.write_npy(path, events)
    elif layout == "tonic":
        writers.write_npy(path, events, dtype=writers.TONIC_DTYPE)
    else:
        writers.write_npz(path, events, columns=layout == "npz_columns", compressed=layout != "npz_stored")
    got, info = read_events(path, chunk_events=100, sensor_size=(200, 100))
    assert (info.format, info.width, info.height) == ("npy", 200, 100)
    assert_same_events(got, events)


def test_numpy_signed_polarity(tmp_path: Path) -> None:
    data = np.zeros(4, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
    data["t"] = [1, 2, 3, 4]
    data["p"] = [-1, 1, 0, 1]
    path = tmp_path / "s.npy"
    np.save(path, data)
    events, _ = read_events(path)
    assert events["p"].tolist() == [False, True, False, True]


# ---------------------------------------------------------------------------------------------- streaming


def test_streaming_millions_of_events_matches_one_read(tmp_path: Path) -> None:
    events = writers.dvs_like_events(2_000_000, 1280, 720, seed=9)
    path = tmp_path / "big.raw"
    writers.write_evt3(path, events, time_high_every=50)
    chunks: list[np.ndarray] = []
    with open_events(path, chunk_events=4096, buffer_bytes=5000) as reader:
        chunks.extend(reader)
    assert len(chunks) > 400
    assert not np.shares_memory(chunks[0], chunks[1])  # fresh arrays: a consumer may keep them
    assert_same_events(np.concatenate(chunks), read_events(path, chunk_events=1 << 22)[0])
    assert_same_events(np.concatenate(chunks), events)


def test_bench_decode_reports_every_format(tmp_path: Path) -> None:
    result = bench_decode(n_events=20_000, repeat=2, workdir=tmp_path)
    assert set(result) == {"evt2", "evt3", "dat", "nmnist_bin", "aedat2", "aedat31", "npy"}
    for fmt, figures in result.items():
        runs, rate = figures["runs"], figures["mev_per_s"]
        assert figures["events"] == 20_000, fmt
        assert isinstance(runs, list) and len(runs) == 2, fmt
        assert isinstance(rate, float) and rate > 0, fmt
    assert list(tmp_path.iterdir()) == []  # fixtures removed
