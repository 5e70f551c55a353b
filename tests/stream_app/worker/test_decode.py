import base64
import json

import pytest

from stream_app.worker.decode import RAW_LIMIT, RawRecord, decode_records, group_by_user


def _record(value, key=b"u1", offset=0, partition=1) -> RawRecord:
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    return RawRecord("t.events", partition, offset, key, value)


GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1000}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "json"),
        ({**GOOD, "ts": "yesterday"}, "schema"),
        ({k: v for k, v in GOOD.items() if k != "item_id"}, "schema"),
        ({**GOOD, "type": "teleport"}, "schema"),
        ({**GOOD, "type": "comment"}, "schema"),
        ({**GOOD, "type": "comment", "text": "x" * 1_000_000}, "schema"),
        ({**GOOD, "ts": -5}, "schema"),
        ({**GOOD, "event_id": "9" * 5000}, "schema"),
        ({**GOOD, "rating": 7}, "schema"),
        (b'{"event_id": "\xff\xfe"}', "encoding"),
    ],
)
def test_bad_records_become_dead_letters_with_reason(value, reason):
    good_before, good_after = _record(GOOD, offset=1), _record({**GOOD, "event_id": "e2", "ts": 2000}, offset=3)
    accepted, rejected = decode_records([good_before, _record(value, offset=2), good_after])
    assert [a.event.event_id for a in accepted] == ["e1", "e2"]
    (bad,) = rejected
    letter = bad.letter
    assert (letter.reason, letter.topic, letter.partition, letter.offset) == (reason, "t.events", 1, 2)
    assert bad.key == b"u1" and letter.error
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    if letter.raw_encoding == "base64":
        assert base64.b64decode(letter.raw) == raw
    else:
        assert letter.raw.encode() == raw[:RAW_LIMIT]


def test_key_must_be_the_user_id():
    accepted, rejected = decode_records([_record(GOOD, key=b"someone-else"), _record(GOOD, key=None)])
    assert accepted == []
    assert [r.letter.reason for r in rejected] == ["key", "key"]


def test_tombstone_is_a_forget_and_forget_events_are_valid():
    forget = {**GOOD, "type": "forget"}
    accepted, rejected = decode_records([_record(None), _record(forget), _record(None, key=None)])
    assert [a.is_forget for a in accepted] == [True, True]
    assert accepted[0].event is None and accepted[0].user_id == "u1"
    assert [r.letter.reason for r in rejected] == ["empty"]


def test_group_by_user_keeps_each_users_order():
    records = [
        _record({**GOOD, "user_id": user, "event_id": f"{user}-{i}"}, key=user.encode(), offset=i)
        for i, user in enumerate(["a", "b", "a", "c", "b", "a"])
    ]
    accepted, _ = decode_records(records)
    groups = group_by_user(accepted)
    assert {u: [a.event.event_id for a in items] for u, items in groups.items()} == {
        "a": ["a-0", "a-2", "a-5"],
        "b": ["b-1", "b-4"],
        "c": ["c-3"],
    }


def test_oversized_payloads_are_cut_in_the_dead_letter():
    text = b'{"text": "' + "é".encode() * RAW_LIMIT + b'"}'
    binary = b"\xff" * (RAW_LIMIT + 10)
    _, rejected = decode_records([_record(text), _record(binary)])
    as_text, as_base64 = (r.letter for r in rejected)
    assert as_text.raw_encoding == "utf-8" and len(as_text.raw) == RAW_LIMIT and "cut" in as_text.error
    assert as_base64.raw_encoding == "base64" and base64.b64decode(as_base64.raw) == binary[:RAW_LIMIT]
