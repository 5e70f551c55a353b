"""The ranking protocol of ../shared/data/README.md and the two reference baselines.

Full ranking over all items, the user's history items excluded; a target already in the history
counts as a miss; rank = number of items scored strictly higher than the target (0 = first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.sequences import Sequences

K = 10


@dataclass(frozen=True)
class Split:
    """Who is evaluated on what: ``history_end[i]`` is the (global) event index where user
    ``users[i]``'s history stops; ``target[i]`` the item row to predict."""

    users: np.ndarray
    history_end: np.ndarray
    target: np.ndarray

    def histories(self, seqs: Sequences) -> list[np.ndarray]:
        starts = seqs.offsets[self.users]
        return [np.unique(seqs.item[start:end]) for start, end in zip(starts, self.history_end, strict=True)]


def split(seqs: Sequences, holdout: int) -> Split:
    """Evaluated users with everything before their last ``holdout`` runs as history and the first held-out
    run's item as target: ``holdout=1`` is the test split, ``holdout=2`` the validation split."""
    users = seqs.evaluated()
    ends = np.array([seqs.cut(u, holdout) for u in users], dtype=np.int64)
    return Split(users=users, history_end=ends, target=seqs.item[ends])


def target_ranks(scores: np.ndarray, target: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Rank of each row's target in ``scores`` [B, N] with history items removed; ``inf`` for a miss
    (target in the history). ``scores`` is modified in place."""
    rows = np.arange(len(target))
    in_history = np.array([np.isin(t, h) for t, h in zip(target, histories, strict=True)], dtype=bool)
    for b, hist in enumerate(histories):
        scores[b, hist] = -np.inf
    ranks = (scores > scores[rows, target][:, None]).sum(axis=1).astype(np.float64)
    ranks[in_history] = np.inf
    return ranks


def hit_ndcg(ranks: np.ndarray, k: int = K) -> dict[str, float]:
    """HR@k and NDCG@k averaged over users (one target each)."""
    hits = ranks < k
    gains = np.where(hits, 1.0 / np.log2(np.where(hits, ranks, 0) + 2.0), 0.0)
    n = max(len(ranks), 1)
    return {f"hr@{k}": float(hits.sum() / n), f"ndcg@{k}": float(gains.sum() / n)}


def history_counts(seqs: Sequences, sp: Split, n_items: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Item popularity and item -> next-item transition counts over every collapsed history
    (evaluated users up to their target, everyone else in full)."""
    pop = np.zeros(n_items)
    pairs: list[np.ndarray] = []
    end_of = dict(zip(sp.users.tolist(), sp.history_end.tolist(), strict=True))
    for u in range(len(seqs)):
        start = seqs.offsets[u]
        end = end_of.get(u, seqs.offsets[u + 1])
        runs = seqs.run[start:end]
        items = seqs.item[start:end][np.diff(runs, prepend=-1) != 0]
        np.add.at(pop, items, 1.0)
        pairs.append(np.stack([items[:-1], items[1:]], axis=1))
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(edges[:, 0], kind="stable")
    edges = edges[order]
    bounds = np.searchsorted(edges[:, 0], np.arange(n_items + 1))
    nexts = {i: edges[bounds[i] : bounds[i + 1], 1] for i in np.flatnonzero(np.diff(bounds))}
    return pop, nexts


CHUNK = 1024  # users scored at once: bounds the [users, items] score matrix


def ranks_by(score_rows, sp: Split, histories: list[np.ndarray]) -> np.ndarray:
    """Target ranks of every evaluated user, ``score_rows(lo, hi)`` giving scores ``[hi - lo, N]``."""
    parts = []
    for lo in range(0, len(sp.users), CHUNK):
        hi = min(lo + CHUNK, len(sp.users))
        parts.append(target_ranks(score_rows(lo, hi), sp.target[lo:hi], histories[lo:hi]))
    return np.concatenate(parts) if parts else np.zeros(0)


def vector_ranks(interests: np.ndarray, item_matrix: np.ndarray, sp: Split, histories: list[np.ndarray]) -> np.ndarray:
    """Target ranks when score = dot(interest, item vector)."""
    return ranks_by(lambda lo, hi: interests[lo:hi] @ item_matrix.T, sp, histories)


def baselines(seqs: Sequences, sp: Split, n_items: int, k: int = K) -> dict[str, dict[str, float]]:
    """Popularity and last-item transition (ties broken by popularity) on the same split."""
    pop, nexts = history_counts(seqs, sp, n_items)
    histories = sp.histories(seqs)

    def transition_rows(lo: int, hi: int) -> np.ndarray:
        scores = np.tile(pop * 1e-9, (hi - lo, 1))  # popularity only breaks ties
        for b, end in enumerate(sp.history_end[lo:hi]):
            following = nexts.get(int(seqs.item[end - 1]))
            if following is not None:
                np.add.at(scores[b], following, 1.0)
        return scores

    return {
        "popularity": hit_ndcg(ranks_by(lambda lo, hi: np.tile(pop, (hi - lo, 1)), sp, histories), k),
        "last-item transition": hit_ndcg(ranks_by(transition_rows, sp, histories), k),
    }
