"""Sizing figures for deploy/README.md, computed with the worker's own codecs (not estimated).

For the default model (models.interest_model.ModelConfig) and the default settings (state window,
seen items, top-K), it encodes representative user states with ``stream_app.worker.state_codec`` and
output records with ``stream_app.contracts`` and prints the README's sizing table. Ids are
placeholders of the given lengths (UUID event ids by default); change them to match your data:

    .venv/bin/python deploy/sizing.py [--user-id-len 12] [--event-id-len 36] [--item-id-len 12]

tests/deploy/test_consistency.py checks that the README shows this script's output.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from models.interest_model import ModelConfig
from stream_app.contracts import Event, InterestVector, Recommendation, ScoredItem, encode
from stream_app.contracts.float_json import DECIMALS
from stream_app.settings import Settings
from stream_app.worker.engine import pipeline_config
from stream_app.worker.event_time import forget, remember
from stream_app.worker.pipeline import ItemRows
from stream_app.worker.state_codec import RecentEvent, Served, UserState, decode_state, encode_state
from stream_app.worker.trending import SNAPSHOT_ITEMS, Trending

MIB = 1024 * 1024


def _id(prefix: str, n: int, length: int) -> str:
    return f"{prefix}{n:0{length - len(prefix)}d}"


def user_state(
    cfg: ModelConfig, settings: Settings, ids: dict[str, int], events: int, comments: bool, gap_ms: int = 60_000
) -> bytes:
    """A user after ``events`` events on distinct items, ``gap_ms`` apart (every one a comment when ``comments``)."""
    rng = np.random.default_rng(0)
    window = [
        RecentEvent(
            event_id=_id("e", i, ids["event"]),
            item_id=_id("i", i, ids["item"]),
            event_type=5 if comments else 0,
            rating=-1.0,
            gap_s=60.0,
            comment_emb=rng.standard_normal(cfg.text_dim).astype(np.float32) if comments else None,
        )
        for i in range(events)
    ]
    user = UserState(
        model_version="20261122T140000Z-0123abcd",
        state=rng.standard_normal(cfg.state_dim).astype(np.float32),
        vectors=rng.standard_normal((3, cfg.vector_dim)).astype(np.float32),
        active_at=1_795_000_000_000,
        applied=events,
        seen=[e.item_id for e in window][-settings.seen_items :],
        window=window[-settings.state_window :],
        # the list last served, which the next event judges (online evaluation)
        served=Served(
            "20261122T140000Z-0123abcd", True, [_id("i", 1000 + k, ids["item"]) for k in range(settings.top_k)]
        )
        if settings.online_evaluation
        else None,
    )
    policy = pipeline_config(settings).event_time
    for i, e in enumerate(window):  # the event-time policy's marks and id memory, as the worker keeps them
        remember(user, Event(event_id=e.event_id, user_id="u", item_id=e.item_id, type="click",
                             ts=1_795_000_000_000 + i * gap_ms), i, policy)  # fmt: skip
    return encode_state(user)


def marker(ids: dict[str, int]) -> bytes:
    """What a forgotten user's state becomes (after a forget event)."""
    request = Event(event_id=_id("f", 1, ids["event"]), user_id="u", item_id="-", type="forget", ts=1_795_000_000_000)
    return encode_state(forget(None, request, 0, -1, 1_795_000_000_000))


def in_memory(obj: object) -> int:
    """Bytes a decoded state takes as Python objects (the worker's state cache holds these)."""
    if isinstance(obj, np.ndarray):
        return sys.getsizeof(obj) + (obj.nbytes if obj.base is not None else 0)
    size = sys.getsizeof(obj)
    if isinstance(obj, list | tuple):
        size += sum(in_memory(x) for x in obj)
    elif isinstance(obj, UserState | ItemRows):
        size += sum(in_memory(getattr(obj, name)) for name in type(obj).__slots__ if name != "token")
    return size


def cached(raw: bytes) -> UserState:
    """A stored state as the state cache holds it: decoded, with its items' rows in the index."""
    state = decode_state(raw)
    rows = 1000 + np.arange(len(state.seen) + len(state.window))  # rows past the small ints Python shares
    state.item_rows = ItemRows(object(), rows[: len(state.seen)].tolist(), rows[len(state.seen) :].tolist())
    return state


def trending_snapshot(ids: dict[str, int]) -> int:
    """Bytes of a partition's stored trending counts with the most items a snapshot keeps."""
    trending = Trending(3600)
    items = [_id("i", k, ids["item"]) for k in range(SNAPSHOT_ITEMS)]
    trending.add(items, [1_795_000_000_000] * len(items), [0] * len(items))
    return len(trending.snapshot(0))


