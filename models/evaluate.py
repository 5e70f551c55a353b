"""Evaluation of a checkpoint on an events file, by the protocol of ../shared/data/README.md, with
the model stepped one event at a time as a worker runs it, beside the reference baselines.

Items the checkpoint does not know (new in the catalog or the events) are ranked too: with
catalog text they get the text-only item tower vector, without it a zero vector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import Checkpoint, load_checkpoint
from models.comment_encoder import CommentEncoder, EmbeddingCache
from models.datasets.jsonl import load_event_columns, read_items
from models.ranking import Prequential, Split, baseline_ranks, by_bucket, hit_ndcg, split, vector_ranks
from models.sequences import Sequences, build_sequences, item_table
from models.stepping import final_vectors
from models.text_features import comment_table

SENTIMENT_NEGATIVE = 2.0  # a last review rated <= this is negative
SENTIMENT_POSITIVE = 4.0  # >= this is positive


@dataclass
class EvalData:
    """One events file seen through one checkpoint's item table (extended by unknown items)."""

    item_ids: list[str]
    seqs: Sequences
    comments: torch.Tensor
    new_item_text: dict[int, str]  # row -> catalog text of items the checkpoint lacks


def load_eval_data(
    ckpt: Checkpoint,
    events: str | os.PathLike,
    items: str | os.PathLike,
    encoder: CommentEncoder,
    cache: EmbeddingCache,
) -> EvalData:
    columns = load_event_columns(events)
    catalog = read_items(items)
    known = set(ckpt.item_ids)
    item_ids = ckpt.item_ids + [i for i in item_table(catalog, columns) if i not in known]
    seqs = build_sequences(columns, {item: row for row, item in enumerate(item_ids)})
    new_text = {
        row: catalog[item]
        for row, item in enumerate(item_ids[len(ckpt.item_ids) :], start=len(ckpt.item_ids))
        if (catalog.get(item) or "").strip() not in ("", item)
    }
    return EvalData(item_ids, seqs, torch.from_numpy(comment_table(seqs, encoder, cache, progress=False)), new_text)


@torch.no_grad()
def item_matrix(ckpt: Checkpoint, data: EvalData, encoder: CommentEncoder, cache: EmbeddingCache) -> torch.Tensor:
    """The checkpoint's item table, extended with text-only (or zero) vectors for unknown items."""
    table = ckpt.model.item_vectors()
    extra = torch.zeros(len(data.item_ids) - len(ckpt.item_ids), table.shape[1])
    if data.new_item_text:
        rows = sorted(data.new_item_text)
        text_emb = torch.from_numpy(cache.encode(encoder, [data.new_item_text[r] for r in rows]))
        extra[torch.tensor(rows) - len(ckpt.item_ids)] = ckpt.model.item_tower(text_emb)
    return torch.cat([table, extra])


@dataclass
class Judged:
    """Target ranks of the model and the baselines (ranker -> ranks) on the test split and on the
    prequential rows, with the number of events before each prediction."""

    test: dict[str, np.ndarray]
    test_prior: np.ndarray
    prequential: Prequential | None
    prequential_ranks: dict[str, np.ndarray]
    prequential_prior: np.ndarray

    def report(self) -> dict:
        out = {**hit_ndcg(self.test["model"]), "buckets": by_bucket(self.test_prior, self.test)}
        if self.prequential is None:
            out["prequential"] = None
        else:
            out["prequential"] = {
                "since": self.prequential.since,
                "predictions": len(self.prequential_prior),
                **{name: hit_ndcg(ranks) for name, ranks in self.prequential_ranks.items()},
                "buckets": by_bucket(self.prequential_prior, self.prequential_ranks),
            }
        return out


def judge(ckpt: Checkpoint, data: EvalData, item_vecs: torch.Tensor, sp: Split) -> Judged:
    """The model stepped through every user's events (its interest recorded after each), ranked on the
    test split and on every run after the checkpoint's training data (``Prequential``), beside the
    baselines."""
    seqs, n_items = data.seqs, len(data.item_ids)
    every = torch.zeros(len(seqs.item), item_vecs.shape[1])
    final_vectors(ckpt.model, seqs, seqs.offsets[:-1], seqs.offsets[1:], item_vecs, data.comments, every=every)
    interests, items = every.numpy(), item_vecs.numpy()
    test = {"model": vector_ranks(interests[sp.history_end - 1], items, sp, sp.histories(seqs))}
    test |= baseline_ranks(seqs, sp, n_items)
    prior = sp.history_end - seqs.offsets[sp.users]
    trained_until = (ckpt.history.get("data") or {}).get("trained_until")
    pq = None if trained_until is None else Prequential.of(seqs, trained_until + 1)
    if pq is None or len(pq.target) == 0:
        return Judged(test, prior, None, {}, np.zeros(0))
    rows = interests[pq.history_end - 1]
    ranks = {"model": pq.ranks(seqs, n_items, lambda lo, hi: rows[lo:hi] @ items.T)} | pq.baseline_ranks(seqs, n_items)
    return Judged(test, prior, pq, ranks, pq.history_end - seqs.offsets[pq.user])


