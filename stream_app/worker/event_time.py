"""Stage 2: the event-time policy, one function of (user state, record) -> apply / duplicate / dead letter.

``decide`` runs for every decoded record of a user, in partition order; the first rule that holds wins:

1. **Redelivery** (``DUPLICATE``): the record's offset is at or below the newest applied record's
   (``last_offset``; a user's records all live in one partition, whose offsets only grow). A crash or
   a rebalance replays records after the last commit: they are dropped whatever their ts or how many
   share one millisecond, and nothing cascades. Events of a history file (``istream bootstrap``) have
   no offset (-1): they leave ``last_offset`` as it was and mark ``history_ts`` instead, the newest ts
   of the user's history.
   **History** (``DUPLICATE``): a record with an offset stamped at or before ``history_ts``: the
   bootstrapped history already holds the user's events up to then, so this is one of them streamed
   (again) after the bootstrap, whatever the id memory still holds.
2. **Known event id** (``DUPLICATE``): the id is one the user's id memory holds (below): a producer
   that sent an event twice (a retry without idempotence, a replayed file, a forwarded misrouted
   record sent again), whatever the copy's ts.
3. Forget requests (a ``forget`` event or a tombstone) are **applied**, whatever their ts: the user's
   state becomes a marker (``forgotten_at`` = the later of the request's time, capped at the worker's
   clock, and the user's newest event; a tombstone's time is its record timestamp) and its outputs get
   tombstones.
4. ``future`` (dead letter): ts more than ``future_skew_ms`` ahead of the worker's clock. Accepted,
   such an event would make the user's genuine events look old.
5. ``forgotten`` (dead letter): ts at or before the user's ``forgotten_at``: an event from before
   an erasure never brings the user back.
6. ``late`` (dead letter): more than ``lateness_ms`` older than the user's newest applied event.
7. ``out_of_order`` (dead letter): older than the newest applied event and not newer than the
   newest id the memory let go (``id_floor_ts``): a new event and a copy of a forgotten id look the
   same there, and neither guess may be taken silently.
8. Otherwise **applied**, in arrival order; an event older than the user's newest (a second
   producer, e.g. web and mobile, a few seconds apart) is stepped with a gap of 0 s and does not
   move ``last_ts``.

The id memory lets an id go only once it is both older than ``id_horizon_ms`` before the user's
newest event and followed by ``recent_ids`` newer ones, and at most ``MAX_REMEMBERED`` are kept: a
slow user's last 64 ids stay however old (a copy sent hours later is still known), a burst of
1,000 events in one millisecond is remembered whole for the horizon (5 minutes: librdkafka's
``delivery.timeout.ms``, the longest a producer retries a record). Any applied event newer than
``id_floor_ts`` is still in the memory, so an unknown id newer than the floor was never applied. The
one case left to chance is a copy of a let-go id with exactly the user's newest ts (rule 8 applies
it: sources emit many events in one millisecond, and those must apply); redeliveries from Kafka
never reach it (rule 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from stream_app.contracts import Event
from stream_app.worker.state_codec import NO_TS, UserState, id_hash


class Verdict(Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Reject:
    """Dead-letter the record with this reason."""

    reason: str
    error: str


# 16 bytes an id: a user's id memory never passes 64 KiB (the state codec counts ids in a u16)
MAX_REMEMBERED = 4096


@dataclass(frozen=True)
class EventTimePolicy:
    lateness_ms: int = 86_400_000
    future_skew_ms: int = 300_000
    recent_ids: int = 64
    id_horizon_ms: int = 300_000


def decide(
    state: UserState | None, event: Event | None, offset: int, now_ms: int, policy: EventTimePolicy
) -> Verdict | Reject:
    """What to do with one record of the user (``event`` None: a tombstone) at events-topic ``offset``."""
    if state is None:
        if event is not None and event.type != "forget" and event.ts > now_ms + policy.future_skew_ms:
            return _future(event, now_ms, policy)
        return Verdict.APPLY
    if 0 <= offset <= state.last_offset:
        return Verdict.DUPLICATE
    if event is None:
        return Verdict.APPLY
    if offset >= 0 and event.ts <= state.history_ts:
        return Verdict.DUPLICATE
    if id_hash(event.event_id) in state.id_hashes:
        return Verdict.DUPLICATE
    if event.type == "forget":
        return Verdict.APPLY
    if event.ts > now_ms + policy.future_skew_ms:
        return _future(event, now_ms, policy)
    if event.ts <= state.forgotten_at:
        return Reject(
            "forgotten", f"event ts {event.ts} is not after the user's erasure (up to ts {state.forgotten_at})"
        )
    if state.last_ts != NO_TS and event.ts < state.last_ts:
        if state.last_ts - event.ts > policy.lateness_ms:
            return Reject(
                "late",
                f"event ts {event.ts} is more than the allowed lateness ({policy.lateness_ms} ms) behind the "
                f"user's newest event ts {state.last_ts}",
            )
        if event.ts <= state.id_floor_ts:
            return Reject(
                "out_of_order",
                f"event ts {event.ts} is older than the user's newest event ts {state.last_ts} and not newer than "
                f"the oldest event ids it remembers (ts {state.id_floor_ts}): it may be a copy of an applied event",
            )
    return Verdict.APPLY


def _future(event: Event, now_ms: int, policy: EventTimePolicy) -> Reject:
    return Reject(
        "future",
        f"event ts {event.ts} is more than {policy.future_skew_ms} ms ahead of the worker's clock ({now_ms})",
    )


def remember(state: UserState, event: Event, offset: int, policy: EventTimePolicy) -> float:
    """Mark ``event`` (at ``offset``; -1: from a history file) applied to ``state``; returns the gap in
    seconds to step it with."""
    gap = 0.0 if state.last_ts == NO_TS else max(0, event.ts - state.last_ts) / 1000.0
    state.last_ts = max(state.last_ts, event.ts)
    if offset < 0:
        state.history_ts = max(state.history_ts, event.ts)
    else:
        state.last_offset = max(state.last_offset, offset)
    state.id_hashes.append(id_hash(event.event_id))
    state.id_ts.append(event.ts)
    kept, horizon = len(state.id_ts), state.last_ts - policy.id_horizon_ms
    cut = 0
    while kept - cut > policy.recent_ids and (state.id_ts[cut] < horizon or kept - cut > MAX_REMEMBERED):
        cut += 1
    if cut:
        state.id_floor_ts = max(state.id_floor_ts, *state.id_ts[:cut])
        del state.id_hashes[:cut], state.id_ts[:cut]
    return gap


def forget(state: UserState | None, event: Event | None, offset: int, record_ts: int, now_ms: int) -> UserState:
    """The marker a forget request (``event`` None: a tombstone with record timestamp ``record_ts``) leaves.
    Its time is capped at the worker's clock: a request stamped in the future would bar the user for good."""
    at = min(event.ts if event is not None else record_ts, now_ms)
    if state is not None:
        at = max(at, state.last_ts, state.forgotten_at)
        offset = max(offset, state.last_offset)
    marker = UserState("", UserState.empty("", 0).state, last_offset=offset, forgotten_at=at)
    marker.history_ts = NO_TS if state is None else state.history_ts
    if event is not None:  # a copy of this request, sent again later, must not erase the user again
        marker.id_hashes.append(id_hash(event.event_id))
        marker.id_ts.append(event.ts)
    return marker
