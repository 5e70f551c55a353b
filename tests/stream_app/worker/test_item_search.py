"""The ranking contract, run against both searches of an ``ItemIndex``: exact, and approximate (HNSW graph,
exact re-scoring). Exact must equal a full sort; approximate must keep every rule exactly (nothing
excluded, dead or filtered out, exact scores, best first, no repeats, short only when the catalog is)
and find at least 98 % of the exact top-K."""

import numpy as np
import pytest

from stream_app.worker.approximate_search import AnnOptions, ApproximateSearch
from stream_app.worker.item_index import ItemIndex

DIM = 16
OPTIONS = AnnOptions(connectivity=32, ef_construction=64, ef_search=32, build_threads=1)  # one thread: one graph


def _index(kind: str, matrix: np.ndarray) -> ItemIndex:
    index = ItemIndex([f"i{n}" for n in range(len(matrix))], matrix)
    if kind == "approximate":
        index.use_approximate(ApproximateSearch.build(index.matrix, OPTIONS))
    return index


def _expected(index: ItemIndex, queries, exclude, k, allowed=None):
    """Exact answer by a full sort of every usable row."""
    full = queries @ index.matrix.T
    usable = index.alive if allowed is None else index.alive & allowed
    out = []
    for q in range(len(queries)):
        banned = set(exclude[q])
        order = [r for r in np.argsort(-full[q], kind="stable") if usable[r] and r not in banned]
        out.append(order[:k])
    return out, full


def _check(kind, index, queries, exclude, k, allowed=None):
    rows, scores = index.top_k(queries, exclude, k, allowed)
    expected, full = _expected(index, queries, exclude, k, allowed)
    assert rows.shape == scores.shape == (len(queries), min(k, len(index.ids)))
    found = 0
    for q, want in enumerate(expected):
        got = [r for r in rows[q].tolist() if r >= 0]
        assert len(got) == len(want), "short only when the usable catalog is"
        assert len(set(got)) == len(got)
        usable = index.alive if allowed is None else index.alive & allowed
        assert all(usable[r] and r not in set(exclude[q]) for r in got)
        np.testing.assert_allclose(scores[q, : len(got)], full[q, got], rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(scores[q, : len(got)]) <= 1e-6)
        assert np.all(np.isneginf(scores[q, len(got) :])) and np.all(rows[q, len(got) :] == -1)
        if kind == "exact":
            np.testing.assert_allclose(full[q, got], full[q, want], rtol=1e-6)  # ties may swap rows
        found += len(set(got) & set(want))
    total = sum(map(len, expected))
    assert found >= 0.98 * total, f"recall {found / total:.3f}"


@pytest.mark.parametrize("kind", ["exact", "approximate"])
def test_top_k_contract(kind):
    rng = np.random.default_rng(7)
    n = 3000
    centres = rng.normal(size=(20, DIM))
    matrix = (centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, DIM))).astype(np.float32)
    index = _index(kind, matrix)
    queries = (centres[rng.integers(0, 20, 40)] * 2).astype(np.float32)
    # a user's seen items lie near the interest: up to 100 of each query's best 300 excluded, so the
    # list reaches deeper into the catalog
    seen = [[*rng.choice(np.argsort(-(q @ matrix.T))[:300], rng.integers(0, 100), replace=False).tolist(), -1]
            for q in queries]  # fmt: skip
    _check(kind, index, queries, seen, 10)
    # tombstones, and upserts after the graph was built
    index.remove(f"i{d}" for d in rng.choice(n, 300, replace=False))
    new = [f"new{j}" for j in range(50)]
    index.upsert(new, (centres[rng.integers(0, 20, 50)] * 1.5).astype(np.float32), new=new)
    _check(kind, index, queries, seen, 10)
    # filters (ranked exactly, with the approximate index too)
    broad = rng.random(len(index.ids)) < 0.6
    narrow = rng.random(len(index.ids)) < 0.05
    _check(kind, index, queries, seen, 10, broad)
    _check(kind, index, queries, seen, 10, narrow)
    # the query API's largest k, and a single query
    _check(kind, index, queries[:3], seen[:3], 1000)
    _check(kind, index, queries[:1], [[]], 10)
    # a query that excludes almost everything usable: only what is left comes back
    everything_but = [r for r in range(len(index.ids)) if r % 500]
    _check(kind, index, queries[:2], [everything_but, []], 10)
    # the items nearest a query tombstoned: re-walked deeper, then ranked exactly, never short or wrong
    index.remove(f"i{r}" for r in np.argsort(-(queries[0] @ matrix.T))[:40])
    _check(kind, index, queries[:1], [[]], 10)
    index.remove(f"i{r}" for r in np.argsort(-(queries[0] @ matrix.T))[:1500])
    _check(kind, index, queries[:1], [[]], 10)
    if kind == "approximate":
        search = index.approximate
        assert search.rewalks > 0 and search.exact_queries > 0
        assert len(search) == len(index.ids)  # the upserts joined the graph; nothing was rebuilt


