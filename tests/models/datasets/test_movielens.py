import pytest

from models.datasets import DatasetError, read_movielens
from models.datasets.records import MAX_TEXT_CHARS
from tests.models.datasets.checks import assert_valid_stream
from tests.models.datasets.conftest import MOVIELENS_DIR, needs_movielens


def test_ratings_tags_and_movies(movielens_files):
    data = read_movielens(movielens_files["ratings"], movielens_files["movies"], movielens_files["tags"])
    assert_valid_stream(data.events, data.items)
    assert [(e["event_id"], e["ts"], e["user_id"]) for e in data.events] == [
        ("ml-r3", 900_000, "1"),
        ("ml-t1", 950_000, "1"),
        ("ml-r2", 1_000_000, "1"),  # same ts as ml-r1: user "1" sorts first
        ("ml-r1", 1_000_000, "2"),
        ("ml-r4", 2_000_000, "2"),
        ("ml-t3", 2_500_000, "2"),  # ml-t2 is a blank tag: skipped
        ("ml-r5", 3_000_000, "1"),
    ]
    assert data.events[0] == {"event_id": "ml-r3", "user_id": "1", "item_id": "1", "type": "rating", "ts": 900_000,
                              "rating": 5.0}  # fmt: skip
    assert data.events[5] == {"event_id": "ml-t3", "user_id": "2", "item_id": "3", "type": "comment", "ts": 2_500_000,
                              "text": "dark, slow"}  # fmt: skip
    assert data.items == [
        {"item_id": "1", "text": "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy"},
        {"item_id": "2", "text": "American President, The (1995). Genres: Comedy, Drama, Romance"},
        {"item_id": "3", "text": "Some Doc (2001)"},
    ]


def test_tags_are_optional_and_ids_are_deterministic(movielens_files):
    without = read_movielens(movielens_files["ratings"], movielens_files["movies"])
    assert {e["type"] for e in without.events} == {"rating"} and len(without.events) == 5
    assert read_movielens(movielens_files["ratings"], movielens_files["movies"]) == without


def test_long_tag_is_cut_at_a_word_boundary(movielens_files, tmp_path):
    tags = tmp_path / "long_tags.csv"
    tags.write_text("userId,movieId,tag,timestamp\n1,1," + "tag " * 9000 + ",1\n", encoding="utf-8")
    data = read_movielens(movielens_files["ratings"], movielens_files["movies"], tags)
    text = next(e["text"] for e in data.events if e["type"] == "comment")
    assert len(text) <= MAX_TEXT_CHARS and text.endswith("tag") and not text.endswith(" ")
    assert_valid_stream(data.events, data.items)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("userId,movieId,score,timestamp\n1,1,4,1\n", "missing column.*rating"),
        ("userId,movieId,rating,timestamp\n1,1,4,yesterday\n", "row 1: timestamp 'yesterday'"),
        ("userId,movieId,rating,timestamp\n1,1,4,1\n1,2,good,1\n", "row 2: rating 'good' is not a number"),
    ],
)
def test_bad_ratings_file_says_what_is_wrong(movielens_files, tmp_path, content, message):
    ratings = tmp_path / "bad.csv"
    ratings.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_movielens(ratings, movielens_files["movies"])
    with pytest.raises(DatasetError, match="cannot read"):
        read_movielens(tmp_path / "absent.csv", movielens_files["movies"])


@needs_movielens
def test_real_movielens():
    data = read_movielens(MOVIELENS_DIR / "ratings.csv", MOVIELENS_DIR / "movies.csv", MOVIELENS_DIR / "tags.csv")
    types = [e["type"] for e in data.events]
    assert types.count("rating") == 100_836 and types.count("comment") == 3_683
    assert len(data.items) == 9_742 and len({e["user_id"] for e in data.events}) == 610
    assert_valid_stream(data.events, data.items)
