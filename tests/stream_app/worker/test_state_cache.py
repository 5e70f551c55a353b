"""The worker's cache of decoded user states: what it keeps, what it drops, and that a batch served
from it gives exactly what the same batch gives from the stored bytes."""

from __future__ import annotations

import dataclasses

import msgspec
import numpy as np

from stream_app import topics
from stream_app.contracts import Event, InterestVector, Recommendation
from stream_app.worker.event_time import EventTimePolicy
from stream_app.worker.pipeline import PipelineConfig
from stream_app.worker.state_cache import NOT_CACHED, StateCache
from stream_app.worker.state_codec import (
    RecentEvent,
    Served,
    ShadowColumns,
    UserState,
    decode_state,
    encode_state,
    id_array,
)
from tests.stream_app.worker.fixtures import InProcessRun, make_events

CONFIG = PipelineConfig(
    top_k=5, event_time=EventTimePolicy(lateness_ms=3_600_000), window=8, seen=6, cold_start_events=0
)


def _state(version: str = "v1") -> UserState:
    return UserState.empty(version, 4)


def _written(cache: StateCache, states) -> None:
    """One batch through the cache as the engine runs it: held, then released once written."""
    generation = cache.generation
    cache.release(cache.hold(states), generation)


def test_take_hands_the_state_over_and_leaves_nothing_behind():
    cache = StateCache(10)
    state = _state()
    _written(cache, [("a", 0, state)])
    assert cache.take("a") is state
    assert cache.take("a") is NOT_CACHED and len(cache) == 0


def test_queries_read_the_users_of_the_batch_being_computed_as_they_were_before_it():
    """The batch thread changes its users' states in place: a query reads a snapshot taken before it."""
    cache = StateCache(10)
    before, other = _state(), _state()
    before.seen, before.applied = ["x"], 1
    _written(cache, [("a", 0, before), ("b", 0, other)])
    cache.hold([("gone", 1, None)])  # deleted by an earlier batch still being written
    cache.computing(["a", "gone", "new"])
    assert cache.take("a") is before  # the batch itself takes its states as always, and steps them in place
    before.seen.append("y")
    before.applied, before.state = 2, np.ones(4, dtype=np.float32)
    seen_by_query = cache.peek("a")
    assert seen_by_query is not before
    assert (seen_by_query.seen, seen_by_query.applied) == (["x"], 1) and not seen_by_query.state.any()
    assert cache.peek("gone") is None  # still deleted, not read from the table
    assert cache.peek("new") is NOT_CACHED  # the table has it as it was: nothing writes it before the batch is held
    assert cache.peek("b") is other  # users outside the batch are read as always
    after = _state("v2")
    cache.hold([("a", 0, after)])
    cache.computing(())
    assert cache.peek("a") is after


def test_a_snapshot_has_every_field_a_reader_sees_and_shares_no_list_a_step_changes():
    state = UserState(
        "v1", np.arange(4, dtype=np.float32), 5, 7, ["i1"], [RecentEvent("e1", "i1", 1, -1.0, 0.5)],
        last_offset=11, forgotten_at=3, id_floor_ts=2, id_hashes=id_array("Q", [9]), id_ts=id_array("q", [5]),
        active_at=13, history_ts=4, vectors=np.ones((3, 2), dtype=np.float32), served=Served("v1", True, ["i2"]),
        shadow=ShadowColumns("v2", np.zeros(2, dtype=np.float32)), item_rows=object(),
    )  # fmt: skip
    copy = state.snapshot()
    left_out = {"served", "shadow", "item_rows"}
    for f in dataclasses.fields(UserState):
        mine, theirs = getattr(copy, f.name), getattr(state, f.name)
        if f.name in left_out:
            assert mine is None, f.name
        elif isinstance(theirs, (list, type(state.id_hashes))):
            assert mine == theirs and mine is not theirs, f.name
        else:
            assert mine is theirs, f.name  # arrays a step replaces, never changes: shared


def test_a_held_batch_is_read_before_it_is_written_deletions_included():
    cache = StateCache(0)  # even with no room for written states
    state = _state()
    cache.hold([("a", 0, state), ("gone", 1, None)])
    assert cache.take("a") is state
    assert cache.take("gone") is None  # deleted: not "unknown", which would read the stale table
    cache.release(cache.hold([("a", 0, state)]), cache.generation)
    assert cache.take("a") is NOT_CACHED and len(cache) == 0


def test_a_state_a_later_batch_holds_again_stays_held_until_that_batch_is_written():
    cache = StateCache(0)  # nothing survives a release: what is held is exactly what is still read
    first_a, second_a, b = _state("first"), _state("second"), _state()
    first = cache.hold([("a", 0, first_a), ("b", 0, b)])
    assert cache.take("a") is first_a  # the next batch takes a while the first is being written
    second = cache.hold([("a", 0, second_a)])
    cache.release(first, cache.generation)  # the first batch's writes are done; the second's are not
    assert cache.peek("b") is NOT_CACHED
    assert cache.peek("a") is second_a  # the table does not have it yet: it must still be read here
    cache.release(second, cache.generation)
    assert cache.peek("a") is NOT_CACHED


