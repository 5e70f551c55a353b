"""The query API on the worker's web server (Faust's aiohttp application, beside /metrics)::

    GET /users/{user_id}/recommendations   ?k=&exclude=&include_seen=&tag=&category=  -> UserRecommendations
    GET /users/{user_id}/interest          -> UserInterest
    GET /health                            {"live", "ready", ...}: 200 once ready to answer, else 503
    GET /health/live                       200 while the worker's event loop answers

The handlers are aiohttp handlers on Faust's web application rather than Faust views: these routes
need none of a view's class dispatch, and the same handler behind a Faust page cost more (one worker,
610 bootstrapped MovieLens users, 1,000 queries/s for 8 s, twice each, on a loaded 2-core machine:
506-576 us of worker CPU a query and p50 1.15-1.43 ms here, 559-599 us and 1.47-1.75 ms through the
view). They run on the worker's event loop and only read (``query``), while micro-batches of events
are computed in the engine's batch thread; a user of the batch being computed is answered from its
state before that batch (its last computed state, ``state_cache``). Recommendation requests wait
for the loop's next turn and are answered together (``query.recommendations_batch``: one product
over the item index for all of them): one query alone spent most of its time in its own pass over
the index.

A user belongs to the partition that murmur2 of its id picks (``routing.partition_of``: where
producers put its events and the worker keeps its state). The worker owning that partition answers
from the state; any other forwards the request to the owner, whose URL the consumer group's
assignment carries (Faust's assignor: each member's canonical URL and its tables' partitions), and
passes the answer on. No standby replicas are kept, so the owner is the one copy of a state.
Faust's own ``table_route`` hashes keys with its producer's partitioner, not the events' murmur2
placement, which is how it came to answer on the wrong worker (faust-streaming#187).

Every answer other than a 200 is a JSON ``QueryError``: 400 for a bad request, 404 for the interest
of a user without a state, 503 (with Retry-After) while the owner's partitions are being restored
or no worker owns them, 502 when the owner does not answer; an unexpected exception is logged and
answered 500, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
import faust
import msgspec
from aiohttp import web
from yarl import URL

from stream_app.contracts import QueryError, encode
from stream_app.settings import Settings
from stream_app.worker import query
from stream_app.worker.engine import WorkerEngine
from stream_app.worker.routing import partition_of
from stream_app.worker.tables import USER_TO_STATE

log = logging.getLogger(__name__)
FORWARDED = "X-Istream-Forwarded"  # set by the worker that forwarded the request (its URL)
SERVED_BY = "X-Istream-Served-By"  # the URL of the worker whose state answered
FORWARD_TIMEOUT_S = 5.0
RETRY_AFTER_S = "2"
JSON = "application/json"

Answer = Callable[[str, int, Iterable[tuple[str, str]]], Awaitable[msgspec.Struct]]


class QueryApi:
    def __init__(self, app: faust.App, engine: WorkerEngine, settings: Settings) -> None:
        self.app = app
        self.engine = engine
        self.settings = settings
        self.partitions = app.conf.topic_partitions
        self.url = str(app.conf.canonical_url)
        self._headers = {SERVED_BY: self.url}
        self._waiting: list[tuple[str, int, query.RecommendationsQuery, asyncio.Future]] = []

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/users/{user_id}/recommendations", self.recommendations)
        router.add_get("/users/{user_id}/interest", self.interest)
        router.add_get("/health", self.health)
        router.add_get("/health/live", self.live)

    async def recommendations(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "recommendations", self._recommendations)

    async def interest(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "interest", self._interest)

    def _recommendations(self, user_id: str, partition: int, params: Iterable[tuple[str, str]]) -> asyncio.Future:
        wanted = query.parse_recommendations(params, self.engine.config.top_k)
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._answer_waiting)
        future = loop.create_future()
        self._waiting.append((user_id, partition, wanted, future))
        return future

    def _answer_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        engine = self.engine
        if not engine.ready:  # a rebalance began since they were asked
            moved = query.QueryFailed(503, "this worker's partitions are being reassigned; retry shortly")
            waiting, gone = [], waiting
            for *_, future in gone:
                if not future.done():
                    future.set_exception(moved)
        try:
            requests = [(user, engine.state_for_query(user, part), wanted) for user, part, wanted, _ in waiting]
            answers = query.recommendations_batch(
                requests, engine.serving, engine.trending, engine.catalog, engine.config, int(time.time() * 1000)
            )
        except Exception as exc:
            for *_, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), answer in zip(waiting, answers, strict=True):
            if not future.done():  # its client may have gone
                future.set_result(answer)

    async def _interest(self, user_id: str, partition: int, params: Iterable[tuple[str, str]]) -> msgspec.Struct:
        query.no_parameters(params)
        engine = self.engine
        state = engine.state_for_query(user_id, partition)
        return query.interest(user_id, state, engine.serving, engine.config, int(time.time() * 1000))

    async def _answer(self, request: web.Request, endpoint: str, answer: Answer) -> web.StreamResponse:
        started = time.perf_counter()
        metrics = self.engine.metrics
        try:
            user_id = query.check_user_id(request.match_info["user_id"])
            partition = partition_of(user_id.encode(), self.partitions)
            if partition not in self.engine.owned:
                response = await self._forward(request, partition)
                metrics.queries.labels(endpoint, "forwarded").inc()
                return response
            if not (self.engine.ready and self.engine.started):
                raise query.QueryFailed(503, f"partition {partition} is being restored on this worker; retry shortly")
            body = encode(await answer(user_id, partition, request.query.items()))
        except query.QueryFailed as exc:
            metrics.queries.labels(endpoint, str(exc.status)).inc()
            return error(exc.status, str(exc))
        except Exception:
            log.exception("query %s failed", request.rel_url)
            metrics.queries.labels(endpoint, "500").inc()
            return error(500, "the worker failed to answer this query (see its log); retry or report it")
        metrics.queries.labels(endpoint, "answered").inc()
        metrics.query_seconds.observe(time.perf_counter() - started)
        return web.Response(body=body, content_type=JSON, headers=self._headers)

    def owner(self, partition: int) -> str | None:
        """The URL of the worker that owns ``partition`` in the group's current assignment."""
        changelog = self.app.tables[USER_TO_STATE].changelog_topic.get_topic_name()
        for url, topics in self.app.router.table_metadata(USER_TO_STATE).items():
            if partition in topics.get(changelog, ()):
                return url
        return None

    async def _forward(self, request: web.Request, partition: int) -> web.StreamResponse:
        if FORWARDED in request.headers:
            raise query.QueryFailed(503, f"partition {partition} is moving between workers; retry shortly")
        owner = self.owner(partition)
        if owner is None or owner == self.url:
            raise query.QueryFailed(503, f"no worker owns partition {partition} right now (a rebalance); retry shortly")
        url = URL(owner.rstrip("/") + request.raw_path, encoded=True)
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        try:
            async with self.app.http_client.get(url, headers={FORWARDED: self.url}, timeout=timeout) as response:
                body = await response.read()
                headers = {SERVED_BY: response.headers.get(SERVED_BY, owner)}
                return web.Response(body=body, status=response.status, content_type=JSON, headers=headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = f"the worker owning partition {partition} ({owner}) did not answer: {exc!r}"
            raise query.QueryFailed(502, message) from None

    async def health(self, request: web.Request) -> web.StreamResponse:
        engine = self.engine
        ready = engine.started and engine.ready
        body = {
            "live": True,
            "ready": ready,
            "model_version": engine.serving.version if engine.serving is not None else None,
            "partitions": sorted(engine.owned),
            "url": self.url,
        }
        return web.Response(body=msgspec.json.encode(body), status=200 if ready else 503, content_type=JSON)

    async def live(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b'{"live":true}', content_type=JSON)


def error(status: int, message: str) -> web.Response:
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return web.Response(body=encode(QueryError(status=status, error=message)), status=status, content_type=JSON,
                        headers=headers)  # fmt: skip


@web.middleware
async def json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """aiohttp's own errors (no such route, a method other than GET) as JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(
            exc.status,
            f"{exc.reason}: {request.method} {request.path}; the query API serves GET "
            "/users/{user_id}/recommendations, /users/{user_id}/interest, /health, /health/live and /metrics",
        )


def define_web(app: faust.App, engine: WorkerEngine, settings: Settings) -> QueryApi:
    api = QueryApi(app, engine, settings)
    server = app.web.web_app
    server.middlewares.append(json_errors)
    api.routes(server.router)
    return api
