"""Python client API for services around the stream (no torch, no Faust).

``EventProducer`` validates every event (and catalog item) against the contracts before it
reaches Kafka and sends plain JSON keyed by user id (items: by item id), so any Kafka tool reads
the topics. ``RecordConsumer`` reads any topic back as typed records (``InterestVector``,
``Recommendation``, ...), either as a consumer group or, without a group, by reading every
partition directly (no group join, no committed offsets: what ``istream tail`` does).

Both check at the start that the cluster answers and the topic exists, waiting at most
``ISTREAM_KAFKA_TIMEOUT_S``: ``ClusterUnreachable`` (a ``ClientError``) or ``ClientError`` otherwise.

``RecommendationClient`` asks the workers' query API for one user's recommendations or interest.
"""

from __future__ import annotations

import gzip
import http.client
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from stream_app import topics
from stream_app.cluster import client_config, cluster_metadata, new_client, require_topics, unreachable
from stream_app.contracts import (
    ContractError,
    DeadLetter,
    Event,
    InterestVector,
    Item,
    ModelUpdate,
    OnlineMetrics,
    Recommendation,
    UserInterest,
    UserRecommendations,
    decode_event,
    decode_item,
    encode,
    record_decoder,
)
from stream_app.contracts import QueryError as QueryErrorRecord
from stream_app.exceptions import ClientError
from stream_app.settings import Settings

R = TypeVar("R", bound=msgspec.Struct)

RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    topics.EVENTS: Event,
    topics.ITEMS: Item,
    topics.VECTORS: InterestVector,
    topics.RECOMMENDATIONS: Recommendation,
    topics.MODEL_UPDATES: ModelUpdate,
    topics.DEADLETTER: DeadLetter,
    topics.ONLINE_METRICS: OnlineMetrics,
}

# Throughput-minded defaults; any key can be overridden with ``EventProducer(config=...)``.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "acks": "all",
    # retries must not reorder a user's events: the worker drops an event older than the user's
    # newest one (within the lateness) as a redelivery, so a reordered event would be lost
    "enable.idempotence": True,
    # Java clients' default partitioner: a user's events land on the same partition whichever
    # client (Java, kcat, this one) produced them. librdkafka's own default (CRC32) would differ.
    "partitioner": "murmur2_random",
}
MAX_ERRORS_KEPT = 20
FLUSH_STEP_S = 0.2
RETRY_WAIT_S = 0.2  # between query API requests answered 502/503
encode_json = msgspec.json.Encoder().encode


def resolve_topic(settings: Settings, topic: str) -> str:
    """A short kind (``events``, ``recommendations``, ...) becomes ``<prefix>.<kind>``; other names pass."""
    return topics.topic_name(settings.topic_prefix, topic) if topic in topics.ALL else topic


def as_event(event: Event | dict | bytes | str) -> Event:
    """A validated ``Event`` from a struct, a dict or raw JSON; ``ContractError`` otherwise."""
    if isinstance(event, Event):
        # msgspec checks constraints only when decoding, not in the constructor.
        return decode_event(encode(event))
    if isinstance(event, dict):
        try:
            return msgspec.convert(event, Event)
        except msgspec.ValidationError as exc:
            raise ContractError("schema", f"event: {exc}") from None
    return decode_event(event)


def as_item(item: Item | dict | bytes | str) -> Item:
    """A validated ``Item`` from a struct, a dict or raw JSON; ``ContractError`` otherwise."""
    if isinstance(item, Item):
        return decode_item(encode(item))
    if isinstance(item, dict):
        try:
            return msgspec.convert(item, Item)
        except msgspec.ValidationError as exc:
            raise ContractError("schema", f"item: {exc}") from None
    return decode_item(item)


