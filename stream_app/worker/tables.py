"""Tables of the worker, RocksDB via rocksdict, one store per partition of the events topic:
``user_to_state`` (user_id -> encoded ``UserState`` bytes) and ``partition_to_trending`` (one record
per partition, ``TRENDING_KEY`` -> its ``Trending.snapshot``).

A user's state lives in the partition number of its events, in the local store and in the changelog:
recovery and rebalancing rely on it (tests/stream_app/worker checks it on the real changelog). Faust
picks a table's partition from the *current event* of the stream being iterated, which a
micro-batch processed outside that iteration, a query or a timer does not have; so the worker reads
and writes each partition's store directly (``local_store``).

Writes go to the store and, through librdkafka, to the changelog topic separately
(``write_through``), so that a batch's writes can be awaited before the batch is acked: Faust's own
flush before an offset commit gives up after 0.1 s per pending message
(``ProducerBuffer.flush_atmost``), and a worker killed right after such a commit lost state writes
of committed events (found by the kill -9 test). Faust's aiokafka send path also cost more than
the rest of the batch together (``istream bench e2e --profile``). The records are the ones Faust
would write (same topic, partition, raw key and value; None deletes), so its recovery reads them as
its own.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP
from rocksdict import WriteOptions

from stream_app.worker.outputs import ChangelogProducer
from stream_app.worker.pipeline import StateWrite

# A store's durable copy is its changelog: Faust restores a store from the changelog offset it persisted
# in that store. Writes skip RocksDB's write-ahead log, as Kafka Streams' stores do, so a crash loses
# the unflushed states together with their offset and recovery reads them back from the changelog.
# The log made a put of a user state ten times dearer (28 KB: 34 us against 5; 8 KB: 12.5 against 1.2).
NO_WAL = WriteOptions()
NO_WAL.disable_wal = True

USER_TO_STATE = "user_to_state"
PARTITION_TO_TRENDING = "partition_to_trending"
TRENDING_KEY = b"trending"


def changelog_topic(app_id: str, table: str = USER_TO_STATE) -> str:
    """The changelog topic Faust makes for ``table`` of the app ``app_id``."""
    return f"{app_id}-{table}-changelog"


def _table(app: faust.App, name: str, partitions: int) -> faust.Table:
    return app.Table(
        name,
        partitions=partitions,
        key_type=bytes,  # "raw" serializers: the codec's bytes
        value_type=bytes,
        options={"driver": "rocksdict"},
    )


def user_to_state(app: faust.App, partitions: int) -> faust.Table:
    return _table(app, USER_TO_STATE, partitions)


def partition_to_trending(app: faust.App, partitions: int) -> faust.Table:
    return _table(app, PARTITION_TO_TRENDING, partitions)


def local_store(table: faust.Table, partition: int) -> Any:
    """The local RocksDB (a rocksdict ``Rdict``, raw bytes) of one of ``table``'s partitions this worker
    holds. Faust's store keeps them by partition; it has no public accessor without a current event."""
    return table.data._db_for_partition(partition)


async def write_through(
    table: faust.Table, changelog: ChangelogProducer, records: list[tuple[int, bytes, bytes | None]]
) -> None:
    """``(partition, key, value or None: delete)`` into the local stores and the changelog; returns once
    the changelog has them all."""
    stores: dict[int, Any] = {}
    for partition, key, value in records:
        store = stores.get(partition)
        if store is None:
            store = stores[partition] = local_store(table, partition)
            store.set_write_options(NO_WAL)  # Faust's persisted offset, written next, goes the same way
        if value is None:
            store.delete(key)
        else:
            store.put(key, value)
    for (name, partition), offset in (await changelog.write(table.changelog_topic.get_topic_name(), records)).items():
        # what Faust's own changelog callback records: where recovery of this store resumes
        table.data.set_persisted_offset(TP(name, partition), offset)


class BatchStates:
    """Reads and writes of one micro-batch's user states, each in its events' partition."""

    def __init__(self, table: faust.Table) -> None:
        self._table = table

    def load(self, user_id: str, partition: int) -> bytes | None:
        return local_store(self._table, partition).get(user_id.encode())

    async def write(self, writes: list[StateWrite], changelog: ChangelogProducer) -> None:
        """Store every write locally and in the changelog; returns once the changelog has them all."""
        await write_through(self._table, changelog, [(w.partition, w.user_id.encode(), w.value) for w in writes])
