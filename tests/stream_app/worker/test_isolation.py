"""A batch that fails on one record for a reason of its own (here: the comment encoder raising on one
text, the real bundle's runtime otherwise) is bisected down to that record; the rest is applied."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stream_app import topics
from stream_app.contracts import DeadLetter, Event, InterestVector
from stream_app.worker.decode import RawRecord
from stream_app.worker.isolation import isolate
from stream_app.worker.pipeline import PipelineConfig, process_batch
from stream_app.worker.state_codec import decode_state
from tests.stream_app.worker.fixtures import InProcessRun, make_events, stepwise_reference

POISON = "a text this encoder breaks on"


class EncoderFailingOn:
    """The real runtime, whose encoder raises ``error`` for batches holding ``text``."""

    def __init__(self, runtime, text: str, error: Exception) -> None:
        self._runtime, self._text, self._error = runtime, text, error

    def __getattr__(self, name: str):
        return getattr(self._runtime, name)

    def encode(self, texts):
        if self._text in texts:
            raise self._error
        return self._runtime.encode(texts)


def _run(runtime, error: Exception) -> InProcessRun:
    run = InProcessRun(runtime, PipelineConfig(top_k=3))
    run.serving = type(run.serving)(EncoderFailingOn(runtime, POISON, error), run.serving.index)
    return run


def test_the_failing_record_is_dead_lettered_and_every_other_one_applied(runtime):
    events = make_events(runtime.item_ids, n_users=4, per_user=10, seed=41)
    poison = Event(event_id="poison", user_id="user-2", item_id=runtime.item_ids[0], type="comment",
                   ts=events[17].ts, text=POISON)  # fmt: skip
    stream = [*events[:18], poison, *events[18:]]
    run = _run(runtime, RuntimeError("encoder blew up"))
    records = run.records(stream)
    with pytest.raises(RuntimeError):
        process_batch(records, lambda u, p: run.states.get(u), run.serving, run.trending, run.config)
    result = isolate(
        records, RuntimeError("encoder blew up"), lambda u, p: run.states.get(u), run.serving, run.trending,
        run.config, 1_765_000_000_000,
    )  # fmt: skip
    letters = [msgspec.json.decode(o.value, type=DeadLetter) for o in result.outputs if o.kind == topics.DEADLETTER]
    assert [(d.reason, d.offset) for d in letters] == [("error", 18)]
    assert letters[0].error == "RuntimeError: encoder blew up"
    vectors = [msgspec.json.decode(o.value, type=InterestVector) for o in result.outputs if o.kind == topics.VECTORS]
    assert [v.event_id for v in vectors if v.user_id == "user-2"] == [
        e.event_id for e in events if e.user_id == "user-2"
    ]
    assert sorted(v.event_id for v in vectors) == sorted(e.event_id for e in events)
    assert result.counts["in"] == len(stream) and result.counts["applied"] == len(events)
    # each user's last write is its state after all its events, as if the poison record had never come
    final = {w.user_id: w.value for w in result.writes}
    ref = stepwise_reference(runtime, events)
    for user, state in ref.states.items():
        np.testing.assert_allclose(decode_state(final[user]).state, state, atol=1e-5)
    assert {u for u, _, _ in result.states} == set(ref.states)


def test_a_fault_of_the_environment_is_not_isolated(runtime):
    run = _run(runtime, OSError(28, "No space left on device"))
    poison = Event(event_id="p", user_id="u", item_id="i", type="comment", ts=1, text=POISON)
    records = run.records([poison, msgspec.structs.replace(poison, event_id="q")])
    with pytest.raises(OSError):  # the halves are run again: the disk fault comes out of them
        isolate(records, OSError(28, "disk"), lambda u, p: None, run.serving, run.trending, run.config, 2)


def test_a_catalog_item_whose_embedding_fails_is_dead_lettered_and_the_others_are_indexed(runtime):
    from stream_app.worker.engine import apply_catalog_records
    from stream_app.worker.item_index import Catalog

    run = _run(runtime, RuntimeError("encoder blew up"))
    catalog = Catalog()

    def item(offset: int, key: bytes | None, value: bytes | None) -> RawRecord:
        return RawRecord("t.items", 0, offset, key, value)

    records = [
        item(0, b"new-1", b'{"item_id": "new-1", "text": "a fine new item"}'),
        item(1, b"bad", b'{"item_id": "bad", "text": "' + POISON.encode() + b'"}'),
        item(2, b"new-2", b'{"item_id": "new-2", "text": "another one"}'),
        item(3, b"other", b'{"item_id": "new-3"}'),  # the key must be the item id
        item(4, runtime.item_ids[0].encode(), None),  # a tombstone
    ]
    added, removed, rejected = apply_catalog_records(records, catalog, run.serving)
    assert (added, removed) == (2, 1)
    assert [(r.letter.reason, r.letter.offset) for r in rejected] == [("key", 3), ("error", 1)]
    index = run.serving.index
    assert index.is_alive("new-1") and index.is_alive("new-2") and not index.is_alive(runtime.item_ids[0])
    assert "bad" not in catalog.texts and "bad" not in index.row_of  # a later model does not index it either
