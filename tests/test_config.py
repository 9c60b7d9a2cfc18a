"""Configuration errors name the file, the field path and the reason, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import ConfigError, load_settings

GOOD = """
device = "edge-01"
[mqtt]
url = "mqtt://broker.local:1883"
[[pipelines]]
name = "kws"
model = "kws-digits"
[pipelines.source]
kind = "audio_file"
paths = ["a.wav"]
speed = "max"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spikewire.toml"
    p.write_text(text)
    return p


def test_good_file(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD))
    assert s.device == "edge-01" and s.pipelines[0].source.kind == "audio_file"
    assert s.pipelines[0].readout.mode == "utterance"


def test_unknown_field_is_named_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, GOOD.replace('speed = "max"', 'sped = "max"')))
    text = str(info.value)
    assert str(tmp_path / "spikewire.toml") in text
    assert "pipelines.0.source.audio_file.sped: Extra inputs are not permitted" in text


def test_wrong_value_and_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"mqtt\.url: Value error, must start with mqtt://, mqtts://, ws:// or wss://"
    ):
        load_settings(write(tmp_path, GOOD.replace("mqtt://broker", "http://broker")))
    with pytest.raises(
        ConfigError, match=r"pipelines\.0\.source: Input tag 'camera' found using 'kind' does not match"
    ):
        load_settings(write(tmp_path, GOOD.replace('kind = "audio_file"', 'kind = "camera"')))
    with pytest.raises(ConfigError, match=r"pipelines\.0\.name: String should match pattern"):
        load_settings(write(tmp_path, GOOD.replace('name = "kws"', 'name = "k w/s"')))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "device = "))
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEWIRE_MQTT__URL", "mqtts://secure.local:8883")
    monkeypatch.setenv("SPIKEWIRE_DEVICE", "from-env")
    s = load_settings(write(tmp_path, GOOD))
    assert s.mqtt is not None and s.mqtt.url == "mqtts://secure.local:8883"
    assert s.device == "from-env"
    monkeypatch.setenv("SPIKEWIRE_MQTT__KEEPALIVE_S", "1")
    with pytest.raises(ConfigError, match=r"mqtt\.keepalive_s: Input should be greater than or equal to 5"):
        load_settings(write(tmp_path, GOOD))


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "deploy" / "examples").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_examples_validate(path: Path) -> None:
    s = load_settings(path)
    assert s.pipelines and s.mqtt is not None
