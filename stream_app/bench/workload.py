"""The events a benchmark replays: real MovieLens ratings when ../shared/data has them, else a
generated stream; every event a click, except a chosen share turned into comments whose text is a
real Amazon review (generated comments when the reviews are absent).

Events keep each user's time order, so the worker's dedupe and lateness checks pass them all.
``order="time"`` replays the data's own global order. MovieLens users rate in bulk sessions, so
500 consecutive ratings hold about 10 users, one of them with about 200: a stress case for the
per-user ordering of a micro-batch, unlike a live service where many users are active at once.
``order="interleaved"`` (the default) spreads each user's events evenly over the stream, every
user's own order kept. Asking for more events than the data holds replays it again under new
user ids (``u~2`` ...). Event ids carry a run tag, so two runs on one broker never look like
duplicates of each other.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MOVIELENS = "movielens-latest-small"
AMAZON = "amazon-musical-instruments-5core/Musical_Instruments_5.json.gz"


@dataclass(frozen=True)
class Workload:
    keys: list[bytes]  # user ids: the record keys
    values: list[bytes]  # event JSON, as produced
    event_ids: list[str]
    users: int
    comments: int
    source: str  # where the interactions came from
    text_source: str  # where the comment texts came from
    texts: list[str]  # the comment texts used (for the same-run encoder measurement)

    def __len__(self) -> int:
        return len(self.values)


def interactions(data_dir: Path) -> tuple[list[tuple[str, str, int]], str]:
    """(user_id, item_id, ts) in time order, and their source."""
    ratings = data_dir / MOVIELENS / "ratings.csv"
    if ratings.is_file():
        from models.datasets import read_movielens

        dataset = read_movielens(ratings, data_dir / MOVIELENS / "movies.csv")
        return [(e["user_id"], e["item_id"], e["ts"]) for e in dataset.events], f"MovieLens ratings ({ratings})"
    from models.datasets import generate

    events, _, _ = generate(users=2000, items=3000, events=100_000, seed=0)
    return [(e["user_id"], e["item_id"], e["ts"]) for e in events], "generated (models.datasets.synthetic)"


def comment_texts(data_dir: Path, limit: int = 20_000) -> tuple[list[str], str]:
    """Real review texts when the Amazon file is present, else the generator's comments."""
    reviews = data_dir / AMAZON
    if reviews.is_file():
        from models.datasets.amazon import review_text

        texts = []
        with gzip.open(reviews, "rt", encoding="utf-8") as f:
            for line in f:
                review = json.loads(line)
                text = review_text(review.get("summary") or "", review.get("reviewText") or "")
                if text:
                    texts.append(text)
                if len(texts) >= limit:
                    break
        return texts, f"Amazon reviews ({reviews})"
    from models.datasets import generate

    events, _, _ = generate(users=200, items=300, events=8000, seed=1)
    return [e["text"] for e in events if e.get("text")], "generated comments (models.datasets.synthetic)"


ORDERS = ("interleaved", "time")


def interleave(events: list[tuple[str, str, int]], rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """Each user's events spread evenly over the whole stream (from a random phase), in their order."""
    counts = Counter(user for user, _, _ in events)
    phase = {user: rng.random() for user in counts}
    seen: Counter[str] = Counter()
    keys = []
    for user, _, _ in events:
        keys.append((seen[user] + phase[user]) / counts[user])
        seen[user] += 1
    return [events[i] for i in np.argsort(keys, kind="stable")]


def build_workload(
    n_events: int, comment_fraction: float, seed: int, tag: str, data_dir: Path, order: str = "interleaved"
) -> Workload:
    """``n_events`` events; ``comment_fraction`` of them (chosen at random, seeded) are comments."""
    base, source = interactions(data_dir)
    texts, text_source = comment_texts(data_dir) if comment_fraction > 0 else ([], "none")
    rng = np.random.default_rng(seed)
    if order == "interleaved":
        base = interleave(base, rng)
        source += ", users interleaved"
    is_comment = rng.random(n_events) < comment_fraction
    pick = rng.integers(0, max(1, len(texts)), size=n_events)
    encoder = msgspec.json.Encoder()
    keys, values, ids, used = [], [], [], set()
    for i in range(n_events):
        lap, (user, item, ts) = divmod(i, len(base))[0], base[i % len(base)]
        user_id = user if lap == 0 else f"{user}~{lap + 1}"
        event = {"event_id": f"{tag}-{i}", "user_id": user_id, "item_id": item, "type": "click", "ts": ts}
        if is_comment[i]:
            event["type"], event["text"] = "comment", texts[pick[i]]
            used.add(int(pick[i]))
        keys.append(user_id.encode())
        values.append(encoder.encode(event))
        ids.append(event["event_id"])
    return Workload(
        keys,
        values,
        ids,
        users=len(set(keys)),
        comments=int(is_comment.sum()),
        source=source,
        text_source=text_source,
        texts=[texts[j] for j in sorted(used)],
    )


def workload_of(events: list[dict], source: str) -> Workload:
    """A workload of the given event dicts, as they are."""
    encoder = msgspec.json.Encoder()
    keys = [e["user_id"].encode() for e in events]
    return Workload(
        keys,
        [encoder.encode(e) for e in events],
        [e["event_id"] for e in events],
        users=len(set(keys)),
        comments=sum(1 for e in events if e["type"] == "comment"),
        source=source,
        text_source="none",
        texts=[],
    )
