"""The event-time policy rule by rule (stream_app/worker/event_time.py), and the cases of issue 17."""

import pytest

from stream_app.contracts import Event
from stream_app.worker.event_time import MAX_REMEMBERED, EventTimePolicy, Reject, Verdict, decide, forget, remember
from stream_app.worker.state_codec import UserState, decode_state, encode_state

HOUR = 3_600_000
NOW = 1_765_000_000_000
POLICY = EventTimePolicy(lateness_ms=HOUR, future_skew_ms=300_000, recent_ids=4, id_horizon_ms=0)


def _event(event_id: str, ts: int, type: str = "click") -> Event:
    return Event(event_id=event_id, user_id="u", item_id="i", type=type, ts=ts)


def _apply(state: UserState | None, events: list[Event], first_offset: int = 0) -> UserState:
    """Each event through ``decide`` (it must apply) and ``remember``, as the pipeline does."""
    state = state or UserState.empty("v1", 4)
    for n, e in enumerate(events, start=first_offset):
        assert decide(state, e, n, NOW, POLICY) is Verdict.APPLY, e
        remember(state, e, n, POLICY)
    return decode_state(encode_state(state))  # what the next batch reads


def _reason(verdict) -> str | None:
    return verdict.reason if isinstance(verdict, Reject) else None


