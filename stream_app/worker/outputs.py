"""What a batch writes to Kafka, through librdkafka: output records, then user-state changelog records.

Faust's per-message Python send path (aiokafka) was the worker's bottleneck, so both go through
confluent-kafka producers, each flushed (every delivery confirmed) before the batch goes on.
Ordering of effects per batch: outputs (vectors, recommendations, tombstones, dead letters) are
produced and flushed first; the user states are written to the local store and their changelog
records flushed next (``tables.BatchStates.write``); only then are the batch's events acked, so
Faust may commit them. The next batches are computed and their outputs sent meanwhile; their writes
follow in order (``engine.WRITES_IN_FLIGHT``). A crash before the state write replays the batch on restart:
the same states and model give the same outputs again, so consumers see at-least-once outputs
(the same event and model version; values equal up to float32 noise, as the replayed batch may be
composed differently and ONNX Runtime's kernels round per batch shape), and every state change is
applied exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from stream_app.client import PRODUCER_DEFAULTS
from stream_app.exceptions import InterestStreamError
from stream_app.worker.pipeline import Output


class OutputError(InterestStreamError):
    """Records could not be delivered; the worker stops so the batch is not committed."""


class BatchProducer:
    """A librdkafka producer whose ``flush`` awaits every record sent so far and reports the
    newest delivered offset of each (topic, partition); with ``offsets=False`` it reports none, and
    librdkafka reports only failed deliveries: a report is a call into Python per record, on the
    event loop, that the output records (two an event) do not need."""

    def __init__(self, kafka_config: dict[str, Any], offsets: bool = True, **overrides: Any) -> None:
        self._errors: list[KafkaError] = []
        self._offsets: dict[tuple[str, int], int] = {}
        # the client's settings: acks from all replicas, ordered retries, Java's partitioner, lz4
        self._producer = Producer(
            {
                **kafka_config,
                **PRODUCER_DEFAULTS,
                "queue.buffering.max.messages": 1_000_000,
                "delivery.report.only.error": not offsets,
                **overrides,
            }
        )

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(err)
            return
        key = (msg.topic(), msg.partition())
        if msg.offset() > self._offsets.get(key, -1):
            self._offsets[key] = msg.offset()

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)

    async def flush(self) -> dict[tuple[str, int], int]:
        """Once every record sent so far is acknowledged: their newest offset per (topic, partition).
        ``OutputError`` if any failed."""
        while self._producer.flush(0) > 0:
            await asyncio.sleep(0.001)
        offsets, self._offsets = self._offsets, {}
        if self._errors:
            errors, self._errors = self._errors, []
            raise OutputError(f"{len(errors)} records were not delivered, first: {errors[0]}")
        return offsets

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)


class OutputProducer(BatchProducer):
    """Output records by topic kind (``topics.VECTORS`` ...), lz4-compressed batches."""

    def __init__(self, kafka_config: dict[str, Any], topic_names: dict[str, str]) -> None:
        super().__init__(kafka_config, offsets=False, **{"linger.ms": 2})
        self._topics = topic_names

    def send_outputs(self, outputs: list[Output]) -> None:
        names, send = self._topics, self.send
        for out in outputs:
            send(names[out.kind], out.key, out.value, out.partition)


class ChangelogProducer:
    """User-state changelog records (explicit partitions: a state lives in the partition of its
    user's events), lz4-batched.

    On Tansu (``tail_alone``) the high watermark is the base offset of a partition's last batch
    plus one, and a table recovery that reads up to it would miss the rest of that batch. So each
    write sends the last record of every partition on its own, after the others are acknowledged:
    whenever a write has finished, every partition ends in a one-record batch and its watermark is
    exact. A crash between the two sends leaves a batch that was never acked; its events are
    replayed on restart, and each user whose record the recovery missed is stepped again from the
    state before that batch, which is the record before it."""

    def __init__(self, kafka_config: dict[str, Any], tail_alone: bool) -> None:
        # with the tails, every partition's newest offset is its tail's
        self._batched = BatchProducer(kafka_config, offsets=not tail_alone, **{"linger.ms": 2})
        self._tail = BatchProducer(kafka_config, **{"linger.ms": 0, "batch.num.messages": 1}) if tail_alone else None

    async def write(self, topic: str, records: list[tuple[int, bytes, bytes | None]]) -> dict[tuple[str, int], int]:
        """Send ``(partition, key, value)`` records; once all are acknowledged, the newest offset per partition."""
        tails = set({partition: i for i, (partition, _, _) in enumerate(records)}.values()) if self._tail else set()
        for i, (partition, key, value) in enumerate(records):
            if i not in tails:
                self._batched.send(topic, key, value, partition)
        offsets = await self._batched.flush()
        if self._tail is not None:
            for i in sorted(tails):
                partition, key, value = records[i]
                self._tail.send(topic, key, value, partition)
            offsets.update(await self._tail.flush())
        return offsets

    def close(self, timeout: float = 10.0) -> None:
        for producer in (self._batched, self._tail):
            if producer is not None:
                producer.close(timeout)