def test_a_deleted_state_leaves_the_cache_once_written():
    cache = StateCache(10)
    _written(cache, [("a", 0, _state())])
    _written(cache, [("a", 0, None)])
    assert cache.take("a") is NOT_CACHED


def test_least_recently_written_users_are_evicted_first():
    cache = StateCache(2)
    _written(cache, [("a", 0, _state()), ("b", 0, _state())])
    _written(cache, [("a", 0, _state())])  # a is the newest now
    _written(cache, [("c", 1, _state())])
    assert len(cache) == 2
    assert cache.take("b") is NOT_CACHED
    assert cache.take("a") is not NOT_CACHED and cache.take("c") is not NOT_CACHED


def test_dropped_partitions_lose_their_users_and_a_batch_that_overlapped_releases_nothing():
    cache = StateCache(10)
    _written(cache, [("a", 0, _state()), ("b", 1, _state())])
    started = cache.generation
    batch = cache.hold([("c", 0, _state()), ("d", 1, _state())])
    cache.drop_partitions([1])
    assert cache.take("b") is NOT_CACHED and cache.take("d") is NOT_CACHED
    assert cache.take("a") is not NOT_CACHED
    cache.release(batch, started)  # the batch began before the drop
    assert cache.take("c") is NOT_CACHED
    _written(cache, [("c", 0, _state())])
    assert cache.take("c") is not NOT_CACHED


def test_capacity_zero_keeps_nothing_written():
    cache = StateCache(0)
    _written(cache, [("a", 0, _state())])
    assert len(cache) == 0 and cache.take("a") is NOT_CACHED


def _assert_same_state(a: UserState, b: UserState) -> None:
    marks = ("model_version", "last_ts", "applied", "last_offset", "id_floor_ts", "id_hashes", "id_ts", "seen")
    assert [getattr(a, m) for m in marks] == [getattr(b, m) for m in marks]
    np.testing.assert_array_equal(a.state, b.state)
    assert len(a.window) == len(b.window)
    for x, y in zip(a.window, b.window, strict=True):
        assert x[:3] == y[:3]
        assert np.float32(x.rating) == np.float32(y.rating) and np.float32(x.gap_s) == np.float32(y.gap_s)
        assert (x.comment_emb is None) == (y.comment_emb is None)
        if x.comment_emb is not None:
            np.testing.assert_array_equal(x.comment_emb, y.comment_emb)


NOW = 1_800_000_000_000


def test_batches_served_from_the_cache_equal_batches_served_from_the_store(runtime):
    events = make_events(runtime.item_ids, n_users=5, per_user=16, seed=23)  # clicks, ratings, comments
    forget = Event(event_id="f", user_id="user-1", item_id="-", type="forget", ts=max(e.ts for e in events) + 1)
    events = [*events, forget]
    # one clock for both: a state keeps when it was last active
    stored, cached = InProcessRun(runtime, CONFIG, now_ms=NOW), InProcessRun(runtime, CONFIG, StateCache(100), NOW)
    from_store, from_cache = stored.events(events, 9), cached.events(events, 9)

    assert sum(r.counts["state_cached"] for r in from_cache) > 0
    assert sum(r.counts["state_cached"] for r in from_store) == 0
    assert [(o.kind, o.key, o.value) for r in from_store for o in r.outputs] == [
        (o.kind, o.key, o.value) for r in from_cache for o in r.outputs
    ]
    assert stored.states == cached.states and decode_state(cached.states["user-1"]).is_marker
    # what the cache holds is what a read of the store would give, comment embeddings included
    assert len(cached.cache) == len(cached.states)
    kept = {user: cached.cache.take(user) for user in cached.states}
    assert any(e.comment_emb is not None for state in kept.values() for e in state.window)
    for user, raw in cached.states.items():
        _assert_same_state(kept[user], decode_state(raw))
        assert encode_state(kept[user]) == raw
    assert any(o.kind == topics.VECTORS and o.value is None for r in from_cache for o in r.outputs)


def test_an_item_seen_before_the_catalog_knew_it_stays_excluded_once_it_has_a_row(runtime):
    # cached states keep their seen items' rows; an unknown item (-1) that the catalog adds later
    # must be excluded by its new row, not stay unknown
    run = InProcessRun(runtime, CONFIG, StateCache(100))
    first = make_events(runtime.item_ids, n_users=1, per_user=3, seed=41)
    t = max(e.ts for e in first)
    novel = Event(event_id="n1", user_id="user-0", item_id="brand-new", type="click", ts=t + 1)
    (result,) = run.events([*first, novel], 10)
    interest = msgspec.json.decode(result.outputs[-2].value, type=InterestVector).vector
    index = run.serving.index
    index.upsert(["brand-new"], 100 * np.array([interest], dtype=np.float32), new=["brand-new"])
    after = Event(event_id="n2", user_id="user-0", item_id=runtime.item_ids[0], type="view", ts=t + 2)
    (result,) = run.events([after], 10)
    assert result.counts["state_cached"] == 1
    rec = msgspec.json.decode(result.outputs[-1].value, type=Recommendation)
    now = np.array(msgspec.json.decode(result.outputs[-2].value, type=InterestVector).vector)
    # not excluded, it would have come first: the test means something
    assert now @ index.vectors(["brand-new"])[0] > rec.items[0].score
    assert "brand-new" not in [s.item_id for s in rec.items]
