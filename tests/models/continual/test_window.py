"""Splitting the window: train before the cutoff, judge users whose target starts after it."""

from __future__ import annotations

from models.continual.window import split_window


def ev(user: str, item: str, ts: int) -> dict:
    return {"event_id": f"{user}-{ts}", "user_id": user, "item_id": item, "type": "click", "ts": ts}


def test_judged_users_have_their_target_after_the_cutoff() -> None:
    events = [
        # a: three runs, the last one starts late -> judged
        ev("a", "x", 1), ev("a", "y", 2), ev("a", "z", 90),
        # b: last run (z, z) starts before the cutoff -> not judged, although its last event is late
        ev("b", "x", 3), ev("b", "y", 4), ev("b", "z", 5), ev("b", "z", 95),
        # c: only two runs after collapsing repeats -> never judged
        ev("c", "x", 6), ev("c", "x", 7), ev("c", "y", 96),
        *[ev("d", f"i{k}", 10 + k) for k in range(13)],
    ]  # fmt: skip
    split = split_window(events, holdout=0.13, min_train_events=1, min_judged_users=1)  # 3 of 23 held out
    assert split.cutoff_ms == 90
    assert split.skip_reason is None and split.judged_users == 1
    assert {e["user_id"] for e in split.holdout} == {"a"} and [e["ts"] for e in split.holdout] == [1, 2, 90]
    assert all(e["ts"] < 90 for e in split.train) and len(split.train) == len(events) - 3
    assert [e["ts"] for e in split.train] == sorted(e["ts"] for e in split.train)


def test_empty_and_tiny_windows_are_skipped_with_a_reason() -> None:
    assert split_window([]).skip_reason == "the window holds no events"
    few = [ev("a", f"i{k}", k) for k in range(10)]
    assert "too few events to fine-tune on: 8" in split_window(few, min_train_events=50).skip_reason
    assert "too few users to judge on: 1" in split_window(few, min_train_events=5, min_judged_users=2).skip_reason
