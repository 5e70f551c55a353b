"""MovieLens 100K (u.data, u.item, u.genre) -> events and items."""

import pytest

from models.datasets import DatasetError, read_movielens_100k
from tests.models.datasets.checks import assert_valid_stream
from tests.models.datasets.conftest import SHARED_DATA

GENRES = "unknown|0\nAction|1\nChildren's|2\nDrama|3\n\n"
ITEMS = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0\n"
    "2|Heat (1995)|01-Jan-1995||http://y|0|1|0|1\n"
    "3|Odd (1996)|||x|1|0|0|0\n"
)
RATINGS = "2\t1\t4\t1000\n1\t2\t3\t1000\n1\t1\t5\t900\n"
ML_100K = SHARED_DATA / "movielens-100k"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "u.genre").write_text(GENRES, encoding="latin-1")
    (tmp_path / "u.item").write_text(ITEMS.replace("Odd", "Caf\xe9"), encoding="latin-1")
    (tmp_path / "u.data").write_text(RATINGS, encoding="utf-8")
    return tmp_path


def test_ratings_and_movies(files):
    data = read_movielens_100k(files / "u.data", files / "u.item")
    assert_valid_stream(data.events, data.items)
    assert [(e["event_id"], e["user_id"], e["ts"], e["rating"]) for e in data.events] == [
        ("ml100k-r3", "1", 900_000, 5.0), ("ml100k-r2", "1", 1_000_000, 3.0), ("ml100k-r1", "2", 1_000_000, 4.0),
    ]  # fmt: skip
    assert data.items == [
        {"item_id": "1", "text": "Toy Story (1995). Genres: Children's"},
        {"item_id": "2", "text": "Heat (1995). Genres: Action, Drama"},
        {"item_id": "3", "text": "Café (1996)"},  # only the "unknown" genre: no genre text; latin-1 decoded
    ]


def test_bad_lines_name_the_file_and_line(files):
    (files / "u.data").write_text("1\t2\tfour\t1000\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"u.data line 1: rating .four. or timestamp"):
        read_movielens_100k(files / "u.data", files / "u.item")
    (files / "u.data").write_text(RATINGS, encoding="utf-8")
    (files / "u.item").write_text("1|Toy Story|x||y|0|1\n", encoding="latin-1")
    with pytest.raises(DatasetError, match=r"u.item line 1: expected 5 fields and 4 0/1 genre flags"):
        read_movielens_100k(files / "u.data", files / "u.item", files / "u.genre")
    with pytest.raises(DatasetError, match="cannot read"):
        read_movielens_100k(files / "u.data", files / "u.item", files / "missing.genre")


@pytest.mark.skipif(not ML_100K.is_dir(), reason=f"real data absent: {ML_100K}")
def test_the_published_files():
    data = read_movielens_100k(ML_100K / "u.data", ML_100K / "u.item")
    assert len(data.events) == 100_000 and len(data.items) == 1682
    assert len({e["user_id"] for e in data.events}) == 943
    assert data.items[0]["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
