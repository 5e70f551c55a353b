"""Kafka side of the fine-tune job: the recent window of events, the item catalog, update messages.

The job reads ``<prefix>.events`` by time without ever touching the workers' consumer group: it
assigns every partition itself (``assign``, never ``subscribe``), never commits, and its group id
(``<prefix>-finetune``) is only the name librdkafka requires. The start offset of each partition
comes from ``offsets_for_times``; records are also filtered by their own timestamp, because a
broker may answer the time lookup coarsely (Tansu answers offset 0 for any time). A partition is
read until its end-of-partition event, so one read is a bounded snapshot.

Broker calls are retried with exponential backoff (tenacity); when the broker stays unreachable
the last error becomes a ``KafkaUnavailable`` that says where it tried.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from tenacity import (
    RetryError,
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from stream_app import topics
from stream_app.cluster import client_config
from stream_app.contracts import ContractError, ModelUpdate, decode_event, decode_item, encode
from stream_app.exceptions import ClusterUnreachable, InterestStreamError
from stream_app.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_S = 0.5


class KafkaUnavailable(ClusterUnreachable):
    """The broker did not answer after every retry."""


class TransientKafkaError(Exception):
    """A broker call failed in a way worth retrying (connection, timeout, leader change)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 1.0  # first wait; doubles per attempt, capped at 30 s
    timeout_s: float = 10.0  # one broker request (metadata, offsets lookup, flush)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.finetune_attempts, settings.finetune_backoff_s, settings.finetune_kafka_timeout_s)


def with_retries(policy: RetryPolicy, what: str, bootstrap: str, call: Callable[[], T]) -> T:
    """``call()`` retried on ``TransientKafkaError``; ``KafkaUnavailable`` once every attempt failed."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.backoff_s, max=30.0),
        retry=retry_if_exception_type(TransientKafkaError),
        before_sleep=before_sleep_log(log, logging.WARNING),
    )
    try:
        return retrying(call)
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        raise KafkaUnavailable(
            f"{what}: no answer from Kafka at {bootstrap} after {policy.attempts} attempts ({cause}); "
            "check that the broker runs and KAFKA_BOOTSTRAP_SERVERS points at it"
        ) from None


def _transient(exc: KafkaException) -> TransientKafkaError:
    error: KafkaError = exc.args[0]
    return TransientKafkaError(error.str())


@dataclass
class EventWindow:
    """The events that arrived in ``[start_ms, end_ms)`` (broker time), decoded."""

    start_ms: int
    end_ms: int
    events: list[dict] = field(default_factory=list)  # interaction events, as dicts (what models/ reads)
    forgotten: set[str] = field(default_factory=set)  # users who asked to be forgotten in the window
    bad_records: Counter = field(default_factory=Counter)  # reason -> count, skipped
    records_read: int = 0
    partitions: int = 0
    read_s: float = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "records_read": self.records_read,
            "events": len(self.events),
            "users": len({e["user_id"] for e in self.events}),
            "items": len({e["item_id"] for e in self.events}),
            "bad_records": sum(self.bad_records.values()),
            "bad_reasons": dict(self.bad_records),
            "forgotten_users": len(self.forgotten),
            "partitions": self.partitions,
            "read_s": round(self.read_s, 3),
        }


class TopicReader:
    """Reads whole partitions of one topic as a bounded snapshot, outside any consumer group."""

    def __init__(self, settings: Settings, kind: str, policy: RetryPolicy) -> None:
        self.settings = settings
        self.topic = topics.topic_name(settings.topic_prefix, kind)
        self.policy = policy
        self._consumer = Consumer(
            client_config(
                settings,
                {
                    "group.id": f"{settings.topic_prefix}-finetune",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                },
            )
        )

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        return with_retries(self.policy, f"{what} {self.topic}", self.settings.bootstrap_servers, call)

    def partitions(self) -> list[int]:
        def metadata() -> list[int]:
            try:
                meta = self._consumer.list_topics(self.topic, timeout=self.policy.timeout_s).topics.get(self.topic)
            except KafkaException as exc:
                raise _transient(exc) from None
            missing = meta is None or not meta.partitions
            if missing or (meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise InterestStreamError(f"topic {self.topic} does not exist; create it with `istream topics create`")
            if meta.error is not None:
                raise TransientKafkaError(f"metadata of {self.topic}: {meta.error.str()}")
            return sorted(meta.partitions)

        return self._retry("reading the metadata of", metadata)

    def start_offsets(self, partitions: list[int], start_ms: int | None) -> list[TopicPartition]:
        """Where to start each partition: the first record at or after ``start_ms`` (None: the beginning)."""
        if start_ms is None:
            return [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions]

        def lookup() -> list[TopicPartition]:
            wanted = [TopicPartition(self.topic, p, start_ms) for p in partitions]
            try:
                found = self._consumer.offsets_for_times(wanted, timeout=self.policy.timeout_s)
            except KafkaException as exc:
                raise _transient(exc) from None
            failed = [tp for tp in found if tp.error is not None]
            if failed:
                raise TransientKafkaError(f"offset lookup of partition {failed[0].partition}: {failed[0].error}")
            return found

        # offset -1: no record at or after start_ms in that partition; nothing to read there
        return [tp for tp in self._retry("looking up offsets by time in", lookup) if tp.offset >= 0]

    def messages(self, assignment: list[TopicPartition]) -> Iterator[Any]:
        """Every record from ``assignment`` up to each partition's end, then stop."""
        if not assignment:
            return
        self._consumer.assign(assignment)
        open_partitions = {tp.partition for tp in assignment}
        idle_since = time.monotonic()
        while open_partitions:
            msg = self._consumer.poll(POLL_S)
            if msg is None:
                if time.monotonic() - idle_since > self.policy.timeout_s * self.policy.attempts:
                    raise KafkaUnavailable(
                        f"reading {self.topic}: no record and no end of partition for "
                        f"{self.policy.timeout_s * self.policy.attempts:.0f}s from {self.settings.bootstrap_servers}"
                    )
                continue
            idle_since = time.monotonic()
            error = msg.error()
            if error is None:
                yield msg
            elif error.code() == KafkaError._PARTITION_EOF:
                open_partitions.discard(msg.partition())
            elif not error.retriable():
                raise KafkaUnavailable(f"reading {self.topic}: {error.str()}")

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_window(settings: Settings, window_ms: int, policy: RetryPolicy, now_ms: int | None = None) -> EventWindow:
    """The events that reached ``<prefix>.events`` in the last ``window_ms`` before ``now_ms``; a window
    longer than all history starts at the topic's beginning.

    Records that do not decode are skipped and counted by reason. Erasure reaches training as it
    reaches the worker: a ``forget`` event or a tombstone (null value, key = user id) drops the
    user's events of the window up to the later of its own time (the event's ts, the tombstone's
    record timestamp) and the newest ts of the user's events before it, and names the user in
    ``forgotten``, so the replay sample forgets the user too.
    """
    started = time.perf_counter()
    end_ms = int(time.time() * 1000) if now_ms is None else now_ms
    window = EventWindow(start_ms=max(0, end_ms - window_ms), end_ms=end_ms)
    newest: dict[str, int] = {}
    forgotten_at: dict[str, int] = {}

    def forget(user_id: str, at: int) -> None:
        forgotten_at[user_id] = max(at, newest.get(user_id, -1), forgotten_at.get(user_id, -1))

    with TopicReader(settings, topics.EVENTS, policy) as reader:
        partitions = reader.partitions()
        window.partitions = len(partitions)
        events = []
        start = window.start_ms if window.start_ms > 0 else None
        for msg in reader.messages(reader.start_offsets(partitions, start)):
            _, ts = msg.timestamp()
            if not window.start_ms <= ts < window.end_ms:
                continue
            window.records_read += 1
            if msg.value() is None:
                key = msg.key()
                try:
                    forget(key.decode("utf-8"), ts)
                except (AttributeError, UnicodeDecodeError):  # no key, or not UTF-8: names no user
                    window.bad_records["empty"] += 1
                continue
            try:
                event = decode_event(msg.value())
            except ContractError as exc:
                window.bad_records[exc.reason] += 1
                continue
            if event.type == "forget":
                forget(event.user_id, event.ts)
            else:
                newest[event.user_id] = max(event.ts, newest.get(event.user_id, -1))
                events.append(event)
    window.forgotten = set(forgotten_at)
    window.events = [msgspec.to_builtins(e) for e in events if e.ts > forgotten_at.get(e.user_id, -1)]
    window.read_s = time.perf_counter() - started
    return window


