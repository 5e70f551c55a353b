"""`istream guard`: promote a challenger on its live figures, roll back a promotion that does worse live."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import click

from stream_app.cli.common import bootstrap_option, log_to_stderr, make_settings, prefix_option, reports_errors
from stream_app.cli.finetune import Duration
from stream_app.cli.models import registry_option


@click.command()
@registry_option
@click.option("--once", is_flag=True, help="Look once and exit (default: keep looking until stopped).")
@click.option("--every", "poll_s", type=Duration(), default=10.0, show_default=True, help="Time between looks.")
@click.option(
    "--judged-events", type=click.IntRange(min=1), help="Events to decide on (default: ISTREAM_GUARD_JUDGED_EVENTS)."
)
@click.option(
    "--margin", type=click.FloatRange(min=0), help="HR@K a newer model may lose (default: ISTREAM_GUARD_MARGIN)."
)
@click.option(
    "--confidence",
    type=click.FloatRange(0.5, 1, min_open=True, max_open=True),
    help="One-sided confidence of the bounds (default: ISTREAM_GUARD_CONFIDENCE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each decision record as one JSON line.")
@bootstrap_option
@prefix_option
@reports_errors
def guard(
    registry_dir: Path | None,
    once: bool,
    poll_s: float,
    judged_events: int | None,
    margin: float | None,
    confidence: float | None,
    as_json: bool,
    bootstrap_servers: str | None,
    topic_prefix: str | None,
) -> None:
    """Decide the registry's trial on the workers' online metrics: promote the challenger when it is not
    worse than CURRENT by more than the margin (one-sided confidence bound), else end the trial; watch
    each promotion (the version it replaced in shadow) and roll it back when it does worse. Every
    decision is recorded with its figures in <registry>/guard/."""
    from stream_app.cli.models import open_registry
    from stream_app.finetune.guard import GuardConfig, run_guard

    log_to_stderr(logging.INFO)
    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, registry_dir=registry_dir)
    registry, _ = open_registry(registry_dir)
    config = GuardConfig.from_settings(settings, judged_events=judged_events, margin=margin, confidence=confidence)

    def report(record) -> None:
        click.echo(json.dumps(asdict(record)) if as_json else record.summary(), nl=True)

    run_guard(settings, registry, config, poll_s, steps=1 if once else None, on_record=report)
