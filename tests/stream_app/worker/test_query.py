"""The query API's answers (plain functions) on the real tiny bundle's runtime, against what the stream emitted."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stream_app import topics
from stream_app.contracts import Event, InterestVector, Recommendation
from stream_app.worker.item_index import Catalog, ItemIndex, attribute_labels
from stream_app.worker.pipeline import PipelineConfig, Serving
from stream_app.worker.query import (
    MAX_K,
    QueryFailed,
    RecommendationsQuery,
    interest,
    parse_recommendations,
    recommendations,
)
from stream_app.worker.state_codec import decode_state
from tests.stream_app.worker.fixtures import InProcessRun, make_events, stepwise_reference

CONFIG = PipelineConfig(top_k=5, seen=10, cold_start_events=0)
NOW = 1_800_000_000_000


def _last(results, kind: str, decode_as) -> dict[str, msgspec.Struct]:
    """user_id -> the user's last output record of ``kind``."""
    out = {}
    for r in results:
        for o in r.outputs:
            if o.kind == kind and o.value is not None:
                record = msgspec.json.decode(o.value, type=decode_as)
                out[record.user_id] = record
    return out


@pytest.fixture(scope="module")
def streamed(runtime):
    """Users streamed through the pipeline: the run (its states and trending) and its last outputs."""
    run = InProcessRun(runtime, CONFIG, now_ms=NOW)
    results = run.events(make_events(runtime.item_ids, n_users=4, per_user=8, seed=3), 10)
    return run, _last(results, topics.RECOMMENDATIONS, Recommendation), _last(results, topics.VECTORS, InterestVector)


def _ask(run, user_id: str, query: RecommendationsQuery, catalog: Catalog | None = None, now_ms: int = NOW):
    raw = run.states.get(user_id)
    state = decode_state(raw) if raw is not None else None
    return recommendations(user_id, state, query, run.serving, run.trending, catalog or Catalog(), CONFIG, now_ms)


def test_a_users_answer_is_what_the_stream_emitted_after_its_last_event(streamed):
    run, recs, _ = streamed
    for user_id, rec in recs.items():
        answer = _ask(run, user_id, RecommendationsQuery(k=CONFIG.top_k), now_ms=NOW + 1500)
        assert (answer.event_id, answer.ts, answer.model_version) == (rec.event_id, rec.ts, rec.model_version)
        assert answer.items == rec.items and not answer.cold_start
        assert answer.state_age_s == 1.5  # the worker applied the event at NOW


def test_k_exclusions_seen_items_and_filters_shape_the_answer(streamed, runtime):
    run, recs, _ = streamed
    user_id = next(iter(recs))
    state = decode_state(run.states[user_id])
    live = set(runtime.item_ids)
    seen = set(state.seen) & live
    everything = _ask(run, user_id, RecommendationsQuery(k=MAX_K))
    assert len(everything.items) == len(live - seen)  # min(k, what may be recommended)
    scores = [i.score for i in everything.items]
    assert scores == sorted(scores, reverse=True)
    assert everything.items[: CONFIG.top_k] == recs[user_id].items
    excluded = [i.item_id for i in everything.items[:3]]
    fewer = _ask(run, user_id, RecommendationsQuery(k=4, exclude=(*excluded, "no-such-item")))
    assert fewer.items == everything.items[3:7]
    with_seen = _ask(run, user_id, RecommendationsQuery(k=MAX_K, include_seen=True))
    assert {i.item_id for i in with_seen.items} == live
    catalog = Catalog()
    for item in runtime.item_ids[:6]:
        catalog.apply(item, item, ["odd" if int(item.split("-")[1]) % 2 else "even"])
    odd = _ask(run, user_id, RecommendationsQuery(k=MAX_K, labels=attribute_labels(["odd"])), catalog)
    assert [i.item_id for i in odd.items] == [
        i.item_id for i in everything.items if i.item_id in {"item-1", "item-3", "item-5"}
    ]


