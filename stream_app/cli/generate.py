"""`istream generate`: a synthetic event stream with planted topics, bursts and sentiment."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from stream_app.cli.convert import write_outputs

_out_file = click.Path(dir_okay=False, writable=True, path_type=Path)


@click.command()
@click.option("--users", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--items", type=click.IntRange(min=2), default=500, show_default=True)
@click.option("--events", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="same seed -> identical files")
@click.option("--topics", type=click.IntRange(2, 16), default=12, show_default=True, help="number of catalog topics")
@click.option("--out-events", type=_out_file, required=True, help="events JSONL to write")
@click.option("--out-items", type=_out_file, required=True, help="items JSONL to write")
@click.option("--out-truth", type=_out_file, help="JSON with each user's planted topic mix, burst and dislikes")
def generate(
    users: int,
    items: int,
    events: int,
    seed: int,
    topics: int,
    out_events: Path,
    out_items: Path,
    out_truth: Path | None,
) -> None:
    """Write a synthetic stream whose structure is known (see models.datasets.synthetic for the formats)."""
    from models.datasets import DatasetError, StreamShape
    from models.datasets import generate as generate_stream

    started = time.perf_counter()
    try:
        event_dicts, item_dicts, truth = generate_stream(users, items, events, seed, StreamShape(topics=topics))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    write_outputs(event_dicts, item_dicts, out_events, out_items, started)
    if out_truth is not None:
        try:
            out_truth.parent.mkdir(parents=True, exist_ok=True)
            out_truth.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {out_truth}: {exc}") from None
        click.echo(f"wrote truth for {len(truth['users']):,} users to {out_truth}")
