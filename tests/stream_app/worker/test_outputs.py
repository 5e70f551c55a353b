"""The worker's librdkafka producers against the real broker: delivered records, failed ones."""

from __future__ import annotations

import asyncio

import pytest

from stream_app import topics as kinds
from stream_app.worker.outputs import BatchProducer, OutputError, OutputProducer
from stream_app.worker.pipeline import Output


def test_outputs_are_delivered_without_per_record_reports(settings, topics) -> None:
    producer = OutputProducer(settings.kafka_config(), topics)
    producer.send_outputs([Output(kinds.VECTORS, b"u1", b"{}"), Output(kinds.RECOMMENDATIONS, b"u1", b"{}")])
    assert asyncio.run(producer.flush()) == {}  # no offsets: only failures are reported
    producer.close()
    changelog = BatchProducer(settings.kafka_config())
    changelog.send(topics[kinds.VECTORS], b"u2", b"{}", partition=0)
    assert set(asyncio.run(changelog.flush())) == {(topics[kinds.VECTORS], 0)}
    changelog.close()


@pytest.mark.parametrize("track_offsets", [True, False])
def test_a_failed_delivery_fails_the_flush(settings, topics, track_offsets) -> None:
    producer = BatchProducer(settings.kafka_config(), track_offsets=track_offsets)
    producer.send(topics[kinds.VECTORS], b"u1", b"{}", partition=settings.partitions + 5)  # no such partition
    with pytest.raises(OutputError, match="1 records were not delivered"):
        asyncio.run(producer.flush())
    producer.close()
