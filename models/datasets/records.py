"""Shared shape of converted data: event and item dicts as written to JSONL, and their bounds.

An event dict is ``{event_id, user_id, item_id, type, ts[, text][, rating]}`` (the ``Event``
contract of ``stream_app/contracts``); an item dict is ``{item_id, text}``. The bounds are
repeated here because ``models`` does not import ``stream_app``; a test checks both agree.
"""

from __future__ import annotations

from typing import NamedTuple

EVENT_TYPES = ("click", "view", "like", "purchase", "rating", "comment")
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 32_768


class Dataset(NamedTuple):
    """Events sorted by (ts, user_id) and the item catalog."""

    events: list[dict]
    items: list[dict]


def truncate_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, at the last word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space].rstrip() if space > 0 else cut


def sort_events(events: list[dict]) -> list[dict]:
    """Events in replay order: by ts, then user_id; ties keep their input order (stable sort)."""
    return sorted(events, key=lambda e: (e["ts"], e["user_id"]))
