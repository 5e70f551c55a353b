"""A challenger beside the serving model in process_batch, on the real tiny bundles: in shadow it ranks
what it would serve alone and changes no output; as a canary it serves its share of users; its columns
are rebuilt from the window, swapped in when it is promoted, and dropped when no trial runs."""

from __future__ import annotations

from collections import Counter

import msgspec
import numpy as np
import pytest

from stream_app import topics
from stream_app.contracts import Recommendation
from stream_app.worker.event_time import EventTimePolicy
from stream_app.worker.online_eval import Judgements, Lineup, OnlineConfig, record
from stream_app.worker.pipeline import BatchResult, PipelineConfig
from stream_app.worker.state_codec import decode_state
from stream_app.worker.trial import canary_bucket
from tests.stream_app.worker.fixtures import (
    InProcessRun,
    challenger_of,
    make_events,
    online_totals,
    recompute_online,
)

CONFIG = PipelineConfig(
    top_k=5,
    event_time=EventTimePolicy(lateness_ms=3_600_000),
    seen=10,
    cold_start_events=1,
    online=OnlineConfig(k=5, cold_start_events=1),
)
BATCH = 17


@pytest.fixture(scope="module")
def other_runtime(other_bundle):
    from export.runtime import load_runtime

    return load_runtime(other_bundle)


def _recs(results: list[BatchResult]) -> dict[str, Recommendation]:
    return {
        r.event_id: r
        for res in results
        for o in res.outputs
        if o.kind == topics.RECOMMENDATIONS
        for r in [msgspec.json.decode(o.value, type=Recommendation)]
    }


def _counts(results: list[BatchResult]) -> Judgements:
    total = Judgements(results[0].judgements.lineup)
    for res in results:
        total.add(res.judgements)
    return total


def _by_version(j: Judgements, version: str, exposure: str) -> Counter:
    rows = [c for c in record("w", 0, 1, 5, j).judged if c.model_version == version and c.exposure == exposure]
    return online_totals(rows)


def test_the_cohorts_of_a_canary_are_a_stable_share_of_users():
    share = np.mean([canary_bucket(f"user-{i}") < 0.3 for i in range(20_000)])
    assert abs(share - 0.3) < 0.015 and canary_bucket("user-7") == canary_bucket("user-7")


def test_a_shadow_ranks_what_it_would_serve_alone_and_changes_no_output(runtime, other_runtime):
    events = make_events(runtime.item_ids, n_users=6, per_user=10, seed=7)
    alone, champion = InProcessRun(other_runtime, CONFIG), InProcessRun(runtime, CONFIG)
    both = InProcessRun(runtime, CONFIG, challenger=challenger_of(other_runtime))
    alone_results, champion_results = alone.events(events, BATCH), champion.events(events, BATCH)
    results = both.events(events, BATCH)

    assert [o for r in results for o in r.outputs] == [o for r in champion_results for o in r.outputs]
    counts = _counts(results)
    assert counts.lineup == Lineup(runtime.version, other_runtime.version, "shadow", 0.0)
    ours, theirs = _by_version(counts, runtime.version, "served"), _by_version(counts, other_runtime.version, "shadow")
    assert ours == _by_version(_counts(champion_results), runtime.version, "served")
    assert theirs == _by_version(_counts(alone_results), other_runtime.version, "served") and theirs["judged"] > 40
    assert not _by_version(counts, runtime.version, "shadow") and not _by_version(
        counts, other_runtime.version, "served"
    )
    ((pair, (n, both_hit, champion_only, challenger_only, _, _)),) = counts.paired.items()
    non_cold = [c for c in record("w", 0, 1, 5, counts).judged if c.cohort != "cold_start"]
    assert pair == (runtime.version, other_runtime.version)
    assert n == sum(c.judged for c in non_cold) // 2
    assert both_hit + champion_only == sum(c.hits for c in non_cold if c.model_version == runtime.version)
    assert both_hit + challenger_only == sum(c.hits for c in non_cold if c.model_version == other_runtime.version)
    for user, raw in both.states.items():  # the challenger's columns are the state it would have alone
        state, alone_state = decode_state(raw), decode_state(alone.states[user])
        np.testing.assert_allclose(state.shadow.state, alone_state.state, rtol=1e-5, atol=1e-5)
        assert state.shadow.served.items == alone_state.served.items and not state.shadow.served.exposed
        assert state.served == decode_state(champion.states[user]).served
    assert sum(r.counts["shadow_rebuilt"] for r in results) == 0  # new users: nothing to rebuild


