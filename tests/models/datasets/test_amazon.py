import gzip

import pytest

from models.datasets import DatasetError, read_amazon
from tests.models.datasets.checks import assert_valid_stream
from tests.models.datasets.conftest import AMAZON_REVIEWS, needs_amazon


def test_reviews_become_comment_events(amazon_file):
    data = read_amazon(amazon_file)
    assert_valid_stream(data.events, data.items)
    assert data.events == [
        {"event_id": "az-2", "user_id": "U1", "item_id": "A2", "type": "comment", "ts": 100_000, "text": "Broke fast.",
         "rating": 1.0},
        {"event_id": "az-3", "user_id": "U1", "item_id": "A1", "type": "comment", "ts": 200_000, "text": "Meh",
         "rating": 3.0},
        {"event_id": "az-1", "user_id": "U2", "item_id": "A1", "type": "comment", "ts": 200_000,
         "text": "good. Does the job.", "rating": 5.0},
        # neither summary nor text: a rating event
        {"event_id": "az-4", "user_id": "U3", "item_id": "A2", "type": "rating", "ts": 300_000, "rating": 4.0},
    ]  # fmt: skip
    # a title when the file has one, else the asin
    assert data.items == [{"item_id": "A1", "text": "A1"}, {"item_id": "A2", "text": "Pop filter"}]


def test_plain_json_file_reads_the_same(amazon_file, tmp_path):
    plain = tmp_path / "reviews.json"
    plain.write_bytes(gzip.decompress(amazon_file.read_bytes()))
    assert read_amazon(plain) == read_amazon(amazon_file)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"reviewerID": "U1", "unixReviewTime": 1}\n', r"reviews\.json:1: review lacks asin"),
        ('{"reviewerID": "U1", "asin": "A", "unixReviewTime": 1}\n[1]\n', r":2: expected a JSON object"),
        ("{oops\n", r":1: not valid JSON"),
        ('{"reviewerID": "U1", "asin": "A", "unixReviewTime": "soon"}\n', "not numbers"),
    ],
)
def test_bad_reviews_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "reviews.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_amazon(path)


def test_plain_file_named_gz_is_an_error(tmp_path):
    path = tmp_path / "reviews.json.gz"
    path.write_text('{"reviewerID": "U1"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="cannot read"):
        read_amazon(path)


@needs_amazon
def test_real_amazon():
    data = read_amazon(AMAZON_REVIEWS)
    assert len(data.events) == 10_261 and {e["type"] for e in data.events} == {"comment"}
    assert len(data.items) == 900 and len({e["user_id"] for e in data.events}) == 1_429
    assert all(item["text"] == item["item_id"] for item in data.items)  # the 5-core file has no titles
    assert_valid_stream(data.events, data.items)
