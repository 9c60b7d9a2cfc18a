"""Fuzzing the MQTT control topic (runtime/mqtt/control.py): random bytes and JSON near the valid commands go
through the pure parsers and then through the Controller's reply path (Outcome, Reply, response topic), as a
broker message would. Every payload must give a command or an error reply, never an exception."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from fuzz_util import FUZZ, guarded, mutated
from hypothesis import given
from hypothesis import strategies as st

from runtime.contract import Reply, Topics, dump
from runtime.mqtt.control import Controller, Invalid, parse_request, parse_set

VALID = (
    {"command": "pause"},
    {"command": "resume", "id": "r-1"},
    {"command": "threshold", "min_confidence": 0.6, "id": "t1"},
    {"command": "model", "model": "kws-digits"},
    {"command": "status", "id": "abc"},
    {"command": "reload", "id": "x_2"},
)

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
        st.sampled_from(["pause", "resume", "threshold", "model", "status", "reload", "", "../x", "a/b", "#", "+"]),
        st.sampled_from([10**400, -(10**400), 1e308, -0.0, 2**63, 0.6]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A valid command with one field replaced, added or removed; serialised, sometimes damaged."""
    doc: dict[str, Any] = dict(draw(st.sampled_from(VALID)))
    key = draw(st.sampled_from([*doc, "id", "command", "min_confidence", "model", "extra", "Command"]))
    if draw(st.booleans()) and key in doc:
        del doc[key]
    else:
        doc[key] = draw(JSON_VALUES)
    text = json.dumps(doc, allow_nan=True)
    if draw(st.integers(0, 3)) == 0:
        return draw(mutated(text.encode(), header_bytes=len(text)))
    return text.encode()


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


ODD = (b"", b"{}", b"null", b"NaN", b'{"command": NaN}', b'{"min_confidence": Infinity}', b"\xff\xfe{")
PAYLOADS = st.one_of(
    near_valid(),
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([*ODD, nested(100_000), b'{"command": "threshold", "min_confidence": 1e999}']),
    st.just(b'{"id": "' + b"a" * 70_000 + b'"}'),
)


def _controller() -> Controller:
    def no_status() -> Any:
        msg = "status is not part of this test"
        raise RuntimeError(msg)

    async def no_switch(*_: Any) -> None:
        msg = "no model switch here"
        raise ValueError(msg)

    return Controller(Topics("spikewire", "dev-1"), "dev-1", lambda: {}, no_status, no_switch, reload=None)


def _through_controller(payload: bytes) -> tuple[bytes, bytes]:
    """What a subscriber would receive for a set on an unknown pipeline and for a request."""
    controller = _controller()

    async def run() -> tuple[bytes, bytes]:
        out = await controller.handle_set("kws", payload)
        req = parse_request(payload)
        if not isinstance(req, Invalid) and req.command == "status":
            return out.payload, b""  # answering status needs running pipelines: the parse is what is fuzzed
        reply, _ident = await controller.handle_request(payload)
        return out.payload, dump(reply)

    return asyncio.run(run())


@FUZZ
@given(payload=PAYLOADS)
def test_control_payloads(payload: bytes) -> None:
    for target, parse in (("control:set", parse_set), ("control:request", parse_request)):
        outcome = guarded(target, lambda p=parse: p(payload), names=None, allowed=())  # type: ignore[misc]
        if isinstance(outcome.value, Invalid):
            assert outcome.value.error.strip()
    replies = guarded("control:reply", lambda: _through_controller(payload), names=None, allowed=())
    set_reply, request_reply = replies.value
    for raw in (set_reply, request_reply):
        if raw:
            reply = Reply.model_validate_json(raw)
            assert reply.ok is False or reply.error is None


def test_threshold_out_of_range_is_refused() -> None:
    for value in (-0.1, 1.5, math.inf, 1e999):
        payload = json.dumps({"command": "threshold", "min_confidence": value}).encode()
        assert isinstance(parse_set(payload), Invalid)
