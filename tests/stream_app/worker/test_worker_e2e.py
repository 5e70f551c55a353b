"""The real worker (`istream worker` subprocess) on the real Tansu broker."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stream_app.contracts import InterestVector, Recommendation
from tests.stream_app.worker.fixtures import (
    WorkerProcess,
    changelog_topic,
    final_states,
    make_events,
    produce_events,
    read_topic,
    stepwise_reference,
)

pytestmark = pytest.mark.integration


def test_every_event_gives_one_vector_and_one_recommendation_equal_to_the_stepwise_reference(
    settings, topics, registry, runtime, tmp_path
):
    events = make_events(runtime.item_ids, n_users=25, per_user=12, seed=21)
    worker = WorkerProcess(settings, registry, tmp_path / "state", tmp_path / "worker.log")
    try:
        produce_events(settings, topics["events"], events)
        vector_msgs = read_topic(settings, topics["vectors"], expect=len(events), timeout=120)
        rec_msgs = read_topic(settings, topics["recommendations"], expect=len(events), timeout=30, idle=0.5)
        states = final_states(settings, changelog_topic(settings))
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]

    vectors = [msgspec.json.decode(m.value(), type=InterestVector) for m in vector_msgs]
    recs = [msgspec.json.decode(m.value(), type=Recommendation) for m in rec_msgs]
    assert sorted(v.event_id for v in vectors) == sorted(e.event_id for e in events)
    assert sorted(r.event_id for r in recs) == sorted(e.event_id for e in events)
    ref = stepwise_reference(runtime, events)
    for v in vectors:
        np.testing.assert_allclose(v.vector, ref.interest[v.event_id], atol=1e-4)
        assert v.model_version == runtime.version
    for r in recs:
        assert len(r.items) == min(10, len(runtime.item_ids)) or r.items

    # each user's state sits in the changelog partition its events came from, and equals the reference
    event_msgs = read_topic(settings, topics["events"], expect=len(events), timeout=30, idle=0.5)
    event_partition = {m.key().decode(): m.partition() for m in event_msgs}
    assert set(states) == {e.user_id for e in events}
    for user, (partition, state) in states.items():
        assert partition == event_partition[user]
        np.testing.assert_allclose(state.state, ref.states[user], atol=1e-5)
