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
from itertools import repeat
from typing import TYPE_CHECKING, Protocol

import numpy as np

from stream_app.worker.exact_search import exact_top_k, padded_rows

if TYPE_CHECKING:
    from stream_app.worker.approximate_search import ApproximateSearch


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
        self._matrix = np.zeros((padded_rows(len(self.ids)), matrix.shape[1]), dtype=np.float32)
        self._matrix[: len(self.ids)] = matrix
        self._alive = np.zeros(len(self._matrix), dtype=bool)
        self._alive[: len(self.ids)] = True
        self._popularity = np.zeros(len(self._matrix), dtype=np.float64)
        self._matching: tuple[object, int, dict[tuple[str, ...], np.ndarray]] = (None, -1, {})
        self._popularity_order: tuple[object, np.ndarray] = (None, np.zeros(0, dtype=np.int64))
        self.approximate: ApproximateSearch | None = None  # None: exact search

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
        """Room for ``rows`` rows; rows past the items are zeros (``exact_top_k`` reads whole blocks)."""
        if rows > self._matrix.shape[0]:
            n = len(self.ids)
            capacity = max(rows, self._matrix.shape[0] * 5 // 4, 64)  # a quarter more: 1M rows are 512 MB
            grown = np.zeros((capacity, self.dim), dtype=np.float32)
            grown[:n] = self._matrix[:n]
            alive = np.zeros(capacity, dtype=bool)
            alive[:n] = self._alive[:n]
            popularity = np.zeros(capacity, dtype=np.float64)
            popularity[:n] = self._popularity[:n]
            self._matrix, self._alive, self._popularity = grown, alive, popularity

    def _append(self, ids: list[str], vectors: np.ndarray) -> None:
        n, need = len(self.ids), len(self.ids) + len(ids)
        self._reserve(padded_rows(need))
        self._matrix[n:need] = vectors
        self._alive[n:need] = True
        for i, item in enumerate(ids, start=n):
            self.row_of[item] = i
        self.ids.extend(ids)
        self.token = object()
        if self.approximate is not None:
            self.approximate.add(self._matrix[:need])

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
        rows ([n] bool, e.g. ``matching``; None: all): exactly, or through the approximate search
        with exact re-scoring when the index has one (``use_approximate``).

        Returns (rows [E, k] int64, scores [E, k] float32), best first; a slot with no item left
        has row -1 and score -inf.
        """
        n = len(self.ids)
        usable = self._alive[:n] if allowed is None else self._alive[:n] & allowed
        mask = None if usable.all() else usable
        if self.approximate is None or allowed is not None:
            # a request's filter is ranked exactly: a graph walked around the rows a filter skips finds
            # few of the rest (see approximate_search), and filtered requests come from the query API only
            return exact_top_k(self._matrix, n, mask, queries, exclude, k)
        return self.approximate.top_k(self._matrix, mask, queries, exclude, k)

    def use_approximate(self, search: ApproximateSearch) -> None:
        """Rank through ``search`` (built over this index's rows, ``ApproximateSearch.build``/``load``)."""
        if len(search) != len(self.ids):
            raise ValueError(f"the approximate search holds {len(search)} rows, the index {len(self.ids)}")
        self.approximate = search


MATCHING_CACHED = 256  # filters whose rows an index keeps
