"""Helpers of the worker tests: real worker subprocesses, raw Kafka I/O, event streams, and the
offline stepwise reference (one event at a time through the same bundle's runtime)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
from confluent_kafka import Message, Producer

from stream_app.cli import worker_process as process
from stream_app.client import PRODUCER_DEFAULTS, RecordConsumer
from stream_app.contracts import EVENT_TYPES, Event, Recommendation
from stream_app.settings import Settings
from stream_app.worker import tables
from stream_app.worker.app import app_id
from stream_app.worker.decode import RawRecord
from stream_app.worker.item_index import Catalog, ItemIndex
from stream_app.worker.pipeline import BatchResult, PipelineConfig, Serving, process_batch
from stream_app.worker.state_cache import StateCache
from stream_app.worker.state_codec import UserState, decode_state
from stream_app.worker.trending import Trending
from stream_app.worker.trial import Challenger

WORKER_READY_S = 90.0


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(
        {**settings.kafka_config(), **PRODUCER_DEFAULTS, "linger.ms": 5, "message.max.bytes": 2_000_000}
    )
    for key, value in records:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def produce_events(settings: Settings, topic: str, events: list[Event]) -> None:
    produce(settings, topic, [(e.user_id.encode(), msgspec.json.encode(e)) for e in events])


def stream_events(settings: Settings, topic: str, events: list[Event], chunk: int, pause: float) -> threading.Thread:
    """A started thread producing ``events`` in chunks, ``pause`` seconds apart (a live stream)."""

    def run() -> None:
        producer = Producer({**settings.kafka_config(), **PRODUCER_DEFAULTS, "linger.ms": 1})
        for i in range(0, len(events), chunk):
            for e in events[i : i + chunk]:
                producer.produce(topic, value=msgspec.json.encode(e), key=e.user_id.encode())
            producer.flush(10)
            time.sleep(pause)
        assert producer.flush(30) == 0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_topic(
    settings: Settings,
    topic: str,
    expect: int = 0,
    timeout: float = 60.0,
    idle: float = 3.0,
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Every message of ``topic`` from the beginning: returns once ``expect`` arrived (or ``until(messages)``
    holds) and then nothing more for ``idle`` seconds (extras would show up), or at ``timeout``."""
    done = until or (lambda out: len(out) >= expect)
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    with RecordConsumer(settings, topic, from_beginning=True) as consumer:
        while not done(out) and time.monotonic() < deadline:
            want = max(1, expect - len(out)) if until is None else 500
            out.extend(consumer.messages(max_records=want, timeout=1.0))
        if idle:
            out.extend(consumer.messages(timeout=idle))
    return out


class _EventRef(msgspec.Struct):
    event_id: str


def outputs_for(events: list[Event] | list[dict]) -> Callable[[list[Message]], bool]:
    """``read_topic`` condition: an output record (vector or recommendation) for every one of ``events``.

    Counting records is not enough: a batch replayed after a crash or a rebalance emits copies, and
    a count reached through copies returns before the last events' outputs."""
    missing = {e["event_id"] if isinstance(e, dict) else e.event_id for e in events}
    read = 0

    def done(messages: list[Message]) -> bool:
        nonlocal read
        for m in messages[read:]:
            if m.value() is not None:
                missing.discard(msgspec.json.decode(m.value(), type=_EventRef).event_id)
        read = len(messages)
        return not missing

    return done


def wait_until(condition, timeout: float = 60.0, describe=None) -> None:
    """Until ``condition()`` holds; fails after ``timeout`` seconds, saying ``describe()`` when given."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, describe() if describe else "condition not met in time"
        time.sleep(0.2)


def applied_per_user(events: list[Event]) -> dict[str, int]:
    return dict(Counter(e.user_id for e in events))


def final_states(
    settings: Settings, changelog: str, applied: dict[str, int] | None = None, timeout: float = 30.0
) -> dict[str, tuple[int, UserState | None]]:
    """user_id -> (changelog partition, last state written) from the worker's changelog topic.

    With ``applied`` (user_id -> applied-event count), reads again until those counts show or
    ``timeout`` passes: a batch's state writes land just after its outputs."""
    deadline = time.monotonic() + timeout
    while True:
        states: dict[str, tuple[int, UserState | None]] = {}
        for msg in read_topic(settings, changelog, expect=1, timeout=timeout, idle=2.0):
            value = msg.value()
            states[msg.key().decode()] = (msg.partition(), decode_state(value) if value is not None else None)
        settled = applied is None or all(
            user in states and states[user][1] is not None and states[user][1].applied == n
            for user, n in applied.items()
        )
        if settled or time.monotonic() > deadline:
            return states


