"""Control without a broker: parsing is total, the controller answers every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_contract_util import copy_bundle, load_validator

from runtime.build import build_pipeline
from runtime.config import AudioFileSourceConfig, PipelineConfig
from runtime.contract import ModelCommand, PauseCommand, Request, ThresholdCommand, Topics, utc_now
from runtime.daemon import demo_recording
from runtime.mqtt.control import Controller, Invalid, extra_models, parse_request, parse_set
from runtime.pipeline import Pipeline, status_payload
from runtime.switch import prepare_switch


def test_valid_commands_parse() -> None:
    assert parse_set(b'{"command": "pause", "id": "a.1"}') == PauseCommand(command="pause", id="a.1")
    assert parse_set(b'{"command": "threshold", "min_confidence": 0.5}') == ThresholdCommand(
        command="threshold", min_confidence=0.5
    )
    assert isinstance(parse_set(b'{"command": "model", "model": "kws-digits"}'), ModelCommand)
    assert parse_request(b'{"command": "reload", "id": "r"}') == Request(command="reload", id="r")


@pytest.mark.parametrize(
    ("payload", "needle", "ident"),
    [
        (b"", "not valid JSON", None),
        (b"\xff", "not UTF-8", None),
        (b"null", "JSON object", None),
        (b'{"command": "pause", "id": "x/y"}', "id:", None),
        (b'{"command": "threshold", "min_confidence": -1, "id": "k"}', "min_confidence", "k"),
        (b'{"command": "threshold", "min_confidence": NaN}', "min_confidence", None),
        (b'{"command": "resume", "extra": 1}', "extra", None),
        (b'{"command": "model"}', "model: Field required", None),
        (b" " * 20_000, "too large", None),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply", None),
    ],
)
def test_invalid_commands_name_the_problem(payload: bytes, needle: str, ident: str | None) -> None:
    result = parse_set(payload)
    assert isinstance(result, Invalid) and needle in result.error, result
    assert result.id == ident


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["command", "id", "model", "min_confidence", "x"]), inner, max_size=4)
    ),
)
_COMMANDS = st.fixed_dictionaries(
    {"command": st.sampled_from(["pause", "resume", "threshold", "model", "status", "reload", "x"])},
    optional={"id": st.text(max_size=70), "min_confidence": st.floats(), "model": st.text(max_size=10)},
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), (_JSON | _COMMANDS).map(lambda v: json.dumps(v).encode())))
def test_parsing_never_raises(payload: bytes) -> None:
    for parse in (parse_set, parse_request):
        result = parse(payload)
        if not isinstance(result, Invalid):  # what is accepted also validates against the shipped schema
            load_validator("set" if parse is parse_set else "request").validate(json.loads(payload))


@pytest.fixture(scope="module")
def built() -> tuple[PipelineConfig, Pipeline]:
    cfg = PipelineConfig(
        name="kws", model="kws-digits", source=AudioFileSourceConfig(paths=[demo_recording()], speed="max")
    )
    return cfg, build_pipeline(cfg, "dev", [])


def controller(cfg: PipelineConfig, pipeline: Pipeline, extra: dict[str, Path]) -> Controller:
    async def switch(c: PipelineConfig, p: Pipeline, model: str) -> None:
        await p.switch_model(prepare_switch(c, p, model, extra))

    return Controller(
        Topics("sw", "dev"), "dev", lambda: {"kws": (cfg, pipeline)}, lambda: status_payload("dev", [pipeline]), switch
    )


async def test_controller_answers_on_state(built: tuple[PipelineConfig, Pipeline], tmp_path: Path) -> None:
    cfg, pipeline = built
    extra = extra_models([copy_bundle(tmp_path, "kws-copy")])
    ctl = controller(cfg, pipeline, extra)
    out = await ctl.handle_set("kws", b'{"command": "pause", "id": "1"}')
    state = json.loads(out.payload)
    assert out.topic == "sw/dev/kws/state" and out.retain and state["paused"] and state["reply"]["ok"]
    out = await ctl.handle_set("kws", b'{"command": "threshold", "min_confidence": 0.7}')
    assert json.loads(out.payload)["min_confidence"] == 0.7 == pipeline.min_confidence
    out = await ctl.handle_set("kws", b'{"command": "model", "model": "kws-copy", "id": "m"}')
    assert json.loads(out.payload)["model"] == "kws-copy@0.1.0" == pipeline.info.model
    assert pipeline.min_confidence == 0.7  # the live threshold outlives the model
    out = await ctl.handle_set("kws", b'{"command": "model", "model": "ecg-beats", "id": "m2"}')
    reply = json.loads(out.payload)["reply"]
    assert not out.retain and reply["ok"] is False and "ecg input" in reply["error"], reply
    out = await ctl.handle_set("other", b'{"command": "pause", "id": "z"}')
    assert out.topic == "sw/dev/response/z" and "unknown pipeline" in json.loads(out.payload)["error"]
    reply_payload, ident = await ctl.handle_request(b'{"command": "reload", "id": "q"}')
    assert ident == "q" and reply_payload.ok is False and "not available" in (reply_payload.error or "")
    reply_payload, _ = await ctl.handle_request(b'{"command": "status"}')
    assert reply_payload.status is not None and reply_payload.status.pipelines[0].model == "kws-copy@0.1.0"
    assert reply_payload.timestamp <= utc_now()
