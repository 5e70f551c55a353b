import json

import msgspec
import pytest

from stream_app.client import as_event
from stream_app.contracts import (
    EVENT_TYPES,
    ContractError,
    DeadLetter,
    Event,
    InterestVector,
    Item,
    ModelUpdate,
    OnlineMetrics,
    QueryError,
    Recommendation,
    ScoredItem,
    UserInterest,
    UserRecommendations,
    decode_event,
    decode_item,
    encode,
)
from stream_app.contracts.records import RECORDS, JudgedCounts, PairedCounts, UnjudgedCounts
from stream_app.contracts.schemas import drift

VALID = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1_700_000_000_000}


def raw(**changes) -> bytes:
    event = {**VALID, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_interaction_type_decodes(kind):
    extra = {"text": "so good"} if kind == "comment" else {}
    event = decode_event(raw(type=kind, **extra))
    assert event.type == kind and event.user_id == "u1" and event.ts == 1_700_000_000_000


def test_optional_fields_decode():
    event = decode_event(raw(type="comment", text="héllo ✓", rating=4.5))
    assert (event.text, event.rating) == ("héllo ✓", 4.5)


@pytest.mark.parametrize(
    ("payload", "reason", "says"),
    [
        (b"{not json", "json", "not valid JSON"),
        (b"", "json", "not valid JSON"),
        (b'["a list"]', "schema", "Expected `object`"),
        (b'{"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click"\xff}', "encoding", "UTF-8"),
        (raw(user_id=...), "schema", "user_id"),
        (raw(ts=...), "schema", "ts"),
        (raw(user_id=17), "schema", "Expected `str`"),
        (raw(ts="yesterday"), "schema", "Expected `int`"),
        (raw(ts=1.5), "schema", "Expected `int`"),
        (raw(ts=-1), "schema", ">= 0"),
        (raw(type="hover"), "schema", "type"),
        (raw(type="comment"), "schema", "non-empty `text`"),
        (raw(type="comment", text=""), "schema", "non-empty `text`"),
        (raw(text="x" * 32_769), "schema", "length <= 32768"),
        (raw(user_id="u" * 257), "schema", "length <= 256"),
        (raw(item_id=""), "schema", "length >= 1"),
        (raw(rating=5.5), "schema", "<= 5.0"),
        (raw(rating=-0.5), "schema", ">= 0.0"),
        (raw(ts=10**20), "schema", "<="),
    ],
)
def test_invalid_events_raise_contract_error(payload, reason, says):
    with pytest.raises(ContractError) as caught:
        decode_event(payload)
    assert caught.value.reason == reason
    assert says in str(caught.value)


def test_invalid_utf8_inside_a_string_is_a_contract_error():
    with pytest.raises(ContractError) as caught:
        decode_event(b'{"event_id": "e\xff1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1}')
    assert caught.value.reason == "encoding"


def test_a_tombstone_is_not_an_event():
    with pytest.raises(ContractError) as caught:
        decode_event(None)
    assert caught.value.reason == "empty"


def test_text_at_the_limit_is_accepted():
    assert len(decode_event(raw(type="comment", text="x" * 32_768)).text) == 32_768


def test_dict_events_are_validated_like_raw_bytes():
    assert as_event(dict(VALID)) == decode_event(raw())
    with pytest.raises(ContractError, match="non-empty `text`"):
        as_event({**VALID, "type": "comment"})


def test_constructed_events_are_validated_too():
    with pytest.raises(ContractError, match=">= 0"):
        as_event(Event(event_id="e", user_id="u", item_id="i", type="click", ts=-1))


def test_items_decode_and_reject():
    assert decode_item(b'{"item_id": "i1", "text": "Boots"}') == Item(item_id="i1", text="Boots")
    with pytest.raises(ContractError):
        decode_item(b'{"text": "no id"}')


def test_item_attributes_are_optional_and_bounded():
    item = decode_item(b'{"item_id": "i1", "text": "Heat", "tags": ["Crime", "Drama"], "category": "movie"}')
    assert (item.tags, item.category) == (["Crime", "Drama"], "movie")
    assert encode(Item(item_id="i2", text="x")) == b'{"item_id":"i2","text":"x"}'  # what older readers know
    for bad in (b'"tags": [""]', b'"tags": "Crime"', b'"category": 7', b'"tags": [' + b'"t",' * 64 + b'"t"]'):
        with pytest.raises(ContractError) as caught:
            decode_item(b'{"item_id": "i1", ' + bad + b"}")
        assert caught.value.reason == "schema"


ONE_OF_EACH = {
    "event": Event(event_id="e", user_id="u", item_id="i", type="rating", ts=5, rating=3.5),
    "item": Item(item_id="i", text="Toy Story", ts=9, tags=["Animation"], category="movie"),
    "interest_vector": InterestVector(
        user_id="u", event_id="e", ts=5, model_version="v1", vector=[0.5, -1.0], long_term=[1.0], short_term=[0.0]
    ),
    "recommendation": Recommendation(
        user_id="u", event_id="e", ts=5, model_version="v1", items=[ScoredItem(item_id="i", score=0.25, because="x")]
    ),
    "model_update": ModelUpdate(version="v2", uri="file:///r/v2", sha256="a" * 64, created_at="2026-01-01T00:00:00Z"),
    "dead_letter": DeadLetter(error="bad", reason="json", topic="t", partition=1, offset=2, raw="{"),
    "user_recommendations": UserRecommendations(
        user_id="u", event_id=None, ts=None, model_version="v1", state_age_s=None, cold_start=True,
        items=[ScoredItem(item_id="i", score=2.5)],
    ),
    "user_interest": UserInterest(
        user_id="u", event_id="e", ts=5, model_version="v1", state_age_s=0.5, vector=[0.5], long_term=[0.25],
        short_term=[1.0],
    ),
    "query_error": QueryError(status=404, error="user u has no state"),
    "online_metrics": OnlineMetrics(
        worker="w-1", window_start=1, window_end=2, k=10, champion="v1", challenger="v2", trial_mode="canary",
        canary_share=0.25,
        judged=[JudgedCounts(model_version="v1", exposure="served", cohort="3-5", judged=4, hits=1,
                             reciprocal_rank=0.5, ndcg=0.63, new_items=3, new_item_hits=1)],
        unjudged=[UnjudgedCounts(model_version="v2", reason="no_list", events=2)],
        paired=[PairedCounts(champion="v1", challenger="v2", judged=3, both_hit=1, champion_only=0,
                             challenger_only=1, ndcg_diff=-0.25, ndcg_diff_sq=0.0625)],
    ),
}  # fmt: skip


def test_every_record_type_has_an_example():
    assert set(ONE_OF_EACH) == set(RECORDS)


@pytest.mark.parametrize("name", sorted(ONE_OF_EACH))
def test_records_round_trip_through_json(name):
    record = ONE_OF_EACH[name]
    encoded = encode(record)
    assert json.loads(encoded)  # plain JSON any tool reads
    assert msgspec.json.decode(encoded, type=RECORDS[name]) == record


def test_json_schema_files_match_the_code():
    assert drift() == []
