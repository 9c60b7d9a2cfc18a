"""Shared by the contract tests: validators for the shipped schema files."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from runtime.contract import shipped_schema_dir


@functools.cache
def load_validator(kind: str) -> jsonschema.Draft202012Validator:
    """A validator for the *shipped* file (not the live model), with date-time checked."""
    schema = json.loads((shipped_schema_dir() / f"{kind}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_message(topic: str, payload: bytes) -> str:
    """Validate a message from ``<prefix>/<device>/...`` against its shipped schema; returns its kind."""
    import json as _json

    kind = topic.rsplit("/", 1)[1]
    if "/response" in topic:
        kind = "reply"
    if kind == "availability":
        assert payload in (b"online", b"offline"), payload
        return kind
    load_validator(kind).validate(_json.loads(payload))
    return kind


def copy_bundle(dest_root: Path, name: str) -> Path:
    """A copy of the kws-digits zoo bundle under another name (a second compatible model)."""
    import shutil

    from models.bundle import zoo_dir

    dest = dest_root / name
    shutil.copytree(zoo_dir() / "kws-digits", dest)
    manifest = dest / "manifest.toml"
    text = manifest.read_text(encoding="utf-8").replace('name = "kws-digits"', f'name = "{name}"', 1)
    manifest.write_text(text, encoding="utf-8")
    return dest


def daemon_config(
    tmp_path: Path, url: str, *, extra_model: Path, min_confidence: float = 0.0, control: bool = True
) -> Path:
    from runtime.daemon import demo_recording

    path = tmp_path / "spikewire.toml"
    path.write_text(
        f"""
device = "ctl-test"
stdout = false
[mqtt]
url = "{url}"
[mqtt.home_assistant]
enabled = true
[mqtt.control]
enabled = {str(control).lower()}
models = ["{extra_model}"]
[[pipelines]]
name = "kws"
model = "kws-digits"
telemetry_interval_s = 0.5
[pipelines.readout]
min_confidence = {min_confidence}
[pipelines.source]
kind = "audio_file"
paths = ["{demo_recording()}"]
speed = 4.0
loop = true
""",
        encoding="utf-8",
    )
    return path


def popen_daemon(config: Path) -> subprocess.Popen[str]:
    """``spikewire run CONFIG`` in a child process (as tests/e2e does)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
