"""Exact top-K by dot product over every row of an item matrix: the ranking of catalogs too small for
an approximate index to pay (``approximate_search`` takes over above ``Settings.ann_min_items``) and
the fallback of the approximate one.

The catalog is ranked in chunks of at most ``CHUNK_SCORES // queries`` rows, each chunk's best ``k``
merged into the running best, so a batch never holds a score matrix of batch x catalog (a 256-query
batch over a million items was a 1 GB matrix). Within a chunk, blocks of ``BLOCK`` rows are ranked
by their maxima first (``_candidates``), so only the best blocks are partitioned.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

# Below this many queries, one matrix-vector product each: OpenBLAS's matrix product took 2x longer per
# query for 2 or 3 queries than for 1 (9,742 x 128 items: 116 and 108 us a query against 60), and 51 for 4.
ROWWISE_BELOW = 4
BLOCK = 32  # 32 beat 16, 64 and 128 on a 9,742-item catalog (fewer candidates to gather, same maxima work)
# Most scores one chunk holds (16 MB of float32): a 256-query batch ranks 16,384 rows at a time, a
# 9,742-item catalog stays one chunk for up to 430 queries.
CHUNK_SCORES = 1 << 22


def exclusions(exclude: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(query of each excluded row, the row) of the known rows (>= 0) of ``exclude``, flattened."""
    counts = np.fromiter(map(len, exclude), dtype=np.int64, count=len(exclude))
    rows = np.fromiter(chain.from_iterable(exclude), dtype=np.int64, count=int(counts.sum()))
    query_of = np.repeat(np.arange(len(exclude)), counts)
    known = rows >= 0
    return query_of[known], rows[known]


def padded_rows(n: int) -> int:
    """Rows ``exact_top_k`` reads of a matrix of ``n`` rows: whole blocks (the rows past ``n``: any values)."""
    return -(-n // BLOCK) * BLOCK


def exact_top_k(
    matrix: np.ndarray,
    n: int,
    usable: np.ndarray | None,
    queries: np.ndarray,
    exclude: Sequence[Sequence[int]],
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of the first ``n`` rows of ``matrix`` [>= padded_rows(n), D] for each query row by dot
    product, among the ``usable`` rows ([n] bool; None: all) minus that query's ``exclude`` rows (-1
    excludes nothing). The padding rows are read (one product over whole blocks) and never returned.

    Returns (rows [Q, k] int64, scores [Q, k] float32), best first; a slot with no row left has row -1
    and score -inf.
    """
    queries = np.asarray(queries, dtype=np.float32)
    k = min(k, n)
    if k == 0:
        empty = np.zeros((len(queries), 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    query_of, excluded = exclusions(exclude)
    chunk = max(BLOCK * k, CHUNK_SCORES // max(len(queries), 1)) // BLOCK * BLOCK
    best_rows = best_scores = None
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        inside = (excluded >= lo) & (excluded < hi)
        rows, scores = _chunk_top(
            matrix[lo : lo + padded_rows(hi - lo)],
            hi - lo,
            None if usable is None else usable[lo:hi],
            queries,
            query_of[inside],
            excluded[inside] - lo,
            k,
        )
        rows += lo
        if best_rows is None:
            best_rows, best_scores = rows, scores
            continue
        rows, scores = np.hstack([best_rows, rows]), np.hstack([best_scores, scores])
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_rows, best_scores = np.take_along_axis(rows, keep, 1), np.take_along_axis(scores, keep, 1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(best_rows, order, 1), np.take_along_axis(best_scores, order, 1)
    top[np.isneginf(top_scores)] = -1
    return top, top_scores


def _chunk_top(
    matrix: np.ndarray,
    n: int,
    usable: np.ndarray | None,
    queries: np.ndarray,
    query_of: np.ndarray,
    rows: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` (unordered) of one chunk's ``n`` rows (``matrix`` padded to whole blocks), masked
    rows scoring -inf."""
    scores = _products(queries, matrix)
    scores[:, n:] = -np.inf  # padding
    if usable is not None and not usable.all():
        scores[:, :n][:, ~usable] = -np.inf
    scores[query_of, rows] = -np.inf
    k = min(k, n)
    candidates = _candidates(scores, k)
    cand_scores = np.take_along_axis(scores, candidates, axis=1)
    m = cand_scores.shape[1]
    best = np.argpartition(cand_scores, m - k, axis=1)[:, m - k :]
    return np.take_along_axis(candidates, best, axis=1), np.take_along_axis(cand_scores, best, axis=1)


def _products(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[Q, N] dot products of each query with each row of ``matrix``."""
    if 1 < len(queries) < ROWWISE_BELOW:
        return np.stack([matrix @ query for query in queries])
    return queries @ matrix.T


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
