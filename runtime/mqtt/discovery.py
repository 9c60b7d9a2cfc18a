"""Home Assistant MQTT discovery: one HA device per spikewire device, entities per pipeline.

Pure: builds ``(topic, config)`` pairs; ``runtime.mqtt.session`` publishes them retained at
every connect and again whenever Home Assistant announces ``<discovery_prefix>/status`` =
``online`` (after an HA restart its entities would otherwise wait for the next connect).

Per pipeline: sensors ``label`` and ``score`` (from the retained ``state``), ``power`` and
``latency`` (from ``telemetry``), and a binary sensor ``paused`` (from ``state``). Every
entity shares the device's ``availability`` topic (``online``/``offline``, the Last Will).
Topics: ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` with
``node_id = spikewire_<device>``; ``unique_id = spikewire_<device>_<pipeline>_<object>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.contract import Topics

ORIGIN = {"name": "spikewire"}


@dataclass(frozen=True, slots=True)
class DiscoveryEntity:
    component: str
    """HA platform: ``sensor`` or ``binary_sensor``."""
    object_id: str
    topic: str
    config: dict[str, Any]


def node_id(device: str) -> str:
    """HA allows ``[a-zA-Z0-9_-]`` in node and object ids; device ids may also hold dots."""
    return "spikewire_" + re.sub(r"[^A-Za-z0-9_-]", "_", device)


def discovery_entities(
    discovery_prefix: str, topics: Topics, device: str, version: str, pipelines: Sequence[str]
) -> list[DiscoveryEntity]:
    """The configs of every entity of the device, for the pipelines named."""
    node = node_id(device)
    ha_device = {
        "identifiers": [node],
        "name": f"spikewire {device}",
        "manufacturer": "spikewire",
        "model": "neuromorphic edge runtime",
        "sw_version": version,
    }
    out: list[DiscoveryEntity] = []
    for name in pipelines:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
        state, telemetry = topics.state(name), topics.telemetry(name)
        specs: list[tuple[str, str, dict[str, Any]]] = [
            (
                "sensor",
                "label",
                {
                    "name": f"{name} label",
                    "state_topic": state,
                    "value_template": "{{ value_json.label }}",
                    "icon": "mdi:label-outline",
                    # The whole state (score, model, paused, threshold) as attributes.
                    "json_attributes_topic": state,
                },
            ),
            (
                "sensor",
                "score",
                {
                    "name": f"{name} score",
                    "state_topic": state,
                    "value_template": "{{ value_json.score }}",
                    "state_class": "measurement",
                    "suggested_display_precision": 2,
                },
            ),
            (
                "sensor",
                "power",
                {
                    "name": f"{name} chip power",
                    "state_topic": telemetry,
                    "value_template": "{{ value_json.power_mw.total }}",
                    # No device_class "power": older HA versions accept only W and kW with it.
                    "unit_of_measurement": "mW",
                    "state_class": "measurement",
                    "suggested_display_precision": 3,
                },
            ),
            (
                "sensor",
                "latency",
                {
                    "name": f"{name} latency p95",
                    "state_topic": telemetry,
                    "value_template": "{{ value_json.host_latency_ms.p95 }}",
                    "unit_of_measurement": "ms",
                    "device_class": "duration",
                    "state_class": "measurement",
                    "suggested_display_precision": 1,
                },
            ),
            (
                "binary_sensor",
                "paused",
                {
                    "name": f"{name} paused",
                    "state_topic": state,
                    "value_template": "{{ value_json.paused }}",
                    "payload_on": "True",
                    "payload_off": "False",
                    "icon": "mdi:pause-circle-outline",
                },
            ),
        ]
        for component, kind, config in specs:
            object_id = f"{safe}_{kind}"
            config.update(
                {
                    "unique_id": f"{node}_{object_id}",
                    "availability_topic": topics.availability,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                    "device": ha_device,
                    "origin": {**ORIGIN, "sw_version": version},
                    "qos": 1,
                }
            )
            topic = f"{discovery_prefix}/{component}/{node}/{object_id}/config"
            out.append(DiscoveryEntity(component, object_id, topic, config))
    return out
