"""`istream report`: charts of what the running system did."""

from __future__ import annotations

from pathlib import Path

import click

from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors
from stream_app.cli.finetune import Duration


@click.group()
def report() -> None:
    """Charts of the running system."""


@report.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("online.png"), show_default=True,
    help="PNG to write.",
)  # fmt: skip
@click.option("--bucket", "bucket_s", type=Duration(), default=60.0, show_default=True, help="Time per point.")
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Mark this registry's guard decisions (default: ISTREAM_REGISTRY_DIR, when it exists).",
)
@bootstrap_option
@prefix_option
@reports_errors
def online(
    out: Path, bucket_s: float, registry_dir: Path | None, bootstrap_servers: str | None, topic_prefix: str | None
) -> None:
    """Live HR@K per model version over time (served and shadow apart) from <prefix>.online-metrics."""
    from stream_app.finetune.guard import OnlineMetricsFeed, read_records
    from stream_app.finetune.online_chart import hit_rate_series, plot_online

    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, registry_dir=registry_dir)
    feed = OnlineMetricsFeed(settings)
    try:
        records = feed.read()
    finally:
        feed.close()
    decisions = read_records(settings.registry_dir) if settings.registry_dir.is_dir() else []
    plot_online(records, out, bucket_s, decisions)
    for (version, exposure), points in hit_rate_series(records, bucket_s).items():
        judged = sum(n for _, _, n in points)
        hits = sum(rate * n for _, rate, n in points)
        click.echo(f"{version} {exposure}: judged={judged} HR={hits / judged:.4f} over {len(points)} bucket(s)")
    click.echo(f"written: {out} ({len(records)} online-metrics records)")
