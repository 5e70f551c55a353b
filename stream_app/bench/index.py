"""`istream bench index`: the worker's ranking, exact and approximate, against catalog size.

Queries are the serving model's real interest vectors, emitted by the worker's own pipeline over a
history file, each with the user's recently seen items excluded as the worker excludes them
(``index_data``). The catalog is the bundle's item table, then synthetic catalogs of the sizes asked
for: the real items plus items drawn around them (``index_data.synthetic_items``), so the real seen
items and next items keep their rows. At each size the exact search (``exact_search``, the worker's)
gives the truth and its cost; the approximate search (``approximate_search``, the worker's, at each
``ef_search``) its build time, the memory its graph adds, its cost and recall@10 against exact; both
lists are judged by NDCG@10 against the item each user took next. Ranking runs on one thread in
batches of 256 queries, as a worker ranks a batch (``ISTREAM_WORKER_BLAS_THREADS=1``); the graph is
built on every core, as a worker builds it beside the serving model.

``libraries`` also runs other HNSW libraries on the same catalogs and queries, each fetching ``k`` plus
the batch's most exclusions and re-scored exactly as the worker's search is (usearch, voyager: the
figures the choice of faiss rests on; they are not dependencies, install them to compare).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from stream_app.bench.index_data import Queries, synthetic_items
from stream_app.exceptions import ConfigError
from stream_app.worker.approximate_search import AnnOptions, ApproximateSearch
from stream_app.worker.exact_search import exclusions
from stream_app.worker.item_index import ItemIndex

K = 10
BATCH = 256
LIBRARIES = ("faiss", "usearch", "voyager")


@dataclass(frozen=True)
class IndexBenchOptions:
    sizes: tuple[int, ...]  # 0: the real catalog
    ef_search: tuple[int, ...] = (64, 128, 256)
    connectivity: int = 32
    ef_construction: int = 100
    libraries: tuple[str, ...] = ("faiss",)
    seed: int = 0


@dataclass
class SizeResult:
    items: int
    synthetic: bool
    exact_us: float
    exact_ndcg: float
    fp16_recall: float = float("nan")  # recall@10 of the exact search over the table rounded to float16
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per library and ef_search


def _faiss_bytes(graph) -> int:
    """What an ``IndexHNSWFlat`` holds: its copy of the vectors and the graph's arrays."""
    import faiss

    hnsw = graph.hnsw
    arrays = (hnsw.neighbors, hnsw.offsets, hnsw.levels, hnsw.assign_probas, hnsw.cum_nneighbor_per_level)
    return graph.ntotal * graph.d * 4 + sum(faiss.vector_to_array(a).nbytes for a in arrays)


def _timed_batches(
    queries: Queries, rank: Callable[[np.ndarray, list[list[int]]], np.ndarray]
) -> tuple[np.ndarray, float]:
    """(rows [E, K], µs per query) of ``rank`` over the queries in batches of ``BATCH``, one thread."""
    out = []
    with threadpool_limits(1):
        started = time.perf_counter()
        for lo in range(0, len(queries.vectors), BATCH):
            out.append(rank(queries.vectors[lo : lo + BATCH], queries.exclude[lo : lo + BATCH]))
        seconds = time.perf_counter() - started
    return np.vstack(out), seconds / len(queries.vectors) * 1e6


def recall(rows: np.ndarray, truth: np.ndarray) -> float:
    """Share of each query's exact top-K (its rows >= 0) that ``rows`` holds, over all queries."""
    want = hits = 0
    for got, exact in zip(rows.tolist(), truth.tolist(), strict=True):
        exact_rows = {r for r in exact if r >= 0}
        want += len(exact_rows)
        hits += len(exact_rows & set(got))
    return hits / max(want, 1)


def tied_recall(rows: np.ndarray, truth: np.ndarray, matrix: np.ndarray, queries: np.ndarray) -> float:
    """``recall`` that counts a row scoring at least the exact K-th best as found (as ann-benchmarks does):
    a catalog with items of identical vectors (the same text, no trained id) ties at many places, and
    which of the tied rows a list holds does not matter to the user."""
    want = hits = 0
    for got, exact, query in zip(rows, truth, queries, strict=True):
        exact, got = exact[exact >= 0], got[got >= 0]
        if not len(exact):
            continue
        floor = float(matrix[exact[-1]] @ query)
        want += len(exact)
        hits += min(len(exact), int(np.count_nonzero(matrix[got] @ query >= floor - 1e-5 * max(abs(floor), 1.0))))
    return hits / max(want, 1)


