"""Home Assistant discovery configs, parsed as HA would, rendered against contract payloads."""

from __future__ import annotations

import json

import pytest
from ha_parse import parse_discovery, render
from mqtt_helpers import telemetry

from runtime.contract import State, Topics, dump, utc_now
from runtime.mqtt.discovery import discovery_entities, node_id


def entities(device: str = "edge-1", pipelines: tuple[str, ...] = ("kws", "ecg")) -> list:  # type: ignore[type-arg]
    return discovery_entities("homeassistant", Topics("spikewire", device), device, "0.1.0", list(pipelines))


def state_payload(pipeline: str, *, label: str | None = "3", paused: bool = False) -> bytes:
    return dump(
        State(
            device="edge-1", pipeline=pipeline, seq=1, timestamp=utc_now(), paused=paused, min_confidence=0.0,
            model="m@1", chip="snp", label=label, score=0.75 if label else None, label_at=utc_now() if label else None,
        )
    )  # fmt: skip


def test_every_config_is_accepted_and_unique() -> None:
    found = entities()
    assert len(found) == 10  # label, score, power, latency, paused per pipeline
    parsed = [parse_discovery(e.topic, json.dumps(e.config).encode()) for e in found]
    assert len({c["unique_id"] for _, c in parsed}) == len(parsed)
    assert {c["availability_topic"] for _, c in parsed} == {"spikewire/edge-1/availability"}
    assert {e.topic.split("/")[2] for e in found} == {"spikewire_edge-1"}
    assert {c["device"]["identifiers"][0] for _, c in parsed} == {"spikewire_edge-1"}


def test_templates_render_against_state_and_telemetry() -> None:
    tel = dump(telemetry(1, device="edge-1", pipeline="kws"))
    for e in entities(pipelines=("kws",)):
        _, config = parse_discovery(e.topic, json.dumps(e.config).encode())
        payload = tel if config["state_topic"].endswith("/telemetry") else state_payload("kws")
        value = render(config["value_template"], payload)
        if "unit_of_measurement" in config or "state_class" in config:
            float(value)  # a number, as HA's measurement sensors need
        if e.component == "binary_sensor":
            assert value in (config["payload_on"], config["payload_off"])
    paused = next(e for e in entities(pipelines=("kws",)) if e.object_id == "kws_paused")
    assert render(paused.config["value_template"], state_payload("kws", paused=True)) == "True"


def test_before_the_first_decision_the_label_is_none() -> None:
    """HA's MQTT sensor reads the payload 'None' as unknown, not as a label."""
    label = next(e for e in entities(pipelines=("kws",)) if e.object_id == "kws_label")
    assert render(label.config["value_template"], state_payload("kws", label=None)) == "None"


@pytest.mark.parametrize("device", ["edge.01", "a-b_c"])
def test_node_ids_are_what_ha_allows(device: str) -> None:
    assert all(ch.isalnum() or ch in "_-" for ch in node_id(device))
    for e in entities(device=device):
        parse_discovery(e.topic, json.dumps(e.config).encode())


def test_the_parser_refuses_what_ha_refuses() -> None:
    good = entities(pipelines=("kws",))[0]
    bad = {**good.config, "stat_tt": "x"}
    with pytest.raises(AssertionError, match="keys HA does not accept"):
        parse_discovery(good.topic, json.dumps(bad).encode())
    with pytest.raises(AssertionError, match="state_topic"):
        parse_discovery(good.topic, json.dumps({k: v for k, v in good.config.items() if k != "state_topic"}).encode())
    with pytest.raises(AssertionError, match="not a discovery topic"):
        parse_discovery("homeassistant/sensor/x", b"{}")


def test_fallback_evaluator_renders_without_jinja2(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 -> ImportError
    tel = dump(telemetry(1, device="edge-1", pipeline="kws"))
    for e in entities(pipelines=("kws",)):
        payload = tel if e.config["state_topic"].endswith("/telemetry") else state_payload("kws")
        assert render(e.config["value_template"], payload) != ""