def test_a_canary_serves_its_share_of_users_and_each_arm_is_judged_on_what_it_served(runtime, other_runtime):
    events = make_events(runtime.item_ids, n_users=10, per_user=8, seed=8)
    challenger = challenger_of(other_runtime, "canary", 0.5)
    canary = {e.user_id for e in events if challenger.serves(e.user_id)}
    assert 0 < len(canary) < 10
    alone, champion = InProcessRun(other_runtime, CONFIG), InProcessRun(runtime, CONFIG)
    run = InProcessRun(runtime, CONFIG, challenger=challenger)
    expected = {**_recs(champion.events(events, BATCH)), **{
        event_id: rec for event_id, rec in _recs(alone.events(events, BATCH)).items() if rec.user_id in canary
    }}  # fmt: skip
    results = run.events(events, BATCH)
    recs = _recs(results)
    # canary users get the challenger's lists (and model version), the others the champion's
    assert recs.keys() == expected.keys()
    for event_id, rec in recs.items():
        want = expected[event_id]
        assert rec.model_version == want.model_version
        assert [(i.item_id, i.because) for i in rec.items] == [(i.item_id, i.because) for i in want.items]
        # float32 sums in batches of another make-up: equal to a few units in the last place, at any scale
        np.testing.assert_allclose([i.score for i in rec.items], [i.score for i in want.items], rtol=1e-5, atol=1e-5)
    assert {r.model_version for r in recs.values() if r.user_id in canary} == {other_runtime.version}
    counts = _counts(results)
    served = _by_version(counts, runtime.version, "served") + _by_version(counts, other_runtime.version, "served")
    offline = recompute_online(events, recs, set(runtime.item_ids), k=5, seen=10, cold_start_events=1)
    for name in ("judged", "hits", "new_items", "new_item_hits"):  # what was shown, judged as from outside
        assert served[name] == offline[name], name
    assert _by_version(counts, other_runtime.version, "served")["judged"] > 10
    for user, raw in run.states.items():
        state = decode_state(raw)
        assert state.served.exposed == (user not in canary) and state.shadow.served.exposed == (user in canary)


def test_challenger_columns_are_rebuilt_swapped_in_on_promotion_and_dropped_without_a_trial(runtime, other_runtime):
    events = make_events(runtime.item_ids, n_users=5, per_user=12, seed=9)
    parts = [events[:20], events[20:40], events[40:]]
    alone, champion = InProcessRun(other_runtime, CONFIG), InProcessRun(runtime, CONFIG)
    alone.events(events, BATCH), champion.events(events, BATCH)
    run = InProcessRun(runtime, CONFIG)
    run.events(parts[0], BATCH)
    users = {e.user_id for e in parts[0]}
    run.challenger = challenger_of(other_runtime)
    second = run.events(parts[1], 100)
    assert second[0].counts["shadow_rebuilt"] == len(users & {e.user_id for e in parts[1]}) > 0
    # CURRENT becomes the challenger and the old champion is watched beside it: columns swap, nothing is rebuilt
    run.serving, run.challenger = run.challenger.serving, challenger_of(runtime)
    third = run.events(parts[2], 100)
    assert third[0].counts["rebuilt"] == third[0].counts["shadow_rebuilt"] == 0
    assert third[0].counts["columns_swapped"] == len({e.user_id for e in parts[2]} & users)
    for user, raw in run.states.items():  # every event applied once to each model's columns, whoever served
        state = decode_state(raw)
        assert state.model_version == other_runtime.version and state.shadow.model_version == runtime.version
        np.testing.assert_allclose(state.state, decode_state(alone.states[user]).state, atol=1e-5)
        np.testing.assert_allclose(state.shadow.state, decode_state(champion.states[user]).state, atol=1e-5)
    run.challenger = None
    run.events([msgspec.structs.replace(e, event_id=f"again-{e.event_id}", ts=e.ts + 10**9) for e in parts[2]], 100)
    assert all(
        decode_state(raw).shadow is None for user, raw in run.states.items() if user in {e.user_id for e in parts[2]}
    )
