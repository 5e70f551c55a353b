"""Small input files written per test, and the real data sets when ../shared/data exists."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
MOVIELENS_DIR = SHARED_DATA / "movielens-latest-small"
AMAZON_REVIEWS = SHARED_DATA / "amazon-musical-instruments-5core" / "Musical_Instruments_5.json.gz"

needs_movielens = pytest.mark.skipif(not MOVIELENS_DIR.is_dir(), reason=f"real data absent: {MOVIELENS_DIR}")
needs_amazon = pytest.mark.skipif(not AMAZON_REVIEWS.is_file(), reason=f"real data absent: {AMAZON_REVIEWS}")


@pytest.fixture
def movielens_files(tmp_path: Path) -> dict[str, Path]:
    """ratings.csv (5 rows, two with one ts), tags.csv (one blank tag), movies.csv (one without genres)."""
    files = {
        "ratings": (
            "userId,movieId,rating,timestamp\n2,1,4.0,1000\n1,2,3.5,1000\n1,1,5.0,900\n2,3,0.5,2000\n1,3,2.0,3000\n"
        ),
        "tags": 'userId,movieId,tag,timestamp\n1,1,funny,950\n2,2,"  ",1500\n2,3,"dark, slow",2500\n',
        "movies": (
            "movieId,title,genres\n"
            "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
            '2,"American President, The (1995)",Comedy|Drama|Romance\n'
            "3,Some Doc (2001),(no genres listed)\n"
        ),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text, encoding="utf-8")
    return paths


AMAZON_SAMPLE = [
    {"reviewerID": "U2", "asin": "A1", "summary": "good", "reviewText": "Does the job.", "overall": 5.0,
     "unixReviewTime": 200},
    {"reviewerID": "U1", "asin": "A2", "summary": "", "reviewText": "Broke fast.", "overall": 1.0,
     "unixReviewTime": 100, "title": "Pop filter"},
    {"reviewerID": "U1", "asin": "A1", "summary": "Meh", "reviewText": "", "overall": 3.0, "unixReviewTime": 200},
    {"reviewerID": "U3", "asin": "A2", "summary": " ", "reviewText": "", "overall": 4.0, "unixReviewTime": 300},
]  # fmt: skip


@pytest.fixture
def amazon_file(tmp_path: Path) -> Path:
    """AMAZON_SAMPLE as a gzipped JSON-lines file."""
    path = tmp_path / "reviews.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(review) + "\n" for review in AMAZON_SAMPLE)
    return path