def test_a_redelivered_record_is_a_duplicate_whatever_its_id_or_ts():
    state = _apply(None, [_event(f"e{i}", NOW - HOUR // 2) for i in range(1000)])  # 1,000 in one millisecond
    assert state.last_offset == 999 and len(state.id_hashes) == 1000  # all at the newest ts: none let go
    for offset in (0, 500, 999):
        assert decide(state, _event(f"e{offset}", NOW - HOUR // 2), offset, NOW, POLICY) is Verdict.DUPLICATE
    # a new event in the same millisecond, at a new offset, applies: nothing cascades
    assert decide(state, _event("e1000", NOW - HOUR // 2), 1000, NOW, POLICY) is Verdict.APPLY


def test_history_events_have_no_offset_and_every_later_copy_of_one_is_a_duplicate():
    history = [_event(f"h{i}", NOW - HOUR // 2 + i // 3) for i in range(100)]  # 3 a millisecond
    state = UserState.empty("v1", 4)
    for e in history:  # as a bootstrap runs them: no offset, the same millisecond more than once
        assert decide(state, e, -1, NOW, POLICY) is Verdict.APPLY, e
        remember(state, e, -1, POLICY)
    assert decide(state, history[-2], -1, NOW, POLICY) is Verdict.DUPLICATE  # twice in the file: the id memory
    state = decode_state(encode_state(state))
    assert state.last_offset == -1 and state.history_ts == history[-1].ts
    # the live stream: any offset applies (none was taken), but a history event streamed again is dropped
    # whatever the id memory (recent_ids = 4) still holds
    for e in history[:3] + history[-3:]:
        assert decide(state, e, 0, NOW, POLICY) is Verdict.DUPLICATE
    new = _event("live-1", history[-1].ts + 1)
    assert decide(state, new, 0, NOW, POLICY) is Verdict.APPLY
    remember(state, new, 0, POLICY)
    assert (state.last_offset, state.history_ts) == (0, history[-1].ts)


def test_an_event_sent_twice_is_a_duplicate_even_with_another_ts():
    state = _apply(None, [_event("a", NOW - 10_000), _event("b", NOW - 5_000)])
    assert decide(state, _event("a", NOW - 1_000), 7, NOW, POLICY) is Verdict.DUPLICATE
    assert decide(state, _event("b", NOW - 50_000), 8, NOW, POLICY) is Verdict.DUPLICATE


def test_events_from_the_future_are_dead_lettered_and_do_not_hide_later_ones():
    skew = POLICY.future_skew_ms
    for state in (None, _apply(None, [_event("a", NOW - 1000)])):
        assert _reason(decide(state, _event("f", NOW + HOUR), 5, NOW, POLICY)) == "future"
        assert _reason(decide(state, _event("g", 99_999_999_999_999), 5, NOW, POLICY)) == "future"
        assert decide(state, _event("h", NOW + skew), 5, NOW, POLICY) is Verdict.APPLY


def test_out_of_order_within_the_lateness_applies_with_no_gap_and_beyond_it_is_late():
    state = _apply(None, [_event("a", NOW - 10_000)])
    second_producer = _event("b", NOW - 12_500)  # 2.5 s older: another device of the user
    assert decide(state, second_producer, 1, NOW, POLICY) is Verdict.APPLY
    assert remember(state, second_producer, 1, POLICY) == 0.0 and state.last_ts == NOW - 10_000
    assert _reason(decide(state, _event("c", NOW - 10_000 - HOUR - 1), 2, NOW, POLICY)) == "late"


def test_an_unknown_id_no_newer_than_the_forgotten_ids_is_out_of_order_not_guessed():
    # the memory holds 4 ids: after 6 events the two oldest are let go and the floor is their newest ts
    events = [_event(f"e{i}", NOW - 60_000 + 1000 * i) for i in range(6)]
    state = _apply(None, events)
    assert state.id_floor_ts == events[1].ts
    assert _reason(decide(state, _event("e1", events[1].ts), 10, NOW, POLICY)) == "out_of_order"
    assert _reason(decide(state, _event("new", events[0].ts - 1), 10, NOW, POLICY)) == "out_of_order"
    assert decide(state, _event("newer", events[1].ts + 1), 10, NOW, POLICY) is Verdict.APPLY


def test_a_forget_applies_whatever_its_ts_and_nothing_older_resurrects_the_user():
    state = _apply(None, [_event("a", NOW - 5000), _event("b", NOW - 4000)])
    old_forget = _event("f", NOW - HOUR * 5, type="forget")  # older than the lateness: applied all the same
    assert decide(state, old_forget, 2, NOW, POLICY) is Verdict.APPLY
    marker = decode_state(encode_state(forget(state, old_forget, 2, -1, NOW)))
    assert marker.is_marker and marker.forgotten_at == NOW - 4000 and marker.last_offset == 2
    assert decide(marker, _event("a", NOW - 5000), 0, NOW, POLICY) is Verdict.DUPLICATE  # redelivered
    assert _reason(decide(marker, _event("old", NOW - 4500), 3, NOW, POLICY)) == "forgotten"  # from before
    assert decide(marker, old_forget, 4, NOW, POLICY) is Verdict.DUPLICATE  # the same request sent again
    assert decide(marker, _event("back", NOW - 3000), 5, NOW, POLICY) is Verdict.APPLY  # the user comes back


def test_a_tombstone_is_applied_even_for_an_unknown_user_and_is_capped_at_the_clock():
    assert decide(None, None, 0, NOW, POLICY) is Verdict.APPLY
    marker = forget(None, None, 0, NOW + 10 * HOUR, NOW)  # a producer clock far ahead
    assert marker.forgotten_at == NOW
    assert decide(marker, _event("later", NOW + 1), 1, NOW + 1, POLICY) is Verdict.APPLY
    state = _apply(None, [_event("a", NOW - 1000)])
    assert decide(state, None, 0, NOW, POLICY) is Verdict.DUPLICATE  # a tombstone redelivered
    assert decide(state, None, 1, NOW, POLICY) is Verdict.APPLY


@pytest.mark.parametrize("n", [257, 1000])
def test_same_millisecond_bursts_sent_again_are_all_duplicates(n):
    # issue 17 case 3, the copies sent again by a producer (new offsets): nothing applies twice
    policy = EventTimePolicy(lateness_ms=HOUR)
    state = UserState.empty("v1", 4)
    burst = [_event(f"e{i}", NOW - 1000) for i in range(n)]
    for i, e in enumerate(burst):
        assert decide(state, e, i, NOW, policy) is Verdict.APPLY
        remember(state, e, i, policy)
    assert all(decide(state, e, n + i, NOW, policy) is Verdict.DUPLICATE for i, e in enumerate(burst))
    # once the user moves on past the horizon, the burst's ids go but for the newest recent_ids
    later = _event("later", NOW - 1000 + policy.id_horizon_ms + 1)
    remember(state, later, 2 * n, policy)
    assert len(state.id_hashes) == policy.recent_ids and state.id_floor_ts == NOW - 1000


def test_the_id_memory_is_bounded():
    policy = EventTimePolicy(lateness_ms=HOUR)
    state = UserState.empty("v1", 4)
    for i in range(MAX_REMEMBERED + 10):
        remember(state, _event(f"e{i}", NOW - 1000), i, policy)
    assert len(state.id_hashes) == MAX_REMEMBERED and len(encode_state(state)) < 16 * MAX_REMEMBERED + 200
