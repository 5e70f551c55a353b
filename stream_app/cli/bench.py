"""`istream bench`: throughput benchmarks that print figures (never pass/fail tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from stream_app.cli.common import make_settings, reports_errors
from stream_app.settings import Settings


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
    click.echo(
        f"{ctx['gflop_per_sentence']:.2f} GFLOP per sentence (matrix products, real tokens); fp32 matrix "
        f"product on {ctx['threads']} threads: torch {ctx['matmul_gflops']['torch']:.0f}, "
        f"onnxruntime {ctx['matmul_gflops']['onnxruntime']:.0f} GFLOP/s"
    )
    click.echo(format_table(report))
    for name, value in report["accuracy"].items():
        click.echo(f"{name}: {json.dumps(value)}")
    for name, check in report["targets"].items():
        needs = check.get("needs_of_matmul_rate")
        bound = f"; 3x torch needs {needs:.0%} of onnxruntime's fp32 matmul rate" if needs is not None else ""
        click.echo(f"target {name}: {'met' if check['met'] else 'NOT met'} (ratio {check['ratio']:.2f}{bound})")
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        click.echo(f"figures written to {out_file}")


def _rate(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    if value == "max":
        return None
    try:
        rate = float(value)
    except ValueError:
        raise click.BadParameter("give events per second (a number) or 'max'") from None
    if rate <= 0:
        raise click.BadParameter("give a rate > 0, or 'max'")
    return rate


BENCH_SESSION_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class _Setup:
    settings: Settings
    work: Path  # reused across runs: the bench model, run logs and state
    out: Path  # this command's report
    data_dir: Path
    registry: Path


def _setup(name: str, out_dir: Path | None, data_dir: Path | None, registry: Path | None) -> _Setup:
    """Settings, folders, data and the registry to serve (built once when not given).

    Without an ISTREAM_SESSION_TIMEOUT_MS of the user's, workers get a short session timeout:
    on Tansu a group join waits about half of it, which would dominate start-up figures."""
    from stream_app.bench.bundle import ensure_registry
    from stream_app.bench.workload import SHARED_DATA

    settings = make_settings()
    if "session_timeout_ms" not in settings.model_fields_set:
        settings = settings.model_copy(update={"session_timeout_ms": BENCH_SESSION_TIMEOUT_MS})
    work = settings.run_dir / "bench"
    out = out_dir or work / name
    out.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or SHARED_DATA
    return _Setup(settings, work, out, data_dir, ensure_registry(registry, work, data_dir))


def _publish(setup: _Setup, name: str, report: dict, markdown: str, *more: Path) -> None:
    from stream_app.bench.report import write_report

    click.echo(markdown)
    click.echo("written: " + ", ".join(str(p) for p in [*write_report(setup.out, name, report, markdown), *more]))


registry_option = click.option(
    "--registry",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve this registry's CURRENT bundle (default: a bench model built once under <run dir>/bench).",
)
bootstrap_option = click.option("--bootstrap", help="Use this Kafka instead of starting the embedded broker.")
data_option = click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Public data folder (default: ../shared/data; generated data when absent).",
)
out_option = click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Report directory."
)


@bench.command()
@click.option("--events", "n_events", default=20_000, show_default=True, type=click.IntRange(100))
@click.option("--rate", default="max", show_default=True, callback=_rate, help="Events/s offered, or 'max'.")
@click.option("--comment-fraction", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1))
@click.option("--partitions", default=8, show_default=True, type=click.IntRange(1))
@click.option("--compare-naive", is_flag=True, help="Also run the naive reference (tests/bench) on the same events.")
@click.option(
    "--compare-relay",
    is_flag=True,
    help="Also run the relay reference (tests/bench: Faust and the broker, no work) on the same events.",
)
@click.option(
    "--shadow",
    is_flag=True,
    help="Also run the same events with a challenger in shadow (the serving model exported again) and report the "
    "worker CPU per event against the run without.",
)
@click.option(
    "--items",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Also run the same events on the serving bundle with a synthetic catalog of this many items (its own "
    "items plus generated ones) and report throughput and worker RSS against the run on its own catalog.",
)
@click.option(
    "--order",
    type=click.Choice(["interleaved", "time"]),
    default="interleaved",
    show_default=True,
    help="interleaved: users' events spread over the stream (many users at once); time: the data's own order.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--profile", is_flag=True, help="Record py-spy profiles of the workers while timed.")
@registry_option
@bootstrap_option
@data_option
@out_option
@reports_errors
def e2e(
    n_events: int,
    rate: float | None,
    comment_fraction: float,
    workers: int,
    partitions: int,
    compare_naive: bool,
    compare_relay: bool,
    shadow: bool,
    items: int,
    order: str,
    seed: int,
    profile: bool,
    registry: Path | None,
    bootstrap: str | None,
    data_dir: Path | None,
    out_dir: Path | None,
) -> None:
    """Throughput and produce->recommendation latency of the whole pipeline (broker, workers, outputs)."""
    from stream_app.bench.e2e import E2EOptions, run_e2e
    from stream_app.bench.report import e2e_markdown, e2e_plot

    setup = _setup("e2e", out_dir, data_dir, registry)
    opts = E2EOptions(
        events=n_events,
        rate=rate,
        comment_fraction=comment_fraction,
        workers=workers,
        partitions=partitions,
        seed=seed,
        order=order,
        compare_naive=compare_naive,
        compare_relay=compare_relay,
        shadow=shadow,
        items=items,
        profile_dir=setup.out / "profile" if profile else None,
    )
    report = run_e2e(setup.settings, opts, setup.registry, bootstrap, setup.work / "runs", setup.data_dir)
    e2e_plot(report, report.pop("latencies_ms"), setup.out / "e2e.png")
    _publish(setup, "e2e", report, e2e_markdown(report), setup.out / "e2e.png")


@bench.command()
@click.option("--users", default=100_000, show_default=True, type=click.IntRange(1))
@click.option("--partitions", default=8, show_default=True, type=click.IntRange(1))
@registry_option
@bootstrap_option
@data_option
@out_option
@reports_errors
def recovery(
    users: int,
    partitions: int,
    registry: Path | None,
    bootstrap: str | None,
    data_dir: Path | None,
    out_dir: Path | None,
) -> None:
    """Time for a worker that lost its local RocksDB to restore USERS states from the changelog."""
    from stream_app.bench.recovery import run_recovery
    from stream_app.bench.report import table

    setup = _setup("recovery", out_dir, data_dir, registry)
    report = run_recovery(setup.settings, users, partitions, setup.registry, bootstrap, setup.work / "runs")
    _publish(setup, "recovery", report, f"# istream bench recovery\n\n{table(list(report.items()))}\n")


@bench.command()
@click.option("--rate", default=1000.0, show_default=True, type=click.FloatRange(min=1), help="Events/s offered.")
@click.option("--seconds", default=30.0, show_default=True, type=click.FloatRange(min=6), help="Length of the stream.")
@click.option("--partitions", default=8, show_default=True, type=click.IntRange(1))
@registry_option
@bootstrap_option
@data_option
@out_option
@reports_errors
def swap(
    rate: float,
    seconds: float,
    partitions: int,
    registry: Path | None,
    bootstrap: str | None,
    data_dir: Path | None,
    out_dir: Path | None,
) -> None:
    """Latency percentiles before, during and after a hot-swap under steady load."""
    from stream_app.bench.report import table
    from stream_app.bench.swap import run_swap

    setup = _setup("swap", out_dir, data_dir, registry)
    report = run_swap(
        setup.settings, rate, seconds, partitions, setup.registry, bootstrap, setup.work / "runs", setup.data_dir
    )
    rows = [
        (f"{phase} {k} (ms)" if k != "events" else f"{phase} events", v)
        for phase, figures in report["latency_ms"].items()
        for k, v in figures.items()
    ]
    rows += [(k, v) for k, v in report.items() if k != "latency_ms"]
    _publish(setup, "swap", report, f"# istream bench swap\n\n{table(rows)}\n")


def _data_set(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list:
    from stream_app.bench.quality import DataSet

    sets = []
    for value in values:
        name, _, rest = value.partition("=")
        events, _, items = rest.partition(",")
        if not (name and events and items):
            raise click.BadParameter(f"{value!r}: give NAME=EVENTS.jsonl,ITEMS.jsonl")
        paths = [Path(events), Path(items)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise click.BadParameter(f"no such file: {', '.join(missing)}")
        sets.append(DataSet(name, *paths))
    return sets


def _seeds(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise click.BadParameter("give at least one seed")
    return seeds


@bench.command()
@click.option(
    "--data",
    "sets",
    multiple=True,
    required=True,
    callback=_data_set,
    help="NAME=EVENTS.jsonl,ITEMS.jsonl (istream convert); repeat for several data sets.",
)
@click.option("--seeds", default="0,1,2", show_default=True, callback=_seeds, help="Seeds of `istream train`.")
@click.option(
    "--tools",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with baselines.py and sasrec_ref.py (../shared/tools) to run beside the model.",
)
@click.option("--sasrec-budget", default=540.0, show_default=True, type=click.FloatRange(1), help="SASRec seconds.")
@click.option("--train-arg", "train_args", multiple=True, help="Extra `istream train` argument (repeatable).")
@click.option(
    "--resume",
    is_flag=True,
    help="Reuse the runs a previous bench into the same --out finished on the same files and arguments "
    "(not the same code: after changing the model, run without it).",
)
@out_option
@reports_errors
def quality(
    sets: list,
    seeds: list[int],
    tools: Path | None,
    sasrec_budget: float,
    train_args: tuple[str, ...],
    resume: bool,
    out_dir: Path | None,
) -> None:
    """Recommendation quality over seeds beside the baselines and SASRec: quality.md and quality.json."""
    from stream_app.bench.quality import run_quality

    out = out_dir or make_settings().run_dir / "bench" / "quality"
    run_quality(sets, seeds, out, tools=tools, sasrec_budget=sasrec_budget, train_args=list(train_args), resume=resume)
    click.echo((out / "quality.md").read_text(encoding="utf-8"))
    click.echo(f"written: {out / 'quality.md'}, {out / 'quality.json'}")


def _rates(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give comma-separated queries/s, e.g. 500,1000,2000") from None
    if not rates or min(rates) <= 0:
        raise click.BadParameter("give at least one rate, each > 0")
    return rates


@bench.command()
@click.option("--rate", default=1000.0, show_default=True, type=click.FloatRange(min=1), help="Events/s streamed.")
@click.option(
    "--query-rates",
    default="500,1000,1500,2000,3000",
    show_default=True,
    callback=_rates,
    help="Queries/s of each step, in order; the fastest that meets p99 <= 20 ms is the limit.",
)
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(min=1), help="Length of a step.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Items per query.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Queries go to worker 0.")
@click.option("--partitions", default=8, show_default=True, type=click.IntRange(1))
@click.option("--profile", is_flag=True, help="Record py-spy profiles of the workers during the query steps.")
@click.option(
    "--linger-ms",
    type=click.IntRange(0, 1000),
    help="linger.ms of the event stream's producer [default: the client's own, 20]. Tansu's fetches cost more the more "
    "batches a partition holds: shorter lingers load the broker, and the machine, more as a run goes on.",
)
@registry_option
@bootstrap_option
@data_option
@out_option
@reports_errors
def query(
    rate: float,
    query_rates: tuple[float, ...],
    seconds: float,
    k: int,
    workers: int,
    partitions: int,
    profile: bool,
    linger_ms: int | None,
    registry: Path | None,
    bootstrap: str | None,
    data_dir: Path | None,
    out_dir: Path | None,
) -> None:
    """Query API queries/s and latency of real workers while they process events; bootstrap and freshness."""
    from stream_app.bench.query import QueryOptions, query_markdown, run_query_bench

    setup = _setup("query", out_dir, data_dir, registry)
    opts = QueryOptions(
        rate,
        query_rates,
        seconds,
        k,
        workers,
        partitions,
        profile_dir=setup.out / "profile" if profile else None,
        **({} if linger_ms is None else {"linger_ms": linger_ms}),
    )
    report = run_query_bench(setup.settings, opts, setup.registry, bootstrap, setup.work / "runs", setup.data_dir)
    _publish(setup, "query", report, query_markdown(report))


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(0 if v.strip() == "real" else int(float(v)) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give 'real' and item counts, e.g. real,100000,1e6") from None
    if not sizes or min(sizes) < 0:
        raise click.BadParameter("give at least one size, each 'real' or >= 1")
    return sizes


def _libraries(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from stream_app.bench.index import LIBRARIES

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = sorted(set(names) - set(LIBRARIES))
    if unknown or not names:
        raise click.BadParameter(f"choose among {', '.join(LIBRARIES)} (got {value!r})")
    for name in set(names) - {"faiss"}:
        try:
            __import__(name)
        except ImportError:
            raise click.BadParameter(f"{name} is not installed; `pip install {name}` to compare it") from None
    return names


@bench.command()
@click.option(
    "--sizes",
    default="real,30000,100000,1000000",
    show_default=True,
    callback=_sizes,
    help="Catalogs: 'real' (the model's item table) and item counts (the real items plus synthetic ones).",
)
@click.option("--ef-search", "ef_search", default="64,128,256", show_default=True, callback=_batch_sizes)
@click.option("--libraries", default="faiss", show_default=True, callback=_libraries, help="Also usearch, voyager.")
@click.option(
    "--users", default=300, show_default=True, type=click.IntRange(1), help="Users whose events give queries."
)
@click.option("--queries", default=2000, show_default=True, type=click.IntRange(1), help="Queries drawn from them.")
@click.option(
    "--events",
    "events_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="History the queries come from (default: the bench model's training events).",
)
@registry_option
@data_option
@out_option
@reports_errors
def index(
    sizes: tuple[int, ...],
    ef_search: list[int],
    libraries: tuple[str, ...],
    users: int,
    queries: int,
    events_file: Path | None,
    registry: Path | None,
    data_dir: Path | None,
    out_dir: Path | None,
) -> None:
    """Cost, memory and recall@10 of the exact and approximate searches against catalog size: index.md/json/png."""
    from stream_app.bench.index import IndexBenchOptions, index_markdown, index_plot, run_index_bench

    setup = _setup("index", out_dir, data_dir, registry)
    events = events_file or setup.work / "train-data" / "events.jsonl"
    if not events.is_file():
        raise click.BadParameter(f"{events} does not exist; give the history with --events", param_hint="--events")
    options = IndexBenchOptions(sizes, tuple(ef_search), libraries=libraries)
    report = run_index_bench(setup.registry, events, options, users, queries, lambda line: click.echo(line, err=True))
    plot = setup.out / "index.png"
    index_plot(report, plot)
    _publish(setup, "index", report, index_markdown(report), plot)
