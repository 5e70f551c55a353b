"""`istream topics`: create and list the stream's topics on any Kafka cluster."""

from __future__ import annotations

import click

from stream_app import admin
from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors

timeout_option = click.option(
    "--timeout",
    "kafka_timeout_s",
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for the cluster (default: ISTREAM_KAFKA_TIMEOUT_S, 10).",
)


@click.group()
def topics() -> None:
    """Create or list the stream's topics (events, items, vectors, recommendations, model-updates, deadletter)."""


@topics.command()
@click.option("--partitions", type=click.IntRange(min=1), help="Partitions per topic (default: ISTREAM_PARTITIONS, 8).")
@bootstrap_option
@prefix_option
@timeout_option
@reports_errors
def create(
    partitions: int | None, bootstrap_servers: str | None, topic_prefix: str | None, kafka_timeout_s: float | None
) -> None:
    """Create every topic; topics that already exist are left as they are."""
    settings = make_settings(
        partitions=partitions,
        bootstrap_servers=bootstrap_servers,
        topic_prefix=topic_prefix,
        kafka_timeout_s=kafka_timeout_s,
    )
    report = admin.create_topics(settings)
    for name in report.created:
        click.echo(f"created  {name}")
    for name in report.existing:
        click.echo(f"exists   {name}")
    click.echo(f"{len(report.created)} created, {len(report.existing)} already existed on {settings.bootstrap_servers}")


@topics.command(name="list")
@bootstrap_option
@timeout_option
@reports_errors
def list_(bootstrap_servers: str | None, kafka_timeout_s: float | None) -> None:
    """List the cluster's topics with their partition counts."""
    settings = make_settings(bootstrap_servers=bootstrap_servers, kafka_timeout_s=kafka_timeout_s)
    for name, partitions in admin.list_topics(settings).items():
        click.echo(f"{name}\t{partitions}")