@pytest.mark.parametrize("kind", ["exact", "approximate"])
def test_fewer_items_than_k(kind):
    index = _index(kind, np.eye(3, dtype=np.float32))
    rows, scores = index.top_k(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), [index.rows(["b", "i1"])], 5)
    assert rows.tolist() == [[2, 0, -1]] and np.isneginf(scores[0, 2])


def test_a_saved_graph_loads_only_for_the_same_rows(tmp_path):
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(500, DIM)).astype(np.float32)
    search = ApproximateSearch.build(matrix, OPTIONS)
    search.save(tmp_path / "g.faiss")
    loaded = ApproximateSearch.load(tmp_path / "g.faiss", matrix, OPTIONS)
    queries = rng.normal(size=(5, DIM)).astype(np.float32)
    a, b = _index("exact", matrix), _index("exact", matrix)
    a.use_approximate(search)
    b.use_approximate(loaded)
    assert a.top_k(queries, [[]] * 5, 10)[0].tolist() == b.top_k(queries, [[]] * 5, 10)[0].tolist()
    assert ApproximateSearch.load(tmp_path / "g.faiss", matrix * 2, OPTIONS) is None
    assert ApproximateSearch.load(tmp_path / "g.faiss", matrix[:400], OPTIONS) is None


def test_exact_search_in_chunks_equals_one_pass(monkeypatch):
    """The exact search ranks a catalog a chunk of rows at a time (no batch x catalog score matrix)."""
    from stream_app.worker import exact_search

    rng = np.random.default_rng(3)
    index = _index("exact", rng.normal(size=(1000, DIM)).astype(np.float32))
    queries = rng.normal(size=(64, DIM)).astype(np.float32)
    seen = [rng.choice(1000, 30, replace=False).tolist() for _ in queries]
    whole = index.top_k(queries, seen, 10)
    monkeypatch.setattr(exact_search, "CHUNK_SCORES", 64 * 96)  # 96-row chunks: 11 of them
    chunked = index.top_k(queries, seen, 10)
    assert chunked[0].tolist() == whole[0].tolist()
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-6)  # BLAS sums in another order
    _check("exact", index, queries, seen, 10)


def test_a_model_index_is_built_once_then_loaded_from_disk(runtime, tmp_path, caplog):
    from stream_app.settings import Settings
    from stream_app.worker.serving_index import model_index

    settings = Settings(ann_min_items=1, ann_index_dir=tmp_path)
    with caplog.at_level("INFO", logger="stream_app.worker.serving_index"):
        built = model_index(runtime, settings)
        loaded = model_index(runtime, settings)
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        f"search graph of {len(runtime.item_ids)} items built",
        f"search graph of {len(runtime.item_ids)} items loaded from {next(tmp_path.iterdir())}",
    ]
    queries = np.random.default_rng(0).normal(size=(4, runtime.dim)).astype(np.float32)
    assert built.top_k(queries, [[]] * 4, 5)[0].tolist() == loaded.top_k(queries, [[]] * 4, 5)[0].tolist()
    assert model_index(runtime, Settings(ann_min_items=len(runtime.item_ids) + 1)).approximate is None
    # one graph per model version and parameters: the four used last are kept
    for m in (4, 5, 6, 7, 8):
        model_index(runtime, Settings(ann_min_items=1, ann_index_dir=tmp_path, ann_connectivity=m))
    kept = sorted(p.name.split("-M")[1] for p in tmp_path.glob("*.faiss"))
    assert kept == ["5-E100.faiss", "6-E100.faiss", "7-E100.faiss", "8-E100.faiss"]


def test_the_index_is_prepared_where_the_model_is_loaded(runtime, tiny_bundle, tmp_path):
    """The hot-swap and trial threads load through ``IndexPreparer.loader``: the engine gets the index built there."""
    from concurrent.futures import ThreadPoolExecutor

    from stream_app.settings import Settings
    from stream_app.worker.item_index import Catalog
    from stream_app.worker.serving_index import IndexPreparer

    preparer = IndexPreparer(Settings(ann_min_items=1, ann_index_dir=tmp_path))
    load = preparer.loader(lambda bundle: runtime)
    with ThreadPoolExecutor(1) as thread:
        loaded = thread.submit(load, tiny_bundle).result()
    prepared = preparer._ready[loaded]
    catalog = Catalog()
    catalog.apply("fresh", "a brand new synth")
    catalog.apply(runtime.item_ids[0], None)
    serving = preparer.serving(loaded, catalog)
    assert serving.index is prepared and len(serving.index.approximate) == len(runtime.item_ids) + 1
    assert not serving.index.is_alive(runtime.item_ids[0]) and serving.index.is_alive("fresh")