def changelog_topic(settings: Settings, table: str = tables.USER_TO_STATE) -> str:
    return tables.changelog_topic(app_id(settings), table)


def make_events(
    item_ids: list[str], n_users: int, per_user: int, seed: int, t0: int = 1_700_000_000_000
) -> list[Event]:
    """Interleaved users with increasing timestamps (some ties), comments, ratings, unknown items."""
    rng = np.random.default_rng(seed)
    events = []
    clocks = dict.fromkeys(range(n_users), t0)
    order = np.repeat(np.arange(n_users), per_user)
    rng.shuffle(order)
    for n, u in enumerate(order.tolist()):
        clocks[u] += int(rng.choice([0, 1_000, 60_000, 3_600_000]))
        kind = EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))]
        item = item_ids[int(rng.integers(len(item_ids)))] if rng.random() > 0.05 else f"unknown-{n}"
        events.append(
            Event(
                event_id=f"e{seed}-{n}",
                user_id=f"user-{u}",
                item_id=item,
                type=kind,
                ts=clocks[u],
                text=f"comment {n} about {item}, quite {rng.choice(['good', 'bad', 'long'])}"
                if kind == "comment"
                else None,
                rating=float(rng.integers(0, 6)) if kind == "rating" else None,
            )
        )
    return events


@dataclass
class Reference:
    interest: dict[str, np.ndarray]  # event_id -> interest vector
    states: dict[str, np.ndarray]  # user_id -> final packed state


def stepwise_reference(runtime, events: list[Event]) -> Reference:
    """Each user's events applied one at a time (batch of one) through the runtime."""
    rows = {item: i for i, item in enumerate(runtime.item_ids)}
    states: dict[str, np.ndarray] = {}
    last_ts: dict[str, int] = {}
    interest: dict[str, np.ndarray] = {}
    for e in events:
        state = states.get(e.user_id, np.zeros(runtime.state_dim, dtype=np.float32))
        item = runtime.item_matrix[rows[e.item_id]] if e.item_id in rows else np.zeros(runtime.dim, np.float32)
        comment = runtime.encode([e.text]) if e.text else np.zeros((1, runtime.text_dim), np.float32)
        gap = (e.ts - last_ts[e.user_id]) / 1000.0 if e.user_id in last_ts else 0.0
        out = runtime.step(
            state[None],
            item[None].astype(np.float32),
            np.array([EVENT_TYPES.index(e.type)], dtype=np.int64),
            comment.astype(np.float32),
            np.array([1.0 if e.text else 0.0], dtype=np.float32),
            np.array([-1.0 if e.rating is None else e.rating], dtype=np.float32),
            np.array([gap], dtype=np.float32),
        )
        states[e.user_id] = out.new_state[0]
        last_ts[e.user_id] = e.ts
        interest[e.event_id] = out.interest[0]
    return Reference(interest, states)


