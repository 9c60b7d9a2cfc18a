"""``spikewire replay --report``: summary.json equals --json, and the figures render, for every modality."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from replay_util import assert_readable_png, fsdd_files, short_record

from runtime.cli import main

pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed: pip install -e .[report]")


def _replay(capsys: pytest.CaptureFixture[str], out: Path, *args: object) -> tuple[dict, dict]:  # type: ignore[type-arg]
    code = main(["replay", *map(str, args), "--json", "--report", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    stdout = json.loads(printed.out)
    doc = json.loads((out / "summary.json").read_text())
    return stdout, doc


def _check(stdout: dict, doc: dict, out: Path, figures: list[str]) -> None:  # type: ignore[type-arg]
    report = doc["report"]
    assert {k: v for k, v in doc.items() if k != "report"} == stdout  # the same summary, plus the report's data
    assert report["figures"] == figures
    assert sorted(p.name for p in out.iterdir()) == sorted(["summary.json", *figures])
    for name in figures:
        assert_readable_png(out / name)
    assert report["decisions"]["total"] == stdout["decisions"]
    assert report["decisions"]["kept"] == min(stdout["decisions"], report["decisions"]["cap"])
    assert sum(report["latency_hist"]["counts"]) == stdout["decisions"]  # none gated in these replays
    assert sum(report["timeline"]["stream_s"]) == pytest.approx(stdout["stream_s"])
    assert report["segments"]["total"] == stdout["files"]
    assert len(report["segments"]["start_s"]) == min(stdout["files"], report["decisions"]["cap"])


ALL = ["confusion.png", "per_class.png", "latency.png", "timeline.png"]


def test_audio_report(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fsdd = data_dir / "audio" / "fsdd"
    stdout, doc = _replay(
        capsys, tmp_path / "r", *fsdd_files(data_dir, 20), "--model", "kws-digits",
        "--labels", fsdd / "labels.csv", "--label-column", "digit", "--report-records", "15",
    )  # fmt: skip
    _check(stdout, doc, tmp_path / "r", ALL)
    rows = doc["report"]["decisions"]
    assert rows["kept"] == 15 and rows["total"] == 20 == stdout["scored"]
    cols = rows["columns"]
    first = dict(zip(cols, rows["rows"][0], strict=True))
    assert doc["report"]["files"][first["file"]].endswith(".wav") and first["truth"] in stdout["per_class"]


def test_ecg_report_scores_beats(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = short_record(data_dir / "ecg" / "mitdb" / "208", tmp_path / "ecg", 60.0)
    stdout, doc = _replay(capsys, tmp_path / "r", record, "--model", "ecg-beats")
    _check(stdout, doc, tmp_path / "r", ALL)
    assert stdout["beats"] > 50 and stdout["held_out"]["per_class"]


def test_radar_report_scores_windows(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    radar = data_dir / "radar"
    files = sorted((radar / "acconeer_a121" / "recorded").glob("breathing*.h5"))[:1]
    files += sorted((radar / "acconeer_a121" / "recorded").glob("presence*.h5"))[:1]
    stdout, doc = _replay(
        capsys, tmp_path / "r", *files, "--model", "radar-activity",
        "--labels", radar / "labels.csv", "--label-column", "scenario_label",
    )  # fmt: skip
    _check(stdout, doc, tmp_path / "r", ALL)
    assert stdout["windows"]["scored"] > 0


def test_dvs_report(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = data_dir / "dvs" / "nmnist"
    labels = folder / "labels.csv"
    rows = [r for r in csv.DictReader(labels.open()) if r["split"] == "test"][:8]
    stdout, doc = _replay(capsys, tmp_path / "r", *(folder / r["file"] for r in rows), "--model", "nmnist",
                          "--labels", labels)  # fmt: skip
    _check(stdout, doc, tmp_path / "r", ALL)
    assert stdout["scored"] == 8


def test_unlabelled_replay_reports_what_it_can(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout, doc = _replay(capsys, tmp_path / "r", *fsdd_files(data_dir, 3), "--model", "kws-digits")
    _check(stdout, doc, tmp_path / "r", ["latency.png", "timeline.png"])
