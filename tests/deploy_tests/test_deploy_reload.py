"""SIGHUP reload end to end, JSON logs, and reload keeping the MQTT sink's queue."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import pytest
from deploy_util import Daemon, demo_pipeline_toml
from mqtt_helpers import free_port, wait_until

from runtime.config import MqttConfig, Settings, load_settings
from runtime.logs import JsonFormatter
from runtime.mqtt.sink import MqttSink
from runtime.service import Notifier, Service


def _kinds(records: list[dict[str, object]], kind: str, pipeline: str) -> list[dict[str, object]]:
    return [r for r in records if r.get("schema") == f"spikewire.{kind}/1" and r.get("pipeline") == pipeline]


def _logs(d: Daemon) -> list[dict[str, object]]:
    return [json.loads(line) for line in d.stderr if line.startswith("{")]


@pytest.mark.slow
def test_sighup_applies_a_new_config_and_survives_a_broken_one(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    head = f'stdout = false\n[logging]\nformat = "json"\n[jsonl]\npath = "{out}"\n'
    config = tmp_path / "sw.toml"
    # Every decision is below min_confidence = 1.0: counted as gated, none published.
    gate = "[pipelines.readout]\nmin_confidence = 1.0\n"
    config.write_text(
        head
        + demo_pipeline_toml("demo", speed="4.0", extra="").replace("[pipelines.source]", gate + "[pipelines.source]")
    )
    d = Daemon(config, out)
    try:
        d.wait_for(lambda: any(r["decisions"] for r in _kinds(d.records(), "telemetry", "demo")), "gated decisions")
        assert _kinds(d.records(), "classification", "demo") == []
        # Threshold down and a second pipeline added.
        config.write_text(head + demo_pipeline_toml("demo", speed="4.0") + demo_pipeline_toml("second", speed="4.0"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: _kinds(d.records(), "classification", "demo"), "a decision of the reloaded pipeline")
        d.wait_for(lambda: _kinds(d.records(), "classification", "second"), "a decision of the added pipeline")
        reloaded = [r for r in _logs(d) if str(r["message"]).startswith("reloaded")]
        assert reloaded and "'demo'" in str(reloaded[0]["message"]) and reloaded[0]["level"] == "INFO"
        # A broken file: logged, and the daemon keeps running the configuration it has.
        config.write_text(head + "[[pipelines]\nname = ")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: any("reload rejected" in str(r["message"]) for r in _logs(d)), "the rejection logged")
        rejected = next(r for r in _logs(d) if "reload rejected" in str(r["message"]))
        assert rejected["level"] == "ERROR" and "not valid TOML" in str(rejected["message"])
        assert rejected["logger"] == "runtime.service" and "time" in rejected
        n = len(_kinds(d.records(), "classification", "second"))
        d.wait_for(lambda: len(_kinds(d.records(), "classification", "second")) > n, "decisions after the rejection")
        assert d.proc.poll() is None
        assert d.stop() == 0
    finally:
        d.stop()
    seqs = [r["seq"] for r in _kinds(d.records(), "classification", "demo")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # a restart does not reset or skip seq


def test_json_formatter_carries_extra_fields() -> None:
    record = logging.LogRecord("spikewire.x", logging.WARNING, __file__, 1, "queue %d full", (7,), None)
    record.pipeline = "kws"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "queue 7 full" and line["level"] == "WARNING" and line["logger"] == "spikewire.x"
    assert line["pipeline"] == "kws" and line["time"].endswith("+00:00")


async def test_reload_keeps_the_mqtt_sink_and_its_queue(tmp_path: Path, unused_port: int) -> None:
    """Broker unreachable: decisions queue in the MQTT sink; a reload restarts the pipeline, and
    the same sink object still holds every queued message (plus the new ones)."""
    config = tmp_path / "sw.toml"
    mqtt = f'[mqtt]\nurl = "mqtt://127.0.0.1:{unused_port}"\nreconnect_min_s = 5\n'
    config.write_text("stdout = false\n" + mqtt + demo_pipeline_toml("demo", speed='"max"', loop=False))
    settings = load_settings(config)
    sink = MqttSink(settings.mqtt or MqttConfig(), "testdev")
    service = Service(settings, [sink], config_path=config, notifier=Notifier(None))
    run = asyncio.create_task(service.run())
    await wait_until(lambda: service.pipeline_states().get("demo") == "finished", 60.0, "the replay to end")
    queued = sink.stats().queued
    assert queued > 0 and not sink.connected
    config.write_text(
        "stdout = false\n" + mqtt + demo_pipeline_toml("demo", speed='"max"', loop=False, extra="seed = 1\n")
    )
    result = await service.reload()
    assert result.ok and result.restarted == ("demo",)
    assert service.sinks[0] is sink and sink.stats().queued >= queued and sink.stats().dropped == 0
    assert set(service.running_pipelines()) == {"demo"}
    config.write_text("stdout = false\n[[pipelines]]\nname = 'x'\n")  # no source, no model
    with pytest.raises(ValueError, match="reload rejected"):
        await service.reload_or_raise()
    assert service.sinks[0] is sink and sink.stats().dropped == 0
    service.stop()
    await run


@pytest.fixture
def unused_port() -> int:
    return free_port()


def test_settings_http_and_logging_fields() -> None:
    s = Settings(http={"listen": "127.0.0.1:9100"}, logging={"format": "json"})  # type: ignore[arg-type]
    assert s.http is not None and s.http.listen == "127.0.0.1:9100" and s.logging.format == "json"
    with pytest.raises(ValueError, match="host:port"):
        Settings(http={"listen": "9100"})  # type: ignore[arg-type]
