"""Events -> per-user, time-ordered numeric sequences, and the chronological leave-one-out split.

The evaluation protocol (../shared/data/README.md) works on *items*: per user, consecutive repeats
of one item collapse into one "run"; users with at least 3 runs are evaluated; the last run is the
test target, the one before it the validation target. The model instead steps through every raw
event (a rating and a tag on the same movie are two steps of one run), so each event carries the
index of its run.

Split: for an evaluated user, training sees the events of all runs but the last two; validation
steps through those and predicts run -2; test steps through everything before the last run and
predicts it. Users with fewer than 3 runs are never evaluated and train on all their events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.datasets.jsonl import EventColumns
from models.datasets.records import EVENT_TYPES

MIN_RUNS = 3
TYPE_INDEX = {name: i for i, name in enumerate(EVENT_TYPES)}


@dataclass
class Sequences:
    """All events grouped by user (``offsets``), each user's events in time order."""

    user_ids: list[str]
    offsets: np.ndarray  # int64 [U + 1]; user u owns events offsets[u]:offsets[u + 1]
    item: np.ndarray  # int64 [E], row in the item table
    event_type: np.ndarray  # int64 [E], index in EVENT_TYPES
    rating: np.ndarray  # float32 [E], -1 when absent
    gap_s: np.ndarray  # float32 [E], seconds since the user's previous event, 0 for the first
    text_row: np.ndarray  # int64 [E], row in ``texts``, -1 when the event has no text
    run: np.ndarray  # int64 [E], index of the event's collapsed run within its user
    texts: list[str]  # distinct comment texts
    ts: np.ndarray  # int64 [E], epoch ms

    def __len__(self) -> int:
        return len(self.user_ids)

    def runs(self, u: int) -> int:
        start, end = self.offsets[u], self.offsets[u + 1]
        return int(self.run[end - 1]) + 1 if end > start else 0

    def run_items(self, u: int) -> np.ndarray:
        """Item rows of the user's collapsed sequence."""
        start, end = self.offsets[u], self.offsets[u + 1]
        first = np.flatnonzero(np.diff(self.run[start:end], prepend=-1) != 0)
        return self.item[start:end][first]

    def evaluated(self) -> np.ndarray:
        """Users the protocol evaluates (at least ``MIN_RUNS`` runs)."""
        return np.array([u for u in range(len(self)) if self.runs(u) >= MIN_RUNS], dtype=np.int64)

    def cut(self, u: int, drop_runs: int) -> int:
        """Index (global) of the first event of the user's last ``drop_runs`` runs; the history ends there."""
        start, end = self.offsets[u], self.offsets[u + 1]
        keep = self.runs(u) - drop_runs
        return int(start + np.searchsorted(self.run[start:end], keep))

    def train_mask(self, holdout: int = 2) -> np.ndarray:
        """Events training may use: everything but evaluated users' last ``holdout`` runs (2: validation
        and test; 1: test only, for a refit once the number of epochs is known)."""
        mask = np.ones(len(self.item), dtype=bool)
        for u in self.evaluated():
            mask[self.cut(u, holdout) : self.offsets[u + 1]] = False
        return mask


def item_table(catalog: dict[str, str], events: EventColumns) -> list[str]:
    """Item ids in row order: the catalog's, then items only the events mention (first seen first)."""
    ids = dict.fromkeys(catalog)
    ids.update(dict.fromkeys(events.item_id.tolist()))
    return list(ids)


def build_sequences(events: EventColumns, item_index: dict[str, int]) -> Sequences:
    """Group ``events`` by user in time order (ties keep file order). Events whose type the model
    does not step on, or whose item is not in ``item_index``, are dropped."""
    types = np.array([TYPE_INDEX.get(t, -1) for t in events.type], dtype=np.int64)
    items = np.array([item_index.get(i, -1) for i in events.item_id], dtype=np.int64)
    keep = (types >= 0) & (items >= 0)
    users, user_of = np.unique(events.user_id[keep].astype(str), return_inverse=True)
    order = np.lexsort((np.arange(int(keep.sum())), events.ts[keep], user_of))
    user_of, ts = user_of[order], events.ts[keep][order]
    item, etype = items[keep][order], types[keep][order]
    rating = np.nan_to_num(events.rating[keep][order], nan=-1.0).astype(np.float32)
    raw_text = events.text[keep][order]

    offsets = np.searchsorted(user_of, np.arange(len(users) + 1)).astype(np.int64)
    first = np.zeros(len(item), dtype=bool)
    first[offsets[:-1][offsets[:-1] < len(item)]] = True
    gap_s = np.where(first, 0.0, np.diff(ts, prepend=ts[:1]) / 1000.0).astype(np.float32)
    new_run = first | (np.diff(item, prepend=-1) != 0)
    run = np.cumsum(new_run) - 1
    run -= run[offsets[user_of]]  # restart the count for each user

    texts: dict[str, int] = {}
    text_row = np.array([texts.setdefault(t, len(texts)) if t else -1 for t in raw_text], dtype=np.int64)
    return Sequences(
        user_ids=users.tolist(),
        offsets=offsets,
        item=item,
        event_type=etype,
        rating=rating,
        gap_s=gap_s,
        text_row=text_row,
        run=run.astype(np.int64),
        texts=list(texts),
        ts=ts.astype(np.int64),
    )


def future_run_items(seqs: Sequences, usable: np.ndarray, k: int) -> np.ndarray:
    """``[E, k]``: per event, the items of the user's next ``k`` runs whose first event is ``usable``
    (-1 past the user's end or an unusable run): the training targets, every event of a run predicting
    the same next items."""
    n = len(seqs.item)
    starts = np.flatnonzero(np.diff(seqs.run, prepend=-1) != 0)  # first event of each run, all users
    run_of = np.searchsorted(starts, np.arange(n), side="right") - 1
    user_of = np.searchsorted(seqs.offsets, np.arange(n), side="right") - 1
    out = np.full((n, k), -1, dtype=np.int64)
    for j in range(k):
        later = run_of + j + 1
        nxt = starts[np.minimum(later, len(starts) - 1)]
        hit = (later < len(starts)) & (user_of[nxt] == user_of) & usable[nxt]
        out[hit, j] = seqs.item[nxt[hit]]
    return out


@dataclass
class Padded:
    """Events of several users as ``[B, T]`` arrays, left-aligned; ``valid`` marks real events."""

    index: np.ndarray  # int64 [B, T], global event index (0 where padding)
    valid: np.ndarray  # bool [B, T]


def pad(starts: np.ndarray, ends: np.ndarray) -> Padded:
    """Event ranges ``starts[b]:ends[b]`` as a padded batch."""
    lengths = ends - starts
    width = max(int(lengths.max(initial=0)), 1)
    steps = np.arange(width)
    valid = steps[None, :] < lengths[:, None]
    index = np.where(valid, starts[:, None] + steps[None, :], 0)
    return Padded(index=index.astype(np.int64), valid=valid)
