"""`istream bootstrap`: build every user's state from a history file, quietly (no outputs)."""

from __future__ import annotations

from pathlib import Path

import click

from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors

SHOWN_ERRORS = 20


@click.command()
@click.option(
    "--events",
    "events_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="History: events JSONL (.jsonl or .jsonl.gz), each user's events at most once.",
)
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path), help="Model registry (its CURRENT).")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid lines instead of refusing the file.")
@bootstrap_option
@prefix_option
@reports_errors
def bootstrap(
    events_file: Path,
    registry: Path | None,
    skip_invalid: bool,
    bootstrap_servers: str | None,
    topic_prefix: str | None,
) -> None:
    """Build every user's state from EVENTS with the serving model, through the worker's own pipeline, and
    write them to the user-state changelog, where workers restore them when they start. Emits nothing.

    Users that already have a state are kept: a re-run changes nothing, and a run cut short goes on
    where it stopped. Stop the workers first. Their stream's copies of history events are dropped as
    duplicates later.
    """
    from tqdm import tqdm

    from stream_app.bootstrap import build_states, read_history

    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, registry_dir=registry)
    history = read_history(events_file)
    for bad in history.invalid[:SHOWN_ERRORS]:
        click.echo(f"{events_file}:{bad.line}: {bad.error}", err=True)
    if len(history.invalid) > SHOWN_ERRORS:
        click.echo(f"... and {len(history.invalid) - SHOWN_ERRORS} more invalid lines", err=True)
    if history.invalid and not skip_invalid:
        raise click.ClickException(
            f"{events_file}: {len(history.invalid)} invalid line(s) (first: line {history.invalid[0].line}); "
            "nothing was built. Fix them or pass --skip-invalid."
        )
    with tqdm(total=history.events, desc="states", unit="ev") as bar:
        report = build_states(settings, history, progress=bar.update)
    for line in report.lines():
        click.echo(line)
