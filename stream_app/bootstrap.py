"""``istream bootstrap``: every user's state built from a history file, written where workers restore it.

The history's events (JSONL, gzipped when it ends in ``.gz``; every line validated as the stream
validates records) are grouped by user, each user's in time order (ties in file order: the order
``istream evaluate`` steps them in), and run through the worker's own pipeline: ``process_batch``
with ``emit=False`` (decode, event-time policy, comment encoder, the step in batched waves, the
state codec; no ranking, no outputs, no trending) under the registry's CURRENT model and the
catalog of the items topic, as a worker would index it. Users go in chunks, most events first, so
a chunk's waves stay full. Each state is written to the user-state table's changelog topic, in the
partition of the user's events, so whichever worker owns that partition restores it on start.

History events have no offset: a state marks its history's newest ts instead (``history_ts``), and
the stream's copies of them, delivered after the bootstrap, are dropped as duplicates
(``event_time``, rule 1).

Resumable and idempotent: a user who already has a state in the changelog (from an earlier run, cut
short or not, or from workers) is kept as it is; a re-run writes nothing. Workers restore their
changelog only when they start, so the bootstrap refuses to run while the workers' consumer group
has members.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from stream_app import topics
from stream_app.admin import reached_admin
from stream_app.cluster import client_config, new_client
from stream_app.contracts import ContractError, decode_event
from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings
from stream_app.worker.app import app_id, events_partitions
from stream_app.worker.decode import RawRecord
from stream_app.worker.engine import apply_catalog_records, pipeline_config, runtime_loader
from stream_app.worker.item_index import Catalog, ItemIndex
from stream_app.worker.outputs import ChangelogProducer
from stream_app.worker.pipeline import Serving, process_batch
from stream_app.worker.routing import partition_of
from stream_app.worker.tables import changelog_topic
from stream_app.worker.trending import Trending

CHUNK_EVENTS = 20_000  # events run through the pipeline at once
SHOWN_ERRORS = 20
HISTORY_TOPIC = "history"  # what dead-letter reasons and logs call the file's records
_IDLE_S = 0.5  # a topic read to its end waits this long for the rest of its last batch (Tansu's watermark)
_RUNNING = {
    ConsumerGroupState.STABLE,
    ConsumerGroupState.PREPARING_REBALANCING,
    ConsumerGroupState.COMPLETING_REBALANCING,
}


class BootstrapError(InterestStreamError):
    """The bootstrap cannot run or write; nothing more of it is written."""


@dataclass(frozen=True)
class InvalidLine:
    line: int
    error: str


@dataclass
class History:
    """A history file's valid events grouped by user: user_id -> [(ts, line, raw JSON)], in file order."""

    users: dict[str, list[tuple[int, int, bytes]]] = field(default_factory=dict)
    invalid: list[InvalidLine] = field(default_factory=list)
    events: int = 0
    read_seconds: float = 0.0

    def sequences(self) -> Iterator[tuple[str, list[bytes]]]:
        """(user_id, its events' JSON in time order, ties in file order), users with most events first."""
        for user_id in sorted(self.users, key=lambda u: (-len(self.users[u]), u)):
            yield user_id, [raw for _, _, raw in sorted(self.users[user_id])]


def read_history(path: Path) -> History:
    """Every line of ``path`` validated; the valid events grouped by user, the invalid lines listed."""
    history = History()
    started = time.perf_counter()
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as lines:
            for number, line in enumerate(lines, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    event = decode_event(line)
                except ContractError as exc:
                    history.invalid.append(InvalidLine(number, str(exc)))
                    continue
                history.users.setdefault(event.user_id, []).append((event.ts, number, line))
                history.events += 1
    except (OSError, EOFError) as exc:
        raise BootstrapError(f"cannot read {path}: {exc}") from None
    history.read_seconds = time.perf_counter() - started
    return history


def _topic_records(settings: Settings, topic: str) -> Iterator[RawRecord]:
    """Every record of ``topic`` from its beginning to its end (read without a consumer group)."""
    extra = {"group.id": "istream-bootstrap", "enable.auto.commit": False, "enable.partition.eof": False}
    consumer = new_client(Consumer, client_config(settings, extra))
    try:
        wait = settings.kafka_timeout_s
        meta = consumer.list_topics(topic, timeout=wait).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=wait)[1] for p in meta.partitions}
        position = {p: 0 for p in ends}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        idle_since = None
        while True:
            messages = consumer.consume(1000, timeout=0.1)
            for msg in messages:
                if msg.error() is not None:
                    raise BootstrapError(f"reading {topic}: {msg.error().str()}")
                position[msg.partition()] = msg.offset() + 1
                yield RawRecord(topic, msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1])
            if messages or any(position[p] < end for p, end in ends.items()):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > _IDLE_S:
                return
    except KafkaException as exc:
        raise BootstrapError(f"reading {topic}: {exc.args[0].str()}") from None
    finally:
        consumer.close()


def users_with_state(settings: Settings, changelog: str) -> set[str]:
    """Users whose newest changelog record is a state (not a tombstone)."""
    present: dict[bytes, bool] = {}
    for record in _topic_records(settings, changelog):
        if record.key is not None:
            present[record.key] = record.value is not None
    return {key.decode("utf-8", "replace") for key, has in present.items() if has}