class InProcessRun:
    """Batches through process_batch with the user states kept as the table would: bytes by user;
    with ``cache``, the decoded states kept after each batch's write as the engine keeps them."""

    def __init__(
        self,
        runtime,
        config: PipelineConfig,
        cache: StateCache | None = None,
        now_ms: int | None = None,
        challenger: Challenger | None = None,
    ) -> None:
        self.now_ms = now_ms  # the worker's clock (None: the real one)
        self.serving = Serving(runtime, ItemIndex.for_model(runtime, Catalog()))
        self.challenger = challenger
        self.config = config
        self.trending = Trending(3600)
        self.states: dict[str, bytes] = {}
        self.cache = cache
        self.offset = 0

    def records(self, events: list[Event]) -> list[RawRecord]:
        out = []
        for e in events:
            out.append(RawRecord("t.events", 0, self.offset, e.user_id.encode(), msgspec.json.encode(e)))
            self.offset += 1
        return out

    def batch(self, records: list[RawRecord]) -> BatchResult:
        generation = self.cache.generation if self.cache is not None else 0
        result = process_batch(
            records,
            lambda user, _p: self.states.get(user),
            self.serving,
            self.trending,
            self.config,
            self.cache,
            self.now_ms,
            self.challenger,
        )
        for w in result.writes:
            if w.value is None:
                self.states.pop(w.user_id, None)
            else:
                self.states[w.user_id] = w.value
        if self.cache is not None:
            self.cache.release(self.cache.hold(result.states), generation)
        return result

    def events(self, events: list[Event], batch_size: int) -> list[BatchResult]:
        records = self.records(events)
        return [self.batch(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]


class WorkerProcess(process.WorkerProcess):
    """``istream worker`` for tests: fast commits and model polls, no cold start, one ORT thread."""

    def __init__(
        self, settings: Settings, registry: Path, data_dir: Path, log: Path, env: dict | None = None, web_port: int = 0
    ):
        test_env = {
            "ISTREAM_WORKER_COMMIT_INTERVAL_S": "0.5",
            "ISTREAM_MODEL_POLL_S": "0.5",
            "ISTREAM_COLD_START_EVENTS": "0",
            "ISTREAM_ORT_INTRA_OP_THREADS": "1",
        }
        super().__init__(settings, registry, data_dir, log, web_port=web_port, env={**test_env, **(env or {})})

    def wait_for(self, text: str, timeout: float = WORKER_READY_S) -> None:
        try:
            super().wait_for(text, timeout)
        except process.WorkerProcessError as exc:
            raise AssertionError(str(exc)) from None


def recompute_online(
    events: list[Event],
    recs: dict[str, Recommendation],
    known: set[str],
    k: int = 10,
    seen: int = 100,
    cold_start_events: int = 0,
    session_gap_s: float = 1800.0,
) -> Counter:
    """Online evaluation recomputed from the outside: ``events`` in the order the worker applied them (per
    user: the events topic's order), each after a user's first judging the recommendations record emitted
    for the user's previous event (``recs`` by event id). Totals (``judged``, ``hits``, ``ndcg``,
    ``reciprocal_rank``, ``new_items``, ``new_item_hits``), ``judged:<cohort>`` / ``hits:<cohort>``, and the
    unjudged reasons (``first_event``, ``unknown_item``)."""
    from stream_app.worker.online_eval import cohort

    out: Counter = Counter()
    previous: dict[str, Event] = {}
    history: dict[str, list[str]] = {}
    applied: dict[str, int] = {}
    for e in events:
        before = previous.get(e.user_id)
        recently = history.setdefault(e.user_id, [])
        new = e.item_id not in recently
        if before is None:
            out["first_event"] += 1
        elif e.item_id not in known:
            out["unknown_item"] += 1
        else:
            items = [s.item_id for s in recs[before.event_id].items][:k]
            rank = items.index(e.item_id) + 1 if e.item_id in items else 0
            prior = applied[e.user_id]
            group = cohort(prior, (e.ts - before.ts) / 1000, prior < cold_start_events, session_gap_s)
            out["judged"] += 1
            out[f"judged:{group}"] += 1
            out["new_items"] += new
            if rank:
                out["hits"] += 1
                out[f"hits:{group}"] += 1
                out["new_item_hits"] += new
                out["reciprocal_rank"] += 1 / rank
                out["ndcg"] += 1 / np.log2(rank + 1)
        if not new:
            recently.remove(e.item_id)
        recently.append(e.item_id)
        del recently[: max(0, len(recently) - seen)]
        previous[e.user_id] = e
        applied[e.user_id] = applied.get(e.user_id, 0) + 1
    return out


def online_totals(judged, unjudged=()) -> Counter:
    """``recompute_online``'s totals of online-metrics counts (``JudgedCounts``/``UnjudgedCounts``, or
    records' lists of them), for comparison."""
    out: Counter = Counter()
    for c in judged:
        for name in ("judged", "hits", "reciprocal_rank", "ndcg", "new_items", "new_item_hits"):
            out[name] += getattr(c, name)
        out[f"judged:{c.cohort}"] += c.judged
        out[f"hits:{c.cohort}"] += c.hits
    for u in unjudged:
        out[u.reason] += u.events
    return out


def challenger_of(runtime, mode: str = "shadow", share: float = 0.0) -> Challenger:
    """``runtime`` (a second model) as the challenger of an ``InProcessRun``, with its own item index."""
    return Challenger(Serving(runtime, ItemIndex.for_model(runtime, Catalog())), mode, share)
