"""The fine-tune job's Kafka side against the real broker: the window by time, the catalog, update
messages, and a clear error after retries when no broker answers."""

from __future__ import annotations

import logging
import time

import msgspec
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stream_app.broker import free_port
from stream_app.contracts import ModelUpdate
from stream_app.finetune.kafka import KafkaUnavailable, RetryPolicy, announce, read_catalog, read_window
from stream_app.settings import Settings

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
POLICY = RetryPolicy(attempts=3, backoff_s=0.1, timeout_s=5.0)


def event(n: int, user: str, ts: int, **extra) -> bytes:
    return msgspec.json.encode({"event_id": f"e{n}", "user_id": user, "item_id": f"i{n % 5}", "type": "click",
                                "ts": ts, **extra})  # fmt: skip


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for key, value, ts in records:
        producer.produce(topic, key=key, value=value, timestamp=ts)
    assert producer.flush(10) == 0


def test_window_keeps_recent_valid_events_and_counts_bad_ones(settings: Settings, topics: dict[str, str]) -> None:
    now = int(time.time() * 1000)
    old = [(b"u1", event(n, "u1", now - 120 * MINUTE_MS), now - 120 * MINUTE_MS) for n in range(5)]
    recent = [(f"u{n % 3}".encode(), event(100 + n, f"u{n % 3}", now - 30 * MINUTE_MS + n), now - 30 * MINUTE_MS + n)
              for n in range(12)]  # fmt: skip
    deep = b'{"event_id": "x", "extra": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    bad = [(b"u9", b"not json", now - 10 * MINUTE_MS), (b"u9", b'{"event_id": 3}', now - 10 * MINUTE_MS),
           (b"u9", deep, now - 10 * MINUTE_MS), (None, None, now - 10 * MINUTE_MS)]  # fmt: skip
    forget = [(b"u2", msgspec.json.encode({"event_id": "f1", "user_id": "u2", "item_id": "-", "type": "forget",
                                           "ts": now - 90 * MINUTE_MS}), now - MINUTE_MS)]  # fmt: skip
    tombstone = [(b"u0", None, now - 5 * MINUTE_MS)]
    produce(settings, topics["events"], old + recent + bad + forget + tombstone)

    window = read_window(settings, 60 * MINUTE_MS, POLICY, now_ms=now)

    ids = sorted(e["event_id"] for e in window.events)
    # u2 asked to be forgotten (a forget event, older than its events: applied whatever its ts), u0 by a tombstone
    assert ids == sorted(f"e{100 + n}" for n in range(12) if n % 3 == 1)
    assert window.forgotten == {"u0", "u2"}
    assert window.bad_records == {"json": 1, "schema": 1, "depth": 1, "empty": 1}
    assert window.records_read == 12 + 4 + 1 + 1
    assert window.stats()["users"] == 1 and window.partitions == 2

    # a window longer than all history (100 years: it would start before 1970) reads from the beginning
    everything = read_window(settings, 36_500 * 1440 * MINUTE_MS, POLICY, now_ms=now)
    assert everything.start_ms == 0
    assert sorted(e["event_id"] for e in everything.events) == sorted([f"e{n}" for n in range(5)] + ids)
    # the job never commits: its group has no offsets on the broker
    probe = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"{settings.topic_prefix}-finetune"})
    committed = probe.committed([TopicPartition(topics["events"], p) for p in range(2)], timeout=10)
    probe.close()
    assert all(tp.offset < 0 for tp in committed)


def test_empty_window_reads_nothing(settings: Settings, topics: dict[str, str]) -> None:
    now = int(time.time() * 1000)
    produce(settings, topics["events"], [(b"u1", event(1, "u1", now - 120 * MINUTE_MS), now - 120 * MINUTE_MS)])
    window = read_window(settings, 60 * MINUTE_MS, POLICY, now_ms=now)
    assert window.events == [] and window.records_read == 0


def test_catalog_latest_record_wins_and_tombstones_delete(settings: Settings, topics: dict[str, str]) -> None:
    now = int(time.time() * 1000)
    item = lambda i, text: msgspec.json.encode({"item_id": i, "text": text})  # noqa: E731
    produce(settings, topics["items"], [(b"a", item("a", "old"), now), (b"b", item("b", "boots"), now),
                                        (b"a", item("a", "new"), now), (b"c", item("c", "tent"), now),
                                        (b"c", None, now), (b"d", b"{bad", now)])  # fmt: skip
    assert read_catalog(settings, POLICY) == {"a": "new", "b": "boots"}


def test_announce_sends_one_update_keyed_by_model_name(settings: Settings, topics: dict[str, str]) -> None:
    update = ModelUpdate(version="v2", uri="file:///r/v2", sha256="ab" * 32, created_at="2026-01-01T00:00:00+00:00",
                         metrics={"ndcg@10": 0.5})  # fmt: skip
    announce(settings, "interest-stream", update, POLICY)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe",
                         "enable.partition.eof": True})  # fmt: skip
    consumer.assign([TopicPartition(topics["model-updates"], 0, 0)])
    msg = consumer.poll(10)
    consumer.close()
    assert msg is not None and msg.error() is None
    assert msg.key() == b"interest-stream"
    assert msgspec.json.decode(msg.value(), type=ModelUpdate) == update


def test_missing_topic_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(Exception, match="does not exist; create it"):
        read_window(settings, MINUTE_MS, POLICY)


def test_broker_down_fails_clearly_after_retries(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    down = settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    policy = RetryPolicy(attempts=3, backoff_s=0.1, timeout_s=1.0)
    with caplog.at_level(logging.WARNING, logger="stream_app.finetune.kafka"), pytest.raises(KafkaUnavailable) as info:
        read_window(down, MINUTE_MS, policy)
    assert "after 3 attempts" in str(info.value) and down.bootstrap_servers in str(info.value)
    retries = [r for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert len(retries) == 2  # waits between the three attempts, with growing backoff
    assert "0.1" in retries[0].getMessage() and "0.2" in retries[1].getMessage()
