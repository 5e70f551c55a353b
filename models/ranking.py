"""The ranking protocol of ../shared/data/README.md and the two reference baselines.

Full ranking over all items, the user's history items excluded; a target already in the history
counts as a miss; rank = number of items scored strictly higher than the target (0 = first).
"""

from __future__ import annotations

import itertools
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


def history_counts(seqs: Sequences, ends: np.ndarray, n_items: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Item popularity and item -> next-item transition counts over the collapsed histories that end
    (exclusive, global event index) at ``ends[u]`` for each user ``u``."""
    pop = np.zeros(n_items)
    pairs: list[np.ndarray] = []
    for u in range(len(seqs)):
        start, end = seqs.offsets[u], ends[u]
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


def split_ends(seqs: Sequences, sp: Split) -> np.ndarray:
    """Per user, where the histories a baseline may count end: evaluated users up to their target,
    everyone else in full."""
    ends = seqs.offsets[1:].copy()
    ends[sp.users] = sp.history_end
    return ends


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


def transition_scores(pop: np.ndarray, nexts: dict[int, np.ndarray], last_items: np.ndarray) -> np.ndarray:
    """Last-item transition scores ``[len(last_items), N]``: how often each item followed the row's last
    item, ties broken by popularity."""
    scores = np.tile(pop * 1e-9, (len(last_items), 1))
    for b, last in enumerate(last_items):
        following = nexts.get(int(last))
        if following is not None:
            np.add.at(scores[b], following, 1.0)
    return scores


def baseline_ranks(seqs: Sequences, sp: Split, n_items: int) -> dict[str, np.ndarray]:
    """Target ranks of popularity and last-item transition (ties broken by popularity) on ``sp``."""
    pop, nexts = history_counts(seqs, split_ends(seqs, sp), n_items)
    histories = sp.histories(seqs)
    last = seqs.item[sp.history_end - 1]
    return {
        "popularity": ranks_by(lambda lo, hi: np.tile(pop, (hi - lo, 1)), sp, histories),
        "last-item transition": ranks_by(lambda lo, hi: transition_scores(pop, nexts, last[lo:hi]), sp, histories),
    }


def baselines(seqs: Sequences, sp: Split, n_items: int, k: int = K) -> dict[str, dict[str, float]]:
    """HR@k and NDCG@k of ``baseline_ranks``."""
    return {name: hit_ndcg(ranks, k) for name, ranks in baseline_ranks(seqs, sp, n_items).items()}


# History-length buckets (events before the predicted one, inclusive bounds; None: no upper bound)
BUCKETS = ((1, 2), (3, 5), (6, 10), (11, 50), (51, None))


def bucket_name(lo: int, hi: int | None) -> str:
    return f">{lo - 1}" if hi is None else f"{lo}-{hi}"


def by_bucket(prior: np.ndarray, ranks: dict[str, np.ndarray], k: int = K) -> list[dict]:
    """Per history-length bucket: how many predictions fall in it and HR@k / NDCG@k of each ranker
    (``ranks``: name -> target ranks, aligned with ``prior``, the events before each prediction)."""
    rows = []
    for lo, hi in BUCKETS:
        mask = (prior >= lo) & (prior <= (hi if hi is not None else np.iinfo(np.int64).max))
        rows.append(
            {"bucket": bucket_name(lo, hi), "n": int(mask.sum())}
            | {name: hit_ndcg(r[mask], k) for name, r in ranks.items()}
        )
    return rows


@dataclass(frozen=True)
class Prequential:
    """Every run that starts at or after ``since`` (epoch ms) and is not its user's first, predicted from
    the user's events before it, as a live worker is judged: ``history_end[i]`` is the run's first event
    (the history stops there), ``target[i]`` its item; rows grouped by user, in time order."""

    since: int
    user: np.ndarray
    history_end: np.ndarray
    target: np.ndarray

    @classmethod
    def of(cls, seqs: Sequences, since: int) -> Prequential:
        firsts = np.flatnonzero(np.diff(seqs.run, prepend=-1) != 0)  # first event of every run
        firsts = firsts[(seqs.run[firsts] > 0) & (seqs.ts[firsts] >= since)]
        user = np.searchsorted(seqs.offsets, firsts, side="right") - 1
        return cls(since=since, user=user, history_end=firsts, target=seqs.item[firsts])

    def ranks(self, seqs: Sequences, n_items: int, score_rows) -> np.ndarray:
        """Target ranks, ``score_rows(lo, hi)`` giving the scores ``[hi - lo, N]`` of rows lo:hi; the
        user's earlier items are excluded, a target among them is a miss (``inf``)."""
        out = np.empty(len(self.target))
        bounds = np.flatnonzero(np.diff(self.user, prepend=-1, append=-1) != 0)
        for lo_u, hi_u in itertools.pairwise(bounds):
            start, end = seqs.offsets[self.user[lo_u]], self.history_end[hi_u - 1]
            # where the user first had each item: history for a prediction when before its run starts
            first = np.full(n_items, np.iinfo(np.int64).max)
            np.minimum.at(first, seqs.item[start:end], np.arange(start, end))
            for lo in range(lo_u, hi_u, CHUNK):
                hi = min(lo + CHUNK, hi_u)
                scores = score_rows(lo, hi)
                seen = first[None, :] < self.history_end[lo:hi, None]
                scores[seen] = -np.inf
                rows = np.arange(hi - lo)
                ranks = (scores > scores[rows, self.target[lo:hi]][:, None]).sum(axis=1).astype(np.float64)
                ranks[seen[rows, self.target[lo:hi]]] = np.inf
                out[lo:hi] = ranks
        return out

    def baseline_ranks(self, seqs: Sequences, n_items: int) -> dict[str, np.ndarray]:
        """Popularity and last-item transition counted over the events before ``since`` (what a model
        trained until then saw), the user's own last item taken live."""
        ends = seqs.offsets[:-1] + np.array(
            [np.searchsorted(seqs.ts[a:b], self.since) for a, b in itertools.pairwise(seqs.offsets)], dtype=np.int64
        )
        pop, nexts = history_counts(seqs, ends, n_items)
        last = seqs.item[self.history_end - 1]
        return {
            "popularity": self.ranks(seqs, n_items, lambda lo, hi: np.tile(pop, (hi - lo, 1))),
            "last-item transition": self.ranks(
                seqs, n_items, lambda lo, hi: transition_scores(pop, nexts, last[lo:hi])
            ),
        }
