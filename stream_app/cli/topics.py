"""`istream topics`: create and list the stream's topics on any Kafka cluster."""

from __future__ import annotations

import click

from stream_app import admin
from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors

timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=admin.TIMEOUT_S, show_default=True, help="Seconds to wait."
)


@click.group()
def topics() -> None:
    """Create or list the topics of DESIGN.md."""


@topics.command()
@click.option("--partitions", type=int, help="Partitions per topic (default: ISTREAM_PARTITIONS, 8).")
@bootstrap_option
@prefix_option
@timeout_option
@reports_errors
def create(partitions: int | None, bootstrap_servers: str | None, topic_prefix: str | None, timeout: float) -> None:
    """Create every topic; topics that already exist are left as they are."""
    settings = make_settings(partitions=partitions, bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix)
    report = admin.create_topics(settings, timeout)
    for name in report.created:
        click.echo(f"created  {name}")
    for name in report.existing:
        click.echo(f"exists   {name}")
    click.echo(f"{len(report.created)} created, {len(report.existing)} already existed on {settings.bootstrap_servers}")


@topics.command(name="list")
@bootstrap_option
@timeout_option
@reports_errors
def list_(bootstrap_servers: str | None, timeout: float) -> None:
    """List the cluster's topics with their partition counts."""
    settings = make_settings(bootstrap_servers=bootstrap_servers)
    for name, partitions in admin.list_topics(settings, timeout).items():
        click.echo(f"{name}\t{partitions}")