def model_metrics(ckpt: Checkpoint, data: EvalData, item_vecs: torch.Tensor, sp: Split) -> dict[str, float]:
    interests = final_vectors(
        ckpt.model, data.seqs, data.seqs.offsets[sp.users], sp.history_end, item_vecs, data.comments
    ).interest
    return hit_ndcg(vector_ranks(interests.numpy(), item_vecs.numpy(), sp, sp.histories(data.seqs)))


def sentiment_cosines(ckpt: Checkpoint, data: EvalData, item_vecs: torch.Tensor) -> dict[str, float | int] | None:
    """Mean cosine between the interest right after a user's last event and that event's item vector,
    for users whose last event is a negative vs a positive rating (issue: sentiment must move interest).
    None when the data has no ratings on last events."""
    seqs = data.seqs
    last = seqs.offsets[1:] - 1
    rating = seqs.rating[last]
    groups = {"negative": (rating >= 0) & (rating <= SENTIMENT_NEGATIVE), "positive": rating >= SENTIMENT_POSITIVE}
    if not all(g.any() for g in groups.values()):
        return None
    interests = final_vectors(ckpt.model, seqs, seqs.offsets[:-1], last + 1, item_vecs, data.comments).interest
    cos = torch.nn.functional.cosine_similarity(interests, item_vecs[torch.from_numpy(seqs.item[last])], dim=-1)
    out: dict[str, float | int] = {}
    for name, mask in groups.items():
        out[f"{name}_cosine"] = float(cos[torch.from_numpy(mask)].mean())
        out[f"{name}_users"] = int(mask.sum())
    return out


def ablation_name(ckpt: Checkpoint) -> str:
    cfg = ckpt.config
    off = [
        label
        for label, on in (
            ("comment text", cfg.use_comment_text),
            ("long-term path", cfg.use_long_term),
            ("item text tower", cfg.use_item_text),
        )
        if not on
    ]
    return "without " + " and ".join(off) if off else "full model"


def evaluate_files(
    model_dir: str | os.PathLike,
    events: str | os.PathLike,
    items: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike = "var/cache/embeddings",
    encoder_path: str | None = None,
    ablations: tuple[str | os.PathLike, ...] = (),
    threads: int = 2,
) -> dict:
    """``istream evaluate``: metrics of the model and the baselines on the test split (last item per user)."""
    torch.set_num_threads(threads)
    ckpt = load_checkpoint(model_dir)
    encoder = CommentEncoder.from_pretrained(
        encoder_path or ckpt.config.encoder_path or None, max_length=ckpt.config.encoder_max_length
    )
    cache = EmbeddingCache(cache_dir)
    data = load_eval_data(ckpt, events, items, encoder, cache)
    sp = split(data.seqs, holdout=1)
    item_vecs = item_matrix(ckpt, data, encoder, cache)
    judged = judge(ckpt, data, item_vecs, sp)
    result: dict = {
        **judged.report(),
        "baselines": {name: hit_ndcg(ranks) for name, ranks in judged.test.items() if name != "model"},
        "users": len(sp.users),
        "items": len(data.item_ids),
    }
    extra: dict = {"events": str(Path(events).resolve()), "sentiment": sentiment_cosines(ckpt, data, item_vecs)}
    if ablations:
        extra["ablations"] = {}
        for path in ablations:
            other = load_checkpoint(path)
            other_data = load_eval_data(other, events, items, encoder, cache)
            other_sp = split(other_data.seqs, holdout=1)
            metrics = model_metrics(other, other_data, item_matrix(other, other_data, encoder, cache), other_sp)
            extra["ablations"][ablation_name(other)] = {**metrics, "checkpoint": str(Path(path).resolve())}
    return {"result": result, "extra": extra}