@dataclass
class DeliveryStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class EventProducer:
    """Validating, batching producer of events (key user_id) and catalog items (key item_id).

    ``send`` raises ``ContractError`` for an invalid event before anything is sent. Delivery is
    asynchronous; ``flush``/``close`` wait for the reports and ``close`` raises ``ClientError``
    if any record was not delivered. ``stats`` counts sent, delivered and failed records;
    ``on_delivered`` is called once per delivered record (from ``send``, ``flush`` or ``close``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str = topics.EVENTS,
        items_topic: str = topics.ITEMS,
        config: dict[str, Any] | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        self.topic = resolve_topic(settings, topic)
        self.items_topic = resolve_topic(settings, items_topic)
        self.stats = DeliveryStats()
        self._settings = settings
        self._on_delivered = on_delivered
        self._config = client_config(settings, {**PRODUCER_DEFAULTS, **(config or {})})
        self._producer = new_client(Producer, self._config)
        self._topics: set[str] = set()
        self._require_topic(self.topic)

    def _require_topic(self, name: str) -> None:
        if name not in self._topics:
            metadata = cluster_metadata(self._settings, self._producer, self._config)
            self._topics = {t for t, meta in metadata.topics.items() if meta.error is None}
            require_topics(self._settings, metadata, [name])

    def send(self, event: Event | dict | bytes | str) -> Event:
        """Validate and enqueue one event; returns the validated ``Event``."""
        record = as_event(event)
        self._produce(self.topic, record.user_id, encode(record))
        return record

    def send_item(self, item: Item | dict | bytes | str) -> Item:
        """Validate and enqueue one catalog item; returns the validated ``Item``."""
        self._require_topic(self.items_topic)
        record = as_item(item)
        self._produce(self.items_topic, record.item_id, encode(record))
        return record

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        full_since = None
        while True:
            try:
                self._producer.produce(topic, value=value, key=key.encode(), on_delivery=self._on_delivery)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                full_since = full_since or time.monotonic()
                if time.monotonic() - full_since > self._settings.kafka_timeout_s:
                    raise unreachable(self._settings, self._producer, self._config) from None
                self._producer.poll(0.1)
        self.stats.sent += 1
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.delivered += 1
            if self._on_delivered is not None:
                self._on_delivered()
            return
        self.stats.failed += 1
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(f"{msg.topic()}: {err.str()}")

    def flush(self, timeout: float | None = None) -> int:
        """Wait for outstanding deliveries until none is left or none was reported for ``timeout`` seconds
        (default ``ISTREAM_KAFKA_TIMEOUT_S``); returns how many are still in flight."""
        timeout = self._settings.kafka_timeout_s if timeout is None else timeout

        def reported() -> int:
            return self.stats.delivered + self.stats.failed

        pending = self._producer.flush(0)
        seen, deadline = reported(), time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = self._producer.flush(min(FLUSH_STEP_S, max(0.0, deadline - time.monotonic())))
            if reported() != seen:
                seen, deadline = reported(), time.monotonic() + timeout
        return pending

    def close(self, timeout: float | None = None) -> DeliveryStats:
        """Flush, then raise ``ClientError`` unless every record sent was delivered."""
        pending = self.flush(timeout)
        if pending or self.stats.failed:
            waited = self._settings.kafka_timeout_s if timeout is None else timeout
            raise ClientError(
                f"{self.stats.failed} record(s) failed and {pending} undelivered (no delivery report for "
                f"{waited:g} s; first errors: {'; '.join(self.stats.errors[:3]) or 'none'}); is the broker reachable?"
            )
        return self.stats

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.flush()


class RecordConsumer(Generic[R]):
    """Typed reader of one topic.

    With ``group_id`` it joins that consumer group (offsets committed, partitions shared with the
    group's other members). Without, it reads every partition itself, from the beginning
    (``from_beginning``) or only what is produced after it starts, and commits nothing.
    ``record_type`` defaults to the contract of the topic kind (``recommendations`` ->
    ``Recommendation``); other topics yield raw values (bytes).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        record_type: type[R] | None = None,
        group_id: str | None = None,
        from_beginning: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = resolve_topic(settings, topic)
        if record_type is None:
            record_type = RECORD_TYPES.get(topic.removeprefix(f"{settings.topic_prefix}."))
        self._decode = record_decoder(record_type) if record_type is not None else None
        self._settings = settings
        from_now = group_id is None and not from_beginning
        self._config = client_config(
            settings,
            {
                "group.id": group_id or "istream-reader",
                "enable.auto.commit": group_id is not None,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 4),
                "enable.partition.eof": from_now,
                **(config or {}),
            },
        )
        self._consumer = new_client(Consumer, self._config)
        self._early: deque[Message] = deque()  # read while starting at the end, produced after the start
        try:
            metadata = cluster_metadata(settings, self._consumer, self._config)
            require_topics(settings, metadata, [self.topic])
            partitions = sorted(metadata.topics[self.topic].partitions)
            if group_id is not None:
                self._consumer.subscribe([self.topic])
            elif from_beginning:
                self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            else:
                self._start_after_the_last_record(partitions)
        except ClientError:
            self._consumer.close()
            raise

    def _start_after_the_last_record(self, partitions: list[int]) -> None:
        """Position every partition after its last record. Starting at ``OFFSET_END`` is not enough on
        Tansu: its end offset counts a batch of records as one, so the rest of the last batch came
        through (``istream tail`` printed every record but the first of each partition). Each
        partition is read up to its end-of-partition event; what arrives meanwhile is kept when it
        was produced after this call."""
        started_ms = int(time.time() * 1000)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in partitions])
        waiting = set(partitions)
        deadline = time.monotonic() + self._settings.kafka_timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise unreachable(self._settings, self._consumer, self._config)
            msg = self._consumer.poll(0.1)
            if msg is None:
                continue
            error = msg.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                waiting.discard(msg.partition())
            elif error is not None:
                raise ClientError(f"reading {self.topic}: {error.str()}")
            else:
                kind, ts = msg.timestamp()
                if kind == TIMESTAMP_NOT_AVAILABLE or ts >= started_ms:
                    self._early.append(msg)

    def messages(self, max_records: int | None = None, timeout: float | None = None) -> Iterator[Message]:
        """Raw messages until ``max_records`` were read or no message came for ``timeout`` seconds
        (``None``: wait forever)."""
        count = 0
        idle_since = time.monotonic()
        while max_records is None or count < max_records:
            msg = self._early.popleft() if self._early else self._consumer.poll(0.2)
            if msg is not None and msg.error() is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                msg = None
            if msg is None:
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    return
                continue
            if msg.error() is not None:
                raise ClientError(f"reading {self.topic}: {msg.error().str()}")
            idle_since = time.monotonic()
            count += 1
            yield msg

    def records(self, max_records: int | None = None, timeout: float | None = None) -> Iterator[R | bytes | None]:
        """Decoded records (``None`` for a tombstone); ``ContractError`` names a record that does not decode."""
        for msg in self.messages(max_records, timeout):
            value = msg.value()
            if value is None or self._decode is None:
                yield value
                continue
            try:
                yield self._decode(value)
            except ContractError as exc:
                raise ContractError(
                    exc.reason, f"{self.topic}[{msg.partition()}]@{msg.offset()} does not decode: {exc}"
                ) from None

    def __iter__(self) -> Iterator[R | bytes | None]:
        return self.records()

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecordConsumer[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def message_json(msg: Message) -> bytes:
    """A message's value as one line of compact JSON (tombstones and non-JSON values wrapped)."""
    value = msg.value()
    if value is not None:
        try:
            return msgspec.json.format(value, indent=0)
        except (msgspec.DecodeError, RecursionError):  # not JSON, or nested too deep to parse: raw below
            pass
    key = msg.key().decode("utf-8", "replace") if msg.key() is not None else None
    if value is None:
        return encode_json({"key": key, "value": None})
    return encode_json({"key": key, "raw": value.decode("utf-8", "replace")})


@dataclass(frozen=True)
class InvalidLine:
    line: int
    error: str


def scan_jsonl(path: Path, decode) -> Iterator[tuple[int, msgspec.Struct | ContractError]]:
    """``(line number, record or ContractError)`` for every non-blank line of a JSONL file (``.gz``: gzipped)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, decode(line)
            except ContractError as exc:
                yield number, exc


def invalid_lines(path: Path, decode) -> tuple[int, list[InvalidLine]]:
    """How many records of the file are valid, and every invalid line."""
    valid, invalid = 0, []
    for number, record in scan_jsonl(path, decode):
        if isinstance(record, ContractError):
            invalid.append(InvalidLine(number, str(record)))
        else:
            valid += 1
    return valid, invalid


def valid_records(path: Path, decode) -> Iterator[msgspec.Struct]:
    return (record for _, record in scan_jsonl(path, decode) if not isinstance(record, ContractError))


def paced(records: Iterable[R], rate: float | None) -> Iterator[R]:
    """Yield at most ``rate`` records per second on average (``None``: as fast as possible)."""
    start = time.monotonic()
    for index, record in enumerate(records):
        if rate:
            ahead = start + index / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield record


class QueryError(ClientError):
    """The query API answered with an error (``status``: 400 a bad request, 404 no state, 503 retry shortly)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RecommendationClient:
    """The worker's query API over HTTP, one kept-alive connection (not thread-safe: one per thread).

    ``url``: any worker's web port (``Settings.query_url``; a load balancer over all workers works too:
    a worker forwards a user it does not own to its owner). A request that finds the connection closed
    (a worker restarted) is sent once more on a new one; one answered 502 or 503 (the user's worker is
    restarting, or the group rebalancing) is asked again for up to ``retry_s`` seconds.
    """

    def __init__(
        self, url: str | None = None, *, settings: Settings | None = None, timeout: float = 5.0, retry_s: float = 10.0
    ) -> None:
        self.url = url or (settings or Settings()).query_url
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"query URL {self.url!r} is not http(s)://host:port")
        self._parts, self._timeout = parts, timeout
        self._retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, QueryError) and exc.status in (502, 503)),
            stop=stop_after_delay(retry_s),
            wait=wait_fixed(RETRY_WAIT_S),
            reraise=True,
        )
        self._connection = None
        self._decode_recommendations = msgspec.json.Decoder(UserRecommendations).decode
        self._decode_interest = msgspec.json.Decoder(UserInterest).decode

    def get(
        self,
        user_id: str,
        k: int | None = None,
        *,
        exclude: Iterable[str] = (),
        include_seen: bool = False,
        tags: Iterable[str] = (),
        category: str | None = None,
    ) -> UserRecommendations:
        """The user's top ``k`` (the worker's ``ISTREAM_TOP_K`` when None) ranked now; ``cold_start`` when the
        stream has no model state of the user (trending items)."""
        params: list[tuple[str, str]] = [] if k is None else [("k", str(k))]
        params += [("exclude", item) for item in exclude] + [("tag", tag) for tag in tags]
        if include_seen:
            params.append(("include_seen", "true"))
        if category is not None:
            params.append(("category", category))
        path = f"/users/{quote(user_id, safe='')}/recommendations"
        return self._decode_recommendations(self._retrying(self._get, path, params))

    def interest(self, user_id: str) -> UserInterest:
        """The user's fused, long- and short-term interest vectors; ``QueryError`` 404 without a state."""
        return self._decode_interest(self._retrying(self._get, f"/users/{quote(user_id, safe='')}/interest", []))

    def health(self) -> dict[str, Any]:
        """The worker's ``/health`` (``ready`` False while it restores its state)."""
        try:
            return msgspec.json.decode(self._get("/health", []))
        except QueryError as exc:
            if exc.status == 503:
                return {"live": True, "ready": False}
            raise

    def _get(self, path: str, params: list[tuple[str, str]]) -> bytes:
        target = f"{self._parts.path.rstrip('/')}{path}" + (f"?{urlencode(params)}" if params else "")
        for attempt in (1, 2):
            if self._connection is None:
                kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
                self._connection = kind(self._parts.hostname, self._parts.port, timeout=self._timeout)
            try:
                self._connection.request("GET", target)
                response = self._connection.getresponse()
                body = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2 or not isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
                    raise ClientError(
                        f"GET {self.url}{target} failed: {exc!r}; is a worker serving {self.url}?"
                    ) from None
        if response.status != 200:
            try:
                error = msgspec.json.decode(body, type=QueryErrorRecord).error
            except msgspec.DecodeError:
                error = body[:200].decode("utf-8", "replace")
            raise QueryError(response.status, f"GET {target}: {response.status} {error}")
        return body

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> RecommendationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
