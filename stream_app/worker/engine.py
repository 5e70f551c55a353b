"""What one worker holds besides Faust, and its per-batch cycle.

Between batches: apply catalog changes from the items feed, hand model-update messages to the
swapper and swap in a verified model. For each batch: ``process_batch`` (pure; a batch it fails on
is bisected down to the failing record, which is dead-lettered: ``isolation``), computed in a thread
of its own so that the event loop answers queries and writes earlier batches meanwhile (ONNX Runtime
and numpy release the GIL; a query waited behind a whole batch on the loop), then its writes:
flush the outputs, write the user states, record metrics and ack the batch's events, so Faust may
commit them. The writes of one batch run while the next is computed (``handle`` returns once they
are under way; the next ``handle`` waits for them before it sends anything): they were a third of
a batch's time, spent waiting on the broker. The next batch reads the states it needs from the
state cache, which holds the ones still being written.

Beside the batches, on timers: each owned partition's trending counts are stored in their own table
(so a restarted worker, or the next owner of the partition, starts from them), and with a TTL the
states of users without events for that long are deleted (a tombstone through the changelog). The
query API reads states (``state_for_query``: the cache first, then the local store; the users of
the batch being computed as they were before it); it never writes. Everything that writes the changelog,
computes a batch or changes the catalog or the model holds one lock, so their records keep order
and a batch sees one catalog and one model.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from threadpoolctl import threadpool_limits

from stream_app import topics
from stream_app.cluster import client_config
from stream_app.contracts import ContractError, OnlineMetrics, encode
from stream_app.settings import Settings
from stream_app.worker.app import app_id
from stream_app.worker.dead_letter_log import DeadLetterLog
from stream_app.worker.decode import RawRecord, Rejected, dead_letter, decode_catalog_record
from stream_app.worker.event_time import EventTimePolicy
from stream_app.worker.feeds import TopicFeed
from stream_app.worker.hot_swap import ModelSwapper
from stream_app.worker.isolation import ENVIRONMENT_FAULTS, isolate
from stream_app.worker.item_index import Catalog
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.offsets import OffsetTracker
from stream_app.worker.online_eval import OnlineConfig, OnlineWindow
from stream_app.worker.outputs import ChangelogProducer, OutputProducer
from stream_app.worker.pipeline import (
    BatchResult,
    Output,
    PipelineConfig,
    Serving,
    dead_letter_output,
    process_batch,
)
from stream_app.worker.serving_index import IndexPreparer
from stream_app.worker.state_cache import NOT_CACHED, StateCache
from stream_app.worker.state_codec import NO_TS, StateCodecError, UserState, active_at, decode_state
from stream_app.worker.tables import TRENDING_KEY, BatchStates, local_store, write_through
from stream_app.worker.trending import Trending
from stream_app.worker.trial import Challenger, TrialChange, TrialWatcher

log = logging.getLogger(__name__)
TRENDING_PERSIST_S = 5.0  # how often the trending counts are stored (a kill -9 loses at most these seconds)
WRITES_IN_FLIGHT = 2  # batches whose writes may wait while the next one is computed and emitted
SWEEP_KEYS = 5_000  # states an expiry sweep reads per partition and tick


def sweep_interval_s(ttl_s: float) -> float:
    """Seconds between expiry sweeps: a tenth of the TTL, within 1 s and 1 min."""
    return min(60.0, max(1.0, ttl_s / 10))


def pipeline_config(settings: Settings, partitions: int = 0) -> PipelineConfig:
    """``partitions``: of the events topic, to find misrouted records (0: no check)."""
    return PipelineConfig(
        top_k=settings.top_k,
        window=settings.state_window,
        seen=settings.seen_items,
        cold_start_events=settings.cold_start_events,
        event_time=EventTimePolicy(
            settings.lateness_ms, settings.future_skew_ms, settings.recent_ids, settings.id_horizon_ms
        ),
        partitions=partitions,
        misrouted=settings.misrouted,
        online=OnlineConfig(settings.top_k, settings.cold_start_events, settings.online_session_gap_s)
        if settings.online_evaluation
        else None,
    )


def runtime_loader(settings: Settings):
    """``bundle_dir -> ModelRuntime`` with the worker's ONNX Runtime options (verifies, smoke-tests)."""
    from export.runtime import RuntimeOptions, load_runtime

    options = RuntimeOptions.from_settings(settings)
    return lambda bundle_dir: load_runtime(bundle_dir, options)


