"""Approximate top-K for large catalogs: candidates from an HNSW graph (faiss), re-scored exactly.

The graph (``faiss.IndexHNSWFlat``, inner product) proposes ``fetch`` rows per query, ``k`` plus as
many as the batch's most excluding query leaves out (a user's seen items sit near the interest), the
walk keeping at least ``ef_search`` candidates. Every candidate is scored again from the index's own
float32 matrix, so the scores returned are exact and equal to the exact search's, and the rows that
may not be returned (tombstoned, or excluded for that query) are dropped after re-scoring: exclusion
stays exact. A query left with fewer than ``k`` rows is walked again with twice the fetch
(``rewalks`` counts them), until the fetch reaches a ``1 / connectivity`` share of the catalog; from
there a walk would visit about every row anyway, so the query is ranked exactly (``exact_queries``).
Tombstones are not kept out of the walk by a selector: an inner-product graph walked around a
region of skipped nodes lost most of its recall (the 500 items nearest a query tombstoned, a
3,000-item test catalog: 1 of the 10 best found), and the deeper re-walk finds them instead.

New rows (catalog upserts) are added to the graph as they come, without a rebuild. Building takes
minutes at a million rows on two cores, so the worker builds it where the model is loaded
(``serving_index``), off the hot path, and keeps it on disk (``save``/``load``) for the next start.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from stream_app.settings import Settings
from stream_app.worker.exact_search import exact_top_k, exclusions


@functools.cache  # called per search: setting a logger's level clears every logger's cache
def _faiss():
    """faiss, imported without its loader's INFO lines (a ModuleNotFoundError per CPU-specific build it tries)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


@dataclass(frozen=True)
class AnnOptions:
    connectivity: int = 32  # HNSW M: neighbours per node
    ef_construction: int = 100  # candidates each insertion walks for
    ef_search: int = 128  # least candidates a query walks for
    build_threads: int = 0  # 0: every core (the build runs beside the serving model)
    audit_every: int = 0  # one query in this many is also ranked exactly, its recall reported (0: none)

    @classmethod
    def from_settings(cls, settings: Settings) -> AnnOptions:
        return cls(
            connectivity=settings.ann_connectivity,
            ef_construction=settings.ann_ef_construction,
            ef_search=settings.ann_ef_search,
            audit_every=settings.ann_audit_every,
            build_threads=settings.ann_build_threads,
        )