def read_catalog(settings: Settings, policy: RetryPolicy) -> dict[str, str]:
    """item_id -> text from the compacted ``<prefix>.items`` topic (latest record wins, tombstones delete)."""
    catalog: dict[str, str] = {}
    with TopicReader(settings, topics.ITEMS, policy) as reader:
        for msg in reader.messages(reader.start_offsets(reader.partitions(), None)):
            key = msg.key().decode("utf-8", "replace") if msg.key() is not None else None
            if msg.value() is None:
                catalog.pop(key, None)
                continue
            try:
                item = decode_item(msg.value())
            except ContractError:
                continue  # the worker dead-letters bad catalog records; the job only needs the good ones
            catalog[item.item_id] = item.text
    return catalog


def announce(settings: Settings, name: str, update: ModelUpdate, policy: RetryPolicy) -> None:
    """Send ``update`` on ``<prefix>.model-updates`` keyed by model name and wait for the broker's ack."""
    topic = topics.topic_name(settings.topic_prefix, topics.MODEL_UPDATES)
    producer = Producer(client_config(settings, {"acks": "all", "message.timeout.ms": int(policy.timeout_s * 1000)}))
    value = encode(update)

    def send() -> None:
        errors: list[str] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(err.str())

        producer.produce(topic, key=name.encode(), value=value, on_delivery=delivered)
        if producer.flush(policy.timeout_s) or errors:
            raise TransientKafkaError(errors[0] if errors else f"not delivered within {policy.timeout_s:.0f}s")

    with_retries(policy, f"announcing version {update.version} on {topic}", settings.bootstrap_servers, send)
