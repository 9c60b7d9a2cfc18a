"""ECG file replay (sensors/ecg/source.py, file_config.py) on the real records and on small records made here."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import wfdb
from pydantic import ValidationError

from sensors.audio.resample import StreamingResampler, sample_time_us
from sensors.blocks import EndOfStream, InputError, SampleBlock
from sensors.ecg import read_wfdb
from sensors.ecg.file_config import EcgFileSourceConfig, ecg_file_source
from sensors.ecg.source import EcgFileSource


@pytest.fixture(scope="module")
def ecg_dir(data_dir: Path) -> Path:
    return data_dir / "ecg"


async def collect(src: EcgFileSource, max_eos: int | None = None) -> tuple[list[SampleBlock], list[EndOfStream]]:
    blocks: list[SampleBlock] = []
    ends: list[EndOfStream] = []
    async for item in src:
        if isinstance(item, SampleBlock):
            blocks.append(item)
        else:
            ends.append(item)
            if max_eos is not None and len(ends) >= max_eos:
                break
    return blocks, ends


def stream_data(blocks: list[SampleBlock], stream: str | None = None) -> npt.NDArray[np.float32]:
    return np.concatenate([b.data for b in blocks if stream is None or b.stream == stream])


def hold_fill(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Forward fill of NaNs per column (0 before the first valid value), written independently of the kernel."""
    out = x.copy()
    for c in range(out.shape[1]):
        for i in np.flatnonzero(np.isnan(out[:, c])):  # increasing: out[i - 1] is already filled
            out[i, c] = out[i - 1, c] if i > 0 else 0.0
    return out


