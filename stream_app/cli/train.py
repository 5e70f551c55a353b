"""`istream train`: events + items JSONL -> a checkpoint directory (docs/model-interface.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from stream_app.cli.common import make_settings

_in_file = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


class Moment(click.ParamType):
    """A point in time: a UTC date (``2016-06-01``), date and time (``2016-06-01T12:00``) or epoch ms."""

    name = "DATE"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        if value.isdigit():
            return int(value)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is neither a date (2016-06-01, 2016-06-01T12:00) nor epoch milliseconds", param, ctx)
        return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


# --without value -> ModelConfig switch turned off
ABLATIONS = {"comment-text": "use_comment_text", "long-term": "use_long_term", "item-text": "use_item_text"}
JOBS_HELP = "members trained at once, each in its own process (0: one per member, at most one per CPU)"


@click.command()
@click.option("--events", type=_in_file, required=True, help="events JSONL (istream convert / generate)")
@click.option("--items", type=_in_file, required=True, help="items JSONL (item_id, text)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="checkpoint directory")
@click.option("--epochs", type=click.IntRange(1), help="most epochs, early stopping may end sooner  [default: 20]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="learning rate  [default: 0.01]")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed; same seed + data = same model")
@click.option("--encoder", "encoder_path", help="local Hugging Face encoder directory (default: shipped MiniLM)")
@click.option("--max-length", type=click.IntRange(8, 512), default=128, show_default=True, help="encoder tokens")
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="torch CPU threads (1 is fastest on a busy machine)",
)
@click.option(
    "--members",
    type=click.IntRange(1),
    help="models trained apart (seeds seed, seed + 1, ...) and served as one, their scores summed  [default: 2]",
)
@click.option("--jobs", type=click.IntRange(0), default=0, show_default=True, help=JOBS_HELP)
@click.option(
    "--without", type=click.Choice(sorted(ABLATIONS)), multiple=True, help="ablation: leave this input/path out"
)
@click.option(
    "--retrain/--refit",
    default=None,
    help="after early stopping: train a fresh model on training + validation items for the chosen epochs "
    "(twice the training time), or refit the chosen model on them for 2 epochs  [default: retrain when the "
    "validation items add 10% or more to the training targets, i.e. short histories]",
)
@click.option(
    "--until",
    type=Moment(),
    help="train on the events before this time only (UTC date or epoch ms); `istream evaluate` then judges "
    "every later event prequentially, as a live worker would be",
)
@click.option("--quiet", is_flag=True, help="no progress bars")
def train(
    events: Path,
    items: Path,
    out: Path,
    epochs: int | None,
    lr: float | None,
    seed: int,
    encoder_path: str | None,
    max_length: int,
    threads: int,
    members: int | None,
    jobs: int,
    without: tuple[str, ...],
    retrain: bool | None,
    until: int | None,
    quiet: bool,
) -> None:
    """Train the interest model (chronological leave-one-out, early stopping on validation NDCG@10)."""
    from models.datasets import DatasetError
    from models.exceptions import ModelError
    from models.report import write_report
    from models.train import TrainConfig, train_files

    settings = make_settings()
    try:
        history = train_files(
            events,
            items,
            out,
            cfg=TrainConfig(
                seed=seed,
                threads=threads,
                jobs=jobs,
                retrain=retrain,
                **({"epochs": epochs} if epochs else {}),
                **({"lr": lr} if lr else {}),
            ),
            encoder_path=encoder_path,
            encoder_max_length=max_length,
            cache_dir=settings.run_dir / "cache" / "embeddings",
            model_overrides={
                **{ABLATIONS[name]: False for name in without},
                **({"members": members} if members else {}),
            },
            progress=not quiet,
            until=until,
        )
        png, md = write_report(out, history)
    except (DatasetError, ModelError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    trained = history.get("members") or [history]
    click.echo(
        f"wrote {out}: {len(trained)} member(s), best epoch(s) {', '.join(str(h['best_epoch']) for h in trained)}, "
        f"validation NDCG@10 {history['best_val_ndcg@10']:.4f}, then {history['final_fit']} (validation items add "
        f"{history['validation_adds']:.1%} to the targets), {history['total_seconds']:.0f} s"
    )
    click.echo(f"report: {png}, {md} (training curve; `istream evaluate` adds the test figures)")
