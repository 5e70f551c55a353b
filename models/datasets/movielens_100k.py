"""MovieLens 100K files (u.data, u.item, u.genre) -> events and items.

- a u.data line ``user<TAB>item<TAB>rating<TAB>unix seconds`` -> a ``rating`` event, event_id
  ``ml100k-r<line>`` (1-based line number, so ids are deterministic for one conversion);
- a u.item line ``id|title|release date|video date|url|19 genre flags`` (latin-1) -> an item whose
  text is the title and its genres, as for MovieLens latest (``models.datasets.movielens``). Genre
  names come from u.genre (``name|index``), by default the one beside u.item.

The data set has no free text, so it trains and evaluates the model on ids, ratings, gaps and item
text alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from models.datasets.exceptions import DatasetError
from models.datasets.movielens import movie_text
from models.datasets.records import Dataset, sort_events

ITEM_FIELDS = 5  # id, title, release date, video release date, IMDb url; genre flags follow


def _lines(path: Path, encoding: str, progress: bool = False) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines of ``path``."""
    try:
        with open(path, encoding=encoding) as fh:
            for line_no, line in enumerate(tqdm(fh, desc=path.name, unit=" lines", disable=not progress), 1):
                if line.strip():
                    yield line_no, line.rstrip("\r\n")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not {encoding} text ({exc})") from None


def read_genres(path: Path) -> list[str]:
    """Genre names in flag order, from u.genre."""
    names: dict[int, str] = {}
    for line_no, line in _lines(path, "latin-1"):
        name, _, index = line.rpartition("|")
        if not name or not index.isdigit():
            raise DatasetError(f"{path} line {line_no}: expected 'name|index', got {line!r}")
        names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{path}: genre indexes are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def _event(path: Path, line_no: int, line: str) -> dict:
    fields = line.split("\t")
    if len(fields) != 4:
        raise DatasetError(f"{path} line {line_no}: expected user, item, rating, timestamp separated by tabs")
    user, item, rating, ts = fields
    try:
        return {
            "event_id": f"ml100k-r{line_no}",
            "user_id": user,
            "item_id": item,
            "type": "rating",
            "ts": int(ts) * 1000,
            "rating": float(rating),
        }
    except ValueError:
        raise DatasetError(f"{path} line {line_no}: rating {rating!r} or timestamp {ts!r} is not a number") from None


def _item(path: Path, line_no: int, line: str, genres: list[str]) -> dict:
    fields = line.split("|")
    flags = fields[ITEM_FIELDS:]
    if len(flags) != len(genres) or any(flag not in ("0", "1") for flag in flags):
        raise DatasetError(f"{path} line {line_no}: expected {ITEM_FIELDS} fields and {len(genres)} 0/1 genre flags")
    names = [name for name, flag in zip(genres, flags, strict=True) if flag == "1" and name != "unknown"]
    return {"item_id": fields[0], "text": movie_text(fields[1], "|".join(names))}


def read_movielens_100k(
    ratings: str | Path, movies: str | Path, genres: str | Path | None = None, *, progress: bool = False
) -> Dataset:
    """Events (every rating; sorted by ts, user_id) and items (every movie of u.item)."""
    ratings, movies = Path(ratings), Path(movies)
    genre_names = read_genres(Path(genres) if genres is not None else movies.with_name("u.genre"))
    events = [_event(ratings, line_no, line) for line_no, line in _lines(ratings, "utf-8", progress)]
    items = [_item(movies, line_no, line, genre_names) for line_no, line in _lines(movies, "latin-1")]
    return Dataset(sort_events(events), items)
