"""The worker's agent: micro-batches of raw event records through the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import faust

from stream_app.exceptions import EXIT_WORKER_FAILED
from stream_app.settings import Settings
from stream_app.worker.engine import WorkerEngine

log = logging.getLogger(__name__)


def _exit(message: str) -> None:
    log.critical(message, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_WORKER_FAILED)


def define_agents(app: faust.App, settings: Settings, events: faust.TopicT, table: faust.Table) -> WorkerEngine:
    engine = WorkerEngine(settings, partitions=app.conf.topic_partitions)

    engine.on_write_failure = lambda: _exit("writing a batch failed; exiting without committing it")

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
            async for batch in stream.noack_take(settings.worker_batch_size, within=settings.worker_batch_ms / 1000):
                try:
                    await engine.handle(batch, table, stream.ack)
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
            engine.stop()

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs) -> None:
        engine.revoked(revoked)

    @app.timer(settings.model_poll_s)
    async def refresh_model_and_catalog() -> None:
        # Swaps and catalog changes also land while no events flow (batches do it too).
        if engine.started:
            try:
                engine.between_batches()
            except Exception:
                _exit("applying catalog or model changes failed")

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(engine.metrics.exposition(), content_type="text/plain; version=0.0.4")

    return engine
