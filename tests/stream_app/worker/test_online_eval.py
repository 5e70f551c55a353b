"""Online evaluation in process_batch on the real tiny bundle: every applied event judges the list its user
was served before it, exactly as a recomputation from the emitted records does; the window's records."""

from __future__ import annotations

import msgspec
import pytest

from models.ranking import BUCKETS, bucket_name
from stream_app import topics
from stream_app.contracts import Recommendation
from stream_app.worker.event_time import EventTimePolicy
from stream_app.worker.online_eval import (
    BUCKETS as WORKER_BUCKETS,
)
from stream_app.worker.online_eval import (
    LAST_BUCKET,
    Judgements,
    Lineup,
    OnlineConfig,
    OnlineWindow,
    cohort,
    record,
)
from stream_app.worker.pipeline import PipelineConfig
from stream_app.worker.state_codec import decode_state
from tests.stream_app.worker.fixtures import InProcessRun, make_events, online_totals, recompute_online

CONFIG = PipelineConfig(
    top_k=5,
    event_time=EventTimePolicy(lateness_ms=3_600_000),
    seen=10,
    cold_start_events=2,
    online=OnlineConfig(k=5, cold_start_events=2, session_gap_s=1800.0),
)


def test_cohorts_are_istream_evaluates_history_buckets_plus_returning_and_cold_start():
    assert [name for _, name in WORKER_BUCKETS] + [LAST_BUCKET] == [bucket_name(lo, hi) for lo, hi in BUCKETS]
    assert [hi for hi, _ in WORKER_BUCKETS] == [hi for _, hi in BUCKETS[:-1]]
    assert [cohort(n, 0.0, False, 60.0) for n in (1, 2, 3, 5, 6, 10, 11, 50, 51, 10_000)] == [
        "1-2", "1-2", "3-5", "3-5", "6-10", "6-10", "11-50", "11-50", ">50", ">50",
    ]  # fmt: skip
    assert cohort(7, 61.0, False, 60.0) == "returning" and cohort(7, 61.0, True, 60.0) == "cold_start"


@pytest.mark.parametrize("batch_size", [1, 13, 1000])
def test_each_event_judges_the_record_emitted_for_its_users_previous_event(runtime, batch_size):
    events = make_events(runtime.item_ids, n_users=8, per_user=15, seed=40 + batch_size)
    run = InProcessRun(runtime, CONFIG)  # no state cache: every batch reads its states back through the codec
    results = run.events(events, batch_size)
    recs = {
        r.event_id: r
        for res in results
        for o in res.outputs
        if o.kind == topics.RECOMMENDATIONS
        for r in [msgspec.json.decode(o.value, type=Recommendation)]
    }
    expected = recompute_online(events, recs, set(runtime.item_ids), k=5, seen=10, cold_start_events=2)
    counts = Judgements(Lineup(runtime.version))
    for res in results:
        counts.add(res.judgements)
    assert counts.lineup == Lineup(runtime.version)
    assert {v for v, _, _ in counts.judged} == {runtime.version}
    assert {e for _, e, _ in counts.judged} == {"served"}  # no challenger: every list judged was emitted
    as_record = record("w", 0, 1, 5, counts)
    got = online_totals(as_record.judged, as_record.unjudged)
    assert got.keys() == expected.keys()
    for name, value in expected.items():  # sums are rounded to 6 decimals per record row
        assert got[name] == pytest.approx(value, abs=1e-5), name
    # every cohort shows up in this stream (cold-start lists, sessions after an hour's gap, histories of 1-14)
    assert {"judged:cold_start", "judged:returning", "judged:3-5", "judged:11-50"} <= expected.keys()
    assert expected["first_event"] == 8 and expected["unknown_item"] > 0 and 0 < expected["hits"] < expected["judged"]
    assert sum(res.counts["applied"] for res in results) == expected["judged"] + sum(
        expected[r] for r in ("first_event", "unknown_item")
    )
    last = {e.user_id: e.event_id for e in events}
    for user, raw in run.states.items():  # the state keeps the list emitted after the user's last event
        served = decode_state(raw).served
        assert served.items == [s.item_id for s in recs[last[user]].items]
        assert served.model_version == runtime.version and served.exposed


def test_online_evaluation_off_judges_nothing_and_keeps_no_list(runtime):
    from dataclasses import replace

    run = InProcessRun(runtime, replace(CONFIG, online=None))
    results = run.events(make_events(runtime.item_ids, n_users=3, per_user=4, seed=5), 5)
    assert all(r.judgements is None for r in results)
    assert all(decode_state(raw).served is None for raw in run.states.values())


def test_a_window_closes_on_time_and_when_the_lineup_changes():
    now = [1000.0]
    window = OnlineWindow("w-1", 10, 60.0, clock=lambda: now[0])
    first, second = Judgements(Lineup("v1")), Judgements(Lineup("v1", "v2", "shadow"))
    first.judged[("v1", "served", "3-5")] = [4, 1, 0.5, 0.63, 3, 1]
    first.unjudged[("v1", "first_event")] = 2
    second.paired[("v1", "v2")] = [3, 1, 0, 1, -0.25, 0.0625]
    assert window.add(first) is None and window.due() is None
    now[0] += 30
    assert window.add(first) is None
    closed = window.add(second)  # another lineup: the first window ends here
    assert (closed.window_start, closed.window_end, closed.champion, closed.challenger) == (1_000_000, 1_030_000,
                                                                                              "v1", None)  # fmt: skip
    assert [(c.judged, c.hits, c.new_items) for c in closed.judged] == [(8, 2, 6)]
    assert [(u.reason, u.events) for u in closed.unjudged] == [("first_event", 4)]
    now[0] += 59
    assert window.due() is None
    now[0] += 1
    due = window.due()
    assert (due.challenger, due.trial_mode, due.judged, [p.judged for p in due.paired]) == ("v2", "shadow", [], [3])
    assert window.due() is None and window.close() is None  # nothing counted since: no empty records
