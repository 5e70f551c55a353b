"""The real worker ranking through the approximate search (ISTREAM_ANN_MIN_ITEMS set low) on the real broker:
catalog upserts join the graph without a rebuild, tombstones and seen items stay out, every list is re-scored
exactly and in order, and the worker's own audit of its recall counts what this test counts."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stream_app.bench.cluster import scrape
from stream_app.broker import free_port
from stream_app.contracts import Recommendation
from tests.stream_app.worker.fixtures import (
    WorkerProcess,
    make_events,
    outputs_for,
    produce,
    produce_events,
    read_topic,
    stepwise_reference,
    wait_until,
)

pytestmark = pytest.mark.integration
NEW_ITEMS = 800  # with the bundle's 20: a catalog the walk answers (k plus seen, times M=32, is less than it)


def test_the_worker_ranks_through_the_graph_as_the_exact_search_would(settings, topics, registry, runtime, tmp_path):
    env = {"ISTREAM_ANN_MIN_ITEMS": "1", "ISTREAM_ANN_INDEX_DIR": str(tmp_path / "ann"), "ISTREAM_ANN_AUDIT_EVERY": "1"}
    rng = np.random.default_rng(5)
    words = ["synth", "pad", "lead", "bass", "drum", "string", "brass", "choir", "organ", "piano"]
    texts = {f"new-{i}": " ".join(rng.choice(words, 4)) + f" {i}" for i in range(NEW_ITEMS)}
    removed = runtime.item_ids[2]
    events = make_events(runtime.item_ids, n_users=12, per_user=8, seed=31)
    port = free_port()
    log = tmp_path / "worker.log"
    with WorkerProcess(settings, registry, tmp_path / "state", log, env=env, web_port=port) as worker:
        worker.wait_for("search graph of 20 items built")
        items = [(k.encode(), msgspec.json.encode({"item_id": k, "text": t})) for k, t in texts.items()]
        produce(settings, topics["items"], [*items, (removed.encode(), None)])
        wait_until(lambda: scrape(port).get("istream_catalog_items") == 20 + NEW_ITEMS - 1, timeout=60)
        produce_events(settings, topics["events"], events)
        recs = read_topic(settings, topics["recommendations"], timeout=120, idle=0.5, until=outputs_for(events))
        metrics = scrape(port)
    assert worker.returncode == 0, worker.output()[-3000:]
    assert metrics["istream_ranking_graph_items"] == 20 + NEW_ITEMS  # the upserts joined the built graph
    assert metrics["istream_catalog_items"] == 20 + NEW_ITEMS - 1

    new_vectors = runtime.item_vectors(runtime.encode(list(texts.values())))
    vectors = dict(zip([*runtime.item_ids, *texts], np.vstack([runtime.item_matrix, new_vectors]), strict=True))
    del vectors[removed]
    ids, matrix = list(vectors), np.stack(list(vectors.values()))
    interest = stepwise_reference(runtime, events).interest
    by_id = {e.event_id: e for e in events}
    seen: dict[str, set[str]] = {}
    decoded = [msgspec.json.decode(m.value(), type=Recommendation) for m in recs]
    assert sorted(r.event_id for r in decoded) == sorted(e.event_id for e in events)
    found = 0
    for r in sorted(decoded, key=lambda r: (by_id[r.event_id].ts, events.index(by_id[r.event_id]))):
        seen.setdefault(r.user_id, set()).add(by_id[r.event_id].item_id)
        scores = matrix @ interest[r.event_id]
        scores[[i for i, item in enumerate(ids) if item in seen[r.user_id]]] = -np.inf
        got = [i.item_id for i in r.items]
        assert len(got) == len(set(got)) == 10 and not set(got) & (seen[r.user_id] | {removed})
        exact = [i.score for i in r.items]
        np.testing.assert_allclose(exact, scores[[ids.index(g) for g in got]], rtol=1e-4, atol=1e-4)  # re-scored
        assert exact == sorted(exact, reverse=True)
        found += len(set(got) & {ids[i] for i in np.argsort(-scores)[:10]})
    # every query audited: the worker's own count of the exact top 10 its walk found is this test's (up to
    # near-ties at the 10th place, which the worker's and this test's float sums may order apart)
    audit = {r: metrics[f"istream_ranking_audit_items_total{{result={r}}}"] for r in ("found", "missed")}
    assert audit["found"] + audit["missed"] == 10 * len(decoded)
    assert abs(audit["found"] - found) <= 0.01 * 10 * len(decoded), (audit, found)
