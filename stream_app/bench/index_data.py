"""The vectors `istream bench index` ranks: a served model's real ones, and synthetic catalogs shaped like them.

Real: the bundle's item table, and the interest vectors the worker's own pipeline (``process_batch``,
states kept in memory) emits over a history file, each with what the worker would exclude (the user's
recently seen items) and the item the user took next (to judge a list by NDCG@10). Synthetic: ``n``
items drawn around random real items with the real table's spread and norms, for catalogs larger
than any data set here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
import numpy as np

from stream_app import topics
from stream_app.settings import Settings
from stream_app.worker.decode import RawRecord
from stream_app.worker.engine import pipeline_config
from stream_app.worker.item_index import Catalog, ItemIndex
from stream_app.worker.pipeline import Serving, process_batch
from stream_app.worker.trending import Trending

BATCH = 256


@dataclass
class Queries:
    vectors: np.ndarray  # [E, D] interest vectors, one per event
    exclude: list[list[int]]  # rows each query's list leaves out (the user's recently seen items)
    next_row: np.ndarray  # [E] row of the item the user took next, -1: none (the user's last event)


def _events_by_user(events_path: Path, users: int) -> Iterator[list[bytes]]:
    """Up to ``users`` users' raw events, each user's in time order."""
    by_user: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    with events_path.open("rb") as lines:
        for line in lines:
            if line.strip():
                event = json.loads(line)
                by_user[event["user_id"]].append((event["ts"], line.strip()))
    for user in sorted(by_user)[:users]:
        yield [raw for _, raw in sorted(by_user[user], key=lambda pair: pair[0])]


def real_queries(serving: Serving, events_path: Path, users: int, seen: int) -> Queries:
    """The interest vectors the pipeline emits for the events of ``users`` users of ``events_path``."""
    config = replace(pipeline_config(Settings()), seen=seen, online=None)
    states: dict[str, bytes] = {}
    index = serving.index
    vectors: list[np.ndarray] = []
    exclude: list[list[int]] = []
    next_row: list[int] = []
    for raws in _events_by_user(events_path, users):
        items = [json.loads(raw)["item_id"] for raw in raws]
        rows = index.rows(items)
        for start in range(0, len(raws), BATCH):
            batch = raws[start : start + BATCH]
            records = [
                RawRecord(topics.EVENTS, 0, i, json.loads(r)["user_id"].encode(), r) for i, r in enumerate(batch)
            ]
            result = process_batch(records, lambda user, _p: states.get(user), serving, Trending(3600.0), config)
            for write in result.writes:
                states[write.user_id] = write.value
            emitted = [o for o in result.outputs if o.kind == topics.VECTORS and o.value is not None]
            for offset, output in enumerate(emitted):
                at = start + offset
                vectors.append(np.asarray(msgspec.json.decode(output.value)["vector"], dtype=np.float32))
                exclude.append([r for r in rows[max(0, at + 1 - seen) : at + 1] if r >= 0])
                next_row.append(rows[at + 1] if at + 1 < len(rows) else -1)
    return Queries(np.stack(vectors), exclude, np.asarray(next_row, dtype=np.int64))


def synthetic_items(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` item vectors around random real ones (noise of half the real spread), norms rescaled to
    the real norms' distribution."""
    rng = np.random.default_rng(seed)
    spread = real.std(axis=0)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    norms = np.linalg.norm(real, axis=1)
    for lo in range(0, n, 1 << 18):
        hi = min(n, lo + (1 << 18))
        block = real[rng.integers(0, len(real), hi - lo)] + 0.5 * spread * rng.standard_normal((hi - lo, real.shape[1]))
        block *= (rng.choice(norms, hi - lo) / np.linalg.norm(block, axis=1))[:, None]
        out[lo:hi] = block
    return out


def model_serving(runtime) -> Serving:
    return Serving(runtime, ItemIndex.for_model(runtime, Catalog()))