def ndcg(rows: np.ndarray, next_row: np.ndarray) -> float:
    """NDCG@K of each list against the one item the user took next (queries without one left out)."""
    judged = next_row >= 0
    hit = rows[judged] == next_row[judged, None]
    gains = (hit / np.log2(np.arange(2, rows.shape[1] + 2))).sum(axis=1)
    return float(gains.mean()) if len(gains) else float("nan")


def _other_library(name: str, matrix: np.ndarray, options: IndexBenchOptions):
    """``walk(queries, fetch, ef) -> rows`` over a graph of ``name`` built now, and the graph's MB."""
    import os

    threads = os.cpu_count() or 1
    if name == "usearch":
        from usearch.index import Index

        graph = Index(
            ndim=matrix.shape[1],
            metric="ip",
            dtype="f32",
            connectivity=options.connectivity,
            expansion_add=options.ef_construction,
        )
        graph.add(np.arange(len(matrix)), matrix, threads=threads)
        memory_mb = graph.memory_usage / 2**20

        def walk(queries: np.ndarray, fetch: int, ef: int) -> np.ndarray:
            graph.expansion_search = max(ef, fetch)
            return graph.search(queries, fetch, threads=1).keys.astype(np.int64)

        return walk, memory_mb
    import voyager

    graph = voyager.Index(
        voyager.Space.InnerProduct,
        num_dimensions=matrix.shape[1],
        M=options.connectivity,
        ef_construction=options.ef_construction,
    )
    graph.add_items(matrix, num_threads=threads)

    def walk(queries: np.ndarray, fetch: int, ef: int) -> np.ndarray:
        return graph.query(queries, fetch, num_threads=1, query_ef=max(ef, fetch))[0].astype(np.int64)

    return walk, len(graph.as_bytes()) / 2**20  # its saved form: voyager reports no memory use


def _rescored(matrix: np.ndarray, walk, ef: int) -> Callable[[np.ndarray, list[list[int]]], np.ndarray]:
    """The worker's over-fetch, re-score and exclude around another library's walk (no re-walk)."""

    def rank(queries: np.ndarray, exclude: list[list[int]]) -> np.ndarray:
        query_of, excluded = exclusions(exclude)
        fetch = K + int(np.bincount(query_of).max(initial=0))
        rows = walk(queries, fetch, ef)
        rows[rows >= len(matrix)] = -1
        scores = np.einsum("qd,qcd->qc", queries, matrix[rows.clip(0)])
        scores[rows < 0] = -np.inf
        scores[
            np.isin(np.arange(len(queries))[:, None] * len(matrix) + rows, query_of * len(matrix) + excluded)
        ] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :K]
        return np.where(np.isfinite(np.take_along_axis(scores, best, 1)), np.take_along_axis(rows, best, 1), -1)

    return rank


def measure_size(
    real: np.ndarray, queries: Queries, size: int, options: IndexBenchOptions, log: Callable[[str], None]
) -> SizeResult:
    synthetic = size > len(real)
    matrix = np.vstack([real, synthetic_items(real, size - len(real), options.seed)]) if synthetic else real
    index = ItemIndex([str(i) for i in range(len(matrix))], matrix)
    truth, exact_us = _timed_batches(queries, lambda q, e: index.top_k(q, e, K)[0])
    result = SizeResult(len(matrix), synthetic, exact_us, ndcg(truth, queries.next_row))
    # the table stored as float16 (half the bundle's bytes), ranked exactly: what the rounding costs
    rank_half = ItemIndex(index.ids, matrix.astype(np.float16).astype(np.float32)).top_k
    result.fp16_recall = recall(_timed_batches(queries, lambda q, e: rank_half(q, e, K)[0])[0], truth)
    rank_half = None  # its matrix: as large as the catalog's
    log(f"{len(matrix):,} items: exact {exact_us:,.0f} us/query")
    for library in options.libraries:
        started = time.perf_counter()
        if library == "faiss":
            ann = AnnOptions(options.connectivity, options.ef_construction, max(options.ef_search))
            search = ApproximateSearch.build(index.matrix, ann)
            memory_mb = _faiss_bytes(search.graph) / 2**20
        else:
            walk, memory_mb = _other_library(library, index.matrix, options)
        build_s = time.perf_counter() - started
        for ef in options.ef_search:
            if library == "faiss":
                search.options = AnnOptions(options.connectivity, options.ef_construction, ef)
                index.use_approximate(search)
                rank = lambda q, e: index.top_k(q, e, K)[0]  # noqa: E731
            else:
                rank = _rescored(index.matrix, walk, ef)
            rows, us = _timed_batches(queries, rank)
            row = {
                "library": library,
                "ef_search": ef,
                "build_s": build_s,
                "memory_mb": memory_mb,
                "us_per_query": us,
                "recall_at_10": recall(rows, truth),
                "tied_recall_at_10": tied_recall(rows, truth, index.matrix, queries.vectors),
                "ndcg_at_10": ndcg(rows, queries.next_row),
            }
            if library == "faiss":  # how often the over-fetch left a query short: walked again, or ranked exactly
                row |= {"rewalked_queries": search.rewalks, "exact_queries": search.exact_queries}
                search.rewalks = search.exact_queries = 0
            result.rows.append(row)
            log(
                f"  {library} ef {ef}: build {build_s:.1f} s, +{memory_mb:,.0f} MB, {us:,.0f} us/query, "
                f"recall@10 {row['recall_at_10']:.4f}"
            )
        index.approximate = None
        search = walk = None
    return result


