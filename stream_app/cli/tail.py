"""`istream tail`: print a topic's records, one JSON object per line."""

from __future__ import annotations

import sys

import click

from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors


@click.command()
@click.argument("topic")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds without a record.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record instead of new ones only.")
@bootstrap_option
@prefix_option
@reports_errors
def tail(
    topic: str,
    max_records: int | None,
    timeout: float | None,
    from_beginning: bool,
    bootstrap_servers: str | None,
    topic_prefix: str | None,
) -> None:
    """Print TOPIC (a kind such as `events`, or a full name) as JSON lines; Ctrl-C stops.

    A tombstone prints as {"key": ..., "value": null}, a value that is not JSON as
    {"key": ..., "raw": "..."}. No consumer group is joined and no offsets are committed.
    """
    from stream_app.client import RecordConsumer, message_json

    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix)
    out = sys.stdout.buffer
    with RecordConsumer(settings, topic, from_beginning=from_beginning) as consumer:
        try:
            for msg in consumer.messages(max_records, timeout):
                out.write(message_json(msg) + b"\n")
                out.flush()
        except KeyboardInterrupt:
            pass
