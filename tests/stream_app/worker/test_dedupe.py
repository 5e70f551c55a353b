import numpy as np

from stream_app.contracts import Event
from stream_app.worker.dedupe import Verdict, advance_mark, classify
from stream_app.worker.state_codec import RecentEvent, UserState

HOUR = 3_600_000


def _event(event_id: str, ts: int) -> Event:
    return Event(event_id=event_id, user_id="u", item_id="i", type="click", ts=ts)


def _state_after(*events: Event) -> UserState:
    state = UserState.empty("v1", 4)
    for e in events:
        assert classify(state, e, HOUR) is Verdict.APPLY
        advance_mark(state, e, max_ids=3)
        state.window.append(RecentEvent(e.event_id, e.item_id, 0, -1.0, 0.0))
    return state


def test_new_user_and_newer_events_apply():
    assert classify(None, _event("a", 5), HOUR) is Verdict.APPLY
    state = _state_after(_event("a", 10 * HOUR))
    assert classify(state, _event("b", 10 * HOUR + 1), HOUR) is Verdict.APPLY


def test_redelivered_event_is_a_duplicate():
    state = _state_after(_event("a", 10 * HOUR), _event("b", 11 * HOUR))
    assert classify(state, _event("b", 11 * HOUR), HOUR) is Verdict.DUPLICATE
    assert classify(state, _event("a", 10 * HOUR), HOUR) is Verdict.DUPLICATE


def test_same_millisecond_distinct_events_apply_and_their_redelivery_does_not():
    t = 10 * HOUR
    state = _state_after(_event("a", t), _event("b", t), _event("c", t))
    assert state.ids_at_last_ts == ["a", "b", "c"]
    assert classify(state, _event("d", t), HOUR) is Verdict.APPLY
    for event_id in "abc":
        assert classify(state, _event(event_id, t), HOUR) is Verdict.DUPLICATE


def test_ids_at_one_millisecond_are_bounded():
    t = 10 * HOUR
    state = _state_after(*(_event(f"e{i}", t) for i in range(10)))
    assert state.ids_at_last_ts == ["e7", "e8", "e9"]


def test_older_event_within_lateness_is_dropped_beyond_it_is_late():
    state = _state_after(_event("a", 10 * HOUR))
    assert classify(state, _event("x", 10 * HOUR - HOUR // 2), HOUR) is Verdict.DUPLICATE
    assert classify(state, _event("y", 10 * HOUR - 2 * HOUR), HOUR) is Verdict.LATE


def test_state_arrays_untouched_by_marks():
    state = _state_after(_event("a", 1))
    np.testing.assert_array_equal(state.state, np.zeros(4, dtype=np.float32))
    assert state.last_ts == 1
