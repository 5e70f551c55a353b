"""The worker's agent: micro-batches of raw event records through the engine."""

from __future__ import annotations

import asyncio

import faust

from stream_app.settings import Settings
from stream_app.worker.engine import WorkerEngine


def define_agents(app: faust.App, settings: Settings, events: faust.TopicT, table: faust.Table) -> WorkerEngine:
    engine = WorkerEngine(settings)

    @app.agent(events, name="update_user_interest")
    async def update_user_interest(stream: faust.StreamT) -> None:
        await asyncio.get_running_loop().run_in_executor(None, engine.start)
        try:
            async for batch in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_ms / 1000):
                await engine.handle(batch, table)
        finally:
            engine.stop()

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(engine.metrics.exposition(), content_type="text/plain; version=0.0.4")

    return engine
