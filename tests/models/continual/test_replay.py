"""The replay's time split: the first share of the time span, then equal-count windows in time order."""

from __future__ import annotations

from models.continual.replay import newest_per_user, time_windows


def test_initial_share_is_by_time_and_windows_by_count() -> None:
    # ten events in the first half of the span (ts 0..9), twelve in the second (ts 90..101)
    events = [{"user_id": f"u{t % 3}", "ts": t} for t in [*range(10), *range(90, 102)]][::-1]
    initial, windows = time_windows(events, initial=0.6, windows=3)
    assert [e["ts"] for e in initial] == list(range(10))
    assert [[e["ts"] for e in w] for w in windows] == [list(range(90, 94)), list(range(94, 98)), list(range(98, 102))]


def test_newest_per_user_keeps_each_users_latest_events_in_order() -> None:
    events = [{"user_id": u, "ts": t} for t in range(6) for u in ("a", "b")] + [{"user_id": "c", "ts": 9}]
    kept = newest_per_user(events, keep=2)
    assert [(e["user_id"], e["ts"]) for e in kept] == [("a", 4), ("b", 4), ("a", 5), ("b", 5), ("c", 9)]
