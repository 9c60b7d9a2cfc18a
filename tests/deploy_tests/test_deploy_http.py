"""The optional HTTP endpoint: /health verdicts and a Prometheus scrape of a running daemon."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from deploy_util import Daemon, demo_pipeline_toml
from mqtt_helpers import Broker, free_port
from prometheus_client.parser import text_string_to_metric_families

from runtime.http import judge_health


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_health_verdicts() -> None:
    assert judge_health({"a": "running"}, mqtt_connected=None).ok
    assert judge_health({"a": "running"}, mqtt_connected=False, mqtt_queued=10, mqtt_buffer_size=100).ok
    full = judge_health({"a": "running"}, mqtt_connected=False, mqtt_queued=100, mqtt_buffer_size=100)
    assert not full.ok and "buffer is full" in full.body["problems"][0]
    failed = judge_health({"a": "running", "b": "failed"}, mqtt_connected=True)
    assert not failed.ok and failed.body["problems"] == ["pipeline b is failed"]
    assert not judge_health({}, mqtt_connected=None).ok


@pytest.mark.broker
@pytest.mark.slow
def test_health_and_metrics_of_a_running_daemon(tmp_path: Path, mosquitto: Broker) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    head = f'stdout = false\ndevice = "dev1"\n[mqtt]\nurl = "{mosquitto.url}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
    config = tmp_path / "sw.toml"
    config.write_text(head + demo_pipeline_toml("demo", speed="4.0"))
    d = Daemon(config)
    try:
        d.wait_for(lambda: _get(f"{base}/health")[0] == 200, "/health 200")
        body = json.loads(_get(f"{base}/health")[1])
        assert body["status"] == "ok" and body["pipelines"] == {"demo": "running"} and body["mqtt"]["connected"]

        def scraped() -> bool:
            s = _samples(_get(f"{base}/metrics")[1])
            return s.get(("spikewire_decisions_total", (("pipeline", "demo"),)), 0) > 0

        d.wait_for(scraped, "decisions counted in /metrics")
        s = _samples(_get(f"{base}/metrics")[1])
        assert s[("spikewire_pipeline_up", (("pipeline", "demo"),))] == 1.0
        assert s[("spikewire_mqtt_connected", ())] == 1.0
        assert s[("spikewire_info", (("device", "dev1"), ("version", "0.1.0")))] == 1.0
        assert s[("spikewire_input_events_per_second", (("pipeline", "demo"),))] >= 0
        assert s[("spikewire_chip_power_milliwatts", (("part", "total"), ("pipeline", "demo")))] > 0
        assert ("spikewire_sink_delivered_total", (("sink", "mqtt"),)) in s
        assert _get(f"{base}/nope")[0] == 404
        # A pipeline that has ended makes the daemon unhealthy (503), naming it.
        config.write_text(
            head + demo_pipeline_toml("demo", speed="4.0") + demo_pipeline_toml("once", speed='"max"', loop=False)
        )
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(lambda: _get(f"{base}/health")[0] == 503, "/health 503")
        body = json.loads(_get(f"{base}/health")[1])
        assert body["status"] == "unhealthy" and body["problems"] == ["pipeline once is finished"]
        assert d.stop() == 0
    finally:
        d.stop()
