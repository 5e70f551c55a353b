"""`istream bench e2e`: the whole system as a user runs it, timed from the outside.

One run: build the workload, measure the raw comment encoder on its texts (same bundle, same
ONNX Runtime options as the worker), start W worker processes on fresh topics, warm them up,
then produce the workload at the target rate and time every recommendation. Per-stage time
shares come from the workers' own metrics; CPU and peak RSS from the worker processes. With
``compare_naive`` the naive reference pipeline (tests/bench/naive_worker.py) replays the same
events on fresh topics of the same broker, and the report gives the ratio; with ``compare_relay``
the relay reference (tests/bench/relay_worker.py: Faust and the broker, no work) does, and the
report gives the share of that ceiling the pipeline reached. With ``shadow`` the same events run
again, on fresh topics of the same broker, with a challenger in shadow beside the serving model (the
serving model's checkpoint exported again as the fine-tune job exports, so it costs what the serving
model costs, in a copy of the registry), and the report gives the ratio of worker CPU per event.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from stream_app.bench.catalog import grown_registry, prepare_graph, worker_graph
from stream_app.bench.cluster import ProcessSampler, Workers, broker, fresh_topics, metric_delta
from stream_app.bench.load import Timings, drive, producer
from stream_app.bench.profile import hot_functions, py_spy
from stream_app.bench.workload import Workload, build_workload, workload_of
from stream_app.exceptions import ConfigError
from stream_app.settings import Settings

REFERENCES = Path(__file__).resolve().parents[2] / "tests" / "bench"
NAIVE_WORKER = REFERENCES / "naive_worker.py"
RELAY_WORKER = REFERENCES / "relay_worker.py"
STAGE_SUM = "istream_stage_seconds_sum"
DEAD_LETTERS = "istream_dead_letters_total"
STATE_READS = "istream_state_reads_total"
BATCH_SIZE = "istream_batch_size"
# the bench chooses these for its workers; every other ISTREAM_* of its environment reaches them
OWN_SETTINGS = (
    "ISTREAM_TOPIC_PREFIX",
    "ISTREAM_RUN_DIR",
    "ISTREAM_BOOTSTRAP_SERVERS",
    "ISTREAM_REGISTRY_DIR",
    "ISTREAM_WORKER_DATA_DIR",
    "ISTREAM_WORKER_WEB_PORT",
    "ISTREAM_WORKER_APP_ID",
)
THROUGHPUT_TARGET = 20_000  # events/s, clicks only (issue targets; reported, never asserted)
P99_TARGET_MS = 100.0  # at 1,000 events/s offered (issue 20)
P99_RELAY_RATIO_TARGET = 2.0  # pipeline p99 / the relay's, same rate, same run
RELAY_SHARE_TARGET = 0.4  # pipeline events/s / the relay's at full load, same run
ENCODER_SHARE_TARGET = 0.8
NAIVE_SPEEDUP_TARGET = 10.0
SHADOW_CPU_TARGET = 2.0  # worker CPU per event with a shadow / without
ITEMS_SHARE_TARGET = 0.5  # throughput with --items N / with the bundle's catalog
ITEMS_RSS_TARGET_MB = 4096
ONLINE_EVAL_SHARE_TARGET = 0.05  # the online evaluation's stage ("judge") in the worker's stage time
# A naive worker busy less than this waited on the broker (seen on Tansu: 0.43 cores and 246 events/s
# in a run where others gave 0.84-0.87 cores and 504-584/s); its rate then flatters the speed-up.
NAIVE_BUSY_MIN = 0.75


@dataclass(frozen=True)
class E2EOptions:
    events: int = 20_000
    rate: float | None = None  # events/s offered; None = as fast as possible
    comment_fraction: float = 0.0
    workers: int = 1
    partitions: int = 8
    seed: int = 0
    order: str = "interleaved"  # workload.ORDERS
    compare_naive: bool = False
    compare_relay: bool = False
    shadow: bool = False
    items: int = 0  # also run on a synthetic catalog of this many items (0: not)
    profile_dir: Path | None = None  # py-spy profiles of the workers while timed
    idle_timeout: float = 60.0


def tuning_env() -> dict[str, str]:
    """Worker settings from the bench's own environment (batch size, threads, ...)."""
    return {k: v for k, v in os.environ.items() if k.startswith("ISTREAM_") and k not in OWN_SETTINGS}


