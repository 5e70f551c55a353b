"""process_batch on the real tiny bundle's runtime, against the stepwise reference."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stream_app import topics
from stream_app.contracts import DeadLetter, Event, InterestVector, Recommendation
from stream_app.worker.decode import RawRecord
from stream_app.worker.event_time import EventTimePolicy
from stream_app.worker.item_index import Catalog, ItemIndex
from stream_app.worker.pipeline import BatchResult, PipelineConfig, Serving
from stream_app.worker.state_codec import decode_state
from tests.stream_app.worker.fixtures import InProcessRun, make_events, stepwise_reference

CONFIG = PipelineConfig(
    top_k=5, event_time=EventTimePolicy(lateness_ms=3_600_000), window=32, seen=10, cold_start_events=0
)


def _outputs(results: list[BatchResult], kind: str, decode_as):
    return [
        msgspec.json.decode(o.value, type=decode_as) if o.value is not None else (o.key, None)
        for r in results
        for o in r.outputs
        if o.kind == kind
    ]


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batches_equal_the_stepwise_reference(runtime, batch_size):
    events = make_events(runtime.item_ids, n_users=6, per_user=10, seed=batch_size)
    run = InProcessRun(runtime, CONFIG)
    results = run.events(events, batch_size)
    ref = stepwise_reference(runtime, events)

    vectors = _outputs(results, topics.VECTORS, InterestVector)
    recs = _outputs(results, topics.RECOMMENDATIONS, Recommendation)
    assert [v.event_id for v in vectors] == [r.event_id for r in recs]
    assert sorted(v.event_id for v in vectors) == sorted(e.event_id for e in events)
    for v in vectors:
        np.testing.assert_allclose(v.vector, ref.interest[v.event_id], atol=1e-4)
        assert v.model_version == runtime.version and len(v.long_term) == len(v.short_term) == runtime.dim
    for user, state in ref.states.items():
        np.testing.assert_allclose(decode_state(run.states[user]).state, state, atol=1e-5)
    assert sum(r.counts["applied"] for r in results) == len(events)


def test_events_of_one_user_apply_in_order_within_a_batch(runtime):
    events = make_events(runtime.item_ids, n_users=1, per_user=12, seed=3)
    run = InProcessRun(runtime, CONFIG)
    (result,) = run.events(events, 100)
    ref = stepwise_reference(runtime, events)
    vectors = _outputs([result], topics.VECTORS, InterestVector)
    assert [v.event_id for v in vectors] == [e.event_id for e in events]
    for v in vectors:
        np.testing.assert_allclose(v.vector, ref.interest[v.event_id], atol=1e-4)
    state = decode_state(run.states["user-0"])
    assert state.applied == 12 and state.last_ts == events[-1].ts and len(state.window) == 12


def test_redelivered_events_change_nothing_and_emit_nothing(runtime):
    events = make_events(runtime.item_ids, n_users=4, per_user=8, seed=5)
    run = InProcessRun(runtime, CONFIG)
    run.events(events, 10)
    before = dict(run.states)
    (again,) = run.events(events[5:25], 100)
    assert again.outputs == [] and again.writes == []
    assert again.counts["duplicates"] == 20 and again.counts["applied"] == 0
    assert run.states == before


def test_out_of_order_events_within_the_lateness_apply_and_late_ones_go_to_dead_letter(runtime):
    run = InProcessRun(runtime, CONFIG)
    first = Event(event_id="a", user_id="u", item_id=runtime.item_ids[0], type="click", ts=10 * 3_600_000)
    earlier = Event(event_id="b", user_id="u", item_id=runtime.item_ids[1], type="click", ts=10 * 3_600_000 - 1000)
    late = Event(event_id="c", user_id="u", item_id=runtime.item_ids[1], type="click", ts=5 * 3_600_000)
    (result,) = run.events([first, earlier, late], 10)
    letters = _outputs([result], topics.DEADLETTER, DeadLetter)
    assert [(d.reason, d.offset) for d in letters] == [("late", 2)]
    assert result.counts["duplicates"] == 0 and result.counts["applied"] == 2
    # in arrival order, the earlier one stepped with no time gap; the newest ts stays
    vectors = _outputs([result], topics.VECTORS, InterestVector)
    assert [v.event_id for v in vectors] == ["a", "b"]
    state = decode_state(run.states["u"])
    assert state.last_ts == first.ts and state.window[-1].gap_s == 0.0


def test_bad_records_are_dead_lettered_and_good_ones_around_them_processed(runtime):
    run = InProcessRun(runtime, CONFIG)
    good = make_events(runtime.item_ids, n_users=2, per_user=2, seed=9)
    records = run.records(good[:2])
    records.append(RawRecord("t.events", 0, 99, b"user-0", b"\xff not json"))
    records += run.records(good[2:])
    (result,) = [run.batch(records)]
    (letter,) = _outputs([result], topics.DEADLETTER, DeadLetter)
    assert letter.reason == "encoding" and letter.offset == 99 and letter.raw_encoding == "base64"
    assert result.counts["applied"] == 4 and result.dead_letter_reasons == {"encoding": 1}


def test_forget_deletes_the_state_and_emits_tombstones(runtime):
    run = InProcessRun(runtime, CONFIG)
    events = make_events(runtime.item_ids, n_users=1, per_user=3, seed=11)
    forget = Event(event_id="f", user_id="user-0", item_id="-", type="forget", ts=events[-1].ts + 1)
    after = Event(event_id="n", user_id="user-0", item_id=runtime.item_ids[2], type="like", ts=events[-1].ts + 2)
    (result,) = run.events([*events, forget, after], 100)
    kinds = [(o.kind, o.value is None) for o in result.outputs]
    # three updates, the two tombstones, then the update of the new life
    assert kinds == [(topics.VECTORS, False), (topics.RECOMMENDATIONS, False)] * 3 + [
        (topics.VECTORS, True),
        (topics.RECOMMENDATIONS, True),
        (topics.VECTORS, False),
        (topics.RECOMMENDATIONS, False),
    ]
    ref = stepwise_reference(runtime, [after])
    state = decode_state(run.states["user-0"])
    assert state.applied == 1
    np.testing.assert_allclose(state.state, ref.states["user-0"], atol=1e-5)
    # a tombstone on the events topic forgets too: the user's state becomes a marker
    result = run.batch([RawRecord("t.events", 0, 500, b"user-0", None, after.ts + 10)])
    marker = decode_state(run.states["user-0"])
    assert marker.is_marker and not marker.window and not marker.seen and marker.forgotten_at == after.ts + 10
    assert [o.value for o in result.outputs] == [None, None]


def test_state_of_another_model_is_rebuilt_from_its_window(runtime, other_bundle):
    from export.runtime import load_runtime

    other = load_runtime(other_bundle)
    events = [e for e in make_events(runtime.item_ids, n_users=3, per_user=6, seed=13) if e.text is None]
    history, new = events[:-3], events[-3:]
    run = InProcessRun(runtime, CONFIG)
    run.events(history, 50)
    run.serving = Serving(other, ItemIndex.for_model(other, Catalog()))
    (result,) = run.events(new, 50)
    assert result.counts["rebuilt"] == len({e.user_id for e in new})
    ref = stepwise_reference(other, events)
    for v in _outputs([result], topics.VECTORS, InterestVector):
        assert v.model_version == other.version
        np.testing.assert_allclose(v.vector, ref.interest[v.event_id], atol=1e-4)


def test_recommendations_rank_unseen_items_and_say_because(runtime):
    run = InProcessRun(runtime, CONFIG)
    events = make_events(runtime.item_ids, n_users=3, per_user=6, seed=17)
    results = run.events(events, 50)
    matrix = {item: runtime.item_matrix[i] for i, item in enumerate(runtime.item_ids)}
    vectors = {v.event_id: np.array(v.vector) for v in _outputs(results, topics.VECTORS, InterestVector)}
    seen: dict[str, list[str]] = {}
    windows: dict[str, list[Event]] = {}
    by_id = {e.event_id: e for e in events}
    for rec in _outputs(results, topics.RECOMMENDATIONS, Recommendation):
        e = by_id[rec.event_id]
        seen.setdefault(e.user_id, []).append(e.item_id)
        windows.setdefault(e.user_id, []).append(e)
        ids = [s.item_id for s in rec.items]
        assert len(ids) == CONFIG.top_k and not set(ids) & set(seen[e.user_id][-CONFIG.seen :])
        scores = [s.score for s in rec.items]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, [vectors[rec.event_id] @ matrix[i] for i in ids], rtol=1e-4, atol=1e-5)
        unseen = [i for i in runtime.item_ids if i not in seen[e.user_id][-CONFIG.seen :]]
        best = max(vectors[rec.event_id] @ matrix[i] for i in unseen)
        assert scores[0] == pytest.approx(best, rel=1e-4, abs=1e-5)
        known = [w for w in windows[e.user_id] if w.item_id in matrix]
        for s in rec.items:
            expected = max(known, key=lambda w, s=s: float(matrix[w.item_id] @ matrix[s.item_id]))
            assert s.because == expected.event_id


def test_cold_users_get_trending_items(runtime):
    config = PipelineConfig(top_k=3, cold_start_events=2)
    run = InProcessRun(runtime, config)
    popular = runtime.item_ids[:3]
    picks = [0] * 6 + [1] * 4 + [2] * 2
    crowd = [
        Event(event_id=f"c{i}", user_id=f"crowd-{i}", item_id=popular[p], type="click", ts=1000 + i)
        for i, p in enumerate(picks)
    ]
    run.events(crowd, 100)
    newcomer = Event(event_id="n1", user_id="newbie", item_id=runtime.item_ids[5], type="view", ts=5000)
    (result,) = run.events([newcomer], 10)
    (rec,) = _outputs([result], topics.RECOMMENDATIONS, Recommendation)
    assert [s.item_id for s in rec.items] == [popular[0], popular[1], popular[2]]
    second = Event(event_id="n2", user_id="newbie", item_id=runtime.item_ids[6], type="view", ts=6000)
    (result,) = run.events([second], 10)
    (rec,) = _outputs([result], topics.RECOMMENDATIONS, Recommendation)
    assert all(s.because is not None for s in rec.items)  # model-scored now


def test_unreadable_stored_state_restarts_the_user(runtime):
    run = InProcessRun(runtime, CONFIG)
    run.states["user-0"] = b"\x07garbage"
    events = make_events(runtime.item_ids, n_users=1, per_user=2, seed=19)
    (result,) = run.events(events, 10)
    assert result.counts["state_corrupt"] == 1 and result.counts["applied"] == 2
    np.testing.assert_allclose(
        decode_state(run.states["user-0"]).state, stepwise_reference(runtime, events).states["user-0"], atol=1e-5
    )


@pytest.mark.parametrize("action", ["forward", "deadletter"])
def test_records_off_their_users_partition_are_forwarded_or_dead_lettered(runtime, action):
    from stream_app.worker.routing import partition_of

    config = PipelineConfig(top_k=3, partitions=8, misrouted=action)
    run = InProcessRun(runtime, config)
    event = Event(event_id="e1", user_id="u42", item_id=runtime.item_ids[0], type="click", ts=1_700_000_000_000)
    home = partition_of(b"u42", 8)
    assert home == 7  # what kcat -X partitioner=murmur2_random and the client pick (tests/deploy/test_kcat.py)
    value = msgspec.json.encode(event)
    away = [RawRecord("t.events", 6, 0, b"u42", value), RawRecord("t.events", 6, 1, b"u42", None)]
    result = run.batch([*away, RawRecord("t.events", home, 0, b"u42", value)])
    assert result.counts["misrouted"] == 2 and result.counts["applied"] == 1  # the copy at home applies
    if action == "forward":
        forwarded = [o for o in result.outputs if o.kind == topics.EVENTS]
        assert [(o.key, o.value, o.partition) for o in forwarded] == [(b"u42", value, 7), (b"u42", None, 7)]
    else:
        letters = _outputs([result], topics.DEADLETTER, DeadLetter)
        assert [(d.reason, d.partition, d.offset) for d in letters] == [("misrouted", 6, 0), ("misrouted", 6, 1)]
        assert "belongs to partition 7" in letters[0].error