# The cyclic collector's thresholds (CPython's: 700, 10, 10). Batches and queries allocate many short-lived
# containers, and every collection stops both threads. At 1,000 queries/s beside 1,000 events/s the defaults
# paused the worker over 0.5 ms 430 times in a run (12 full collections, up to 19 ms) and the query p99 was
# 20-27 ms; with these, 6-7 such pauses and 10-13 ms (`istream bench query`, three runs each). Garbage in
# reference cycles waits longer to be freed: at most about 20,000 young objects.
GC_THRESHOLDS = (20_000, 50, 100)


def _freeze_long_lived() -> None:
    """Move every object alive now (Faust's, the model's, the item index) out of the cyclic garbage
    collector's view. Its full collections walked them again and again: 12 % of a worker's CPU in a
    clicks benchmark (1.2 s of 9.9 s), about 2 % once they were frozen. Unfrozen and collected first,
    so a replaced model that only reference cycles still hold is freed, not frozen for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def apply_catalog_records(
    records: list[RawRecord], catalog: Catalog, serving: Serving, others: Sequence[Serving] = ()
) -> tuple[int, int, list[Rejected]]:
    """Items-topic records into ``catalog`` and the serving index: (items added to the index, items removed,
    ``Rejected`` records). A record that is no catalog record is rejected with its reason; when embedding
    the new items' texts fails, each is embedded alone and those that fail are rejected (``error``).
    The ``others`` (a challenger, a model held to reuse) follow the serving index."""
    added, removed, rejected = _apply_catalog_records(records, catalog, serving)
    touched = {record.key.decode("utf-8", "replace") for record in records if record.key is not None}
    for other in others:
        upserts = {item: catalog.texts[item] for item in touched if item in catalog.texts}
        try:
            other.index.apply_catalog(other.runtime, upserts, touched & catalog.removed)
        except ENVIRONMENT_FAULTS:
            raise
        except Exception as exc:  # the serving index has them; a challenger ranks without them
            log.error("catalog change not applied to model %s: %r", other.version, exc, exc_info=exc)
    return added, removed, rejected


def _apply_catalog_records(
    records: list[RawRecord], catalog: Catalog, serving: Serving
) -> tuple[int, int, list[Rejected]]:
    upserts: dict[str, str] = {}
    removed: set[str] = set()
    source: dict[str, RawRecord] = {}
    rejected: list[Rejected] = []
    for record in records:
        try:
            item_id, item = decode_catalog_record(record)
        except ContractError as exc:
            rejected.append(dead_letter(record, exc.reason, str(exc)))
            continue
        text = None if item is None else item.text
        catalog.apply(item_id, text, *((item.tags, item.category) if item is not None else ()))
        source[item_id] = record
        if text is None:
            upserts.pop(item_id, None)
            removed.add(item_id)
        else:
            upserts[item_id] = text
            removed.discard(item_id)
    index, runtime = serving.index, serving.runtime
    try:
        return index.apply_catalog(runtime, upserts, removed), len(removed), rejected
    except ENVIRONMENT_FAULTS:
        raise
    except Exception:
        pass
    index.remove(removed)
    added = 0
    for item_id, text in upserts.items():
        try:
            added += index.apply_catalog(runtime, {item_id: text})
        except ENVIRONMENT_FAULTS:
            raise
        except Exception as exc:
            log.error("catalog item %r not added: %r", item_id, exc, exc_info=exc)
            catalog.texts.pop(item_id, None)  # nor indexed by a later model
            rejected.append(dead_letter(source[item_id], "error", f"{type(exc).__name__}: {exc}"))
    return added, len(removed), rejected


class WorkerEngine:
    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None, partitions: int = 0) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.config = pipeline_config(settings, partitions)
        self.catalog = Catalog()
        self.trending = Trending(settings.trending_half_life_s)
        self.names = {kind: topics.topic_name(settings.topic_prefix, kind) for kind in topics.ALL}
        self.dead_letter_log = DeadLetterLog(self.names[topics.DEADLETTER])
        self.serving: Serving | None = None
        self.challenger: Challenger | None = None  # the registry's TRIAL, run beside ``serving``
        self._retired: Serving | None = None  # the model that ran last before the current ones, kept to reuse
        # each model's item index, built where the model is loaded
        self._indexes = IndexPreparer(settings, self.metrics)
        self._swapper: ModelSwapper | None = None
        self._trials: TrialWatcher | None = None
        self._producer: OutputProducer | None = None
        self._changelog: ChangelogProducer | None = None
        self._feeds: list[TopicFeed] = []
        self.offsets = OffsetTracker()
        self.state_cache = StateCache(settings.worker_state_cache_users)
        self._writes: deque[asyncio.Future] = deque()  # batches' writes, oldest first; each awaits the one before
        # batches are computed here, off the event loop, which meanwhile answers queries and writes earlier batches
        self._batch_thread = ThreadPoolExecutor(1, thread_name_prefix="batch", initializer=self._limit_threads)
        self.on_write_failure: Callable[[], None] = lambda: None  # called inside the except block
        self._states: faust.Table | None = None
        self._trending_table: faust.Table | None = None
        self._lock = asyncio.Lock()  # changelog writers: batches, trending snapshots, expiry
        self.owned: set[int] = set()  # events-topic partitions assigned to this worker
        self.ready = False  # the owned partitions' tables are restored (Faust's recovery is done)
        self._trending_loaded: set[int] = set()
        self._sweep_from: dict[int, bytes] = {}  # partition -> the key the next expiry sweep starts at
        worker = f"{app_id(settings)}@{socket.gethostname()}:{os.getpid()}"
        self.online = OnlineWindow(worker, settings.top_k, settings.online_window_s)

    def attach(self, states: faust.Table, trending: faust.Table) -> None:
        """The worker's tables (``tables.user_to_state``, ``tables.partition_to_trending``)."""
        self._states, self._trending_table = states, trending

    def load_model(self) -> None:
        """Load and verify the registry's CURRENT model (blocking); ``start`` does it when not done yet."""
        from export.exceptions import BundleError
        from export.registry import Registry

        self._limit_threads()
        gc.set_threshold(*GC_THRESHOLDS)
        root = Path(self.settings.registry_dir)
        load = self._indexes.loader(runtime_loader(self.settings))
        registry, poll_s = Registry(root), self.settings.model_poll_s
        self._swapper = ModelSwapper(registry, root, load, self.metrics, poll_s, held=self._held_runtime)
        self._trials = TrialWatcher(registry, load, self._held_runtime, self.metrics, poll_s)
        self.metrics.trial.info({"version": "", "mode": "none", "share": "0"})
        try:
            self._serve(self._swapper.load_current())
        except BundleError as exc:
            raise type(exc)(
                f"the registry's CURRENT model is refused: {exc}; make a good version CURRENT "
                "(`istream models rollback`, or `istream models promote VERSION`)"
            ) from None

    def _limit_threads(self) -> None:
        if self.settings.worker_blas_threads:
            threadpool_limits(self.settings.worker_blas_threads, user_api="blas")  # process-wide, kept
            # the calling thread's OpenMP (the approximate search); the loading threads build graphs on every core
            threadpool_limits(self.settings.worker_blas_threads, user_api="openmp")

    def start(self) -> None:
        """Open the feeds and the producers, after loading the model if needed (blocking; before consuming)."""
        if self._swapper is None:
            self.load_model()
        settings = self.settings
        self._items = TopicFeed(client_config(settings), self.names[topics.ITEMS], from_beginning=True)
        # Updates published while no worker ran are covered by CURRENT, read at start.
        self._updates = TopicFeed(client_config(settings), self.names[topics.MODEL_UPDATES], from_beginning=False)
        for feed in (self._items, self._updates):
            feed.start()
            self._feeds.append(feed)
        self._changelog = ChangelogProducer(client_config(settings), tail_alone=settings.worker_single_record_batches)
        self._producer = OutputProducer(client_config(settings), self.names)  # last: `started` reads it

    @property
    def started(self) -> bool:
        return self._producer is not None

    def stop(self) -> None:
        self.dead_letter_log.flush()
        for feed in self._feeds:
            feed.stop()
        for producer in (self._producer, self._changelog):
            if producer is not None:
                producer.close()
        for watcher in (self._swapper, self._trials):
            if watcher is not None:
                watcher.close()
        self._batch_thread.shutdown(wait=False)

    def revoked(self, partitions: set[Any]) -> None:
        """Partitions (``TP``s) taken from this worker: another may move their users on meanwhile."""
        self.ready = False
        self.offsets.forget(partitions)
        self.state_cache.drop_partitions(tp.partition for tp in partitions)

    def assigned(self, partitions: set[int]) -> None:
        """The events-topic partitions of a new assignment (all of them); their tables are restored next.
        Trending counts of partitions kept stay; those of partitions gone are dropped."""
        self.ready = False
        self.owned = set(partitions)
        self.trending.drop(self.trending.partitions - self.owned)
        self._trending_loaded &= self.owned
        self._sweep_from = {p: key for p, key in self._sweep_from.items() if p in self.owned}

    def recovered(self) -> None:
        """The owned partitions' tables are restored: load the trending counts of partitions new to this
        worker, and answer queries. Every owned partition's counts are due to be stored (``persist_trending``
        next, before events flow): the first trending records written after a fresh start, 5 s into the
        stream, held up Faust's consumer for about 100 ms (e2e at 1,000 events/s: no output for 110-120 ms,
        in every run); written before the stream, they are not."""
        self.trending.changed.update(self.owned)
        for partition in sorted(self.owned - self._trending_loaded):
            raw = local_store(self._trending_table, partition).get(TRENDING_KEY)
            if raw is not None:
                try:
                    items = self.trending.load(partition, raw)
                except ValueError as exc:
                    log.error("partition %d: trending counts not restored, starting them afresh: %s", partition, exc)
                else:
                    log.info("partition %d: trending counts of %d items restored", partition, items)
            self._trending_loaded.add(partition)
        self.ready = True

    def state_for_query(self, user_id: str, partition: int) -> UserState | None:
        """The user's last computed state (the cache, else the local store; for a user of the batch being
        computed, its state before that batch); None when it has none, or an unreadable one (which its next
        event replaces)."""
        cached = self.state_cache.peek(user_id)
        if cached is not NOT_CACHED:
            return cached
        raw = local_store(self._states, partition).get(user_id.encode())
        if raw is None:
            return None
        try:
            return decode_state(raw)
        except StateCodecError as exc:
            log.error("user %r: unreadable state, answered as a new user: %s", user_id, exc)
            return None

    async def persist_trending(self) -> None:
        """Store the trending counts of every owned partition counted since they were last stored. The
        counts are taken between batches and written after the writes of the batches counted, while the
        next batches are computed: no batch waits for that write or the earlier writes it follows
        (together up to 53 ms at 1,000 events/s)."""
        async with self._lock:
            changed = sorted(self.trending.changed & self.owned & self._trending_loaded)
            if not changed:
                return
            records = [(p, TRENDING_KEY, self.trending.snapshot(p)) for p in changed]
            self.trending.changed.difference_update(changed)
            written = self._after_writes(write_through(self._trending_table, self._changelog, records))
        await asyncio.shield(written)

    async def expire_inactive(self, now_ms: int | None = None) -> int:
        """Delete (a tombstone through the changelog) the states whose last event was applied more than
        ``state_ttl_s`` ago; reads at most ``SWEEP_KEYS`` states of each owned partition, going on where
        the last sweep stopped. Returns how many expired."""
        ttl_ms = int(self.settings.state_ttl_s * 1000)
        if not ttl_ms or not self.ready:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        async with self._lock:
            await self.settle()  # nothing held: the stores have every written state
            records: list[tuple[int, bytes, bytes | None]] = []
            for partition in sorted(self.owned):
                records += self._expired_in(partition, now_ms - ttl_ms)
            if records:
                self.state_cache.discard(key.decode() for _, key, _ in records)
                await write_through(self._states, self._changelog, records)
                self.metrics.states_expired.inc(len(records))
                log.info("expired %d user states inactive for over %.0f s", len(records), self.settings.state_ttl_s)
        return len(records)

    def _expired_in(self, partition: int, before_ms: int) -> list[tuple[int, bytes, bytes | None]]:
        it = local_store(self._states, partition).iter()
        start = self._sweep_from.pop(partition, None)
        if start is None:
            it.seek_to_first()
        else:
            it.seek(start)
        expired: list[tuple[int, bytes, bytes | None]] = []
        for _ in range(SWEEP_KEYS):
            if not it.valid():
                return expired  # the next sweep starts over
            key = it.key()
            if not key.startswith(b"__faust"):  # Faust's offset record
                try:
                    at = active_at(it.value())
                except StateCodecError:
                    at = NO_TS
                if NO_TS < at < before_ms:
                    expired.append((partition, key, None))
            it.next()
        if it.valid():
            self._sweep_from[partition] = it.key()
        return expired

    def _held(self) -> list[Serving]:
        """The models this worker holds: serving, the challenger, the one that ran last before them."""
        held = [self.serving, self.challenger.serving if self.challenger is not None else None, self._retired]
        # once each: the challenger may be the retired model run again, and a catalog change is applied per model
        return list({id(serving): serving for serving in held if serving is not None}.values())

    def _held_runtime(self, version: str) -> Any | None:
        return next((s.runtime for s in self._held() if s.version == version), None)

    def _serving_of(self, runtime: Any) -> Serving:
        """The held ``Serving`` of ``runtime`` (its index kept current), else a new one."""
        held = next((s for s in self._held() if s.runtime is runtime), None)
        return held if held is not None else self._indexes.serving(runtime, self.catalog)

    def _retire(self, serving: Serving | None) -> None:
        if serving is not None and serving is not self.serving:
            self._retired = serving

    def _serve(self, runtime: Any) -> None:
        serving, old = self._serving_of(runtime), self.serving
        self.serving = serving
        self._retire(old)
        if self.challenger is not None and self.challenger.version == runtime.version:
            self.challenger = None  # promoted: the trial that named it is over (the watcher learns it next)
        _freeze_long_lived()
        self.metrics.model.info({"version": runtime.version, "provider": str(getattr(runtime, "provider", ""))})
        self._index_metrics()
        log.info(
            "serving model: version=%s provider=%s items=%d",
            runtime.version,
            getattr(runtime, "provider", "?"),
            len(self.serving.index),
        )

    def _index_metrics(self) -> None:
        index = self.serving.index
        self.metrics.catalog_items.set(len(index))
        self.metrics.ranking_graph_items.set(0 if index.approximate is None else len(index.approximate))

    def publish_online(self, record: OnlineMetrics | None) -> None:
        """Send a closed window's online-metrics record (flushed with the next batch's outputs, or at stop)."""
        if record is not None:
            key = record.worker.encode()
            self._producer.send_outputs([Output(topics.ONLINE_METRICS, key, encode(record))])

    async def refresh(self) -> None:
        """``between_batches`` while no batch is computed (a timer's: no events flow)."""
        async with self._lock:
            self.between_batches()

    def between_batches(self) -> None:
        self.dead_letter_log.tick()
        self.publish_online(self.online.due())
        self._apply_items(self._items.drain())
        for record in self._updates.drain():
            self._swapper.notice_update(record.value)
        runtime = self._swapper.poll()
        if runtime is not None:
            try:
                self._serve(runtime)
            except ENVIRONMENT_FAULTS:
                raise
            except Exception as exc:  # e.g. indexing the catalog with it: the serving model stays
                self._swapper.reject(runtime.version, exc, self.serving.version)
        change = self._trials.poll(self.serving.version, self.serving.runtime.text_dim)
        if change is not None:
            try:
                self._run_beside(change)
            except ENVIRONMENT_FAULTS:
                raise
            except Exception as exc:  # indexing the catalog with it failed: the champion runs alone
                self._trials.refused.add(change.runtime.version)
                log.error("trial refused: version=%s error=%r", change.runtime.version, exc)
                self.metrics.swap_refusals.labels("trial").inc()

    def _run_beside(self, change: TrialChange) -> None:
        old = self.challenger
        if change.runtime is None:
            self.challenger = None
        else:
            self.challenger = Challenger(self._serving_of(change.runtime), change.mode, change.share)
        if old is not None and (self.challenger is None or old.serving is not self.challenger.serving):
            self._retire(old.serving)
        c = self.challenger
        self.metrics.trial.info(
            {"version": c.version, "mode": c.mode, "share": f"{c.share:g}"}
            if c is not None
            else {"version": "", "mode": "none", "share": "0"}
        )
        _freeze_long_lived()

    def _apply_items(self, records: list[RawRecord]) -> None:
        if not records:
            return
        added, removed, rejected = apply_catalog_records(records, self.catalog, self.serving, self._held()[1:])
        self._index_metrics()
        if added or removed:
            log.info("catalog: items_added=%d items_removed=%d", added, removed)
        if rejected:
            for r in rejected:
                self.metrics.dead_letters.labels(r.letter.reason).inc()
                self.dead_letter_log.add({r.letter.reason: 1})
            self._producer.send_outputs([dead_letter_output(r) for r in rejected])

    async def handle(self, events: list[faust.types.EventT], ack: Callable[[Any], Awaitable[Any]]) -> BatchResult:
        """Compute a batch, then start its writes; ``ack`` acks one event once they are done. A failed
        write calls ``on_write_failure`` (the agent exits: nothing of that batch is committed)."""
        async with self._lock:
            return await self._handle(events, ack)

    async def _handle(self, events: list[faust.types.EventT], ack: Callable[[Any], Awaitable[Any]]) -> BatchResult:
        self.between_batches()
        states = BatchStates(self._states)
        records = [
            RawRecord(m.topic, m.partition, m.offset, m.key, m.value, int(m.timestamp * 1000))
            for m in (e.message for e in events)
        ]
        generation = self.state_cache.generation
        now_ms = int(time.time() * 1000)
        loop = asyncio.get_running_loop()
        cache = self.state_cache
        for partition in {r.partition for r in records}:
            local_store(self._states, partition)  # Faust opens a store on first use: here, not in the batch thread
        # an accepted event's key is its user id: these are the states the batch may change
        cache.computing(r.key.decode("utf-8", "replace") for r in records if r.key is not None)
        try:
            try:
                result = await loop.run_in_executor(
                    self._batch_thread, process_batch, records, states.load, self.serving, self.trending, self.config,
                    cache, now_ms, self.challenger,
                )  # fmt: skip
            except ENVIRONMENT_FAULTS:
                raise
            except Exception as exc:
                log.error("a batch of %d records failed (%r); isolating the record that fails it", len(records), exc)
                await self.settle()  # the states the failed batch took are in the table once these writes are done
                result = await loop.run_in_executor(
                    self._batch_thread, isolate, records, exc, states.load, self.serving, self.trending, self.config,
                    now_ms, self.challenger,
                )  # fmt: skip
            held = cache.hold(result.states)
        finally:
            cache.computing(())
        # This batch's outputs go out at once, not after the earlier batches' writes: a write is three
        # broker round trips (outputs, changelog, its tails), which gated every next batch's outputs
        # (e2e at 1,000 events/s: 19 ms a batch). The writes stay in batch order, chained, and at most
        # WRITES_IN_FLIGHT of them wait, so a slow broker slows the batches instead of piling them up.
        writes = self._writes
        while writes and writes[0].done():
            writes.popleft()
        if len(writes) >= WRITES_IN_FLIGHT:
            await asyncio.shield(writes.popleft())
        self._producer.send_outputs(result.outputs)
        self._after_writes(self._write(result, states, events, (held, generation), ack))
        return result

    def _after_writes(self, write: Coroutine[Any, Any, None]) -> asyncio.Future:
        """Run ``write`` once the writes started before it are done (the changelog's one-record tails
        need its writes one at a time); a failed write fails every later one."""
        previous = self._writes[-1] if self._writes else None

        async def in_turn() -> None:
            if previous is not None:
                try:
                    await asyncio.shield(previous)
                except BaseException as exc:
                    write.close()  # never run: nothing after a failed write is acked
                    if isinstance(exc, Exception):
                        self.on_write_failure()
                    raise
            await write

        future = asyncio.ensure_future(in_turn())
        self._writes.append(future)
        return future

    async def settle(self) -> None:
        """Until the writes of every batch so far are done (and their events acked)."""
        if self._writes:
            last = self._writes[-1]
            self._writes.clear()
            await last

    async def _write(
        self,
        result: BatchResult,
        states: BatchStates,
        events: list[faust.types.EventT],
        held: tuple[int, int],
        ack: Callable[[Any], Awaitable[Any]],
    ) -> None:
        try:
            t0 = time.perf_counter()
            await self._producer.flush()
            t1 = time.perf_counter()
            await states.write(result.writes, self._changelog)
            self.state_cache.release(*held)
            result.timings["emit"] = t1 - t0
            result.timings["store"] = time.perf_counter() - t1
            self._record(result, events)
            for event in events:
                await ack(event)
        except Exception:
            self.on_write_failure()
            raise
        log.debug(
            "batch: events=%d applied=%d duplicates=%d dead_letters=%d writes=%d seconds=%.4f",
            result.counts["in"],
            result.counts["applied"],
            result.counts["duplicates"],
            sum(result.dead_letter_reasons.values()),
            len(result.writes),
            sum(result.timings.values()),
        )

    def _record(self, result: BatchResult, events: list[faust.types.EventT]) -> None:
        m, counts = self.metrics, result.counts
        m.events_in.inc(counts["in"])
        m.events_applied.inc(counts["applied"])
        m.duplicates.inc(counts["duplicates"])
        m.misrouted.labels(self.config.misrouted).inc(counts["misrouted"])
        m.forgets.inc(counts["forgets"])
        m.rebuilds.inc(counts["rebuilt"])
        m.state_errors.inc(counts["state_corrupt"])
        m.state_reads.labels("cache").inc(counts["state_cached"])
        m.state_reads.labels("store").inc(counts["state_loaded"])
        m.batch_size.observe(counts["in"])
        for reason, n in result.dead_letter_reasons.items():
            m.dead_letters.labels(reason).inc(n)
        self.dead_letter_log.add(result.dead_letter_reasons)
        for kind, n in Counter(out.kind for out in result.outputs).items():
            m.records_out.labels(kind).inc(n)
        for stage, seconds in result.timings.items():
            m.stage_seconds.labels(stage).observe(seconds)
        if result.judgements:
            m.count_online(result.judgements)
            self.publish_online(self.online.add(result.judgements))
        self.publish_online(self.online.due())
        now = time.time()
        for event in events:
            m.produce_to_emit.observe(max(0.0, now - event.message.timestamp))
        last: dict[Any, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if not self.offsets.knows(tp.topic, tp.partition):  # first record since it was (re)assigned
                log.info("consuming %s[%d] from offset %d", tp.topic, tp.partition, offset)
            skipped = self.offsets.observe(tp.topic, tp.partition, offset)
            if skipped:
                m.skipped_offsets.labels(str(tp.partition)).inc(len(skipped))
                log.error(
                    "%s[%d]: offsets %d..%d were never delivered to the worker (%d events not processed)",
                    tp.topic, tp.partition, skipped.start, skipped.stop - 1, len(skipped),
                )  # fmt: skip
            last[tp] = offset
        consumer = events[0].app.consumer if events else None
        if consumer is not None:
            for tp, offset in last.items():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    m.consumer_lag.labels(str(tp.partition)).set(max(0, highwater - offset - 1))