def index_report(results: list[SizeResult], queries: int, default_ef: int) -> dict[str, Any]:
    """Figures and targets: recall@10 >= 0.98 and NDCG@10 within 1 % of exact at the default ef_search, on the
    real catalog and on the largest; where the approximate search starts to cost less than the exact one."""
    sizes = []
    for r in results:
        sizes.append(
            {
                "items": r.items,
                "synthetic": r.synthetic,
                "exact_us_per_query": r.exact_us,
                "exact_ndcg_at_10": r.exact_ndcg,
                "fp16_table_recall_at_10": r.fp16_recall,
                "approximate": r.rows,
            }
        )
    targets = {}
    judged = [("real catalog", r) for r in results if not r.synthetic][:1]
    judged += [("largest catalog", r) for r in results[-1:] if r.synthetic]
    for label, r in judged:
        row = next((x for x in r.rows if x["library"] == "faiss" and x["ef_search"] == default_ef), None)
        if row is None:
            continue
        targets[f"recall@10 >= 0.98, {label} ({r.items:,} items)"] = {
            "met": row["recall_at_10"] >= 0.98,
            "note": f"{row['recall_at_10']:.4f}",
        }
        if r.synthetic:  # the users' next items compete with synthetic ones there: no judge of lists
            continue
        ratio = row["ndcg_at_10"] / r.exact_ndcg if r.exact_ndcg else float("nan")
        targets[f"NDCG@10 within 1 % of exact, {label}"] = {
            "met": bool(ratio >= 0.99),
            "note": f"{row['ndcg_at_10']:.4f} vs {r.exact_ndcg:.4f} ({ratio:.4f})",
        }
    cheaper = [
        r.items
        for r in results
        if any(
            x["library"] == "faiss" and x["ef_search"] == default_ef and x["us_per_query"] < r.exact_us for x in r.rows
        )
    ]
    return {
        "queries": queries,
        "k": K,
        "batch": BATCH,
        "default_ef_search": default_ef,
        "sizes": sizes,
        "approximate_cheaper_from_items": min(cheaper) if cheaper else None,
        "targets": targets,
    }


def _loads(loads: list[float]) -> str:
    return "/".join(f"{x:.1f}" for x in loads)


def _ndcg(size: dict[str, Any], value: float) -> str:
    """NDCG@10 of a real catalog; "-" for a synthetic one (its items crowd out the users' next items)."""
    return "-" if size["synthetic"] else f"{value:.4f}"


