"""Property-based check that decoding is total: whatever bytes a producer sends, every decoder of the
project gives a record or a ``ContractError`` with a reason, never another exception."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.client import as_event, as_item, message_json
from stream_app.contracts import (
    MAX_DEPTH,
    ContractError,
    DeadLetter,
    InterestVector,
    Recommendation,
    decode_event,
    decode_item,
    decode_model_update,
    record_decoder,
)
from stream_app.worker.decode import RawRecord, decode_records

REASONS = {"empty", "size", "depth", "encoding", "json", "schema", "invalid"}
GOOD_EVENT = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1_700_000_000_000}
GOOD_UPDATE = {"version": "v2", "uri": "file:///r/v2", "sha256": "a" * 64, "created_at": "2026-01-01T00:00:00"}
DECODERS = {
    "event": decode_event,
    "item": decode_item,
    "model update": decode_model_update,
    "produce line (event)": as_event,
    "produce line (item)": as_item,
    "client: vectors": record_decoder(InterestVector),
    "client: recommendations": record_decoder(Recommendation),
    "client: dead letters": record_decoder(DeadLetter),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _nested(depth: int, opener: str) -> str:
    closer = {"[": "]", "{": "}"}[opener]
    inner = '"x":1' if opener == "{" else "1"
    return (opener + ('"k":' if opener == "{" else "")) * (depth - 1) + opener + inner + closer * depth


@st.composite
def record_bytes(draw) -> bytes:
    """Near-valid records: a good one with a field replaced, added or deeply nested, then maybe cut or mangled."""
    record = dict(draw(st.sampled_from([GOOD_EVENT, GOOD_UPDATE, {"item_id": "i1", "text": "t"}])))
    key = draw(st.sampled_from([*record, "extra", "text", "rating", "metrics"]))
    record[key] = draw(json_values)
    text = json.dumps(record, allow_nan=True)  # NaN and Infinity tokens too
    if draw(st.booleans()):
        depth = draw(st.integers(1, 3 * MAX_DEPTH))
        text = text[:-1] + f',"deep":{_nested(depth, draw(st.sampled_from("[{")))}' + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8)) + raw[cut:]
    return raw


def _check_total(raw) -> None:
    for name, decode in DECODERS.items():
        try:
            decode(raw)
        except ContractError as exc:
            assert exc.reason in REASONS, (name, exc.reason)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_rejected_with_a_reason(raw):
    _check_total(raw)


@FUZZ
@given(record_bytes())
def test_near_valid_records_decode_or_are_rejected_with_a_reason(raw):
    _check_total(raw)


@FUZZ
@given(st.text(max_size=100))
def test_any_text_decodes_or_is_rejected_with_a_reason(text):
    _check_total(text)


@FUZZ
@given(st.one_of(st.binary(max_size=100), record_bytes()), st.one_of(st.none(), st.binary(max_size=10)))
def test_the_worker_turns_any_record_into_an_event_or_a_dead_letter(value, key):
    record = RawRecord("t.events", 0, 7, key, value)
    accepted, rejected = decode_records([record])
    assert len(accepted) + len(rejected) == 1
    for r in rejected:
        assert r.letter.reason and r.letter.error and r.letter.offset == 7
        msgspec.json.encode(r.letter)  # a dead letter always encodes


@pytest.mark.parametrize("opener", ["[", "{"])
def test_nesting_beyond_the_bound_is_rejected_as_depth_and_within_it_parses(opener):
    inside = json.dumps(GOOD_EVENT)[:-1] + f',"extra":{_nested(MAX_DEPTH - 1, opener)}' + "}"
    assert decode_event(inside).event_id == "e1"
    for depth in (MAX_DEPTH, 1000, 100_000):
        deep = json.dumps(GOOD_EVENT)[:-1] + f',"extra":{_nested(depth, opener)}' + "}"
        with pytest.raises(ContractError) as exc:
            decode_event(deep)
        assert exc.value.reason == "depth"
        assert message_json_of(deep.encode())  # istream tail prints it too


def message_json_of(value: bytes) -> bytes:
    class _Msg:
        def value(self):
            return value

        def key(self):
            return b"k"

    return message_json(_Msg())


def test_a_record_over_the_size_bound_is_rejected_before_parsing():
    text = json.dumps({**GOOD_EVENT, "type": "comment", "text": "a" * 5_000_000})
    for decode in (decode_event, as_event):
        with pytest.raises(ContractError) as exc:
            decode(text)
        assert exc.value.reason == "size"


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({**GOOD_EVENT, "type": "comment", "text": "[{" * 5000})
    assert decode_event(text).text == "[{" * 5000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"event_id":"e","user_id":"u","item_id":"i","type":"rating","ts":1,"rating":NaN}', "json"),
        (b'{"event_id":"e","user_id":"u","item_id":"i","type":"rating","ts":1,"rating":1e999}', "schema"),
        (b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":1' + b"0" * 400 + b"}", "schema"),
        (b'{"version":"v","uri":"u","sha256":"' + b"a" * 64 + b'","created_at":"x","metrics":{"m":Infinity}}', "json"),
        (b"\xc3\x28", "encoding"),
        (b"", "json"),
    ],
)
def test_nan_infinity_and_huge_numbers_are_rejected(value, reason):
    decode = decode_model_update if value.startswith(b'{"version"') else decode_event
    with pytest.raises(ContractError) as exc:
        decode(value)
    assert exc.value.reason == reason
