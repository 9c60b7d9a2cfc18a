"""Radar end to end: replay of the Acconeer recordings scored against the reference detectors'
pseudo-labels, every radar file streaming through, and a daemon fed frames over UDP that
publishes window decisions to a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from e2e_util import popen_cli, run_cli
from mqtt_helpers import Broker, Collector, free_port

from runtime.contract import Classification, Telemetry

pytestmark = pytest.mark.slow
CLASSES = ("presence", "hand_motion", "breathing")


def test_replay_reports_per_class_figures_on_pseudo_labels(data_dir: Path) -> None:
    radar = data_dir / "radar"
    proc = run_cli(
        "replay", radar / "acconeer_a121" / "recorded", "--labels", radar / "labels.csv",
        "--label-column", "scenario_label", "--model", "radar-activity", "--json", timeout_s=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    w = s["windows"]
    assert s["chip"] == "snp" and s["files"] == 8 and not s["errors"]
    assert "not human ground truth" in w["labels"]
    # touchless_button has no class and no reference: streamed, decided, not scored.
    assert len(w["referenced_recordings"]) == 7
    assert w["scored"] + w["unconfirmed"] <= s["decisions"]
    held = w["held_out"]
    for figures in (w, held):
        assert set(figures["per_class"]) == set(CLASSES)
        for c in CLASSES:
            f = figures["per_class"][c]
            assert f["n"] > 0 and 0.0 <= f["sensitivity"] <= 1.0
        assert figures["scored"] == sum(figures["confusion"].values())
    assert 0 < held["scored"] < w["scored"]
    # Well above chance (1/3) on the part of each recording the model never saw.
    assert held["accuracy"] > 0.6


@pytest.mark.parametrize(
    ("folder", "extra", "frames"),
    [("acconeer_a111", (), 100), ("ti_fmcw_openradar", ("--chirp", "openradar"), 3)],
)
def test_every_other_radar_file_streams_through(
    data_dir: Path, folder: str, extra: tuple[str, ...], frames: int
) -> None:
    proc = run_cli("replay", data_dir / "radar" / folder, "--model", "radar-activity", *extra, "--json", timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert not s["errors"] and s["skipped_files"] == 0 and s["stream_s"] > 0
    assert s["windows"] == {"referenced_recordings": []}  # unlabelled: nothing scored


@pytest.mark.broker
async def test_daemon_decides_on_radar_frames_sent_over_udp(mosquitto: Broker, tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    cfg = tmp_path / "radar.toml"
    cfg.write_text(
        f"""
device = "radar-test"
stdout = false
[mqtt]
url = "{mosquitto.url}"
[[pipelines]]
name = "radar"
model = "radar-activity"
telemetry_interval_s = 0.5
[pipelines.source]
kind = "radar_udp"
listen = "127.0.0.1:{port}"
"""
    )
    recording = data_dir / "radar" / "acconeer_a121" / "recorded" / "breathing-sitting.h5"
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/radar-test/#") as sub:
        daemon = popen_cli("run", cfg)
        try:
            await sub.wait_for(lambda ms: any(m.topic.endswith("availability") and m.text == "online" for m in ms), 30)
            # 773 frames at 20 Hz (38.6 s) sent at 10x: one decision per second of stream time.
            sender = await asyncio.to_thread(run_cli, "send", recording, f"127.0.0.1:{port}", "--speed", "10")
            assert sender.returncode == 0, sender.stderr
            await sub.wait_for(lambda ms: sum(m.topic.endswith("/radar/classification") for m in ms) >= 30, 30)
            daemon.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(daemon.communicate, timeout=20)
        finally:
            daemon.kill()
        assert daemon.returncode == 0, err
    cls = [Classification.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/classification")]
    tel = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/radar/telemetry")]
    assert all(c.chip == "snp" and c.model.startswith("radar-activity@") and c.label in CLASSES for c in cls)
    assert cls[0].window.stream == f"udp://127.0.0.1:{port}"
    assert tel[-1].drops["source_lost_datagrams"] == 0 and tel[-1].drops["source_incomplete_frames"] == 0
    # A seated person breathing: most windows say so (the model saw the first 60 % of this recording).
    assert sum(c.label == "breathing" for c in cls) > len(cls) / 2
