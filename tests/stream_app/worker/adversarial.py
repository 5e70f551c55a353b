"""The adversarial corpus: what a producer may send on every input topic, and what must become of it.

Every case of issue 17 is here, plus garbage bytes, invalid UTF-8, empty values, null keys, 5 MB of
text, huge numbers, NaN and deep nesting on each of the events, items and model-updates topics. A
record's ``expect`` is its only acceptable end:

    applied          the event's outputs appear once (events topic)
    duplicate        nothing new: its event id was applied once already
    forwarded        a copy lands on the user's murmur2 partition and is applied there once
    forget           the user's outputs get tombstones and its state becomes a marker
    dl:<reason>      a dead letter with that reason, locating this record (topic, partition, offset)
    item / removed   the catalog gains / loses the item (items topic)
    refused:<reason> the worker refuses the notice and counts it (model-updates topic)

The 5 MB values are made here at test time; the rest is a few kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

MB5 = 5 * 1024 * 1024
DEEP = b"[" * 1000 + b"]" * 1000  # 2 KB: stopped the worker for good before (RecursionError)
GARBAGE = bytes(range(256))[::7] + b"\x00\xff\xfe garbage"


@dataclass(frozen=True)
class Record:
    case: str
    topic: str  # kind: events, items, model-updates
    key: bytes | None
    value: bytes | None
    expect: str
    partition: int = -1  # -1: the murmur2 partition of the key (what the project's producers pick)
    event_id: str | None = None


@dataclass(frozen=True)
class Registry:
    current: str  # serving version
    current_sha256: str
    current_dir: str
    unpromoted: str  # published, never promoted
    unpromoted_sha256: str
    unpromoted_dir: str


def _event(event_id: str, user: str, ts: int, **fields) -> dict:
    return {"event_id": event_id, "user_id": user, "item_id": fields.pop("item_id", "item-3"), "type": "click",
            "ts": ts, **fields}  # fmt: skip


def _json(value: dict) -> bytes:
    return msgspec.json.encode(value)


def events_cases(now: int, home_of, items: list[str]) -> list[Record]:
    """``home_of(key) -> partition``; ``items``: ids the model knows."""
    out: list[Record] = []

    def add(case: str, key: bytes | None, value: bytes | None, expect: str, partition: int = -1, eid=None) -> None:
        out.append(Record(case, "events", key, value, expect, partition, eid))

    def ev(case: str, eid: str, user: str, ts: int, expect: str = "applied", partition: int = -1, **fields) -> None:
        add(case, user.encode(), _json(_event(eid, user, ts, **fields)), expect, partition, eid)

    t = now - 600_000
    ok = _json(_event("x", "adv-bad", t))[:-1]  # a valid event without its closing brace
    add("deep nesting: 1,000 [ in an extra field (issue 1)", b"adv-bad", ok + b',"extra":' + DEEP + b"}", "dl:depth")
    add("deep nesting: 40 nested objects", b"adv-bad", ok + b',"extra":' + b'{"a":' * 40 + b"1" + b"}" * 41,
        "dl:depth")  # fmt: skip
    add("garbage bytes", b"adv-bad", GARBAGE, "dl:encoding")
    add("not JSON", b"adv-bad", b"{this is not json", "dl:json")
    add("invalid UTF-8 inside a string", b"adv-bad", ok.replace(b'"x"', b'"x\xc3\x28"') + b"}", "dl:encoding")
    add("empty value (zero bytes)", b"adv-bad", b"", "dl:json")
    add("null key, valid event", None, _json(_event("x-nk", "adv-bad", t)), "dl:key", partition=0)
    add("null key and null value", None, None, "dl:empty", partition=1)
    add("key is not the user", b"someone-else", _json(_event("x-key", "adv-bad", t)), "dl:key")
    add("5 MB comment text", b"adv-bad", _json(_event("x-5mb", "adv-bad", t, type="comment", text="a" * MB5)),
        "dl:size")  # fmt: skip
    add("huge number: ts 1e400", b"adv-bad", ok.replace(str(t).encode(), b"1e400") + b"}", "dl:schema")
    add("huge number: ts 10^30", b"adv-bad", ok.replace(str(t).encode(), b"1" + b"0" * 30) + b"}", "dl:schema")
    add("huge number: rating 1e999", b"adv-bad", ok.replace(b'"click"', b'"rating"') + b',"rating":1e999}',
        "dl:schema")  # fmt: skip
    add("NaN rating", b"adv-bad", ok.replace(b'"click"', b'"rating"') + b',"rating":NaN}', "dl:json")
    add("JSON array, not an object", b"adv-bad", b"[1,2,3]", "dl:schema")
    add("negative ts", b"adv-bad", ok.replace(str(t).encode(), b"-5") + b"}", "dl:schema")
    add("unknown event type", b"adv-bad", ok.replace(b'"click"', b'"hover"') + b"}", "dl:schema")
    add("100,000-character event id", b"adv-bad", _json(_event("9" * 100_000, "adv-bad", t)), "dl:schema")

    ev("ts 99,999,999,999,999 (issue 5)", "fut-1", "adv-future", 99_999_999_999_999, "dl:future")
    ev("1 h in the future (issue 5)", "fut-2", "adv-future", now + 3_600_000, "dl:future")
    for k in range(3):
        ev("genuine events after the future ones", f"fut-ok-{k}", "adv-future", t + k)

    ev("an event", "twice-1", "adv-twice", t)
    ev("the same event_id again with a newer ts (issue 5)", "twice-1", "adv-twice", t + 5000, "duplicate")

    for k in range(300):
        ev("300 events in one millisecond (issue 3)", f"burst-{k}", "adv-burst", t)
    for k in range(300):
        ev("the same 300 sent again (issue 3)", f"burst-{k}", "adv-burst", t, "duplicate")

    ev("web producer", "two-web", "adv-two", t + 3000)
    ev("mobile producer, 2.5 s behind (issue 5)", "two-mobile", "adv-two", t + 500)
    ev("older than the lateness (24 h)", "two-late", "adv-two", t - 90_000_000, "dl:late")

    ev("a user's event", "gone-1", "adv-gone", t)
    ev("a user's event", "gone-2", "adv-gone", t + 1000)
    add("tombstone (forget, issue 4)", b"adv-gone", None, "forget")
    ev("an older event after the tombstone (issue 5: resurrection)", "gone-old", "adv-gone", t - 1000, "dl:forgotten")
    ev("a copy of a forgotten event", "gone-1", "adv-gone", t, "dl:forgotten")
    ev("the user comes back later", "gone-back", "adv-gone", now + 60_000)  # after the tombstone's own time

    ev("a user's event", "fe-1", "adv-forget-event", t)
    ev("forget event older than its events", "fe-forget", "adv-forget-event", t - 3_600_000, "forget",
       type="forget", item_id="-")  # fmt: skip

    wrong = next(p for p in range(2) if p != home_of(b"adv-moved"))
    ev("an event on the user's partition", "moved-1", "adv-moved", t)
    ev("an event on another partition (kcat's default partitioner)", "moved-2", "adv-moved", t + 1, "forwarded",
       partition=wrong)  # fmt: skip
    add("a tombstone on another partition (issue 4)", b"adv-moved", None, "forwarded", partition=wrong)
    return out


def items_cases() -> list[Record]:
    good = _json({"item_id": "adv-item", "text": "a brand new adversarial item"})
    return [
        Record("deep nesting", "items", b"adv-i", b'{"item_id":"adv-i","x":' + DEEP + b"}", "dl:depth"),
        Record("garbage bytes", "items", b"adv-i", GARBAGE, "dl:encoding"),
        Record("empty value (zero bytes)", "items", b"adv-i", b"", "dl:json"),
        Record("null key, valid item", "items", None, good, "dl:key", partition=0),
        Record("null key tombstone", "items", None, None, "dl:key", partition=1),
        Record("key is not the item_id", "items", b"other", good, "dl:key"),
        Record("5 MB text", "items", b"adv-i", _json({"item_id": "adv-i", "text": "b" * MB5}), "dl:size"),
        Record("NaN", "items", b"adv-i", b'{"item_id":"adv-i","ts":NaN}', "dl:json"),
        Record("huge number", "items", b"adv-i", b'{"item_id":"adv-i","ts":1e400}', "dl:schema"),
        Record("a good item", "items", b"adv-item", good, "item"),
        Record("a good item, then its tombstone", "items", b"adv-item-2", _json({"item_id": "adv-item-2"}), "item"),
        Record("tombstone", "items", b"adv-item-2", None, "removed"),
    ]


def updates_cases(reg: Registry) -> list[Record]:
    def update(version: str, uri: str, sha: str) -> bytes:
        return _json({"version": version, "uri": uri, "sha256": sha, "created_at": "2026-12-01T00:00:00+00:00"})

    name = b"interest"
    return [
        Record("deep nesting", "model-updates", name, b'{"version":' + DEEP + b"}", "refused:message"),
        Record("garbage bytes", "model-updates", name, GARBAGE, "refused:message"),
        Record("empty value (zero bytes)", "model-updates", name, b"", "refused:message"),
        Record("null value", "model-updates", name, None, "refused:message"),
        Record(
            "NaN metric",
            "model-updates",
            name,
            update(reg.current, "", reg.current_sha256)[:-1] + b',"metrics":{"ndcg":NaN}}',
            "refused:message",
        ),
        Record("5 MB", "model-updates", name, b'{"version":"' + b"v" * MB5 + b'"}', "refused:message"),
        Record(
            "an unpromoted version, wrong sha256 (issue 2)",
            "model-updates",
            name,
            update(reg.unpromoted, reg.unpromoted_dir, "0" * 64),
            "refused:not_current",
        ),
        Record(
            "an unpromoted version, right sha256",
            "model-updates",
            name,
            update(reg.unpromoted, reg.unpromoted_dir, reg.unpromoted_sha256),
            "refused:not_current",
        ),
        Record(
            "CURRENT with a wrong sha256",
            "model-updates",
            name,
            update(reg.current, reg.current_dir, "f" * 64),
            "refused:sha256",
        ),
        Record(
            "CURRENT in a folder outside the registry",
            "model-updates",
            name,
            update(reg.current, "/tmp/elsewhere", reg.current_sha256),
            "refused:message",
        ),
    ]
