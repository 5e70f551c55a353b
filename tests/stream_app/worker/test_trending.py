import numpy as np
import pytest

from stream_app.worker.item_index import ItemIndex
from stream_app.worker.trending import Trending, cold_start


def _index(n: int = 6, popularity: list[float] | None = None) -> ItemIndex:
    index = ItemIndex([f"i{k}" for k in range(n)], np.eye(n, dtype=np.float32))
    if popularity is not None:
        index.popularity[:] = popularity
    return index


def test_counts_decay_with_event_time():
    trending = Trending(half_life_s=60)
    trending.add(["old"] * 4, [0] * 4, [0] * 4)
    trending.add(["new"] * 3, [120_000] * 3, [1] * 3)  # two half-lives later: old counts 4 / 4 = 1
    assert trending.counts() == {"new": pytest.approx(3.0), "old": pytest.approx(1.0)}
    trending.add(["late"], [60_000], [0])  # a late event counts decayed to the clock
    assert trending.counts()["late"] == pytest.approx(0.5)


def test_weights_are_rebased_before_they_overflow():
    trending = Trending(half_life_s=1)
    hours = [k * 3_600_000 for k in range(0, 48, 6)]  # 6 h = 21,600 half-lives between events
    for ts in hours:
        trending.add(["a", "b"], [ts, ts], [0, 0])
    assert trending.counts() == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_the_cold_start_list_ranks_counted_items_then_popular_ones_then_by_row():
    index = _index(popularity=[0, 5, 0, 9, 1, 0])
    trending = Trending(half_life_s=3600)
    rows, counts = cold_start(trending, index, 10)
    assert rows == [3, 1, 4, 0, 2, 5] and counts == [0.0] * 6  # nothing counted yet: the bundle's popularity
    trending.add(["i5", "i5", "i0"], [1, 1, 1], [0, 0, 1])
    rows, counts = cold_start(trending, index, 4)
    assert rows == [5, 0, 3, 1] and counts == pytest.approx([2.0, 1.0, 0.0, 0.0])
    index.remove(["i3"])
    allowed = np.array([True, True, True, False, True, True])
    rows, _ = cold_start(trending, index, 10, exclude=[5, -1], allowed=allowed)
    assert rows == [0, 1, 4, 2]  # minus the excluded, the removed and the filtered-out rows: as many as remain


def test_a_partitions_counts_go_with_it_and_come_back_from_its_snapshot():
    trending = Trending(half_life_s=60)
    trending.add(["a", "b", "b", "c"], [0, 0, 0, 60_000], [0, 1, 1, 0])
    assert trending.changed == {0, 1} and trending.partitions == {0, 1}
    snapshot = trending.snapshot(1)
    trending.drop([1])
    assert trending.counts() == {"a": pytest.approx(0.5), "c": pytest.approx(1.0)}
    assert trending.changed == {0}
    # a restarted worker (or the partition's next owner, with a clock of its own) loads it
    other = Trending(half_life_s=60)
    other.add(["c"], [120_000], [0])
    assert other.load(1, snapshot) == 1
    assert other.counts() == {"b": pytest.approx(0.5), "c": pytest.approx(1.0)}  # b: 1 at 60 s, 0.5 at 120 s
    assert trending.load(1, trending.snapshot(7)) == 0  # a partition never counted


@pytest.mark.parametrize("raw", [b"", b"\x02" + bytes(20), Trending(60).snapshot(0)[:-1] + b"\xff\xff"])
def test_a_corrupt_snapshot_is_a_value_error(raw):
    with pytest.raises(ValueError):
        Trending(60).load(0, raw)
