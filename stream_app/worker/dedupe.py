"""Stage 2: exactly-once effect under at-least-once delivery, from the user's high-water mark.

An event is a duplicate when its id is one the state remembers (the ids at the newest timestamp
and the recent window), or when it is older than the newest applied event but within the allowed
lateness: with bounded memory a redelivered old event and a genuinely new out-of-order one look the
same, and applying either out of order would change the state, so both are dropped and counted.
Events older than the lateness go to the dead-letter topic as "late". Events at the newest
timestamp with an unknown id are new (sources emit several events in one millisecond).
"""

from __future__ import annotations

from enum import Enum

from stream_app.contracts import Event
from stream_app.worker.state_codec import NO_TS, UserState


class Verdict(Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    LATE = "late"


def classify(user: UserState | None, event: Event, lateness_ms: int) -> Verdict:
    if user is None or user.last_ts == NO_TS or event.ts > user.last_ts:
        return Verdict.APPLY
    if event.event_id in user.ids_at_last_ts or any(e.event_id == event.event_id for e in user.window):
        return Verdict.DUPLICATE
    if event.ts == user.last_ts:
        return Verdict.APPLY
    return Verdict.LATE if user.last_ts - event.ts > lateness_ms else Verdict.DUPLICATE


def advance_mark(user: UserState, event: Event, max_ids: int) -> None:
    """Move the high-water mark past ``event`` (an applied event, never older than the mark)."""
    if event.ts > user.last_ts:
        user.last_ts = event.ts
        user.ids_at_last_ts = [event.event_id]
    else:
        user.ids_at_last_ts.append(event.event_id)
        # Bounded: beyond max_ids events in one millisecond only the newest ids are remembered.
        del user.ids_at_last_ts[:-max_ids]
