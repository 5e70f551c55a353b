"""MovieLens CSV files (ratings.csv, tags.csv, movies.csv) -> events and items.

- a rating row -> a ``rating`` event with ``rating`` (0.5..5), event_id ``ml-r<row>``;
- a tag row -> a ``comment`` event whose text is the tag, event_id ``ml-t<row>`` (blank tags are skipped);
- a movie row -> an item whose text is the title and genres, e.g.
  ``"Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy"``.

user_id and item_id are MovieLens' userId and movieId as strings; ts is the timestamp in ms.
Event ids use the 1-based data row number within their file, so they are deterministic and
unique for one conversion. Texts longer than the contract's 32,768 characters are cut at a
word boundary (none are in the published files).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from models.datasets.exceptions import DatasetError
from models.datasets.records import Dataset, sort_events, truncate_text

RATINGS_COLUMNS = ("userId", "movieId", "rating", "timestamp")
TAGS_COLUMNS = ("userId", "movieId", "tag", "timestamp")
MOVIES_COLUMNS = ("movieId", "title", "genres")
NO_GENRES = "(no genres listed)"


def _rows(path: Path, columns: tuple[str, ...], progress: bool) -> Iterator[tuple[int, dict[str, str]]]:
    """(1-based data row number, row) of a CSV file that must have ``columns``."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
            yield from enumerate(tqdm(reader, desc=path.name, unit=" rows", disable=not progress), 1)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None


def _ts_ms(path: Path, row_no: int, value: str) -> int:
    try:
        return int(value) * 1000
    except ValueError:
        raise DatasetError(f"{path} row {row_no}: timestamp {value!r} is not whole epoch seconds") from None


def movie_text(title: str, genres: str) -> str:
    """Item text of a movie: its title, then its genres when it has any."""
    names = [g for g in genres.split("|") if g and g != NO_GENRES]
    return truncate_text(f"{title}. Genres: {', '.join(names)}" if names else title)


def read_movielens(
    ratings: str | Path, movies: str | Path, tags: str | Path | None = None, *, progress: bool = False
) -> Dataset:
    """Events (ratings, then tags as comments; sorted by ts, user_id) and items (every movie)."""
    ratings, movies = Path(ratings), Path(movies)
    events: list[dict] = []
    for row_no, row in _rows(ratings, RATINGS_COLUMNS, progress):
        try:
            rating = float(row["rating"])
        except ValueError:
            raise DatasetError(f"{ratings} row {row_no}: rating {row['rating']!r} is not a number") from None
        events.append(
            {
                "event_id": f"ml-r{row_no}",
                "user_id": row["userId"],
                "item_id": row["movieId"],
                "type": "rating",
                "ts": _ts_ms(ratings, row_no, row["timestamp"]),
                "rating": rating,
            }
        )
    if tags is not None:
        tags = Path(tags)
        for row_no, row in _rows(tags, TAGS_COLUMNS, progress):
            text = row["tag"].strip()
            if not text:
                continue
            events.append(
                {
                    "event_id": f"ml-t{row_no}",
                    "user_id": row["userId"],
                    "item_id": row["movieId"],
                    "type": "comment",
                    "ts": _ts_ms(tags, row_no, row["timestamp"]),
                    "text": truncate_text(text),
                }
            )
    items = [
        {"item_id": row["movieId"], "text": movie_text(row["title"], row["genres"])}
        for _, row in _rows(movies, MOVIES_COLUMNS, progress)
    ]
    return Dataset(sort_events(events), items)
