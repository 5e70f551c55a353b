"""Output records to Kafka through librdkafka, flushed before the batch's offsets can be committed.

Faust's per-message Python send path is the worker's bottleneck, so vectors, recommendations,
tombstones and dead letters go through one confluent-kafka producer. Ordering of effects per batch:
outputs are produced and flushed (delivery confirmed) first, the user states are written to the
table next and their changelog records acknowledged (``tables.BatchStates.write``), and only then
does the agent return the batch so Faust acks it and may commit. A crash before the state write replays the batch
on restart: the same states and model give the same outputs again, so consumers see at-least-once
outputs with identical content, and every state change is applied exactly once.
"""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, Producer

from stream_app.exceptions import InterestStreamError
from stream_app.worker.pipeline import Output


class OutputError(InterestStreamError):
    """Output records could not be delivered; the worker stops so the batch is not committed."""


class OutputProducer:
    def __init__(self, kafka_config: dict, topic_names: dict[str, str]) -> None:
        self._topics = topic_names
        self._errors: list[KafkaError] = []
        self._producer = Producer(
            {
                **kafka_config,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                # Java clients' partitioner, so keys land where any other client would put them.
                "partitioner": "murmur2_random",
                "queue.buffering.max.messages": 1_000_000,
            }
        )

    def _on_delivery(self, err: KafkaError | None, _msg) -> None:
        if err is not None:
            self._errors.append(err)

    def send(self, outputs: list[Output]) -> None:
        produce = self._producer.produce
        for out in outputs:
            while True:
                try:
                    produce(self._topics[out.kind], out.value, out.key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged; ``OutputError`` if any failed."""
        while self._producer.flush(0) > 0:
            await asyncio.sleep(0.002)
        if self._errors:
            errors, self._errors = self._errors, []
            raise OutputError(f"{len(errors)} output records were not delivered, first: {errors[0]}")

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
