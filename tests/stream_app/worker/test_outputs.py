"""The worker's librdkafka producer against the real broker: delivered records, failed ones."""

from __future__ import annotations

import asyncio

import pytest

from stream_app import topics as kinds
from stream_app.worker.outputs import BatchProducer, OutputError


def test_flush_reports_the_newest_offset_of_each_partition(settings, topics) -> None:
    producer = BatchProducer(settings.kafka_config())
    for key in (b"u1", b"u2"):
        producer.send(topics[kinds.VECTORS], key, b"{}", partition=0)
    producer.send(topics[kinds.VECTORS], b"u3", b"{}", partition=1)
    offsets = asyncio.run(producer.flush())
    assert set(offsets) == {(topics[kinds.VECTORS], 0), (topics[kinds.VECTORS], 1)}
    assert offsets[(topics[kinds.VECTORS], 0)] == offsets[(topics[kinds.VECTORS], 1)] + 1  # fresh topic
    producer.close()


@pytest.mark.parametrize("offsets", [True, False], ids=["offsets", "errors-only"])
def test_a_failed_delivery_fails_the_flush(settings, topics, offsets: bool) -> None:
    producer = BatchProducer(settings.kafka_config(), offsets=offsets)
    producer.send(topics[kinds.VECTORS], b"u0", b"{}", partition=0)
    producer.send(topics[kinds.VECTORS], b"u1", b"{}", partition=settings.partitions + 5)  # no such partition
    with pytest.raises(OutputError, match="1 records were not delivered"):
        asyncio.run(producer.flush())
    producer.close()


def test_without_offsets_a_flush_reports_none(settings, topics) -> None:
    producer = BatchProducer(settings.kafka_config(), offsets=False)
    producer.send(topics[kinds.VECTORS], b"u1", b"{}", partition=0)
    assert asyncio.run(producer.flush()) == {}
    producer.close()
