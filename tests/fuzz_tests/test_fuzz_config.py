"""Fuzzing the config loader (runtime/config.py load_settings): damaged TOML bytes, and valid TOML whose values
have the wrong type, extreme values, bad URLs or unknown fields. Each must load or raise a ConfigError naming
the file, and for a wrong or unknown field, the field."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]

SEED = """device = "bench-1"
stdout = false
log_level = "INFO"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[pipelines]]
name = "kws"
model = "kws-digits"

[pipelines.source]
kind = "audio_file"
paths = ["a.wav", "b.flac"]
speed = 1.0
loop = false

[pipelines.readout]
mode = "window"
min_confidence = 0.5
window_ms = 1000.0

[[pipelines]]
name = "radar"
model = "radar-activity"

[pipelines.source]
kind = "radar_file"
paths = ["rec.h5"]
"""


@functools.cache
def seeds() -> tuple[str, ...]:
    """The inline seed and the shipped example configs (read from the repo, never from shared data)."""
    examples = sorted((ROOT / "deploy" / "examples").glob("*.toml"))
    return (SEED, *(p.read_text(encoding="utf-8") for p in examples))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config_fuzz")


@pytest.fixture(autouse=True, scope="module")
def no_env_overrides() -> Iterator[None]:
    """SPIKEWIRE_* variables override the file: none may leak into these tests."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SPIKEWIRE_") and "__" in k}
    yield
    os.environ.update(saved)


def test_seed_is_valid(work: Path) -> None:
    path = work / "seed.toml"
    path.write_text(SEED)
    settings = load_settings(path)
    assert [p.name for p in settings.pipelines] == ["kws", "radar"]


@FUZZ
@given(data=st.data())
def test_damaged_config_bytes(work: Path, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(seeds()))
    path = work / "damaged.toml"
    path.write_bytes(data.draw(mutated(text.encode("utf-8"), header_bytes=len(text))))
    guarded("config:bytes", lambda: load_settings(path), names=str(path), allowed=(ConfigError,))


# --- valid TOML with wrong values --------------------------------------------------------------------------


def _string(v: str) -> str:
    # JSON strings are TOML basic strings, except that TOML wants astral characters unescaped and DEL escaped.
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_string(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(data: dict[str, Any]) -> str:
    """One ``key = value`` line per top-level key, tables inline: enough to express any test document."""
    return "".join(f"{_string(k)} = {_toml_value(v)}\n" for k, v in data.items())


WRONG_VALUES = st.one_of(
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**30, math.nan, math.inf, -math.inf, 1e-320, True, False]),
    st.sampled_from(
        ["", " ", "x" * 5000, "\x00", "mqtt://", "mqtt://:0", "http://host:99999", "mqtts://[::1", "ws://"]
    ),
    st.sampled_from(["mqtt://user:pa ss@host:1883/x", "-1", "nan", "../../etc/passwd", "kws-digits", "auto", "\u202e"]),
    st.sampled_from([[], [1, "a"], {}, {"x": 1}, [{"kind": "nope"}], [[]]]),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every value (tables and lists too: they can be replaced whole)."""
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, (*path, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


def _tables(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _tables(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _tables(v, (*path, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


@functools.cache
def parsed_seeds() -> tuple[dict[str, Any], ...]:
    import tomllib

    return tuple(tomllib.loads(text) for text in seeds())


@FUZZ
@given(data=st.data())
def test_wrong_value(work: Path, data: st.DataObject) -> None:
    """One value anywhere replaced by a value of another type, an extreme or a malformed URL."""
    doc = data.draw(st.sampled_from(parsed_seeds()))
    where = data.draw(st.sampled_from(_leaves(doc)))
    doc = _replace(doc, where, data.draw(WRONG_VALUES))
    path = work / "wrong_value.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    outcome = guarded("config:values", lambda: load_settings(path), names=str(path), allowed=(ConfigError,))
    if outcome.error is not None:
        # The field is named: its key, or (for a list item) the key of the list.
        key = next((str(p) for p in reversed(where) if isinstance(p, str)), None)
        assert key is None or key in str(outcome.error) or "source" in str(outcome.error), str(outcome.error)


@FUZZ
@given(data=st.data(), key=st.sampled_from(["colour", "mqtt_url", "pipeline", "Model", "speed_x", "_private", "kind2"]))
def test_unknown_field(work: Path, data: st.DataObject, key: str) -> None:
    """A field the schema does not know, at any level: refused (extra="forbid") with its name."""
    doc = data.draw(st.sampled_from(parsed_seeds()))
    where = data.draw(st.sampled_from(_tables(doc)))
    table = dict(_get(doc, where))
    if key in table:
        return
    table[key] = data.draw(WRONG_VALUES)
    doc = _replace(doc, where, table)
    path = work / "unknown_field.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    outcome = guarded("config:unknown", lambda: load_settings(path), names=str(path), allowed=(ConfigError,))
    assert outcome.error is not None, f"unknown field {key!r} at {where} was accepted"
    assert key in str(outcome.error)


def test_config_that_is_not_utf8(work: Path) -> None:
    """A config saved in Latin-1 (or damaged) must be a ConfigError naming the file, not a UnicodeDecodeError."""
    path = work / "latin1.toml"
    path.write_bytes('device = "caf\u00e9"\n'.encode("latin-1"))
    outcome = guarded("config:bytes", lambda: load_settings(path), names=str(path), allowed=(ConfigError,))
    assert outcome.error is not None
    assert "UTF-8" in str(outcome.error)
