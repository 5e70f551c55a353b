"""Item index: every recommendable item's vector under the serving model, and top-K over all of them.

The bundle's item table comes first (trained id embedding + text projection); catalog items from
the items topic that the bundle does not know are embedded from their text (comment encoder, then
the item tower). A tombstone makes an item unrecommendable but keeps its vector, because events on
it may still arrive and need a step input. One index belongs to one model version: a hot-swap
builds a new one from the new runtime and the catalog. Items the catalog gives attributes (tags, a
category) can be filtered on (``matching``); the bundle's item popularity, when it has one, orders
the cold-start list before the stream has counted anything (``trending``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Protocol

import numpy as np


class ItemEmbedder(Protocol):
    """What the index needs of ``export.runtime.ModelRuntime``."""

    item_ids: list[str]
    item_matrix: np.ndarray
    item_popularity: np.ndarray | None  # [N] training-event counts, None in bundles without it

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def item_vectors(self, text_emb: np.ndarray) -> np.ndarray: ...


@dataclass
class Catalog:
    """What the items topic said so far: texts of live items, ids of deleted ones, and which items
    carry each attribute (``tag:<tag>``, ``category:<category>``)."""

    texts: dict[str, str] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # item -> its attributes
    items_with: dict[str, set[str]] = field(default_factory=dict)  # attribute -> items
    version: int = 0  # moves on whenever attributes change (cached filters)

    def apply(self, item_id: str, text: str | None, tags: Sequence[str] = (), category: str | None = None) -> None:
        """``text`` None: a tombstone."""
        if text is None:
            self.texts.pop(item_id, None)
            self.removed.add(item_id)
        else:
            self.texts[item_id] = text
            self.removed.discard(item_id)
        labels = () if text is None else attribute_labels(tags, category)
        old = self.labels.pop(item_id, ())
        if labels:
            self.labels[item_id] = labels
        if old == labels:
            return
        self.version += 1
        for label in old:
            holders = self.items_with[label]
            holders.discard(item_id)
            if not holders:
                del self.items_with[label]
        for label in labels:
            self.items_with.setdefault(label, set()).add(item_id)

    def matching(self, labels: Sequence[str]) -> set[str]:
        """Items that carry every one of ``labels``."""
        sets = sorted((self.items_with.get(label, set()) for label in labels), key=len)
        return set(sets[0]).intersection(*sets[1:]) if sets else set()


def attribute_labels(tags: Iterable[str] = (), category: str | None = None) -> tuple[str, ...]:
    """The catalog's names of an item's attributes (or of a filter's): sorted, no repeats."""
    labels = {f"tag:{t}" for t in tags}
    if category is not None:
        labels.add(f"category:{category}")
    return tuple(sorted(labels))


class ItemIndex:
    def __init__(self, ids: Sequence[str], matrix: np.ndarray) -> None:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise ValueError(f"item matrix {matrix.shape} does not match {len(ids)} ids")
        self.ids: list[str] = list(ids)
        self.row_of: dict[str, int] = {item: i for i, item in enumerate(self.ids)}
        # replaced whenever ids gain rows: rows looked up before (-1 for an unknown id) may be stale then
        self.token = object()
        self._matrix = matrix.copy()
        self._alive = np.ones(len(self.ids), dtype=bool)
        self._popularity = np.zeros(len(self.ids), dtype=np.float64)
        self._matching: tuple[object, int, dict[tuple[str, ...], np.ndarray]] = (None, -1, {})
        self._popularity_order: tuple[object, np.ndarray] = (None, np.zeros(0, dtype=np.int64))

    @classmethod
    def for_model(cls, embedder: ItemEmbedder, catalog: Catalog) -> ItemIndex:
        index = cls(embedder.item_ids, embedder.item_matrix)
        popularity = getattr(embedder, "item_popularity", None)
        if popularity is not None:
            index._popularity[: len(popularity)] = popularity
        index.apply_catalog(embedder, catalog.texts, catalog.removed)
        return index

    @property
    def popularity(self) -> np.ndarray:
        """[n] the bundle's training-event count of each row (0: none, or an item the bundle lacks)."""
        return self._popularity[: len(self.ids)]

    def popularity_order(self) -> np.ndarray:
        """Every row, most popular first (ties by row), cached until rows are added."""
        token, order = self._popularity_order
        if token is not self.token:
            n = len(self.ids)
            order = np.lexsort((np.arange(n), -self.popularity))
            self._popularity_order = (self.token, order)
        return order

    @property
    def alive(self) -> np.ndarray:
        """[n] bool: recommendable rows."""
        return self._alive[: len(self.ids)]

    def matching(self, catalog: Catalog, labels: tuple[str, ...]) -> np.ndarray:
        """[n] bool: rows of the items that carry every one of ``labels`` (``attribute_labels``); cached
        until the catalog's attributes or the index's rows change."""
        token, version, cache = self._matching
        if token is not self.token or version != catalog.version:
            cache = {}
            self._matching = (self.token, catalog.version, cache)
        mask = cache.get(labels)
        if mask is None:
            if len(cache) >= MATCHING_CACHED:
                cache.clear()
            mask = cache[labels] = np.zeros(len(self.ids), dtype=bool)
            rows = self.row_array(catalog.matching(labels))
            mask[rows[rows >= 0]] = True
        return mask

    @property
    def dim(self) -> int:
        return self._matrix.shape[1]

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix[: len(self.ids)]

    def __len__(self) -> int:
        return int(self._alive[: len(self.ids)].sum())

    def is_alive(self, item_id: str) -> bool:
        row = self.row_of.get(item_id)
        return row is not None and bool(self._alive[row])

    def apply_catalog(self, embedder: ItemEmbedder, upserts: Mapping[str, str], removed: Iterable[str] = ()) -> int:
        """Catalog changes from the items topic; embeds the texts of items the index lacks and returns
        how many. Known items keep their vector (the bundle's trained one beats a text-only one)."""
        new = [item for item in upserts if item not in self.row_of]
        vectors = embedder.item_vectors(embedder.encode([upserts[item] for item in new])) if new else None
        self.upsert(upserts, vectors, new)
        self.remove(removed)
        return len(new)

    def upsert(self, ids: Iterable[str], vectors: np.ndarray | None = None, new: Sequence[str] = ()) -> None:
        """Make ``ids`` recommendable; ``new`` (a subset, not yet in the index) get rows of ``vectors``."""
        for item in ids:
            row = self.row_of.get(item)
            if row is not None:
                self._alive[row] = True
        if new:
            self._append(list(new), np.asarray(vectors, dtype=np.float32))

    def remove(self, ids: Iterable[str]) -> None:
        for item in ids:
            row = self.row_of.get(item)
            if row is not None:
                self._alive[row] = False

    def _reserve(self, rows: int) -> None:
        """Room for ``rows`` rows; rows past the items are zeros."""
        if rows > self._matrix.shape[0]:
            n = len(self.ids)
            capacity = max(rows, 2 * self._matrix.shape[0], 64)
            grown = np.zeros((capacity, self.dim), dtype=np.float32)
            grown[:n] = self._matrix[:n]
            alive = np.zeros(capacity, dtype=bool)
            alive[:n] = self._alive[:n]
            popularity = np.zeros(capacity, dtype=np.float64)
            popularity[:n] = self._popularity[:n]
            self._matrix, self._alive, self._popularity = grown, alive, popularity

    def _append(self, ids: list[str], vectors: np.ndarray) -> None:
        n, need = len(self.ids), len(self.ids) + len(ids)
        self._reserve(need)
        self._matrix[n:need] = vectors
        self._alive[n:need] = True
        for i, item in enumerate(ids, start=n):
            self.row_of[item] = i
        self.ids.extend(ids)
        self.token = object()

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """[n, D] step inputs; an item the index has never heard of gets a zero vector."""
        return self.vectors_at(self.row_array(item_ids))

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """``vectors`` of items given by their rows (-1: unknown)."""
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        known = rows >= 0
        out[known] = self._matrix[rows[known]]
        return out

    def row_array(self, item_ids: Iterable[str]) -> np.ndarray:
        """int64 rows of ``item_ids`` in one pass, -1 for an item the index has never heard of."""
        return np.fromiter(map(self.row_of.get, item_ids, repeat(-1)), dtype=np.int64)

    def rows(self, item_ids: Iterable[str]) -> list[int]:
        """``row_array`` as a list."""
        return list(map(self.row_of.get, item_ids, repeat(-1)))

    def top_k(
        self, queries: np.ndarray, exclude: Sequence[Sequence[int]], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` live items for each query row by dot product, minus that row's excluded rows
        (``rows`` of the excluded ids; -1, an unknown id, excludes nothing), among the ``allowed``
        rows ([n] bool, e.g. ``matching``; None: all).

        Returns (rows [E, k] int64, scores [E, k] float32), best first; a slot with no item left
        has row -1 and score -inf.
        """
        n = len(self.ids)
        k = min(k, n)
        width = -(-n // BLOCK) * BLOCK  # whole blocks: padding columns score -inf
        self._reserve(width)
        scores = _products(np.asarray(queries, dtype=np.float32), self._matrix[:width])
        scores[:, n:] = -np.inf
        alive = self._alive[:n] if allowed is None else self._alive[:n] & allowed
        if not alive.all():
            scores[:, :n][:, ~alive] = -np.inf
        counts = np.fromiter(map(len, exclude), dtype=np.int64, count=len(exclude))
        rows = np.fromiter(chain.from_iterable(exclude), dtype=np.int64, count=int(counts.sum()))
        query_of = np.repeat(np.arange(len(exclude)), counts)
        known = rows >= 0
        scores[query_of[known], rows[known]] = -np.inf
        if k == 0:
            empty = np.zeros((len(scores), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        candidates = _candidates(scores, k)
        cand_scores = np.take_along_axis(scores, candidates, axis=1)
        m = cand_scores.shape[1]
        best = np.argpartition(cand_scores, m - k, axis=1)[:, m - k :]
        top = np.take_along_axis(candidates, best, axis=1)
        top_scores = np.take_along_axis(cand_scores, best, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        top[np.isneginf(top_scores)] = -1
        return top, top_scores


MATCHING_CACHED = 256  # filters whose rows an index keeps
# Below this many queries, one matrix-vector product each: OpenBLAS's matrix product took 2x longer per
# query for 2 or 3 queries than for 1 (9,742 x 128 items: 116 and 108 us a query against 60), and 51 for 4.
ROWWISE_BELOW = 4


def _products(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[Q, N] dot products of each query with each row of ``matrix``."""
    if 1 < len(queries) < ROWWISE_BELOW:
        return np.stack([matrix @ query for query in queries])
    return queries @ matrix.T


BLOCK = 32  # 32 beat 16, 64 and 128 on a 9,742-item catalog (fewer candidates to gather, same maxima work)


def _candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns [E, m] of each row that surely hold its ``k`` best. ``scores`` has ``BLOCK * nb``
    columns, grouped into ``nb`` blocks of ``BLOCK`` columns (block b: columns b, b + nb, ...,
    so the maxima are one reduction over a middle axis, fast in numpy). The ``k`` blocks with
    the highest maxima hold the k best, since each of them is the maximum of its block or shares
    a block with a better one: small partitions instead of one over the whole catalog per row."""
    rows, width = scores.shape
    blocks = width // BLOCK
    if blocks <= k:
        return np.broadcast_to(np.arange(width), (rows, width))
    grouped = scores.reshape(rows, BLOCK, blocks)
    maxima = grouped[:, 0].copy()
    for j in range(1, BLOCK):  # one contiguous maximum per block row: 4x faster than .max(axis=1)
        np.maximum(maxima, grouped[:, j], out=maxima)
    top_blocks = np.argpartition(maxima, blocks - k, axis=1)[:, blocks - k :]
    return (top_blocks[:, :, None] + blocks * np.arange(BLOCK)).reshape(rows, k * BLOCK)
