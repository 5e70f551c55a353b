"""`istream bench`: throughput benchmarks that print figures (never pass/fail tests)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stream_app.cli.common import reports_errors


def _batch_sizes(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give comma-separated integers, e.g. 1,8,32,128") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("give at least one batch size, each >= 1")
    return sizes


@click.group()
def bench() -> None:
    """Benchmarks; each prints a table and can write its figures as JSON."""


@bench.command()
@click.option(
    "--texts",
    "texts_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Amazon reviews (.json/.json.gz) or a text file, one comment per line "
    "(default: ../shared/data Amazon reviews when present, else generated comments).",
)
@click.option("--batch-sizes", default="1,8,32,128", show_default=True, callback=_batch_sizes)
@click.option("--limit", default=256, show_default=True, type=click.IntRange(1), help="Comments to use.")
@click.option("--encoder", "encoder_path", help="Local Hugging Face encoder directory (default: all-MiniLM-L6-v2).")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(8, 512))
@click.option("--threads", type=click.IntRange(1), help="CPU threads for torch and ONNX Runtime (default: all cores).")
@click.option("--spin/--no-spin", default=False, show_default=True, help="Let ONNX Runtime threads spin between runs.")
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    help="Passes over the texts per backend (best kept).",
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON.")
@reports_errors
def encoder(
    texts_file: Path | None,
    batch_sizes: list[int],
    limit: int,
    encoder_path: str | None,
    max_length: int,
    threads: int | None,
    spin: bool,
    rounds: int,
    out_file: Path | None,
) -> None:
    """Comment-encoder sentences/s: torch, ORT fp32, ORT optimized, ORT int8 (+ CUDA fp32/fp16 on a GPU)."""
    from export.bench_encoder import format_table, load_texts, run_benchmark, targets

    texts, source = load_texts(texts_file, limit)
    if not texts:
        raise click.UsageError(f"no comments found in {source}")
    click.echo(f"{len(texts)} comments from {source}")
    report = run_benchmark(
        texts,
        batch_sizes,
        encoder_path=encoder_path,
        max_length=max_length,
        threads=threads,
        spin=spin,
        n_rounds=rounds,
    )
    report["context"]["source"] = source
    report["targets"] = targets(report)
    ctx = report["context"]
    click.echo(
        f"threads={ctx['threads']} load={ctx['load_average_before'][0]:.2f}->{ctx['load_average_after'][0]:.2f} "
        f"mean tokens={ctx['mean_tokens']:.1f} onnxruntime={ctx['onnxruntime']} torch={ctx['torch']}"
    )
    click.echo(format_table(report))
    for name, value in report["accuracy"].items():
        click.echo(f"{name}: {json.dumps(value)}")
    for name, check in report["targets"].items():
        click.echo(f"target {name}: {'met' if check['met'] else 'NOT met'} (ratio {check['ratio']:.2f})")
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        click.echo(f"figures written to {out_file}")
