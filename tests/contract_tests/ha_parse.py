"""Read discovery configs the way Home Assistant's MQTT integration does, for the tests.

HA expands abbreviated keys (``stat_t`` -> ``state_topic``, also inside ``device`` and
``origin``), then validates the config against the platform's schema, which rejects
unknown keys. The key sets below are the documented options of the ``sensor`` and
``binary_sensor`` platforms (home-assistant.io/integrations/sensor.mqtt and
binary_sensor.mqtt) that a read-only entity can use; templates get ``value`` and
``value_json``.
"""

from __future__ import annotations

import json
import re
from typing import Any

ABBREVIATIONS = {
    "avty_t": "availability_topic",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "dev": "device",
    "dev_cla": "device_class",
    "ent_cat": "entity_category",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "o": "origin",
    "obj_id": "object_id",
    "pl_on": "payload_on",
    "pl_off": "payload_off",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "sug_dsp_prc": "suggested_display_precision",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "sw": "sw_version",
    "hw": "hw_version",
    "cu": "configuration_url",
    "cns": "connections",
    "sa": "suggested_area",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

COMMON = {
    "availability_topic", "payload_available", "payload_not_available", "availability_mode",
    "availability_template", "device", "enabled_by_default", "encoding", "entity_category", "expire_after",
    "force_update", "icon", "json_attributes_topic", "json_attributes_template", "name", "object_id", "origin",
    "qos", "state_topic", "unique_id", "value_template", "device_class", "platform", "default_entity_id",
}  # fmt: skip
PLATFORM_KEYS = {
    "sensor": COMMON
    | {"last_reset_value_template", "state_class", "unit_of_measurement", "suggested_display_precision", "options"},
    "binary_sensor": COMMON | {"off_delay", "payload_on", "payload_off"},
}
DEVICE_KEYS = {
    "identifiers", "connections", "manufacturer", "model", "model_id", "name", "sw_version", "hw_version",
    "serial_number", "suggested_area", "configuration_url", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url", "url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
# Sensor device classes we use, with the units HA accepts for them.
DEVICE_CLASS_UNITS = {"duration": {"d", "h", "min", "s", "ms", "µs"}}
TOPIC = re.compile(
    r"^(?P<prefix>[^#+]+)/(?P<component>[a-z_]+)/(?:(?P<node>[A-Za-z0-9_-]+)/)?(?P<object>[A-Za-z0-9_-]+)/config$"
)


def expand(config: dict[str, Any]) -> dict[str, Any]:
    out = {ABBREVIATIONS.get(k, k): v for k, v in config.items()}
    if isinstance(out.get("device"), dict):
        out["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    if isinstance(out.get("origin"), dict):
        out["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in out["origin"].items()}
    return out


def parse_discovery(topic: str, payload: bytes) -> tuple[str, dict[str, Any]]:
    """(component, expanded config); AssertionError naming the problem if HA would refuse it."""
    match = TOPIC.match(topic)
    assert match, f"{topic}: not a discovery topic"
    component = match["component"]
    assert component in PLATFORM_KEYS, f"{topic}: platform {component!r} not checked here"
    config = expand(json.loads(payload))
    unknown = set(config) - PLATFORM_KEYS[component]
    assert not unknown, f"{topic}: keys HA does not accept for {component}: {sorted(unknown)}"
    assert isinstance(config.get("state_topic"), str) and config["state_topic"], f"{topic}: state_topic required"
    assert not set("#+") & set(config["state_topic"]), f"{topic}: state_topic must not hold wildcards"
    device = config.get("device", {})
    assert set(device) <= DEVICE_KEYS, f"{topic}: device keys {sorted(set(device) - DEVICE_KEYS)}"
    assert device.get("identifiers") or device.get("connections"), f"{topic}: a device needs identifiers"
    assert set(config.get("origin", {})) <= ORIGIN_KEYS and "name" in config.get("origin", {"name": 1})
    if device:
        assert config.get("unique_id"), f"{topic}: entities of a device need a unique_id"
    assert config.get("qos", 0) in (0, 1, 2)
    if component == "sensor":
        if "state_class" in config:
            assert config["state_class"] in STATE_CLASSES, config["state_class"]
        if "device_class" in config:
            units = DEVICE_CLASS_UNITS[config["device_class"]]
            assert config.get("unit_of_measurement") in units, f"{topic}: unit for {config['device_class']}"
    return component, config


def render(template: str, payload: bytes) -> str:
    """Render an HA value template against a message: jinja2 when installed, else ``value_json.<path>``."""
    value = payload.decode()
    value_json = json.loads(payload)
    try:
        import jinja2
    except ImportError:
        match = re.fullmatch(r"\{\{\s*value_json((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*\}\}", template.strip())
        assert match, f"template the fallback evaluator cannot render: {template}"
        obj: Any = value_json
        for part in match[1].strip(".").split("."):
            assert isinstance(obj, dict) and part in obj, f"{template}: no {part!r} in {obj!r}"
            obj = obj[part]
        return str(obj)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template).render(value=value, value_json=value_json)