def warm_up(settings: Settings, partitions: int, linger_ms: int = 2) -> Producer:
    """A few events on every partition, answered before timing starts (assignment done, sessions warm);
    returns the producer that sent them, for the timed run (its producer id is granted, its connections up:
    a fresh one put 350-600 ms on the first 0.5 s of events at 1,000 events/s, the relay's p99 352 ms)."""
    now = int(time.time() * 1000)
    events = [
        {
            "event_id": f"warm-{uuid.uuid4().hex[:6]}-{i}",
            "user_id": f"warm-{i}",
            "item_id": "warm",
            "type": "click",
            "ts": now,
        }
        for i in range(16 * partitions)
    ]
    sender = producer(settings, linger_ms)
    timings = drive(settings, workload_of(events, "warm-up"), rate=None, idle_timeout=120, events=sender)
    if timings.answered < len(events):
        raise ConfigError(f"warm-up: {timings.notes[0]}; see the worker logs in {settings.run_dir}")
    return sender


def encoder_ceiling(registry: Path, settings: Settings, texts: list[str], chunk: int) -> dict[str, Any]:
    """Comments/s of the worker's encoder (same bundle and runtime options), in chunks of what one
    micro-batch carries: the most a comment share can allow, with nothing else running."""
    from export.registry import Registry
    from export.runtime import RuntimeOptions, load_runtime

    reg = Registry(registry)
    runtime = load_runtime(reg.bundle_path(reg.current()), RuntimeOptions.from_settings(settings))
    chunks = [texts[i : i + chunk] for i in range(0, len(texts), chunk)] or [[]]
    runtime.encode(chunks[0])  # warm-up
    best, cpu = 0.0, float("inf")
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        for c in chunks:
            runtime.encode(c)
        best = max(best, len(texts) / (time.perf_counter() - t0))
        cpu = min(cpu, time.process_time() - c0)
    return {
        "texts": len(texts),
        "chunk": chunk,
        "graph": runtime.encoder_graph,
        "provider": runtime.provider,
        "comments_per_s": best,
        # what a comment costs the machine, whatever else wants the cores
        "cpu_ms_per_comment": 1000 * cpu / max(len(texts), 1),
    }


def latency_summary(ms: np.ndarray) -> dict[str, float]:
    if len(ms) == 0:
        return {}
    q = np.percentile(ms, [50, 95, 99])
    return {"p50": q[0], "p95": q[1], "p99": q[2], "max": float(ms.max()), "mean": float(ms.mean())}


def throughput_timeline(t: Timings, step: float = 0.5) -> list[tuple[float, float]]:
    """(seconds since the first send, recommendations/s) per ``step``."""
    arrivals = t.arrived_at[np.isfinite(t.arrived_at)] - np.nanmin(t.sent_at)
    if len(arrivals) == 0:
        return []
    edges = np.arange(0.0, arrivals.max() + step, step)
    counts, _ = np.histogram(arrivals, bins=edges)
    return [(float(e), float(c / step)) for e, c in zip(edges[:-1], counts, strict=True)]


