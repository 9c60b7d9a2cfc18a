"""spikewire replay end to end: FSDD recordings -> snp -> a real Mosquitto -> a subscriber."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from e2e_util import fsdd_sample, popen_cli, run_cli
from mqtt_helpers import Broker, Collector, dedupe, seqs

from runtime.contract import Classification, Status, Telemetry

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_replay_publishes_one_valid_classification_per_file(mosquitto: Broker, data_dir: Path) -> None:
    files = fsdd_sample(data_dir, per_digit=3)
    labels = data_dir / "audio" / "fsdd" / "labels.csv"
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/e2e/#") as sub:
        proc = await asyncio.to_thread(
            run_cli,
            "replay",
            *files,
            "--model",
            "kws-digits",
            "--labels",
            labels,
            "--label-column",
            "digit",
            "--speed",
            "max",
            "--mqtt",
            mosquitto.url,
            "--device",
            "e2e",
            "--json",
        )
        assert proc.returncode == 0, proc.stderr
        await sub.wait_for(lambda ms: any(m.topic.endswith("availability") and m.text == "offline" for m in ms))
    summary = json.loads(proc.stdout)
    for key in ("files", "decisions", "accuracy", "rtf", "latency_ms", "energy_uj_per_decision", "power_mw_mean"):
        assert key in summary
    assert summary["files"] == summary["decisions"] == summary["scored"] == len(files)
    assert set(summary["latency_ms"]) >= {"p50", "p95", "p99"} and summary["rtf"] > 1

    decisions = [
        Classification.model_validate_json(m.payload)
        for m in sub.messages
        if m.topic == "spikewire/e2e/replay/classification"
    ]
    assert [d.seq for d in decisions] == list(range(1, len(files) + 1))
    assert [d.window.stream for d in decisions] == [str(f) for f in files]
    expected = {str(f): f.name.split("_")[0] for f in files}
    assert all(d.truth == expected[d.window.stream] for d in decisions)
    right = sum(d.label == d.truth for d in decisions)
    assert right >= 0.8 * len(files), f"only {right}/{len(files)} right"
    assert summary["accuracy"] == pytest.approx(right / len(files))
    assert all(d.model.startswith("kws-digits@") and d.chip == "snp" and d.energy_uj > 0 for d in decisions)

    status = [m for m in sub.messages if m.topic == "spikewire/e2e/status"]
    assert status, "status is published on connect"
    assert Status.model_validate_json(status[-1].payload).pipelines[0].model.startswith("kws-digits@")
    telemetry = [Telemetry.model_validate_json(m.payload) for m in sub.messages if m.topic.endswith("/telemetry")]
    assert telemetry and telemetry[-1].sops_per_s > 0


async def test_broker_restart_mid_replay_loses_no_decision(mosquitto: Broker, data_dir: Path) -> None:
    files = fsdd_sample(data_dir, per_digit=4)
    async with Collector(mosquitto.host, mosquitto.port, "spikewire/restart/#", persistent=True) as sub:
        proc = popen_cli(
            "replay",
            *files,
            "--model",
            "kws-digits",
            "--speed",
            "4",
            "--mqtt",
            mosquitto.url,
            "--device",
            "restart",
            "--json",
        )
        try:
            await sub.wait_for(lambda ms: len(seqs(ms)) >= 5, timeout_s=30)
            mosquitto.stop()
            await asyncio.sleep(1.5)  # decisions made now wait in the sink's buffer
            mosquitto.start()
            out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        await sub.wait_for(lambda ms: len(dedupe(seqs(ms))) >= len(files), timeout_s=30)
    assert dedupe(seqs(sub.messages)) == list(range(1, len(files) + 1))
    summary = json.loads(out)
    assert summary["sinks"]["mqtt"]["dropped"] == 0
    assert summary["sinks"]["mqtt"]["delivered"] >= len(files)
