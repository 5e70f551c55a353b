"""`istream evaluate`: HR@10 / NDCG@10 of a checkpoint, stepped one event at a time, beside baselines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from stream_app.cli.common import make_settings

_in_file = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
_checkpoint = click.Path(exists=True, file_okay=False, path_type=Path)


def table(result: dict, extra: dict) -> str:
    rows = [("interest model (stepwise)", result)]
    rows += [(f"ablation: {name}", m) for name, m in (extra.get("ablations") or {}).items()]
    rows += list(result["baselines"].items())
    width = max(len(name) for name, _ in rows)
    lines = [f"{'model':<{width}}  HR@10   NDCG@10"]
    lines += [f"{name:<{width}}  {m['hr@10']:.4f}  {m['ndcg@10']:.4f}" for name, m in rows]
    lines.append(f"{result['users']} users, {result['items']} items")
    lines += ["", "test split by history length (events before the target):", *bucket_table(result["buckets"])]
    pq = result.get("prequential")
    if pq:
        last = datetime.fromtimestamp((pq["since"] - 1) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines += ["", f"prequential: {pq['predictions']} predictions, every run after the model's newest training "
                  f"event ({last} UTC), each from the user's state before it, as a live worker is judged"]  # fmt: skip
        names = ["model", *result["baselines"]]
        lines += [f"{name:<{width}}  {pq[name]['hr@10']:.4f}  {pq[name]['ndcg@10']:.4f}" for name in names]
        lines += ["prequential by history length:", *bucket_table(pq["buckets"])]
    else:
        lines += ["", "prequential: no event after the model's training data (train with --until to hold some out)"]
    sentiment = extra.get("sentiment")
    if sentiment:
        lines.append(
            f"sentiment: mean cos(interest, item) after a negative last rating {sentiment['negative_cosine']:.4f} "
            f"({sentiment['negative_users']} users), after a positive one {sentiment['positive_cosine']:.4f} "
            f"({sentiment['positive_users']} users)"
        )
    return "\n".join(lines)


def bucket_table(buckets: list[dict]) -> list[str]:
    names = [name for name in buckets[0] if name not in ("bucket", "n")]
    head = f"{'events':>7} {'n':>6}  " + "  ".join(f"{name[:20]:>20}" for name in names)
    rows = [
        f"{b['bucket']:>7} {b['n']:>6}  "
        + "  ".join(f"{b[name]['hr@10']:>9.4f} {b[name]['ndcg@10']:>10.4f}" for name in names)
        for b in buckets
    ]
    return [head, f"{'':>15}" + "  ".join(f"{'HR@10':>9} {'NDCG@10':>10}" for _ in names), *rows]


@click.command()
@click.option("--model", "model_dir", type=_checkpoint, required=True, help="checkpoint directory (istream train)")
@click.option("--events", type=_in_file, required=True, help="events JSONL")
@click.option("--items", type=_in_file, required=True, help="items JSONL")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of the table")
@click.option("--ablation", type=_checkpoint, multiple=True, help="another checkpoint to compare (an ablation run)")
@click.option("--encoder", "encoder_path", help="encoder directory, when the one in the checkpoint moved")
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="torch CPU threads (1 is fastest on a busy machine)",
)
@click.option("--no-report", is_flag=True, help="do not write report.png / report.md / metrics.json")
def evaluate(
    model_dir: Path,
    events: Path,
    items: Path,
    as_json: bool,
    ablation: tuple[Path, ...],
    encoder_path: str | None,
    threads: int,
    no_report: bool,
) -> None:
    """Chronological leave-one-out test (last item per user, full ranking, history excluded)."""
    from models.checkpoint import load_checkpoint, save_metrics
    from models.datasets import DatasetError
    from models.evaluate import evaluate_files
    from models.exceptions import ModelError
    from models.report import write_report

    settings = make_settings()
    try:
        out = evaluate_files(
            model_dir,
            events,
            items,
            cache_dir=settings.run_dir / "cache" / "embeddings",
            encoder_path=encoder_path,
            ablations=ablation,
            threads=threads,
        )
        if not no_report:
            save_metrics(model_dir, {**out["result"], **out["extra"]})
            png, md = write_report(model_dir, load_checkpoint(model_dir).history, out["result"], out["extra"])
    except (DatasetError, ModelError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({**out["result"], "sentiment": out["extra"]["sentiment"]}))
        return
    click.echo(table(out["result"], out["extra"]))
    if not no_report:
        click.echo(f"report: {png}, {md}")