def check_no_workers(settings: Settings, group: str) -> None:
    """``BootstrapError`` while the workers' consumer group has members."""
    admin, _ = reached_admin(settings)
    try:
        state = admin.describe_consumer_groups([group], request_timeout=settings.kafka_timeout_s)[group].result().state
    except KafkaException as exc:
        raise BootstrapError(f"cannot tell whether workers of {group} run: {exc.args[0].str()}") from None
    if state in _RUNNING:
        raise BootstrapError(
            f"workers of {group} are running (consumer group {state.name.lower()}); a running worker does not read "
            "states written to its changelog. Stop them, bootstrap, then start them (after a kill, wait for the "
            "session timeout)"
        )


def ensure_changelog(settings: Settings, changelog: str, partitions: int) -> None:
    """The changelog topic as Faust makes it (compacted, as many partitions as the events topic)."""
    admin, topics = reached_admin(settings)
    if changelog in topics:
        return
    spec = NewTopic(changelog, partitions, settings.replication_factor, config={"cleanup.policy": "compact"})
    try:
        admin.create_topics([spec], request_timeout=settings.kafka_timeout_s)[changelog].result()
    except KafkaException as exc:
        raise BootstrapError(f"cannot create {changelog}: {exc.args[0].str()}") from None


@dataclass
class BootstrapReport:
    changelog: str
    partitions: int
    model_version: str
    users: int = 0  # in the history
    built: int = 0  # states written
    kept: int = 0  # users that had a state already
    events: int = 0  # valid events of the history
    applied: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> events the event-time policy refused
    invalid: list[InvalidLine] = field(default_factory=list)
    build_seconds: float = 0.0  # the pipeline, from records to encoded states
    seconds: float = 0.0  # reading the history file to the last state acknowledged

    def lines(self) -> list[str]:
        def per_s(n: int, s: float) -> str:
            return f"{n / s:,.0f}" if s > 0 else "n/a"

        rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(self.rejected.items())) or "0"
        return [
            f"states: {self.built:,} written to {self.changelog} ({self.partitions} partitions), {self.kept:,} kept "
            f"(they had a state already), of {self.users:,} users; model {self.model_version}",
            f"events: {self.events:,} valid, {self.applied:,} applied, {self.duplicates:,} duplicates, rejected "
            f"{rejected}; {len(self.invalid):,} invalid lines",
            f"state building: {per_s(self.applied, self.build_seconds)} events/s, "
            f"{per_s(self.built, self.build_seconds)} states/s ({self.build_seconds:.2f} s); whole run "
            f"{self.seconds:.2f} s, {per_s(self.applied, self.seconds)} events/s",
        ]


def load_serving(settings: Settings) -> Serving:
    """The registry's CURRENT model and the catalog of the items topic, indexed as a worker indexes them."""
    from export.registry import Registry

    version = Registry(settings.registry_dir).current()
    if version is None:
        raise BootstrapError(f"the model registry {settings.registry_dir} has no CURRENT version; publish one first")
    runtime = runtime_loader(settings)(Registry(settings.registry_dir).bundle_path(version))
    serving = Serving(runtime, ItemIndex.for_model(runtime, Catalog()))
    items = list(_topic_records(settings, topics.topic_name(settings.topic_prefix, topics.ITEMS)))
    apply_catalog_records(items, Catalog(), serving)
    return serving


def build_states(
    settings: Settings,
    history: History,
    progress: Callable[[int], None] = lambda n: None,
    now_ms: int | None = None,
) -> BootstrapReport:
    """Build and write the states of every user of ``history`` without one; ``progress(events)`` per chunk."""
    started = time.perf_counter()
    partitions = events_partitions(settings)
    group = app_id(settings)
    changelog = changelog_topic(group)
    check_no_workers(settings, group)
    serving = load_serving(settings)
    report = BootstrapReport(changelog, partitions, serving.version, users=len(history.users), events=history.events)
    report.invalid = history.invalid
    ensure_changelog(settings, changelog, partitions)
    present = users_with_state(settings, changelog)
    config = replace(pipeline_config(settings), emit=False)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    producer = ChangelogProducer(settings.kafka_config(), tail_alone=settings.worker_single_record_batches)

    async def run() -> None:
        chunk: list[RawRecord] = []
        for user_id, events in history.sequences():
            if user_id in present:
                report.kept += 1
                progress(len(events))
                continue
            key = user_id.encode()
            partition = partition_of(key, partitions)
            chunk += [RawRecord(HISTORY_TOPIC, partition, -1, key, raw) for raw in events]
            if len(chunk) >= CHUNK_EVENTS:
                await write(chunk)
                chunk = []
        if chunk:
            await write(chunk)

    async def write(records: list[RawRecord]) -> None:
        t0 = time.perf_counter()
        result = process_batch(records, lambda user, partition: None, serving, Trending(1.0), config, None, now_ms)
        report.build_seconds += time.perf_counter() - t0
        report.applied += result.counts["applied"]
        report.duplicates += result.counts["duplicates"]
        report.rejected.update(result.dead_letter_reasons)
        report.built += len(result.writes)
        try:
            await producer.write(changelog, [(w.partition, w.user_id.encode(), w.value) for w in result.writes])
        except InterestStreamError as exc:
            raise BootstrapError(f"writing states to {changelog} failed ({exc}); run it again to go on") from None
        progress(len(records))

    try:
        asyncio.run(run())
    finally:
        producer.close()
    report.seconds = history.read_seconds + time.perf_counter() - started
    return report
