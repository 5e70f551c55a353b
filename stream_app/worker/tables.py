"""Tables of the worker: ``user_to_state`` (user_id -> encoded ``UserState`` bytes, RocksDB via rocksdict).

A Faust table picks the local RocksDB partition and the changelog partition of a key from the
*current event* of the stream being iterated. A micro-batch (``take_events``) is processed outside
that iteration, so ``in_partition_of(event)`` sets the current event explicitly, around each read
and write, to an event of the partition the user's events came from: the user's state then lives
in the same partition number of the changelog as its events, which is what recovery and
rebalancing rely on (tests/stream_app/worker checks it on the real changelog).

Writes go to the store and, through librdkafka, to the changelog topic separately, so that
``BatchStates.write`` can await the changelog acknowledgements before the batch is acked: Faust's
own flush before an offset commit gives up after 0.1 s per pending message
(``ProducerBuffer.flush_atmost``), and a worker killed right after such a commit lost state writes
of committed events (found by the kill -9 test). Faust's aiokafka send path also cost more than
the rest of the batch together (``istream bench e2e --profile``). The records are the ones Faust
would write (same topic, partition, raw key and value), so its recovery reads them as its own.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import faust
from faust.streams import _current_event
from faust.types import TP

from stream_app.worker.outputs import ChangelogProducer
from stream_app.worker.pipeline import StateWrite

USER_TO_STATE = "user_to_state"


def user_to_state(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        USER_TO_STATE,
        partitions=partitions,
        key_type=bytes,  # "raw" serializers: keys are user ids, values the codec's bytes
        value_type=bytes,
        options={"driver": "rocksdict"},
    )


@contextmanager
def in_partition_of(event: faust.types.EventT) -> Iterator[None]:
    # faust.streams keeps the current event in this context variable (weak reference), which
    # Table.partition_for_key and the RocksDB store read; there is no public setter.
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class BatchStates:
    """Reads and writes of one micro-batch's user states, each in its events' partition."""

    def __init__(self, table: faust.Table, events: list[faust.types.EventT]) -> None:
        self._table = table
        self._event_of = {event.message.partition: event for event in events}

    def load(self, user_id: str, partition: int) -> bytes | None:
        with in_partition_of(self._event_of[partition]):
            return self._table.get(user_id)

    async def write(self, writes: list[StateWrite], changelog: ChangelogProducer) -> None:
        """Store every write locally and in the changelog; returns once the changelog has them all."""
        table = self._table
        for w in writes:
            with in_partition_of(self._event_of[w.partition]):
                table.data[w.user_id] = w.value
        records = [(w.partition, w.user_id.encode(), w.value) for w in writes]
        for (name, partition), offset in (
            await changelog.write(table.changelog_topic.get_topic_name(), records)
        ).items():
            # what Faust's own changelog callback records: where recovery of this store resumes
            table.data.set_persisted_offset(TP(name, partition), offset)
