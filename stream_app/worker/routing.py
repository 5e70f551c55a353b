"""One user, one partition: which events-topic partition a user id belongs to, and records that are elsewhere.

A user's state lives in the partition of its events, so every record of a user must arrive on the
partition the project's producers pick: murmur2 of the key, as Java clients and librdkafka's
``murmur2_random`` partitioner compute it (``client.PRODUCER_DEFAULTS``). A producer with another
partitioner (librdkafka's and kcat's default is CRC32) puts some users elsewhere, where a worker
would fork their state or forget nothing. Such a record is *misrouted*: the worker forwards it to
its user's partition (``forward``) or dead-letters it with reason ``misrouted`` (``deadletter``).

Ordering: records forwarded from one partition keep their order (one idempotent producer, sent in
offset order). A forwarded record lands after whatever its user's partition already holds, so it is
applied in that arrival order, under the event-time policy like any other record.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2  # Kafka's own murmur2 (a Faust dependency), as Java's Utils.murmur2

from stream_app.worker.decode import Incoming


@lru_cache(maxsize=65_536)  # a user's records come back and forth; pure-Python murmur2 costs ~3 us a key
def partition_of(key: bytes, partitions: int) -> int:
    """The partition murmur2 gives ``key`` among ``partitions`` (Java's ``toPositive(murmur2(key)) % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def split_misrouted(incoming: list[Incoming], partitions: int) -> tuple[list[Incoming], list[Incoming]]:
    """``incoming`` as (records on their user's partition, misrouted ones); ``partitions`` 0: no check."""
    if not partitions:
        return incoming, []
    home, away = [], []
    for item in incoming:
        (home if partition_of(item.record.key, partitions) == item.record.partition else away).append(item)
    return home, away