def write_gap_record(dirpath: Path, gap_start: int, gap_len: int, n: int = 2000, rate_hz: int = 250) -> Path:
    """A format-16 WFDB record with a run of invalid samples (-32768) in lead 'II'."""
    digital = (np.round(200 * np.sin(np.arange(n) / 10))).astype(np.int32).reshape(-1, 1)
    digital = np.hstack([digital, digital // 2])
    digital[gap_start : gap_start + gap_len, 0] = -32768
    wfdb.wrsamp("gap", fs=rate_hz, units=["mV", "mV"], sig_name=["II", "V"], d_signal=digital, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(dirpath))  # fmt: skip
    return dirpath / "gap"


async def test_native_rate_blocks_and_timing(ecg_dir: Path) -> None:
    rec = ecg_dir / "mitdb/208"
    src = EcgFileSource([rec], None, block_ms=1000.0, speed="max")
    blocks, ends = await collect(src)
    whole = read_wfdb(rec, lead=0).signals_mv
    np.testing.assert_array_equal(stream_data(blocks), whole)
    assert all(b.data.dtype == np.float32 and b.data.shape[1] == 1 for b in blocks)
    assert {b.n_samples for b in blocks[:-1]} == {360}
    first = 0
    for b in blocks:
        assert (b.first_sample, b.t0_us, b.rate_hz, b.stream) == (first, sample_time_us(first, 360.0), 360.0, str(rec))
        first += b.n_samples
    [end] = ends
    assert end.t_end_us == sample_time_us(650_000, 360.0)
    assert end.meta == {"record": str(rec), "rate_hz": "360", "lead": "MLII", "unit": "mV"}
    assert src.files_done == 1
    assert src.drops() == {"nan_samples": 0, "nan_runs": 0, "skipped_files": 0}


async def test_resampled_v102s_length_timing_and_values(ecg_dir: Path) -> None:
    rec = ecg_dir / "challenge2015/v102s"
    blocks, ends = await collect(EcgFileSource([rec], 360.0, lead="II", block_ms=100.0, speed="max"))
    data = stream_data(blocks)
    assert data.shape == (75_000 * 360 // 250, 1)
    assert ends[0].t_end_us == 300_000_000
    assert ends[0].meta["rate_hz"] == "250"
    assert blocks[-1].t0_us == sample_time_us(blocks[-1].first_sample, 360.0)
    # Reference: whole record, repaired here, resampled in one go.
    resampler = StreamingResampler(250.0, 360.0, 1)
    repaired = hold_fill(read_wfdb(rec, lead="II").signals_mv)
    expected = np.concatenate([resampler.process(repaired), resampler.flush()])
    np.testing.assert_array_equal(data, expected)


@pytest.mark.parametrize(("block_ms", "chunk"), [(7.0, 999), (250.0, 5000), (40.0, 75_000)])
async def test_block_split_invariance(ecg_dir: Path, block_ms: float, chunk: int) -> None:
    rec = ecg_dir / "challenge2015/v102s"
    ref, _ = await collect(EcgFileSource([rec], 360.0, lead=["II", "V"], block_ms=100.0, speed="max"))
    got, _ = await collect(
        EcgFileSource([rec], 360.0, lead=["II", "V"], block_ms=block_ms, speed="max", chunk_samples=chunk)
    )
    assert stream_data(ref).shape == (108_000, 2)
    np.testing.assert_array_equal(stream_data(got), stream_data(ref))


@pytest.mark.parametrize("nan", ["hold", "zero"])
async def test_nan_repair_on_v102s(ecg_dir: Path, nan: str) -> None:
    rec = ecg_dir / "challenge2015/v102s"
    whole = read_wfdb(rec).signals_mv
    src = EcgFileSource([rec], None, lead=None, block_ms=500.0, speed="max", nan=nan)  # type: ignore[arg-type]
    blocks, _ = await collect(src)
    data = stream_data(blocks)
    bad = np.isnan(whole)
    assert not np.isnan(data).any()
    np.testing.assert_array_equal(data[~bad], whole[~bad])
    expected = hold_fill(whole)[bad] if nan == "hold" else np.zeros(int(bad.sum()), dtype=np.float32)
    np.testing.assert_array_equal(data[bad], expected)
    # Every gap in v102s is a single sample: as many runs as samples.
    assert src.drops()["nan_samples"] == int(bad.sum()) == src.drops()["nan_runs"]


async def test_nan_error_policy_names_file_time_and_lead(ecg_dir: Path) -> None:
    rec = ecg_dir / "challenge2015/v102s"
    first_nan = int(np.flatnonzero(np.isnan(read_wfdb(rec, lead="II").signals_mv[:, 0]))[0])
    src = EcgFileSource([rec], None, lead="II", speed="max", nan="error")
    with pytest.raises(InputError) as info:
        await collect(src)
    assert str(rec) in str(info.value)
    assert f"at {first_nan / 250:.3f} s" in str(info.value)
    assert "lead II: 1 invalid (NaN) sample(s)" in str(info.value)


@pytest.mark.parametrize("chunk", [30, 10_000])
async def test_long_nan_run_is_an_error(tmp_path: Path, chunk: int) -> None:
    rec = write_gap_record(tmp_path, gap_start=500, gap_len=100)  # 400 ms at 250 Hz
    src = EcgFileSource([rec], None, speed="max", max_nan_ms=200.0, chunk_samples=chunk, on_error="skip")
    blocks, ends = await collect(src)
    [error] = src.errors
    assert str(rec) in str(error)
    assert "100 invalid (NaN) sample(s) in a run at 2.000 s (400.0 ms), longer than max_nan_ms=200" in str(error)
    # What went out before the run grew too long holds at most max_nan_ms of repaired samples.
    n_out = sum(b.n_samples for b in blocks)
    assert n_out <= 500 + 50
    if chunk < 500:
        assert n_out > 0
        np.testing.assert_array_equal(stream_data(blocks)[:500], read_wfdb(rec, lead=0).signals_mv[:500])
        assert ends[0].meta["error"] == str(error)  # the record still ends, with the error in its meta
    else:
        assert ends == []  # the error came before any block: nothing to end
    assert src.drops()["skipped_files"] == 1


async def test_nan_run_within_limit_is_held(tmp_path: Path) -> None:
    rec = write_gap_record(tmp_path, gap_start=0, gap_len=100)
    src = EcgFileSource([rec], None, speed="max", max_nan_ms=400.0, chunk_samples=64)
    blocks, _ = await collect(src)
    data = stream_data(blocks)
    assert np.all(data[:100] == 0)  # no valid value before the gap: hold gives 0
    np.testing.assert_array_equal(data[100:], read_wfdb(rec, lead=0).signals_mv[100:])
    assert src.drops() == {"nan_samples": 100, "nan_runs": 1, "skipped_files": 0}


async def test_rate_that_cannot_be_resampled(ecg_dir: Path) -> None:
    src = EcgFileSource([ecg_dir / "mitdb/208"], 360.001, speed="max")
    with pytest.raises(InputError, match=r"208: cannot resample its 360 Hz to 360.001 Hz"):
        await collect(src)


async def test_missing_lead_is_an_error(ecg_dir: Path) -> None:
    with pytest.raises(InputError, match=r"no lead 'V5'; its leads are \['MLII', 'V1'\]"):
        await collect(EcgFileSource([ecg_dir / "mitdb/208"], None, lead="V5", speed="max"))


async def test_bad_files_skip_and_raise(ecg_dir: Path, tmp_path: Path) -> None:
    for suffix in (".hea", ".dat"):
        shutil.copyfile(ecg_dir / f"mitdb/100{suffix}", tmp_path / f"100{suffix}")
    shutil.copyfile(ecg_dir / "mitdb/208.hea", tmp_path / "208.hea")  # no .dat
    (tmp_path / "broken.edf").write_bytes(b"not an edf file at all" * 20)
    skip = EcgFileSource([tmp_path], None, block_ms=10_000.0, speed="max", on_error="skip")
    blocks, ends = await collect(skip)
    assert [e.stream for e in ends] == [str(tmp_path / "100")]
    assert stream_data(blocks).shape == (650_000, 1)
    assert [("208.dat" in str(e), "broken.edf" in str(e)) for e in skip.errors] == [(True, False), (False, True)]
    assert skip.drops()["skipped_files"] == 2
    with pytest.raises(InputError, match=r"208\.dat: signal file named in 208\.hea not found"):
        await collect(EcgFileSource([tmp_path], None, block_ms=10_000.0, speed="max"))


async def test_labels_loop_and_multi_lead(ecg_dir: Path) -> None:
    rec = ecg_dir / "challenge2015/v102s.hea"
    labels = {str((ecg_dir / "challenge2015/v102s").resolve()): "false alarm"}
    src = EcgFileSource([rec], None, lead=[0, "V"], block_ms=5000.0, speed="max", loop=True, labels=labels)
    blocks, ends = await collect(src, max_eos=2)
    assert [e.label for e in ends] == ["false alarm", "false alarm"]
    assert ends[0].meta["lead"] == "II,V"
    assert {b.data.shape[1] for b in blocks} == {2}
    assert sum(b.n_samples for b in blocks) == 2 * 75_000
    assert src.files_done == 2


async def test_paced_replay_releases_blocks(ecg_dir: Path) -> None:
    src = EcgFileSource([ecg_dir / "challenge2015/v102s"], None, block_ms=1000.0, speed=1000.0)
    blocks, ends = await collect(src)
    assert sum(b.n_samples for b in blocks) == 75_000 and len(ends) == 1


@pytest.mark.parametrize(
    "kw",
    [{"block_ms": 0.0}, {"speed": 0.0}, {"speed": "fast"}, {"nan": "drop"}, {"max_nan_ms": -1.0}, {"rate_hz": -5.0}],
)
def test_bad_arguments(ecg_dir: Path, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):
        EcgFileSource([ecg_dir / "mitdb/208"], **kw)


def test_config_fields_and_defaults() -> None:
    cfg = EcgFileSourceConfig.model_validate({"paths": ["a"], "lead": "MLII", "speed": "max", "nan": "zero"})
    assert (cfg.kind, cfg.lead, cfg.speed, cfg.nan, cfg.loop) == ("ecg_file", "MLII", "max", "zero", False)
    assert EcgFileSourceConfig.model_validate({"paths": ["a"], "lead": [0, "V1"]}).lead == [0, "V1"]
    bad_inputs: list[dict[str, Any]] = [
        {"paths": []},
        {"paths": ["a"], "lead_name": "x"},
        {"paths": ["a"], "nan": "drop"},
    ]
    for bad in bad_inputs:
        with pytest.raises(ValidationError):
            EcgFileSourceConfig.model_validate(bad)
    assert all(f.description for f in EcgFileSourceConfig.model_fields.values() if f.default != "ecg_file")


async def test_factory_builds_the_configured_source(ecg_dir: Path) -> None:
    cfg = EcgFileSourceConfig(paths=[ecg_dir / "challenge2015/v102s"], lead="V", speed="max", block_ms=200.0)
    src = ecg_file_source(cfg, 360.0, {}, on_error="skip")
    assert (src.lead, src.speed, src.block_ms, src.rate_hz, src.on_error) == ("V", None, 200.0, 360.0, "skip")
    blocks, ends = await collect(src)
    assert {b.n_samples for b in blocks[:-1]} == {72}
    assert stream_data(blocks).shape == (108_000, 1) and ends[0].meta["lead"] == "V"


async def test_edf_and_csv_records_in_one_replay(tmp_path: Path) -> None:
    import edfio

    t = np.arange(2560) / 256
    uv = 900.0 * np.sin(2 * np.pi * 1.1 * t)
    edfio.Edf([edfio.EdfSignal(uv, 256, label="ECG I", physical_dimension="uV")]).write(tmp_path / "a.edf")
    (tmp_path / "b.csv").write_text("ecg\n" + "\n".join(f"{v:.4f}" for v in np.cos(t[:1000])) + "\n")
    src = EcgFileSource([tmp_path], 360.0, block_ms=250.0, speed="max", csv_rate_hz=256.0)
    blocks, ends = await collect(src)
    assert [e.meta["record"] for e in ends] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert [e.meta["unit"] for e in ends] == ["mV", "mV"]
    assert [e.t_end_us for e in ends] == [10_000_000, sample_time_us(-(-1000 * 360 // 256), 360.0)]
    edf_out = stream_data(blocks, str(tmp_path / "a.edf"))
    assert edf_out.shape == (3600, 1)
    # Resampled from uV to mV: the sine keeps its amplitude (0.9 mV) away from the edges.
    assert abs(float(np.abs(edf_out[360:-360]).max()) - 0.9) < 0.01