def index_markdown(report: dict[str, Any]) -> str:
    from stream_app.bench.report import verdict

    lines = [
        f"# istream bench index\n\n{report['queries']:,} real interest vectors (model {report['model']}), "
        f"k={report['k']}, "
        f"batches of {report['batch']}, one thread; graph built on every core. Load average before and after: "
        f"{_loads(report['load_average_before'])}, {_loads(report['load_average_after'])}.\n",
        "| items | search | ef_search | build (s) | graph memory (MB) | us/query | recall@10 | recall@10, ties "
        "| NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["sizes"]:
        items = f"{s['items']:,}{' (synthetic)' if s['synthetic'] else ' (real)'}"
        lines.append(
            f"| {items} | exact | - | - | - | {s['exact_us_per_query']:,.0f} | 1 | 1 | "
            f"{_ndcg(s, s['exact_ndcg_at_10'])} |"
        )
        for x in s["approximate"]:
            lines.append(
                f"| {items} | {x['library']} | {x['ef_search']} | {x['build_s']:.1f} | {x['memory_mb']:,.0f} | "
                f"{x['us_per_query']:,.0f} | {x['recall_at_10']:.4f} | {x['tied_recall_at_10']:.4f} | "
                f"{_ndcg(s, x['ndcg_at_10'])} |"
            )
    fp16 = ", ".join(f"{s['items']:,} items {s['fp16_table_recall_at_10']:.4f}" for s in report["sizes"])
    lines.append(f"\nThe item table stored as float16, ranked exactly: recall@10 against float32 {fp16}.")
    cheaper = report["approximate_cheaper_from_items"]
    lines.append(
        f"\nThe approximate search (faiss, ef_search {report['default_ef_search']}) cost less than the exact "
        f"one from {cheaper:,} items on.\n"
        if cheaper
        else "\nThe exact search cost less at every size.\n"
    )
    lines += ["| target | verdict |", "|---|---|"]
    lines += [f"| {name} | {verdict(t)} |" for name, t in report["targets"].items()]
    return "\n".join(lines) + "\n"


def index_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost, quality) = plt.subplots(1, 2, figsize=(12, 4.2))
    items = [s["items"] for s in report["sizes"]]
    cost.plot(items, [s["exact_us_per_query"] for s in report["sizes"]], "o-", color="black", label="exact")
    series: dict[tuple[str, int], list[tuple[int, dict]]] = {}
    for s in report["sizes"]:
        for x in s["approximate"]:
            series.setdefault((x["library"], x["ef_search"]), []).append((s["items"], x))
    for (library, ef), points in series.items():
        xs, rows = zip(*points, strict=True)
        cost.plot(xs, [r["us_per_query"] for r in rows], "o--", label=f"{library} ef {ef}")
        quality.plot(xs, [r["recall_at_10"] for r in rows], "o--", label=f"{library} ef {ef}")
    cost.set(
        xscale="log",
        yscale="log",
        title="ranking cost per query (one thread)",
        xlabel="catalog items",
        ylabel="us/query",
    )
    quality.axhline(0.98, color="black", linestyle=":", label="target 0.98")
    quality.set(xscale="log", title="recall@10 against exact", xlabel="catalog items", ylabel="recall@10")
    for ax in (cost, quality):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_index_bench(
    registry: Path, events: Path, options: IndexBenchOptions, users: int, queries: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every size of ``options`` ranked with the queries of ``users`` users of ``events`` (``queries`` of them,
    drawn at random) under the registry's CURRENT model."""
    from export.registry import Registry
    from export.runtime import load_runtime
    from stream_app.bench.index_data import model_serving, real_queries
    from stream_app.settings import Settings

    load_before = os.getloadavg()  # others' work on the machine shows in every figure of time
    runtime = load_runtime(Registry(registry).bundle_path(Registry(registry).current()))
    serving = model_serving(runtime)
    every = real_queries(serving, events, users, Settings().seen_items)
    pick = np.sort(
        np.random.default_rng(options.seed).choice(len(every.vectors), min(queries, len(every.vectors)), replace=False)
    )
    chosen = Queries(every.vectors[pick], [every.exclude[i] for i in pick], every.next_row[pick])
    log(f"{len(pick):,} queries of model {runtime.version} ({len(every.vectors):,} emitted over {users:,} users)")
    real = serving.index.matrix
    sizes = [size or len(real) for size in options.sizes]
    if min(sizes) < len(real):
        raise ConfigError(f"the model's catalog has {len(real):,} items: give 'real' or sizes above it")
    default_ef = Settings().ann_ef_search  # always measured: the targets are judged at the worker's setting
    options = replace(options, ef_search=tuple(sorted({*options.ef_search, default_ef})))
    results = [measure_size(real, chosen, size, options, log) for size in sizes]
    report = index_report(results, len(pick), default_ef)
    report["model"] = runtime.version
    report["load_average_before"] = load_before
    report["load_average_after"] = os.getloadavg()
    return report
