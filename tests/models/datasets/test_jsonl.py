import math

import msgspec
import pytest

from models.datasets import DatasetError, load_event_columns, read_items, read_jsonl, truncate_text, write_jsonl
from models.datasets.records import EVENT_TYPES, MAX_ID_CHARS, MAX_TEXT_CHARS
from stream_app.contracts import EVENT_TYPES as CONTRACT_EVENT_TYPES
from stream_app.contracts import ContractError, decode_event

EVENTS = [
    {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": 5},
    {"event_id": "e2", "user_id": "u1", "item_id": "i2", "type": "comment", "ts": 7, "text": "naïve ✓", "rating": 4.5},
]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_round_trip_plain_and_gzip(tmp_path, name):
    path = tmp_path / name
    assert write_jsonl(path, EVENTS) == 2
    assert list(read_jsonl(path)) == EVENTS
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b'{"')


def test_lines_are_compact_utf8_json(tmp_path):
    path = tmp_path / "e.jsonl"
    write_jsonl(path, EVENTS[1:])
    assert path.read_text(encoding="utf-8") == (
        '{"event_id":"e2","user_id":"u1","item_id":"i2","type":"comment","ts":7,"text":"naïve ✓","rating":4.5}\n'
    )


def test_blank_lines_skipped_and_bad_line_named(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{broken\n', encoding="utf-8")
    reader = read_jsonl(path)
    assert [next(reader), next(reader)] == [{"a": 1}, {"a": 2}]
    with pytest.raises(DatasetError, match=r"e\.jsonl:4: not valid JSON"):
        next(reader)
    with pytest.raises(DatasetError, match="cannot read"):
        list(read_jsonl(tmp_path / "missing.jsonl"))


def test_event_columns(tmp_path):
    path = tmp_path / "e.jsonl"
    write_jsonl(path, EVENTS)
    cols = load_event_columns(path)
    assert len(cols) == 2
    assert cols.ts.dtype.name == "int64" and cols.ts.tolist() == [5, 7]
    assert cols.user_id.tolist() == ["u1", "u1"] and cols.type.tolist() == ["view", "comment"]
    assert math.isnan(cols.rating[0]) and cols.rating[1] == 4.5
    assert cols.text.tolist() == [None, "naïve ✓"]
    write_jsonl(path, [{"item_id": "i1", "text": "x"}])
    with pytest.raises(DatasetError, match="lacks the field"):
        load_event_columns(path)


def test_read_items_later_line_wins(tmp_path):
    path = tmp_path / "items.jsonl"
    write_jsonl(path, [{"item_id": "a", "text": "old"}, {"item_id": "b"}, {"item_id": "a", "text": "new"}])
    assert read_items(path) == {"a": "new", "b": ""}


def test_truncate_text_cuts_at_word_boundary():
    assert truncate_text("short") == "short"
    assert truncate_text("alpha beta gamma", limit=12) == "alpha beta"
    assert truncate_text("abcdefghij", limit=4) == "abcd"  # no space: hard cut
    long = ("word " * 10_000).strip()
    cut = truncate_text(long)
    assert len(cut) <= MAX_TEXT_CHARS and cut.endswith("word") and long.startswith(cut)


def test_bounds_agree_with_the_event_contract():
    assert set(EVENT_TYPES) == set(CONTRACT_EVENT_TYPES)
    base = {"event_id": "e", "user_id": "u", "item_id": "i", "type": "comment", "ts": 1}
    decode_event(msgspec.json.encode({**base, "text": "x" * MAX_TEXT_CHARS, "user_id": "u" * MAX_ID_CHARS}))
    with pytest.raises(ContractError):
        decode_event(msgspec.json.encode({**base, "text": "x" * (MAX_TEXT_CHARS + 1)}))
    with pytest.raises(ContractError):
        decode_event(msgspec.json.encode({**base, "text": "x", "user_id": "u" * (MAX_ID_CHARS + 1)}))
