"""An open-loop load of query API requests, run as its own process by ``istream bench query``.

Request ``i`` is due at ``start + i / rate`` whatever the answers before it did, and its latency is
measured from that moment to its answer's last byte: a worker that stalls shows as the whole delay
every request queued behind it saw, not as a lower rate (no coordinated omission). Requests go over
keep-alive connections (aiohttp, on uvloop when present), users in a seeded random order.

``python -m stream_app.bench.query_load SPEC_JSON OUT_JSON``; the spec holds the ``LoadSpec`` fields.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec
import numpy as np


@dataclass(frozen=True)
class LoadSpec:
    url: str  # a worker's web port, e.g. http://127.0.0.1:6066
    rate: float  # requests/s offered
    seconds: float
    k: int
    users: list[str]
    seed: int = 0
    connections: int = 32


@dataclass
class LoadResult:
    offered: int = 0
    latency_ms: list[float] = field(default_factory=list)  # of 200 answers, in send order
    errors: dict[str, int] = field(default_factory=dict)  # status (or exception name) -> count
    empty: int = 0  # 200 answers without items
    short: int = 0  # 200 answers with fewer than k items
    cold: int = 0  # 200 answers marked cold_start
    forwarded: int = 0  # answered by another worker than the one asked
    seconds: float = 0.0  # first request due to last answer


class _Answer(msgspec.Struct):
    cold_start: bool
    items: list[msgspec.Raw]


async def run_load(spec: LoadSpec) -> LoadResult:
    import aiohttp

    result = LoadResult()
    decode = msgspec.json.Decoder(_Answer).decode
    rng = np.random.default_rng(spec.seed)
    n = int(spec.rate * spec.seconds)
    users = [spec.users[i] for i in rng.integers(0, len(spec.users), size=n)]
    latencies = np.full(n, np.nan)
    served_here = spec.url.rstrip("/")

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        try:
            async with session.get(f"{served_here}/users/{users[i]}/recommendations?k={spec.k}") as response:
                body = await response.read()
                done = time.perf_counter()
                if response.status != 200:
                    result.errors[str(response.status)] = result.errors.get(str(response.status), 0) + 1
                    return
                if response.headers.get("X-Istream-Served-By", served_here).rstrip("/") != served_here:
                    result.forwarded += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
            return
        answer = decode(body)
        latencies[i] = (done - due) * 1000.0
        result.empty += not answer.items
        result.short += len(answer.items) < spec.k
        result.cold += answer.cold_start

    connector = aiohttp.TCPConnector(limit=spec.connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"{served_here}/health/live") as warm:  # the first connection, before timing
            await warm.read()
        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(n):
            due = start + i / spec.rate
            ahead = due - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
            tasks.append(asyncio.ensure_future(one(session, i, due)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
    result.offered = n
    result.latency_ms = latencies[np.isfinite(latencies)].round(3).tolist()
    return result


def main(argv: list[str]) -> int:
    spec = LoadSpec(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    result = asyncio.run(run_load(spec))
    Path(argv[1]).write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
