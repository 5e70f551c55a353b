"""`istream finetune`: the continual-learning job (once, or on a schedule)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from pathlib import Path

import click

from stream_app.cli.common import bootstrap_option, log_to_stderr, make_settings, prefix_option, reports_errors

UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class Duration(click.ParamType):
    """``90s``, ``15m``, ``24h``, ``7d`` or plain seconds -> seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
        if match is None or float(match.group(1)) <= 0:
            self.fail(f"{value!r} is not a duration such as 90s, 15m, 24h or 7d", param, ctx)
        return float(match.group(1)) * UNITS_S[match.group(2) or "s"]


@click.command()
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Model registry (default: ISTREAM_REGISTRY_DIR).",
)
@click.option("--once", "once", is_flag=True, help="Run once and exit (the default).")
@click.option("--every", type=Duration(), help="Run on this schedule (e.g. 15m) until stopped.")
@click.option("--runs", type=click.IntRange(min=1), help="With --every: stop after this many runs.")
@click.option(
    "--window",
    "window_s",
    type=Duration(),
    help="How far back to read events, e.g. 24h (default: ISTREAM_FINETUNE_WINDOW_S).",
)
@click.option(
    "--replay-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of training events from the replay sample (default: ISTREAM_FINETUNE_REPLAY_FRACTION).",
)
@click.option("--margin", type=float, help="Publish only if challenger NDCG@10 >= champion + margin (default 0).")
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Newest share of the window's events held out for the gate (default 0.2).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Fine-tuning epochs (default 5).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Fine-tuning learning rate (default 0.005).")
@click.option(
    "--min-train-events",
    type=click.IntRange(min=1),
    help="Skip the run when fewer events precede the held-out slice (default 200).",
)
@click.option(
    "--min-judged-users",
    type=click.IntRange(min=1),
    help="Skip the run when fewer users have a target in the held-out slice (default 20).",
)
@click.option("--seed", type=int, help="Seed of fine-tuning and replay sampling (default 0).")
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads for fine-tuning (default 1).")
@click.option(
    "--trial",
    type=click.Choice(["shadow", "canary"]),
    help="Publish beside CURRENT instead of promoting: in shadow, or as a canary for --canary-share of users; "
    "`istream guard` promotes or rejects it on its live figures.",
)
@click.option(
    "--canary-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.05,
    show_default=True,
    help="With --trial canary: the share of users (stable hash of user_id) it serves.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each decision record as one JSON line.")
@bootstrap_option
@prefix_option
@reports_errors
def finetune(
    registry_dir: Path | None,
    once: bool,
    every: float | None,
    runs: int | None,
    window_s: float | None,
    replay_fraction: float | None,
    margin: float | None,
    holdout: float | None,
    epochs: int | None,
    lr: float | None,
    min_train_events: int | None,
    min_judged_users: int | None,
    seed: int | None,
    threads: int | None,
    trial: str | None,
    canary_share: float,
    as_json: bool,
    bootstrap_servers: str | None,
    topic_prefix: str | None,
) -> None:
    """Fine-tune the serving model (registry CURRENT) on the recent window of events, judge it
    against the serving model on the newest slice and publish it only if it is not worse.

    Each run writes a decision record to <registry>/decisions/ and refreshes metrics.png there.
    An empty or tiny window is skipped (exit 0); an unreachable broker fails after retries.
    """
    from models.exceptions import ModelError
    from stream_app.finetune.job import JobOptions, run_every, run_once

    if once and every is not None:
        raise click.UsageError("--once and --every exclude each other")
    if runs is not None and every is None:
        raise click.UsageError("--runs needs --every")
    log_to_stderr(logging.INFO)
    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, registry_dir=registry_dir)
    options = JobOptions.from_settings(
        settings, window_s=window_s, replay_fraction=replay_fraction, margin=margin, holdout=holdout, epochs=epochs,
        lr=lr, min_train_events=min_train_events, min_judged_users=min_judged_users, seed=seed, threads=threads,
        trial=trial, canary_share=canary_share,
    )  # fmt: skip

    def report(decision) -> None:
        click.echo(json.dumps(asdict(decision)) if as_json else decision.summary())

    try:
        if every is None:
            report(run_once(settings, options))
        else:
            run_every(settings, options, every, runs, on_decision=report)
    except (ModelError, FileNotFoundError) as exc:  # training-side errors; a missing encoder directory
        raise click.ClickException(str(exc)) from None