def test_a_user_never_seen_gets_as_many_trending_items_as_asked_for_marked_cold(streamed, runtime):
    run, _, _ = streamed
    for k in (1, 7, MAX_K):
        answer = _ask(run, "newcomer", RecommendationsQuery(k=k))
        assert answer.cold_start and (answer.event_id, answer.ts, answer.state_age_s) == (None, None, None)
        assert len(answer.items) == min(k, len(runtime.item_ids))
    row = {item: r for r, item in enumerate(runtime.item_ids)}
    counts = {item: c for item, c in run.trending.counts().items() if item in row}  # unknown items are not ranked
    ranked = [i.item_id for i in _ask(run, "newcomer", RecommendationsQuery(k=len(counts))).items]
    assert ranked == sorted(counts, key=lambda item: (-counts[item], row[item]))


def test_interest_is_the_vectors_after_the_users_last_event(streamed):
    run, _, vectors = streamed
    for user_id, record in vectors.items():
        answer = interest(user_id, decode_state(run.states[user_id]), run.serving, CONFIG, NOW)
        assert (answer.event_id, answer.vector, answer.long_term, answer.short_term) == (
            record.event_id, record.vector, record.long_term, record.short_term
        )  # fmt: skip
    with pytest.raises(QueryFailed) as failed:
        interest("newcomer", None, run.serving, CONFIG, NOW)
    assert failed.value.status == 404


def test_a_state_of_another_model_is_answered_from_its_window_replayed_and_left_as_it_was(runtime, other_bundle):
    from export.runtime import load_runtime

    events = [e for e in make_events(runtime.item_ids, n_users=1, per_user=6, seed=5) if e.text is None]
    run = InProcessRun(runtime, CONFIG, now_ms=NOW)
    run.events(events, 10)
    raw = run.states["user-0"]
    other = load_runtime(other_bundle)
    serving = Serving(other, ItemIndex.for_model(other, Catalog()))
    state = decode_state(raw)
    answer = interest("user-0", state, serving, CONFIG, NOW)
    expected = stepwise_reference(other, events).interest[events[-1].event_id]
    np.testing.assert_allclose(answer.vector, expected, atol=1e-5)
    assert answer.model_version == other.version and state.model_version == runtime.version
    np.testing.assert_array_equal(state.vectors, decode_state(raw).vectors)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ([("k", "0")], "k must be from 1"),
        ([("k", "1001")], "k must be from 1"),
        ([("k", "ten")], "whole number"),
        ([("include_seen", "maybe")], "true or false"),
        ([("tag", "")], "tag must not be empty"),
        ([("category", "a"), ("category", "b")], "one non-empty category"),
        ([("exclude", ",".join(f"i{n}" for n in range(1001)))], "at most 1000"),
        ([("top", "5")], "unknown parameter 'top'"),
    ],
)
def test_bad_parameters_are_400_with_what_to_send(params, says):
    with pytest.raises(QueryFailed, match=says) as failed:
        parse_recommendations(params, 10)
    assert failed.value.status == 400


def test_parameters_parse():
    query = parse_recommendations(
        [("k", "3"), ("exclude", "a,b"), ("exclude", "c"), ("include_seen", "true"), ("tag", "x"), ("category", "y")],
        10,
    )
    assert query == RecommendationsQuery(3, ("a", "b", "c"), True, ("category:y", "tag:x"))
    assert parse_recommendations([], 10) == RecommendationsQuery(10)


def test_a_cold_threshold_answers_known_users_from_trending_until_they_pass_it(runtime):
    config = PipelineConfig(top_k=3, cold_start_events=2)
    run = InProcessRun(runtime, config, now_ms=NOW)
    run.events([Event(event_id="e1", user_id="u", item_id=runtime.item_ids[0], type="click", ts=1)], 10)
    state = decode_state(run.states["u"])
    answer = recommendations("u", state, RecommendationsQuery(k=3), run.serving, run.trending, Catalog(), config, NOW)
    assert answer.cold_start and answer.event_id == "e1" and len(answer.items) == 3
    assert runtime.item_ids[0] not in {i.item_id for i in answer.items}  # seen items stay out of it too
