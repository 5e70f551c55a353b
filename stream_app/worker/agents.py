"""The worker's agent: micro-batches of raw event records through the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import faust

from stream_app.exceptions import EXIT_WORKER_FAILED
from stream_app.settings import Settings
from stream_app.worker.batching import double_buffered_batches
from stream_app.worker.engine import TRENDING_PERSIST_S, WorkerEngine, sweep_interval_s

log = logging.getLogger(__name__)


def _exit(message: str) -> None:
    log.critical(message, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_WORKER_FAILED)


def define_agents(
    app: faust.App, settings: Settings, events: faust.TopicT, states: faust.Table, trending: faust.Table
) -> WorkerEngine:
    engine = WorkerEngine(settings, partitions=app.conf.topic_partitions)
    engine.attach(states, trending)
    events_topic = events.get_topic_name()

    engine.on_write_failure = lambda: _exit("writing a batch failed; exiting without committing it")

    async def store_trending_or_warn(when: str) -> None:
        """Store the trending counts where a failure only loses counts (the timer exits on one instead)."""
        try:
            await engine.persist_trending()
        except Exception as exc:
            log.warning("trending counts not stored %s: %r", when, exc)

    @app.agent(events, name="update_user_interest")
    async def update_user_interest(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        log.info("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
        try:
            await loop.run_in_executor(None, engine.start)
        except Exception:
            _exit("the worker could not start")
        try:
            # noack: the engine acks a batch's events once its outputs and states are written
            batches = double_buffered_batches(stream, settings.worker_batch_size, settings.worker_batch_ms / 1000)
            async for batch in batches:
                try:
                    await engine.handle(batch, stream.ack)
                except Exception:
                    # only a fault of the worker's environment gets here (isolation.ENVIRONMENT_FAULTS, a
                    # write Kafka or the store did not acknowledge); a record's own failure is dead-lettered.
                    # Nothing of this batch is acked: exit at once, so a restarted agent or a graceful stop
                    # cannot commit it; the restarted worker replays it (the event-time policy drops what
                    # was applied)
                    _exit("a batch failed; exiting without committing it")
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await engine.settle()  # the last batch's writes, before the producers close
                if engine.started:
                    engine.publish_online(engine.online.close())  # the open window's counts
                    # a restarted worker goes on from these counts
                    await store_trending_or_warn(f"at stop (the last {TRENDING_PERSIST_S:.0f} s are lost)")
            engine.stop()

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs) -> None:
        if engine.started and engine.ready:
            await store_trending_or_warn("at a rebalance")  # the partitions' next owner starts from these counts
        engine.revoked(revoked)

    @app.on_partitions_assigned.connect
    async def note_assigned(app: faust.App, assigned: set, **kwargs) -> None:
        engine.assigned({tp.partition for tp in assigned if tp.topic == events_topic})

    @states.on_recover
    async def answer_queries() -> None:
        engine.recovered()
        if engine.started:
            await store_trending_or_warn("after recovery")

    @app.timer(TRENDING_PERSIST_S)
    async def store_trending() -> None:
        if engine.started and engine.ready:
            try:
                await engine.persist_trending()
            except Exception:  # the changelog or the store failed: as a batch's writes would
                _exit("storing the trending counts failed")

    if settings.state_ttl_s:

        @app.timer(sweep_interval_s(settings.state_ttl_s))
        async def expire_inactive_users() -> None:
            if engine.started:
                try:
                    await engine.expire_inactive()
                except Exception:
                    _exit("deleting expired user states failed")

    @app.timer(settings.model_poll_s)
    async def refresh_model_and_catalog() -> None:
        # Swaps and catalog changes also land while no events flow (batches do it too).
        if engine.started:
            try:
                await engine.refresh()
            except Exception:
                _exit("applying catalog or model changes failed")

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(engine.metrics.exposition(), content_type="text/plain; version=0.0.4")

    return engine
