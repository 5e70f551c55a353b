"""Split the recent window into fine-tuning data and the held-out newest slice the gate judges on.

The newest ``holdout`` share of the window's events (by event time) is never trained on. The gate
evaluates the users whose *last item* (the protocol's target: consecutive repeats of one item
collapse into one run) begins inside that slice: their window events up to the target are the
history, the target the item to predict, exactly as ``istream evaluate`` treats a whole events file.
A window too small to learn from or to judge on is skipped with a reason, never half-used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from models.sequences import MIN_RUNS


@dataclass(frozen=True)
class WindowSplit:
    train: list[dict]  # events before the cutoff, time order
    holdout: list[dict]  # every window event of the judged users (history + target), time order
    cutoff_ms: int  # first event time of the held-out slice
    judged_users: int
    skip_reason: str | None = None

    def stats(self) -> dict[str, int]:
        return {
            "train_events": len(self.train),
            "holdout_events": len(self.holdout),
            "judged_users": self.judged_users,
            "cutoff_ms": self.cutoff_ms,
        }


def _run_starts(events: list[dict]) -> list[dict]:
    """First event of each run of one user's time-ordered events."""
    return [e for i, e in enumerate(events) if i == 0 or e["item_id"] != events[i - 1]["item_id"]]


def split_window(
    events: list[dict], holdout: float = 0.2, min_train_events: int = 200, min_judged_users: int = 20
) -> WindowSplit:
    """Train on events before the newest ``holdout`` share, judge on users whose target starts after it."""
    ordered = sorted(events, key=lambda e: (e["ts"], e["user_id"]))
    if not ordered:
        return WindowSplit([], [], 0, 0, "the window holds no events")
    cutoff = ordered[min(int(len(ordered) * (1.0 - holdout)), len(ordered) - 1)]["ts"]
    by_user: dict[str, list[dict]] = defaultdict(list)
    for event in ordered:
        by_user[event["user_id"]].append(event)
    judged = set()
    for user, user_events in by_user.items():
        runs = _run_starts(user_events)
        if len(runs) >= MIN_RUNS and runs[-1]["ts"] >= cutoff:
            judged.add(user)
    train = [e for e in ordered if e["ts"] < cutoff]
    split = WindowSplit(
        train=train,
        holdout=[e for e in ordered if e["user_id"] in judged],
        cutoff_ms=int(cutoff),
        judged_users=len(judged),
    )
    if len(train) < min_train_events:
        reason = f"too few events to fine-tune on: {len(train)} before the held-out slice, need {min_train_events}"
    elif len(judged) < min_judged_users:
        reason = (
            f"too few users to judge on: {len(judged)} with a target in the held-out slice, need {min_judged_users}"
        )
    else:
        return split
    return replace(split, skip_reason=reason)
