"""`istream convert movielens|movielens-100k|amazon`: public data sets -> events JSONL + items JSONL."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from models.datasets import Dataset

_in_file = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
_out_file = click.Path(dir_okay=False, writable=True, path_type=Path)


def convert_with(read: Callable[[], Dataset], out_events: Path, out_items: Path) -> None:
    """Read a data set (a ``DatasetError`` becomes the command's error), write it, print what was written."""
    from models.datasets import DatasetError

    started = time.perf_counter()
    try:
        data = read()
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    write_outputs(data.events, data.items, out_events, out_items, started)


def write_outputs(events: list[dict], items: list[dict], out_events: Path, out_items: Path, started: float) -> None:
    """Write events and items JSONL, then print what was written."""
    from models.datasets import write_jsonl

    try:
        for path in (out_events, out_items):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(out_events, events)
        write_jsonl(out_items, items)
    except OSError as exc:
        raise click.ClickException(f"cannot write output: {exc}") from None
    by_type = ", ".join(f"{kind}: {n:,}" for kind, n in sorted(Counter(e["type"] for e in events).items()))
    users = len({e["user_id"] for e in events})
    click.echo(f"wrote {len(events):,} events ({by_type}) from {users:,} users to {out_events}")
    click.echo(f"wrote {len(items):,} items to {out_items} in {time.perf_counter() - started:.2f} s")


@click.group()
def convert() -> None:
    """Convert a public data set into events JSONL + items JSONL (sorted by ts, user_id)."""


@convert.command()
@click.option("--ratings", type=_in_file, required=True, help="MovieLens ratings.csv")
@click.option("--tags", type=_in_file, help="MovieLens tags.csv (tags become comment events)")
@click.option("--movies", type=_in_file, required=True, help="MovieLens movies.csv (item text = title + genres)")
@click.option("--out-events", type=_out_file, required=True, help="events JSONL to write")
@click.option("--out-items", type=_out_file, required=True, help="items JSONL to write")
def movielens(ratings: Path, tags: Path | None, movies: Path, out_events: Path, out_items: Path) -> None:
    """MovieLens: a rating -> rating event, a tag -> comment event, a movie -> item."""
    from models.datasets import read_movielens

    convert_with(lambda: read_movielens(ratings, movies, tags, progress=True), out_events, out_items)


@convert.command("movielens-100k")
@click.option("--ratings", type=_in_file, required=True, help="MovieLens 100K u.data (user, item, rating, timestamp)")
@click.option("--movies", type=_in_file, required=True, help="MovieLens 100K u.item (item text = title + genres)")
@click.option("--genres", type=_in_file, help="u.genre  [default: the one beside --movies]")
@click.option("--out-events", type=_out_file, required=True, help="events JSONL to write")
@click.option("--out-items", type=_out_file, required=True, help="items JSONL to write")
def movielens_100k(ratings: Path, movies: Path, genres: Path | None, out_events: Path, out_items: Path) -> None:
    """MovieLens 100K: a rating -> rating event, a movie -> item (no free text in this data set)."""
    from models.datasets import read_movielens_100k

    convert_with(lambda: read_movielens_100k(ratings, movies, genres, progress=True), out_events, out_items)


@convert.command()
@click.option(
    "--reviews", type=_in_file, required=True, help="Amazon reviews, one JSON object per line (.json or .json.gz)"
)
@click.option("--out-events", type=_out_file, required=True, help="events JSONL to write")
@click.option("--out-items", type=_out_file, required=True, help="items JSONL to write")
def amazon(reviews: Path, out_events: Path, out_items: Path) -> None:
    """Amazon reviews: a review -> comment event (summary + text, rating = overall), an asin -> item."""
    from models.datasets import read_amazon

    convert_with(lambda: read_amazon(reviews, progress=True), out_events, out_items)
