"""ECG end to end: replay scored against the record's annotations, and live serial / UDP sources
feeding a running daemon that publishes beat decisions to a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tty
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from e2e_util import popen_cli, run_cli
from mqtt_helpers import Broker, Collector, free_port

from runtime.contract import Classification, Telemetry
from sensors.ecg.annotations import read_annotations
from sensors.ecg.records import read_wfdb

pytestmark = pytest.mark.slow


def test_replay_scores_beats_against_the_annotations(data_dir: Path) -> None:
    record = data_dir / "ecg" / "mitdb" / "208"
    proc = run_cli("replay", record, "--model", "ecg-beats", "--json", timeout_s=300)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    beats = read_annotations(record).beats().counts()
    assert s["chip"] == "dynapse2" and s["annotated_records"] == ["208"]
    assert s["per_class"]["V"]["n"] == beats["V"] and s["per_class"]["N"]["n"] == beats["N"]
    for figures in (s["per_class"], s["held_out"]["per_class"]):
        for label in ("N", "V"):
            assert 0.0 <= figures[label]["sensitivity"] <= 1.0 and 0.0 <= figures[label]["ppv"] <= 1.0
    # The held-out part is the model's declared test segment: fewer beats than the whole record.
    assert 0 < s["held_out"]["per_class"]["V"]["n"] < s["per_class"]["V"]["n"]
    assert s["unscored_beats"] == beats.get("F", 0) + beats.get("Q", 0) + beats.get("S", 0)
    assert s["beats_detected"] > 0.95 * s["beats"]
    # Every decision is accounted for: on a scored beat, on an unscored one, or on no beat at all.
    on_beats = sum(s["confusion"].values()) + s["decisions_on_unscored"]
    assert s["decisions"] == on_beats + sum(s["extra_decisions"].values())


def test_unannotated_record_streams_through(data_dir: Path) -> None:
    record = data_dir / "ecg" / "mitdb_signals_only" / "106"
    proc = run_cli("replay", record, "--model", "ecg-beats", "--json", timeout_s=300)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["annotated_records"] == [] and s["decisions"] > 1000  # ~30 min of beats at 60-90 bpm
    assert s["stream_s"] == pytest.approx(650_000 / 360, abs=0.01)


def _daemon_config(tmp_path: Path, broker: Broker, source: str) -> Path:
    cfg = tmp_path / "ecg.toml"
    cfg.write_text(
        f"""
device = "ecg-test"
stdout = false
[mqtt]
url = "{broker.url}"
[[pipelines]]
name = "ecg"
model = "ecg-beats"
telemetry_interval_s = 0.5
[pipelines.source]
{source}
"""
    )
    return cfg


async def _beats_from_daemon(
    broker: Broker, cfg: Path, feed: Callable[[], Awaitable[None]], n_beats: int
) -> tuple[list[Classification], list[Telemetry]]:
    async with Collector(broker.host, broker.port, "spikewire/ecg-test/#") as sub:
        daemon = popen_cli("run", cfg)
        try:
            await sub.wait_for(lambda ms: any(m.topic.endswith("availability") and m.text == "online" for m in ms), 30)
            await feed()
            await sub.wait_for(
                lambda ms: sum(m.topic.endswith("/ecg/classification") for m in ms) >= n_beats, timeout_s=30
            )
            daemon.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(daemon.communicate, timeout=20)
        finally:
            daemon.kill()
        assert daemon.returncode == 0, err
    tel = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/ecg/telemetry")]
    cls = [Classification.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/classification")]
    assert tel and all(c.chip == "dynapse2" and c.model.startswith("ecg-beats@") for c in cls)
    return cls, tel


def _expected_beats(data_dir: Path, seconds: float) -> int:
    beats = read_annotations(data_dir / "ecg" / "mitdb" / "208").beats()
    return int((beats.t_us < seconds * 1e6).sum())


@pytest.mark.broker
async def test_daemon_classifies_beats_sent_over_udp(mosquitto: Broker, tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    source = f'kind = "ecg_udp"\nlisten = "127.0.0.1:{port}"\nchannels = 1\nrate_hz = 360.0'
    cfg = _daemon_config(tmp_path, mosquitto, source)
    record = data_dir / "ecg" / "mitdb" / "208"

    async def feed() -> None:
        args = ("send", record, f"127.0.0.1:{port}", "--lead", "MLII", "--speed", "10", "--duration", "20")
        sender = await asyncio.to_thread(run_cli, *args)
        assert sender.returncode == 0, sender.stderr

    expected = _expected_beats(data_dir, 20.0)
    cls, tel = await _beats_from_daemon(mosquitto, cfg, feed, expected - 3)
    assert cls[0].window.stream == f"udp://127.0.0.1:{port}" and cls[0].label in ("N", "V")
    assert tel[-1].drops["source_lost_datagrams"] == 0 and tel[-1].drops["source_bad_datagrams"] == 0
    # One decision per beat: 20 s of record 208 hold `expected` annotated beats.
    assert expected - 3 <= len(cls) <= expected + 3


@pytest.mark.broker
async def test_daemon_classifies_beats_read_from_a_serial_port(
    mosquitto: Broker, tmp_path: Path, data_dir: Path
) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # a microcontroller's CDC port: bytes as they are, no line discipline
    port = os.ttyname(slave)
    try:
        source = f'kind = "ecg_serial"\nport = "{port}"\nprotocol = "text"\nrate_hz = 360.0'
        cfg = _daemon_config(tmp_path, mosquitto, source)
        rec = read_wfdb(data_dir / "ecg" / "mitdb" / "208", lead="MLII")
        lines = [f"{v:.3f}\n".encode() for v in np.nan_to_num(rec.signals_mv[: 20 * 360, 0])]

        async def feed() -> None:
            # 20 s of samples at 10x real time, in 100 ms chunks, as a UART would deliver them.
            for k in range(0, len(lines), 36):
                os.write(master, b"".join(lines[k : k + 36]))
                await asyncio.sleep(0.01)

        expected = _expected_beats(data_dir, 20.0)
        cls, tel = await _beats_from_daemon(mosquitto, cfg, feed, expected - 4)
    finally:
        os.close(master)
        os.close(slave)
    assert port in cls[0].window.stream and cls[0].label in ("N", "V")
    assert tel[-1].drops["source_malformed_lines"] == 0
    assert expected - 4 <= len(cls) <= expected + 3


@pytest.mark.broker
async def test_daemon_outlives_a_serial_port_that_is_not_there(mosquitto: Broker, tmp_path: Path) -> None:
    port = tmp_path / "ttyACM9"  # never created: the board is unplugged at boot
    source = f'kind = "ecg_serial"\nport = "{port}"\nprotocol = "text"\nrate_hz = 360.0'
    cfg = _daemon_config(tmp_path, mosquitto, source)
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/ecg-test/#") as sub:
        proc = await asyncio.to_thread(run_cli, "run", cfg, "--duration", "4", timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    assert str(port) in proc.stderr and "reopening" in proc.stderr
    assert proc.stderr.count("reopening") == 1  # logged once per burst, not once per attempt
    tel = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/ecg/telemetry")]
    assert tel and tel[-1].drops["source_device_reopens"] >= 2