class ApproximateSearch:
    """Top-K over the first ``len(self)`` rows of an ``ItemIndex`` matrix (``add`` keeps up with appends)."""

    def __init__(self, graph, options: AnnOptions) -> None:
        self.graph = graph
        self.options = options
        self.rewalks = 0  # queries walked again with a deeper fetch
        self.exact_queries = 0  # queries ranked exactly: the fetch they needed was a large share of the catalog
        # (rows of the exact top-K found, missed) of each audited query: the recall of the serving model's queries
        self.on_audit: Callable[[int, int], None] = lambda found, missed: None
        self._queries = 0

    @classmethod
    def build(cls, matrix: np.ndarray, options: AnnOptions) -> ApproximateSearch:
        faiss = _faiss()

        graph = faiss.IndexHNSWFlat(matrix.shape[1], options.connectivity, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = options.ef_construction
        # every core, whatever the calling thread was limited to (OpenMP's setting is per thread)
        with threadpool_limits(options.build_threads or os.cpu_count() or 1, user_api="openmp"):
            graph.add(np.ascontiguousarray(matrix, dtype=np.float32))
        return cls(graph, options)

    @classmethod
    def load(cls, path: Path, matrix: np.ndarray, options: AnnOptions) -> ApproximateSearch | None:
        """The graph saved at ``path`` when it holds ``matrix``'s rows (None otherwise; 64 rows compared)."""
        faiss = _faiss()

        graph = faiss.read_index(str(path))
        if (
            graph.ntotal != len(matrix)
            or graph.d != matrix.shape[1]
            or graph.hnsw.nb_neighbors(0) != 2 * options.connectivity
        ):
            return None
        probe = np.linspace(0, len(matrix) - 1, num=min(len(matrix), 64)).astype(np.int64)
        if not np.array_equal(np.stack([graph.reconstruct(int(r)) for r in probe]), matrix[probe]):
            return None
        return cls(graph, options)

    def save(self, path: Path) -> None:
        faiss = _faiss()

        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        faiss.write_index(self.graph, str(part))
        part.replace(path)

    def __len__(self) -> int:
        return self.graph.ntotal

    def add(self, matrix: np.ndarray) -> None:
        """Rows ``len(self)`` to ``len(matrix)`` of the index are new: into the graph."""
        new = np.ascontiguousarray(matrix[len(self) :], dtype=np.float32)
        if len(new):
            self.graph.add(new)

    def top_k(
        self,
        matrix: np.ndarray,
        usable: np.ndarray | None,
        queries: np.ndarray,
        exclude: Sequence[Sequence[int]],
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``exact_search.exact_top_k`` over the index's ``matrix`` (its first ``len(self)`` rows, padded)."""
        queries = np.asarray(queries, dtype=np.float32)
        n = len(self)
        k = min(k, n)
        usable_count = n if usable is None else int(np.count_nonzero(usable))
        top = np.full((len(queries), k), -1, dtype=np.int64)
        top_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        query_of, excluded = exclusions(exclude)
        excluded_keys = np.unique(query_of * n + excluded)
        most = usable_count - np.bincount(query_of, minlength=len(queries))  # a bound on what a query can get
        todo = np.arange(len(queries))
        fetch = k + int(np.bincount(query_of).max(initial=0))
        while len(todo) and k:
            if fetch * self.options.connectivity >= usable_count:  # about every row: exactly
                self.exact_queries += len(todo)
                rows, scores = exact_top_k(matrix, n, usable, queries[todo], [exclude[q] for q in todo], k)
                top[todo], top_scores[todo] = rows, scores
                break
            rows, scores = self._candidates(matrix, usable, queries[todo], todo, fetch, excluded_keys, n)
            best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            rows, scores = np.take_along_axis(rows, best, 1), np.take_along_axis(scores, best, 1)
            found = np.isfinite(scores).sum(axis=1)
            done = (found >= k) | (found >= most[todo])
            top[todo[done]], top_scores[todo[done]] = rows[done], scores[done]
            todo = todo[~done]
            self.rewalks += len(todo)
            fetch *= 2
        top[np.isneginf(top_scores)] = -1
        self._audit(matrix, usable, queries, exclude, k, top)
        return top, top_scores

    def _audit(self, matrix, usable, queries, exclude, k: int, top: np.ndarray) -> None:
        """Rank exactly as many of the batch's first queries as multiples of ``audit_every`` the running
        count of queries passed, and report what the walk found of their exact top-K."""
        every, before = self.options.audit_every, self._queries
        self._queries += len(queries)
        audited = self._queries // every - before // every if every else 0
        if not audited:
            return
        rows, _ = exact_top_k(matrix, len(self), usable, queries[:audited], list(exclude[:audited]), k)
        pairs = zip(rows.tolist(), top[:audited].tolist(), strict=True)
        found = sum(len({r for r in want if r >= 0} & set(got)) for want, got in pairs)
        self.on_audit(found, int(np.count_nonzero(rows >= 0)) - found)

    def _candidates(
        self,
        matrix: np.ndarray,
        usable: np.ndarray | None,
        queries: np.ndarray,
        query_ids: np.ndarray,
        fetch: int,
        excluded_keys: np.ndarray,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """[Q, fetch] rows the graph proposes and their exact scores, -inf for one that may not be returned."""
        faiss = _faiss()

        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.options.ef_search, fetch)
        _, rows = self.graph.search(queries, fetch, params=params)
        scores = np.einsum("qd,qcd->qc", queries, matrix[rows.clip(0)])
        dropped = rows < 0
        if usable is not None:
            dropped |= ~usable[rows.clip(0)]
        if len(excluded_keys):
            dropped |= np.isin(query_ids[:, None] * n + rows, excluded_keys)
        scores[dropped] = -np.inf
        return rows, scores
