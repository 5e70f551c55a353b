"""A planted topic shift for the fine-tune tests, and a tiny champion trained before it.

Before the shift: the synthetic generator's stream of some users. After it: other users of the same
population (same catalog), later, whose items are relabelled by a fixed random permutation, so the
items that make up each topic change: a model that learnt the old topics ranks the wrong items, one
fine-tuned on the new stream can learn the new ones. ``stationary`` is the same later stream without
the shift (what the champion already knows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.datasets import StreamShape, generate

DAY_MS = 86_400_000
SHAPE = StreamShape(topics=6)
ITEMS = 120


@dataclass(frozen=True)
class Drift:
    before: list[dict]
    after: list[dict]
    stationary: list[dict]
    catalog: dict[str, str]


def _later(events: list[dict], start_ms: int, tag: str, relabel: dict[str, str] | None = None) -> list[dict]:
    offset = start_ms - min(e["ts"] for e in events)
    relabel = relabel or {}
    return [{**e, "event_id": f"{tag}{e['event_id']}", "ts": e["ts"] + offset,
             "item_id": relabel.get(e["item_id"], e["item_id"])} for e in events]  # fmt: skip


def planted_drift(users: int = 160, events: int = 10_000, seed: int = 1) -> Drift:
    """One generated population (one catalog) split in two: the first half of the users before the
    shift, the second half after it (later in time), relabelled or (``stationary``) not."""
    stream, items, _ = generate(users=2 * users, items=ITEMS, events=2 * events, seed=seed, shape=SHAPE)
    first = {f"user-{u}" for u in range(users)}
    before = [e for e in stream if e["user_id"] in first]
    rest = [e for e in stream if e["user_id"] not in first]
    perm = np.random.default_rng(seed).permutation(ITEMS)
    relabel = {f"item-{i}": f"item-{perm[i]}" for i in range(ITEMS)}
    end = max(e["ts"] for e in before) + DAY_MS
    return Drift(
        before=before,
        after=_later(rest, end, "post-", relabel),
        stationary=_later(rest, end, "same-"),
        catalog={i["item_id"]: i["text"] for i in items},
    )


def train_champion(
    events: list[dict],
    catalog: dict[str, str],
    out: Path,
    epochs: int = 15,
    encoder: Path | None = None,
    members: int = 1,
) -> Path:
    """A tiny model of ``members`` trained on ``events`` with ``istream train``'s code, saved as a
    checkpoint (comment encoder: ``encoder``, default all-MiniLM-L6-v2)."""
    from models.checkpoint import save_checkpoint
    from models.comment_encoder import CommentEncoder, EmbeddingCache
    from models.datasets import write_jsonl
    from models.interest_model import ModelConfig
    from models.train import TrainConfig, load_training_data, train

    write_jsonl(out.parent / "before.jsonl", events)
    write_jsonl(out.parent / "items.jsonl", [{"item_id": i, "text": t} for i, t in catalog.items()])
    encoder = CommentEncoder.from_pretrained(encoder)
    data = load_training_data(out.parent / "before.jsonl", out.parent / "items.jsonl", encoder,
                              EmbeddingCache(out.parent / "cache"), progress=False)  # fmt: skip
    config = ModelConfig.tiny(len(data.item_ids), text_dim=encoder.dim, encoder_path=encoder.path, members=members)
    result = train(data, config, TrainConfig(epochs=epochs, patience=3, lr=1e-2, threads=1), progress=False)
    save_checkpoint(out, result.model, data.item_ids, history=result.history)
    return out
