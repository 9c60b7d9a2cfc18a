"""The command line: exit codes and messages a person (or systemd) can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_util import run_cli
from profile_util import snp_variant

from runtime.replay import ReplayOptions, run_replay
from runtime.sinks.local import JsonlSink


def test_replay_of_a_corrupt_file_names_it_and_exits_3(tmp_path: Path, data_dir: Path) -> None:
    good = data_dir / "audio" / "fsdd" / "3_theo_10.wav"
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:300])
    res = run_cli("replay", good, bad, "--model", "kws-digits", "--json")
    assert res.returncode == 3
    summary = json.loads(res.stdout)
    assert summary["files"] == 1 and summary["skipped_files"] == 1 and summary["decisions"] == 1
    assert "truncated.wav" in res.stderr


def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[[pipelines]]\nname = "x"\nmodel = "kws-digits"\n'
        'source = { kind = "audio_file", paths = ["a.wav"], speeed = 2 }\n'
    )
    res = run_cli("run", cfg)
    assert res.returncode == 2
    assert "pipelines.0.source.audio_file.speeed: Extra inputs are not permitted" in res.stderr


def test_model_that_does_not_fit_exits_4(tmp_path: Path) -> None:
    small = snp_variant(tmp_path, "tiny", 64)
    res = run_cli("models", "check", "kws-digits", "--chip", small, "--json")
    assert res.returncode == 4
    out = json.loads(res.stdout)
    assert out["fits"] is False and out["problems"][0].startswith("neurons: 138 (hidden 128 + out 10) > 64")
    ok = run_cli("models", "check", "kws-digits")
    assert ok.returncode == 0 and "chip snp: 138 neurons" in ok.stdout


def test_unknown_model_exits_4(tmp_path: Path) -> None:
    res = run_cli("replay", tmp_path, "--model", "no-such-model")
    assert res.returncode == 4 and "not in the zoo" in res.stderr


def test_schema_command_exports_json_schema() -> None:
    res = run_cli("schema")
    schemas = json.loads(res.stdout)
    assert schemas["classification"]["properties"]["schema"]["const"] == "spikewire.classification/1"
    assert {"telemetry", "status"} <= set(schemas)


def test_replay_is_deterministic(data_dir: Path, tmp_path: Path) -> None:
    """Same input, model and seed: identical decisions, with mismatch on or off."""
    files = [data_dir / "audio" / "fsdd" / n for n in ("0_george_3.wav", "7_yweweler_12.wav", "9_nicolas_30.wav")]

    def decisions(mismatch: bool, seed: int, name: str) -> list[tuple[str, str, dict[str, float], float]]:
        sink = JsonlSink(tmp_path / f"{name}.jsonl")
        run_replay(ReplayOptions(paths=files, model="kws-digits", mismatch=mismatch, seed=seed, sinks=[sink]))
        rows = [json.loads(line) for line in sink.path.read_text().splitlines()]
        return [
            (r["window"]["stream"], r["label"], r["scores"], r["energy_uj"])
            for r in rows
            if r["schema"].startswith("spikewire.classification")
        ]

    first = decisions(False, 0, "a")
    assert len(first) == 3
    assert decisions(False, 0, "b") == first
    with_mismatch = decisions(True, 3, "c")
    assert decisions(True, 3, "d") == with_mismatch
    assert with_mismatch != first, "mismatch changes the chip, so the scores move"


def test_a_failing_stage_stops_the_pipeline_cleanly(tmp_path: Path, data_dir: Path) -> None:
    """A bad file with on_error=raise ends the pipeline with that error; no stage is left waiting."""
    import asyncio

    from runtime.build import build_pipeline
    from runtime.config import AudioFileSourceConfig, PipelineConfig
    from sensors.blocks import InputError

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    cfg = PipelineConfig(
        name="p",
        source=AudioFileSourceConfig(paths=[data_dir / "audio" / "fsdd" / "3_theo_10.wav", bad], speed="max"),
        model="kws-digits",
    )

    async def main() -> None:
        pipeline = build_pipeline(cfg, "dev", [])
        with pytest.raises(InputError, match=r"bad\.wav"):
            await pipeline.run()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert pending == []
        assert pipeline.telemetry.total.decisions == 1, "the good file before it was decided"

    asyncio.run(main())