def output_records(cfg: ModelConfig, settings: Settings, ids: dict[str, int]) -> tuple[int, int]:
    """Bytes of one interest-vector and one recommendation record value (JSON, as the worker writes them)."""
    rng = np.random.default_rng(1)
    user, event = _id("u", 1, ids["user"]), _id("e", 1, ids["event"])

    def vec() -> list[float]:  # float32 values rounded as the worker writes them
        return rng.standard_normal(cfg.vector_dim).astype(np.float32).astype(np.float64).round(DECIMALS).tolist()

    vector = InterestVector(
        user_id=user,
        event_id=event,
        ts=1_795_000_000_000,
        model_version="20261122T140000Z-0123abcd",
        vector=vec(),
        long_term=vec(),
        short_term=vec(),
    )
    rec = Recommendation(
        user_id=user,
        event_id=event,
        ts=1_795_000_000_000,
        model_version="20261122T140000Z-0123abcd",
        items=[
            ScoredItem(
                item_id=_id("i", k, ids["item"]), score=round(float(rng.standard_normal()), DECIMALS), because=event
            )
            for k in range(settings.top_k)
        ],
    )
    return len(encode(vector)), len(encode(rec))


def table(ids: dict[str, int]) -> str:
    cfg, settings = ModelConfig(), Settings()
    window, seen = settings.state_window, settings.seen_items
    steady = max(window, seen)
    plain_state = user_state(cfg, settings, ids, steady, comments=False)
    plain = len(plain_state)
    cached_size = in_memory(cached(plain_state))
    texts = len(user_state(cfg, settings, ids, steady, comments=True))
    first = len(user_state(cfg, settings, ids, 1, comments=False))
    burst = len(user_state(cfg, settings, ids, 1000, comments=False, gap_ms=0))
    memory = decode_state(plain_state).id_hashes
    vector, rec = output_records(cfg, settings, ids)
    key = ids["user"]
    rows = [
        ("user state after 1 event", f"{first} B"),
        (f"user state, steady ({window}-event window, {seen} seen items, no comments)", f"{plain} B"),
        (f"user state, steady, all {window} window events are comments", f"{texts} B"),
        (
            "1 M steady users, no comments (RocksDB over all workers; changelog per replica)",
            f"{plain * 1e6 / MIB:.0f} MiB",
        ),
        (
            f"of which the event-id memory (its {len(memory)} newest ids at 16 B each, any id length)",
            f"{16 * len(memory)} B",
        ),
        (
            f"of which the newest step's vectors (interest, long-, short-term: 3 x {cfg.vector_dim} float32, "
            "what the query API ranks by)",
            f"{3 * cfg.vector_dim * 4} B",
        ),
        ("user state right after 1,000 events in one millisecond (all ids kept for 5 minutes)", f"{burst} B"),
        ("marker of a forgotten user (the policy's marks, no state, window or items)", f"{len(marker(ids))} B"),
        ("the same state decoded, in the worker's state cache", f"{cached_size} B"),
        (
            f"state cache at its default size ({settings.worker_state_cache_users:,} users)",
            f"{cached_size * settings.worker_state_cache_users / MIB:.0f} MiB",
        ),
        (
            f"trending counts of one partition (a record of its own table, at most {SNAPSHOT_ITEMS:,} items)",
            f"{trending_snapshot(ids)} B",
        ),
        ("changelog record per event (upper bound: key + steady state)", f"{key + plain} B"),
        (f"interest-vector record per event (3 x {cfg.vector_dim} floats, JSON)", f"{key + vector} B"),
        (f"recommendation record per event (top {settings.top_k}, JSON)", f"{key + rec} B"),
        ("written to Kafka per event (changelog + vector + recommendation)", f"{3 * key + plain + vector + rec} B"),
    ]
    head = (
        f"Model: state {cfg.state_dim} floats, vectors {cfg.vector_dim}, comment embedding {cfg.text_dim}; "
        f"ids: user {ids['user']}, event {ids['event']}, item {ids['item']} characters."
    )
    lines = [head, "", "| quantity | size |", "|---|---|", *(f"| {q} | {s} |" for q, s in rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print deploy/README.md's sizing table.")
    parser.add_argument("--user-id-len", type=int, default=12)
    parser.add_argument("--event-id-len", type=int, default=36)
    parser.add_argument("--item-id-len", type=int, default=12)
    args = parser.parse_args()
    print(table({"user": args.user_id_len, "event": args.event_id_len, "item": args.item_id_len}))


if __name__ == "__main__":
    main()
