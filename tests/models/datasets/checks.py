"""Assertions every converted or generated events list must pass."""

from __future__ import annotations

import json

from stream_app.contracts import decode_event, decode_item


def assert_valid_stream(events: list[dict], items: list[dict]) -> None:
    """Every event and item passes its contract, event ids are unique, events are in (ts, user_id) order."""
    for event in events:
        decode_event(json.dumps(event))
    for item in items:
        decode_item(json.dumps(item))
    assert len({e["event_id"] for e in events}) == len(events)
    assert len({i["item_id"] for i in items}) == len(items)
    keys = [(e["ts"], e["user_id"]) for e in events]
    assert keys == sorted(keys)
