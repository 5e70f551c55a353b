"""Ranking, one way for the stream's outputs and the query API: a user's top-K from an interest vector.

``recommend`` ranks the serving index by dot product (``ItemIndex.top_k``), minus each query's
excluded rows and among the allowed ones, and names for each item the event of the user's recent
window whose item vector is most like it (``because``). ``cold`` is what a user without a model
state gets: the trending list (``trending.cold_start``), filled from the bundle's item popularity.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from stream_app.contracts import ScoredItem
from stream_app.contracts.float_json import DECIMALS
from stream_app.worker.item_index import ItemIndex
from stream_app.worker.state_codec import RecentEvent
from stream_app.worker.trending import Trending, cold_start


def recommend(
    index: ItemIndex,
    interests: np.ndarray,
    exclude: list[list[int]],
    windows: list[list[RecentEvent]],
    window_rows: list[list[int]],
    k: int,
    allowed: np.ndarray | None = None,
) -> list[list[ScoredItem]]:
    """For each row of ``interests`` [Q, D]: its best ``k`` items (fewer when fewer are left), with
    scores rounded as outputs are and ``because`` from its window (``windows``, their ``window_rows``)."""
    rows, scores = index.top_k(interests, exclude, k, allowed)
    because = _because(windows, window_rows, rows, index)
    ids = index.ids
    rounded = scores.astype(np.float64).round(DECIMALS).tolist()
    return [
        [
            ScoredItem(item_id=ids[row], score=score, because=reason)
            for row, score, reason in zip(top_rows, top_scores, reasons, strict=True)
            if row >= 0
        ]
        for top_rows, top_scores, reasons in zip(rows.tolist(), rounded, because, strict=True)
    ]


def cold(
    trending: Trending, index: ItemIndex, k: int, exclude: list[int], allowed: np.ndarray | None = None
) -> list[ScoredItem]:
    """The cold-start list: ``k`` items (fewer only when the catalog has fewer left), scored by their
    decayed trending count (0 for items ranked by popularity alone)."""
    rows, counts = cold_start(trending, index, k, exclude, allowed)
    ids = index.ids
    return [ScoredItem(item_id=ids[row], score=round(c, DECIMALS)) for row, c in zip(rows, counts, strict=True)]


def _because(
    windows: list[list[RecentEvent]], window_item_rows: list[list[int]], rows: np.ndarray, index: ItemIndex
) -> list[list[str | None]]:
    """For each recommended item, the event of its query's recent window whose item vector is most
    similar to it (None where the window holds no known item), for all queries in one product."""
    lengths = np.fromiter(map(len, windows), dtype=np.int64, count=len(windows))
    depth = max(int(lengths.max(initial=0)), 1)
    window_rows = np.full((len(windows), depth), -1, dtype=np.int64)
    window_rows[np.arange(depth) < lengths[:, None]] = np.fromiter(
        chain.from_iterable(window_item_rows), dtype=np.int64, count=int(lengths.sum())
    )
    matrix = index.matrix
    support = np.matmul(matrix[window_rows.clip(0)], matrix[rows.clip(0)].transpose(0, 2, 1))  # [Q, W, K]
    support[window_rows < 0] = -np.inf
    best = support.argmax(axis=1)  # [Q, K]
    known = (window_rows >= 0).any(axis=1)
    return [
        [window[j].event_id for j in picks] if has_known else [None] * len(picks)
        for window, picks, has_known in zip(windows, best.tolist(), known.tolist(), strict=True)
    ]
