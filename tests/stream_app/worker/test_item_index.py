import numpy as np
import pytest

from stream_app.worker.exact_search import BLOCK
from stream_app.worker.item_index import Catalog, ItemIndex, attribute_labels


def test_top_k_ranks_the_whole_catalog_minus_seen():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(500, 16)).astype(np.float32)
    index = ItemIndex([f"i{n}" for n in range(500)], matrix)
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    seen = [["i1", "i2"], [], ["nope"]]
    rows, scores = index.top_k(queries, [index.rows(s) for s in seen], 10)
    full = queries @ matrix.T
    for r in range(3):
        excluded = {int(s[1:]) for s in seen[r] if s != "nope"}
        expected = [i for i in np.argsort(-full[r]) if i not in excluded][:10]
        assert rows[r].tolist() == expected
        np.testing.assert_allclose(scores[r], full[r, expected], rtol=1e-6)


@pytest.mark.parametrize("n_items", [5, BLOCK - 1, BLOCK, BLOCK + 1, 10 * BLOCK + 1, 700, 3000])
def test_top_k_equals_a_full_sort_of_the_live_unseen_catalog(n_items):
    rng = np.random.default_rng(n_items)
    matrix = rng.normal(size=(n_items, 8)).astype(np.float32)
    ids = [f"i{n}" for n in range(n_items)]
    index = ItemIndex(ids, matrix)
    dead = set(rng.choice(n_items, size=n_items // 10, replace=False).tolist())
    index.remove(f"i{d}" for d in dead)
    queries = rng.normal(size=(40, 8)).astype(np.float32)
    # queries whose best items are all excluded reach into lower blocks
    seen = [[f"i{j}" for j in np.argsort(-(q @ matrix.T))[: rng.integers(0, 30)]] for q in queries]
    rows, scores = index.top_k(queries, [index.rows(s) for s in seen], 10)
    full = queries @ matrix.T
    for r in range(len(queries)):
        excluded = dead | {int(s[1:]) for s in seen[r]}
        k = min(10, n_items)
        expected = [i for i in np.argsort(-full[r]) if i not in excluded][:k]
        assert rows[r].tolist() == expected + [-1] * (k - len(expected))
        np.testing.assert_allclose(scores[r, : len(expected)], full[r, expected], rtol=1e-5)


def test_top_k_with_fewer_items_than_k_pads_with_minus_one():
    index = ItemIndex(["a", "b", "c"], np.eye(3, dtype=np.float32))
    rows, scores = index.top_k(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), [index.rows(["b"])], 5)
    assert rows.tolist() == [[2, 0, -1]]
    assert np.isneginf(scores[0, 2])


def test_upserts_add_rows_and_tombstones_remove():
    index = ItemIndex(["a", "b", "c", "d"], np.eye(4, dtype=np.float32))
    index.upsert(["new", "b"], np.array([[5, 1, 0, 0]], dtype=np.float32), new=["new"])
    index.remove(["c", "never-heard-of"])
    assert index.ids == ["a", "b", "c", "d", "new"]
    np.testing.assert_array_equal(index.vectors(["new", "b", "unknown"]), [[5, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert not index.is_alive("c") and index.is_alive("new") and len(index) == 4
    rows, _ = index.top_k(np.array([[0, 0, 10, 0]], dtype=np.float32), [[]], 5)
    assert "c" not in [index.ids[r] for r in rows[0] if r >= 0]
    # a removed item still steps with its vector
    np.testing.assert_array_equal(index.vectors(["c"]), [[0, 0, 1, 0]])
    many = [f"x{i}" for i in range(100)]
    token = index.token
    index.upsert(many, np.arange(400, dtype=np.float32).reshape(100, 4), new=many)
    assert index.token is not token  # rows looked up before (x7: -1) are stale now
    assert len(index.ids) == 105
    np.testing.assert_array_equal(index.vectors(["x7"]), [[28, 29, 30, 31]])
    index.upsert(["c"])
    assert index.is_alive("c")


def test_catalog_remembers_texts_and_removals():
    catalog = Catalog()
    catalog.apply("x", "text")
    catalog.apply("y", None)
    catalog.apply("y", "back")
    catalog.apply("x", None)
    assert catalog.texts == {"y": "back"} and catalog.removed == {"x"}


def test_items_are_filtered_by_every_attribute_asked_and_the_filter_follows_the_catalog():
    index = ItemIndex(["a", "b", "c", "d"], np.eye(4, dtype=np.float32))
    catalog = Catalog()
    catalog.apply("a", "A", ["Comedy", "Drama"], "movie")
    catalog.apply("b", "B", ["Comedy"], "movie")
    catalog.apply("c", "C", ["Comedy"], "show")
    comedy, movie = attribute_labels(["Comedy"]), attribute_labels(category="movie")
    assert index.matching(catalog, comedy).tolist() == [True, True, True, False]
    assert index.matching(catalog, attribute_labels(["Comedy"], "movie")).tolist() == [True, True, False, False]
    assert index.matching(catalog, attribute_labels(["Comedy", "Drama"])).tolist() == [True, False, False, False]
    assert not index.matching(catalog, attribute_labels(["Horror"])).any()
    rows, _ = index.top_k(np.array([[1.0, 2.0, 3.0, 4.0]]), [[]], 3, index.matching(catalog, movie))
    assert rows.tolist() == [[1, 0, -1]]  # d scores best but carries no attribute
    catalog.apply("b", "B again", ["Drama"])  # a new version of the item replaces its attributes
    catalog.apply("a", None)  # a tombstone removes them
    assert index.matching(catalog, comedy).tolist() == [False, False, True, False]
    assert index.matching(catalog, movie).tolist() == [False, False, False, False]
    assert catalog.items_with == {"tag:Comedy": {"c"}, "category:show": {"c"}, "tag:Drama": {"b"}}


def test_mismatched_table_is_rejected():
    with pytest.raises(ValueError):
        ItemIndex(["a"], np.zeros((2, 3), dtype=np.float32))


def test_catalog_items_are_embedded_by_the_serving_model(runtime):
    catalog = Catalog()
    catalog.apply("brand-new", "a bright new acoustic guitar")
    catalog.apply(runtime.item_ids[0], None)
    index = ItemIndex.for_model(runtime, catalog)
    expected = runtime.item_vectors(runtime.encode(["a bright new acoustic guitar"]))[0]
    np.testing.assert_allclose(index.vectors(["brand-new"])[0], expected, atol=1e-6)
    assert index.is_alive("brand-new") and not index.is_alive(runtime.item_ids[0])
    np.testing.assert_array_equal(index.vectors(runtime.item_ids[1:3]), runtime.item_matrix[1:3])