def pipeline_figures(t: Timings, sampler: ProcessSampler) -> dict[str, Any]:
    answered = t.answered
    return {
        "answered": answered,
        "extra_outputs": t.extra_outputs,
        "sustained_events_per_s": t.sustained_rate(),
        "overall_events_per_s": t.overall_rate(),
        "latency_ms": latency_summary(t.latencies_ms()),
        "worker_cpu_cores": sampler.cpu_seconds / sampler.wall_seconds,
        "worker_cpu_us_per_event": 1e6 * sampler.cpu_seconds / max(1, answered),
        # kernel time: page faults, socket and RocksDB I/O system calls
        "worker_system_cpu_share": sampler.system_seconds / max(sampler.cpu_seconds, 1e-9),
        "worker_main_thread_cores": sampler.main_thread_seconds / sampler.wall_seconds,
        "worker_busiest_other_thread_cores": sampler.busiest_other_thread_seconds / sampler.wall_seconds,
        "machine_busy_cores": sampler.machine_busy_seconds / sampler.wall_seconds,
        "worker_peak_rss_mb": sampler.peak_rss / 2**20,
        "notes": t.notes,
    }


def _run_pipeline(
    settings: Settings,
    registry: Path,
    workload: Workload,
    opts: E2EOptions,
    argv: list[str] | None,
    ready: str | None = None,
) -> tuple[Timings, dict[str, Any], list[dict[str, float]], list[dict[str, float]]]:
    """``ready``: a line each worker logs before it is timed (beyond being up)."""
    with Workers(settings, registry, opts.workers, env=tuning_env(), argv=argv) as workers:
        for p in workers.processes if ready else ():
            p.wait_for(ready, 120.0)
        sender = warm_up(settings, opts.partitions)
        before = workers.scrape() if argv is None else []
        pids = [p.pid for p in workers.processes]
        with contextlib.ExitStack() as stack:
            if opts.profile_dir is not None and argv is None:
                profiles = stack.enter_context(py_spy(pids, opts.profile_dir))
            sampler = stack.enter_context(ProcessSampler(pids))
            timings = drive(settings, workload, opts.rate, opts.idle_timeout, events=sender)
        after = workers.scrape() if argv is None else []
    figures = pipeline_figures(timings, sampler)
    if opts.profile_dir is not None and argv is None:
        figures["profile"] = {str(path): hot_functions(path) for path in profiles}
    figures["worker_exit_codes"] = [p.returncode for p in workers.processes]
    return timings, figures, before, after


