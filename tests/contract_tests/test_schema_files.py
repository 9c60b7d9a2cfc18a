"""The shipped JSON Schema files are exactly what the payload models export, and they accept
the payloads the runtime builds (and refuse broken ones)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from mqtt_helpers import classification, status, telemetry
from tests_contract_util import load_validator

from runtime.contract import SCHEMA_KINDS, Outcome, Reply, State, dump, schema_files, shipped_schema_dir, utc_now


def test_shipped_files_equal_the_models() -> None:
    """Regenerate with `spikewire schema --out runtime/schemas` after changing a model."""
    shipped = {p.name: p.read_text(encoding="utf-8") for p in shipped_schema_dir().glob("*.schema.json")}
    assert shipped == schema_files()


def test_every_kind_has_a_valid_draft_2020_schema() -> None:
    for kind in SCHEMA_KINDS:
        schema = json.loads((shipped_schema_dir() / f"{kind}.schema.json").read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"spikewire.{kind}/1"


def test_schema_command_writes_the_files(tmp_path: Path) -> None:
    from runtime.cli import main

    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == schema_files()


def test_built_payloads_validate() -> None:
    now = utc_now()
    state = State(
        device="d", pipeline="kws", seq=1, timestamp=now, paused=False, min_confidence=0.2, model="m@1", chip="snp",
        label="3", score=0.9, label_at=now, reply=Outcome(id="a1", command="pause", ok=True),
    )  # fmt: skip
    reply = Reply(device="d", timestamp=now, id="x", command="status", ok=True, status=status())
    cases = {
        "classification": dump(classification(1)),
        "telemetry": dump(telemetry(1)),
        "status": dump(status()),
        "state": dump(state),
        "reply": dump(reply),
        "set": b'{"command": "threshold", "min_confidence": 0.5, "id": "r-1"}',
        "request": b'{"command": "reload", "id": "abc"}',
    }
    for kind, payload in cases.items():
        load_validator(kind).validate(json.loads(payload))


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("classification", {"schema": "spikewire.classification/1"}),
        ("set", {"command": "threshold", "min_confidence": 2}),
        ("set", {"command": "explode"}),
        ("set", {"command": "pause", "extra": 1}),
        ("request", {"command": "status", "id": "has/slash"}),
    ],
)
def test_broken_payloads_are_refused(kind: str, payload: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        load_validator(kind).validate(payload)
