"""The item index a model serves with, prepared beside the serving model (start-up, the hot-swap and trial threads).

``IndexPreparer.loader`` wraps the runtime loader: after a bundle is verified, the same worker thread
builds its index over the bundle's item table: exact search below ``Settings.ann_min_items`` rows,
else the approximate search, whose graph is loaded from ``ann_index_dir`` when a previous run saved it
for the same bundle, else built (minutes at a million rows on two cores) and saved. Between batches,
``serving`` hands the prepared index over with only the catalog's own changes applied (items the bundle
lacks, tombstones): the hot path never builds a graph.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_app.settings import Settings
from stream_app.worker.approximate_search import AnnOptions, ApproximateSearch
from stream_app.worker.item_index import Catalog, ItemIndex
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.pipeline import Serving

log = logging.getLogger(__name__)
GRAPHS_KEPT = 4


def graph_path(settings: Settings, runtime: Any) -> Path:
    """Where the graph of ``runtime``'s item table is kept: named by the bundle version, the table's
    sha256 and the graph's parameters."""
    table = runtime.manifest.item_table.vectors
    digest = runtime.manifest.files[table].sha256[:16]
    folder = settings.ann_index_dir or settings.run_dir / "ann"
    return folder / f"{runtime.version}-{digest}-M{settings.ann_connectivity}-E{settings.ann_ef_construction}.faiss"


def model_index(runtime: Any, settings: Settings) -> ItemIndex:
    """``runtime``'s bundle items as an index (no catalog applied), with the approximate search when the
    table holds at least ``ann_min_items`` rows."""
    index = ItemIndex.for_model(runtime, Catalog())
    if len(index.ids) < max(settings.ann_min_items, 1):
        return index
    options, path, started = AnnOptions.from_settings(settings), graph_path(settings, runtime), time.perf_counter()
    search = None
    if path.is_file():
        try:
            search = ApproximateSearch.load(path, index.matrix, options)
        except RuntimeError as exc:  # faiss: an unreadable file
            log.warning("search graph %s not loaded (%s); building it", path, exc)
        if search is not None:
            log.info(
                "search graph of %d items loaded from %s in %.1f s", len(search), path, time.perf_counter() - started
            )
    if search is None:
        search = ApproximateSearch.build(index.matrix, options)
        log.info("search graph of %d items built in %.1f s", len(search), time.perf_counter() - started)
        try:
            search.save(path)
        except (OSError, RuntimeError) as exc:
            log.warning("search graph not saved to %s (a restart builds it again): %s", path, exc)
    _keep_recent(path)
    index.use_approximate(search)
    return index


def _keep_recent(path: Path) -> None:
    """Mark ``path`` as used now and delete the folder's graphs beyond the ``GRAPHS_KEPT`` used last: each
    model version leaves one (about 750 MB at a million items), and a worker needs the serving version's,
    the challenger's and the one it may roll back to."""
    try:
        if path.is_file():
            os.utime(path)
        graphs = sorted(path.parent.glob("*.faiss"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in graphs[GRAPHS_KEPT:]:
            old.unlink(missing_ok=True)
            log.info("search graph %s deleted (%d more recent ones kept)", old, GRAPHS_KEPT)
    except OSError as exc:  # another worker sharing the folder may delete one first
        log.warning("search graphs in %s not pruned: %s", path.parent, exc)


class IndexPreparer:
    """Indexes built in the threads that load runtimes, handed to the engine with the runtime."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._lock = threading.Lock()
        # a runtime refused after loading (a trial of another encoder) leaves with its index
        self._ready: weakref.WeakKeyDictionary[Any, ItemIndex] = weakref.WeakKeyDictionary()

    def loader(self, load_runtime: Callable[[Path], Any]) -> Callable[[Path], Any]:
        """``bundle_dir -> runtime`` that also prepares the runtime's index."""

        def load(bundle_dir: Path) -> Any:
            runtime = load_runtime(bundle_dir)
            index = model_index(runtime, self._settings)
            with self._lock:
                self._ready[runtime] = index
            return runtime

        return load

    def serving(self, runtime: Any, catalog: Catalog) -> Serving:
        """``runtime`` with its prepared index (built now when there is none), the catalog applied."""
        with self._lock:
            index = self._ready.pop(runtime, None)
        if index is None:
            index = model_index(runtime, self._settings)
        if index.approximate is not None and self._metrics is not None:
            audits = self._metrics.ranking_audit
            found, missed = audits.labels("found"), audits.labels("missed")
            index.approximate.on_audit = lambda f, m: (found.inc(f), missed.inc(m))
        index.apply_catalog(runtime, catalog.texts, catalog.removed)
        return Serving(runtime, index)