def _summed(before: list[dict[str, float]], after: list[dict[str, float]], prefix: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in metric_delta(b, a, prefix).items():
            label = key.partition("=")[2].rstrip("}") or key
            total[label] = total.get(label, 0.0) + value
    return total


def shadow_registry(settings: Settings, registry: Path, work_dir: Path) -> Path:
    """A registry of ``registry``'s CURRENT alone, whose trial runs, in shadow, CURRENT's checkpoint exported
    again (a new version, signed with the workers' key when they have one)."""
    from export.registry import Registry
    from stream_app.finetune.job import JobOptions, champion_checkpoint, open_registry, publish

    champion = Registry(registry).current()
    if champion is None:
        raise ConfigError(f"registry {registry} has no CURRENT version to serve")
    copy = work_dir / "shadow-registry"
    shutil.rmtree(copy, ignore_errors=True)
    reg = open_registry(settings, JobOptions(registry=copy))
    reg.promote(reg.publish(Registry(registry).bundle_path(champion)))
    publish(reg, champion_checkpoint(reg, champion), champion, lambda stage: None, trial="shadow")
    return copy


def _pipeline_figures(
    settings: Settings, registry: Path, workload: Workload, opts: E2EOptions, ready: str | None = None
) -> tuple[Timings, dict[str, Any]]:
    """One timed run of the pipeline, with its workers' stage times, dead letters, state reads, batch sizes."""
    timings, figures, before, after = _run_pipeline(settings, registry, workload, opts, None, ready)
    stages = _summed(before, after, STAGE_SUM)
    total = sum(stages.values()) or 1.0
    figures["stage_seconds"] = stages
    figures["stage_shares"] = {stage: seconds / total for stage, seconds in stages.items()}
    figures["dead_letters"] = sum(_summed(before, after, DEAD_LETTERS).values())
    figures["state_reads"] = _summed(before, after, STATE_READS)
    batches = sum(_summed(before, after, f"{BATCH_SIZE}_count").values())
    figures["events_per_batch"] = sum(_summed(before, after, f"{BATCH_SIZE}_sum").values()) / max(batches, 1.0)
    figures["timeline"] = throughput_timeline(timings)
    return timings, figures


def _reference_argv(script: Path, flag: str) -> list[str]:
    if not script.is_file():
        raise ConfigError(f"{flag} needs a source checkout: {script} is missing")
    return [sys.executable, str(script)]


def run_e2e(
    base: Settings, opts: E2EOptions, registry: Path, bootstrap: str | None, work_dir: Path, data_dir: Path
) -> dict[str, Any]:
    references = {}
    if opts.compare_naive:
        references["naive"] = _reference_argv(NAIVE_WORKER, "--compare-naive")
    if opts.compare_relay:
        references["relay"] = _reference_argv(RELAY_WORKER, "--compare-relay")
    tag = f"e2e-{uuid.uuid4().hex[:8]}"
    workload = build_workload(opts.events, opts.comment_fraction, opts.seed, tag, data_dir, opts.order)
    report: dict[str, Any] = {
        "options": {**asdict(opts), "profile_dir": str(opts.profile_dir) if opts.profile_dir else None},
        "context": {
            "workload": workload.source,
            "comment_texts": workload.text_source,
            "events": len(workload),
            "users": workload.users,
            "comments": workload.comments,
            "cpu_count": os.cpu_count(),
            "load_average_before": os.getloadavg(),
            "python": platform.python_version(),
            "broker": bootstrap or "embedded Tansu",
            "worker_settings": {k: v for k, v in sorted(tuning_env().items())},
        },
    }
    if workload.comments:
        chunk = max(1, round(base.worker_batch_size * opts.comment_fraction))
        report["encoder"] = encoder_ceiling(registry, base, workload.texts, chunk)
    with broker(work_dir, bootstrap) as bs:
        settings = fresh_topics(base, bs, work_dir / "pipeline", opts.partitions)
        timings, report["pipeline"] = _pipeline_figures(settings, registry, workload, opts)
        report["latencies_ms"] = timings.latencies_ms().round(3).tolist()
        if opts.shadow:
            shadowed = shadow_registry(base, registry, work_dir)
            shadow_settings = fresh_topics(base, bs, work_dir / "shadow", opts.partitions)
            _, report["shadow"] = _pipeline_figures(shadow_settings, shadowed, workload, opts, "trial: ")
        if opts.items:
            grown = grown_registry(base, registry, opts.items, work_dir)
            items_settings = fresh_topics(base, bs, work_dir / "items", opts.partitions)
            report["catalog"] = prepare_graph(items_settings, grown)
            _, report["items"] = _pipeline_figures(items_settings, grown, workload, opts)
            report["catalog"]["worker"] = worker_graph(items_settings.run_dir)
        for name, argv in references.items():
            ref_settings = fresh_topics(base, bs, work_dir / name, opts.partitions)
            ref_timings, ref, _, _ = _run_pipeline(ref_settings, registry, workload, opts, argv)
            ref["timeline"] = throughput_timeline(ref_timings)
            report[name] = ref
    report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets that this run's mode speaks to: figure, target, met."""
    opts, pipe = report["options"], report["pipeline"]
    out: dict[str, dict[str, Any]] = {}
    rate = pipe["sustained_events_per_s"]
    if "relay" in report:
        report["share_of_relay"] = rate / report["relay"]["sustained_events_per_s"]
    if opts["comment_fraction"] == 0 and opts["rate"] is None:
        clicks = out["clicks-only throughput (events/s)"] = {"figure": rate, "target": f">= {THROUGHPUT_TARGET}"}
        clicks["met"] = rate >= THROUGHPUT_TARGET
        if "relay" in report:
            clicks["note"] = (
                f"the relay reference (Faust and the broker, no work) did "
                f"{report['relay']['sustained_events_per_s']:,.0f} events/s on the same events"
            )
            share = report["share_of_relay"]
            out["events/s / the relay's"] = {
                "figure": share, "target": f">= {RELAY_SHARE_TARGET}", "met": share >= RELAY_SHARE_TARGET
            }  # fmt: skip
    if opts["rate"] is not None:
        p99 = pipe["latency_ms"].get("p99", float("inf"))
        out[f"p99 at {opts['rate']:.0f} events/s offered (ms)"] = {
            "figure": p99,
            "target": f"<= {P99_TARGET_MS:.0f}",
            "met": p99 <= P99_TARGET_MS,
        }
        if "relay" in report:
            ratio = p99 / report["relay"]["latency_ms"].get("p99", float("nan"))
            out["p99 / the relay's p99"] = {
                "figure": ratio, "target": f"<= {P99_RELAY_RATIO_TARGET:.0f}", "met": ratio <= P99_RELAY_RATIO_TARGET
            }  # fmt: skip
    if "encoder" in report:
        ceiling = report["encoder"]["comments_per_s"] / opts["comment_fraction"]
        report["encoder"]["ceiling_events_per_s"] = ceiling
        out["throughput / encoder ceiling"] = {
            "figure": rate / ceiling,
            "target": f">= {ENCODER_SHARE_TARGET}",
            "met": rate / ceiling >= ENCODER_SHARE_TARGET,
        }
    judge = pipe.get("stage_shares", {}).get("judge")
    if judge is not None:
        out["online evaluation share of worker stage time"] = {
            "figure": judge, "target": f"<= {ONLINE_EVAL_SHARE_TARGET}", "met": judge <= ONLINE_EVAL_SHARE_TARGET
        }  # fmt: skip
    if "shadow" in report:
        ratio = report["shadow"]["worker_cpu_us_per_event"] / pipe["worker_cpu_us_per_event"]
        report["shadow_cpu_per_event_ratio"] = ratio
        out["worker CPU per event, shadow / none"] = {
            "figure": ratio, "target": f"<= {SHADOW_CPU_TARGET}", "met": ratio <= SHADOW_CPU_TARGET
        }  # fmt: skip
    if "items" in report:
        share = report["items"]["sustained_events_per_s"] / rate
        report["items_throughput_share"] = share
        out[f"throughput with {opts['items']:,} items / with the bundle's catalog"] = {
            "figure": share, "target": f">= {ITEMS_SHARE_TARGET}", "met": share >= ITEMS_SHARE_TARGET
        }  # fmt: skip
        rss = report["items"]["worker_peak_rss_mb"]
        out[f"worker peak RSS with {opts['items']:,} items (MB)"] = {
            "figure": rss, "target": f"< {ITEMS_RSS_TARGET_MB:,}", "met": rss < ITEMS_RSS_TARGET_MB
        }  # fmt: skip
    if "naive" in report:
        naive = report["naive"]
        speedup = rate / naive["sustained_events_per_s"]
        report["speedup_vs_naive"] = speedup
        # steadier than events/s when the naive worker stalls (waits on the broker, not on its CPU)
        report["cpu_per_event_vs_naive"] = naive["worker_cpu_us_per_event"] / pipe["worker_cpu_us_per_event"]
        out["speed-up vs naive"] = {
            "figure": speedup,
            "target": f">= {NAIVE_SPEEDUP_TARGET:.0f}",
            "met": speedup >= NAIVE_SPEEDUP_TARGET,
        }
        if naive["worker_cpu_cores"] < NAIVE_BUSY_MIN:
            out["speed-up vs naive"].update(
                met=None,
                note=f"not judged: the naive worker was busy only {naive['worker_cpu_cores']:.2f} cores, it stalled "
                f"on the broker; CPU per event gives {report['cpu_per_event_vs_naive']:.1f}x",
            )
    return out
