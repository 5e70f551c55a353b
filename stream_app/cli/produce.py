"""`istream produce`: send an events JSONL file (and optionally a catalog) to Kafka."""

from __future__ import annotations

from pathlib import Path

import click

from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors

SHOWN_ERRORS = 20


def _check(path: Path, decode, skip_invalid: bool) -> int:
    """Validate the whole file before anything is sent; returns how many records are valid."""
    from stream_app.client import invalid_lines

    valid, invalid = invalid_lines(path, decode)
    for bad in invalid[:SHOWN_ERRORS]:
        click.echo(f"{path}:{bad.line}: {bad.error}", err=True)
    if len(invalid) > SHOWN_ERRORS:
        click.echo(f"... and {len(invalid) - SHOWN_ERRORS} more invalid lines", err=True)
    if invalid and not skip_invalid:
        raise click.ClickException(
            f"{path}: {len(invalid)} invalid line(s) (first: line {invalid[0].line}); nothing was produced. "
            "Fix them or pass --skip-invalid."
        )
    if invalid:
        click.echo(f"{path}: skipping {len(invalid)} invalid line(s)", err=True)
    return valid


@click.command()
@click.argument("events", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", default="events", show_default=True, help="Topic: a kind (events) or a full name.")
@click.option("--items", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Items JSONL, sent first.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Events per second (default: no limit).")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid lines instead of refusing the file.")
@bootstrap_option
@prefix_option
@reports_errors
def produce(
    events: Path,
    topic: str,
    items: Path | None,
    rate: float | None,
    skip_invalid: bool,
    bootstrap_servers: str | None,
    topic_prefix: str | None,
) -> None:
    """Validate EVENTS (JSONL, one event per line) and produce it keyed by user_id.

    Every line is checked first: an invalid line stops the command before anything is sent,
    unless --skip-invalid.
    """
    from tqdm import tqdm

    from stream_app.client import EventProducer, as_event, as_item, paced, valid_records

    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix)
    item_count = _check(items, as_item, skip_invalid) if items else 0
    event_count = _check(events, as_event, skip_invalid)
    # the bar moves on delivery reports, so it reaches 100% only once the cluster has every record
    with (
        tqdm(total=item_count + event_count, desc="delivered", unit="rec", delay=0.5) as delivered,
        EventProducer(settings, topic=topic, on_delivered=lambda: delivered.update()) as producer,
    ):
        if items:
            for item in valid_records(items, as_item):
                producer.send_item(item)
        for event in paced(valid_records(events, as_event), rate):
            producer.send(event)
    stats = producer.stats
    click.echo(
        f"produced {event_count} events to {producer.topic}"
        + (f" and {item_count} items to {producer.items_topic}" if items else "")
        + f"; {stats.delivered} delivered"
    )
