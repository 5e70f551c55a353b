"""`istream bench query`: the query API of real worker processes while they process events, timed from outside.

One run, on fresh topics of a broker: the history (MovieLens ratings from ../shared/data, else a
generated stream) is bootstrapped through ``bootstrap.build_states`` (its figures are reported: the
bootstrap target), W workers start on it, and new events of those users stream in at ``rate``
events/s, their produce->recommendation latency timed as ``bench e2e`` times it. Meanwhile an open-loop
query load (``query_load``, a process of its own) asks worker 0 for users' top-``k`` (90 % known
users, 10 % never seen) at each of ``query_rates`` in turn, ``seconds`` each; the fastest step that
met the target (every request answered, p99 <= 20 ms) is the limit. Then freshness: an event for a
known user is produced and the API polled until the user's answer carries that event, against the
same stream's produce->recommendation latency.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil

from stream_app.bench.cluster import ProcessSampler, Workers, broker, fresh_topics
from stream_app.bench.e2e import latency_summary, tuning_env, warm_up
from stream_app.bench.load import Timings, drive, producer
from stream_app.bench.profile import hot_functions, py_spy
from stream_app.bench.query_load import LoadSpec
from stream_app.bench.workload import interactions, interleave, workload_of
from stream_app.client import PRODUCER_DEFAULTS
from stream_app.settings import Settings

P99_TARGET_MS = 20.0
QUERY_TARGET = 1000.0  # queries/s, at P99_TARGET_MS, while the worker processes TARGET_EVENTS
TARGET_EVENTS = 1000.0
BOOTSTRAP_TARGET = 20_000.0  # events/s of state building (MovieLens latest-small)
UNKNOWN_SHARE = 0.1
FRESHNESS_SAMPLES = 20
STEP_SLACK_S = 4.0  # per step beyond its seconds: the load process starting, the last answers


@dataclass(frozen=True)
class QueryOptions:
    rate: float = TARGET_EVENTS  # events/s streamed while queries run
    query_rates: tuple[float, ...] = (500.0, 1000.0, 1500.0, 2000.0, 3000.0)
    seconds: float = 10.0  # per query step
    k: int = 10
    workers: int = 1
    partitions: int = 8
    seed: int = 0
    profile_dir: Path | None = None  # py-spy profiles of the workers during the query steps
    # the event stream's producer batches as the project's client does: on Tansu a fetch costs more the more
    # batches a partition holds, and 2 ms batches (one event each) made the broker fill a core within 30 s
    linger_ms: int = PRODUCER_DEFAULTS["linger.ms"]


def _history(data_dir: Path, path: Path) -> tuple[list[tuple[str, str, int]], str]:
    """Write the history as events JSONL; its (user, item, ts) and source."""
    rows, source = interactions(data_dir)
    encoder = msgspec.json.Encoder()
    with path.open("wb") as out:
        for n, (user, item, ts) in enumerate(rows):
            event = {"event_id": f"h{n}", "user_id": user, "item_id": item, "type": "click", "ts": ts}
            out.write(encoder.encode(event) + b"\n")
    return rows, source


def _live_events(rows: list[tuple[str, str, int]], n: int, seed: int, tag: str) -> list[dict]:
    """``n`` new events of the history's users (interleaved, each user's order kept), stamped from now on."""
    base = interleave(rows, np.random.default_rng(seed))
    now = int(time.time() * 1000)
    return [
        {"event_id": f"{tag}-{i}", "user_id": user, "item_id": item, "type": "click", "ts": now + i}
        for i, (user, item, _) in zip(range(n), (base[i % len(base)] for i in range(n)), strict=True)
    ]


def _busy_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle, sum(times)


def _load_step(spec: LoadSpec, work: Path, worker_pids: list[int]) -> dict[str, Any]:
    """One query step in its own process; its figures, the workers' CPU meanwhile, the load process's own
    and how busy the whole machine was (a step that fills every core measures the machine, not the worker)."""
    spec_path, out_path = work / f"load-{spec.rate:.0f}.json", work / f"load-{spec.rate:.0f}.out.json"
    spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
    busy0, all0 = _busy_seconds()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with ProcessSampler(worker_pids) as sampler:
        run = subprocess.run(
            [sys.executable, "-m", "stream_app.bench.query_load", str(spec_path), str(out_path)],
            capture_output=True,
            text=True,
            timeout=spec.seconds * 3 + 60,
        )
    busy1, all1 = _busy_seconds()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load process: the one child waited for
    if run.returncode != 0:
        return {"offered_per_s": spec.rate, "failed": run.stderr[-2000:]}
    result = json.loads(out_path.read_text(encoding="utf-8"))
    latencies = np.asarray(result.pop("latency_ms"))
    answered = len(latencies)
    figures = {
        "offered_per_s": spec.rate,
        "offered": result["offered"],
        "answered": answered,
        "answered_per_s": answered / result["seconds"] if result["seconds"] else 0.0,
        "latency_ms": latency_summary(latencies),
        "errors": result["errors"],
        "empty_answers": result["empty"],
        "short_answers": result["short"],
        "cold_start_answers": result["cold"],
        "forwarded": result["forwarded"],
        "worker_cpu_cores": sampler.cpu_seconds / sampler.wall_seconds,
        "load_process_cpu_cores": (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime)
        / sampler.wall_seconds,
        "machine_cpu_busy": (busy1 - busy0) / max(all1 - all0, 1e-9),
    }
    p99 = figures["latency_ms"].get("p99", float("inf"))
    figures["met"] = answered == result["offered"] and not result["errors"] and p99 <= P99_TARGET_MS
    return figures


def _freshness(settings: Settings, url: str, users: list[str], tag: str, linger_ms: int) -> list[float]:
    """ms from producing an event of a user to the query API answering with that event, per sample; the event
    is sent as the stream's are (its producer's linger counted), so the two latencies compare."""
    out: list[float] = []
    p = producer(settings, linger_ms)
    name = f"{settings.topic_prefix}.events"
    # a fresh idempotent producer holds its first records until the broker grants it an id (~0.5 s),
    # which the first sample would count: a never-seen user's event goes first, untimed
    warm_up = {"event_id": f"{tag}-fresh-warm-up", "user_id": f"{tag}-warm-up", "item_id": "1", "type": "click"}
    p.produce(name, msgspec.json.encode({**warm_up, "ts": int(time.time() * 1000)}), warm_up["user_id"].encode())
    p.flush(10)
    for n, user in enumerate(users):
        event_id = f"{tag}-fresh-{n}"
        value = msgspec.json.encode(
            {"event_id": event_id, "user_id": user, "item_id": "1", "type": "click", "ts": int(time.time() * 1000)}
        )
        t0 = time.perf_counter()
        p.produce(name, value, user.encode())
        p.poll(0)
        deadline = t0 + 10
        while time.perf_counter() < deadline:
            with urllib.request.urlopen(f"{url}/users/{user}/recommendations?k=1", timeout=5) as response:
                if json.loads(response.read())["event_id"] == event_id:
                    out.append((time.perf_counter() - t0) * 1000.0)
                    break
            time.sleep(0.002)
    p.flush(10)
    return out


def run_query_bench(
    base: Settings, opts: QueryOptions, registry: Path, bootstrap_servers: str | None, work_dir: Path, data_dir: Path
) -> dict[str, Any]:
    from stream_app.bootstrap import build_states, read_history

    tag = f"q-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {
        "options": {**asdict(opts), "profile_dir": str(opts.profile_dir) if opts.profile_dir else None},
        "context": {
            "cpu_count": os.cpu_count(),
            "load_average_before": os.getloadavg(),
            "broker": bootstrap_servers or "embedded Tansu",
            "worker_settings": dict(sorted(tuning_env().items())),
        },
    }
    with broker(work_dir, bootstrap_servers) as bs:
        settings = fresh_topics(base, bs, work_dir / "query", opts.partitions)
        settings = settings.model_copy(update={"registry_dir": registry})
        history_path = settings.run_dir / "history.jsonl"
        rows, source = _history(data_dir, history_path)
        history = read_history(history_path)
        boot = build_states(settings, history)
        report["context"]["history"] = source
        report["bootstrap"] = {
            "events": boot.events,
            "users": boot.users,
            "states_written": boot.built,
            "build_seconds": boot.build_seconds,
            "events_per_s": boot.applied / boot.build_seconds if boot.build_seconds else float("nan"),
            "states_per_s": boot.built / boot.build_seconds if boot.build_seconds else float("nan"),
            "whole_run_seconds": boot.seconds,
        }
        users = sorted(history.users)
        rng = np.random.default_rng(opts.seed)
        unknown = [f"new-{tag}-{i}" for i in range(max(1, int(len(users) * UNKNOWN_SHARE / (1 - UNKNOWN_SHARE))))]
        asked = users + unknown
        env = {**tuning_env(), "ISTREAM_WORKER_WEB_HOST": "127.0.0.1"}
        steps: list[dict[str, Any]] = []
        with Workers(settings, registry, opts.workers, env=env) as workers:
            sender = warm_up(settings, opts.partitions, opts.linger_ms)
            url = f"http://127.0.0.1:{workers.processes[0].web_port}"
            planned = len(opts.query_rates) * (opts.seconds + STEP_SLACK_S) + FRESHNESS_SAMPLES + 10
            live = workload_of(_live_events(rows, int(opts.rate * planned), opts.seed, tag), "live")
            stop, timings = threading.Event(), []
            stream = threading.Thread(target=lambda: timings.append(drive(settings, live, opts.rate, 60, stop, sender)))
            stream.start()
            try:
                time.sleep(2.0)  # the stream at its rate before the first step
                pids = [p.pid for p in workers.processes]
                with contextlib.ExitStack() as stack:
                    if opts.profile_dir is not None:
                        profiles = stack.enter_context(py_spy(pids, opts.profile_dir))
                    for rate in opts.query_rates:
                        spec = LoadSpec(url, rate, opts.seconds, opts.k, asked, seed=int(rng.integers(1 << 30)))
                        steps.append(_load_step(spec, settings.run_dir, pids))
                if opts.profile_dir is not None:
                    report["profile"] = {str(path): hot_functions(path) for path in profiles}
                sample = [users[i] for i in rng.permutation(len(users))[:FRESHNESS_SAMPLES]]
                fresh = _freshness(settings, url, sample, tag, opts.linger_ms)
            finally:
                stop.set()
                stream.join()
        stream_timings: Timings = timings[0]
    report["steps"] = steps
    report["stream"] = {
        "events_per_s_offered": opts.rate,
        "sustained_events_per_s": stream_timings.sustained_rate(),
        "answered": stream_timings.answered,
        "produce_to_recommendation_ms": latency_summary(stream_timings.latencies_ms()),
        "notes": stream_timings.notes,
    }
    report["freshness"] = {"samples": len(fresh), "produce_to_query_answer_ms": latency_summary(np.asarray(fresh))}
    report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    met = [s for s in report["steps"] if s.get("met")]
    limit = max((s["offered_per_s"] for s in met), default=0.0)
    at_target = next((s for s in report["steps"] if s["offered_per_s"] == QUERY_TARGET), None)
    events = report["stream"]["sustained_events_per_s"]
    out: dict[str, dict[str, Any]] = {
        "queries/s answered with p99 <= 20 ms (k=10) while events stream": {
            "figure": limit,
            "target": f">= {QUERY_TARGET:.0f} at {TARGET_EVENTS:.0f} events/s",
            "met": limit >= QUERY_TARGET and report["options"]["rate"] >= TARGET_EVENTS,
            "note": f"events processed meanwhile: {events:,.0f}/s sustained",
        },
        "bootstrap events/s of state building": {
            "figure": report["bootstrap"]["events_per_s"],
            "target": f">= {BOOTSTRAP_TARGET:,.0f}",
            "met": report["bootstrap"]["events_per_s"] >= BOOTSTRAP_TARGET,
        },
    }
    if at_target is not None:
        p99 = at_target.get("latency_ms", {}).get("p99", float("inf"))
        out[f"p99 at {QUERY_TARGET:.0f} queries/s (ms)"] = {"figure": p99, "target": "<= 20", "met": p99 <= 20}
    fresh = report["freshness"]["produce_to_query_answer_ms"].get("p99", float("inf"))
    stream = report["stream"]["produce_to_recommendation_ms"].get("p99", float("inf"))
    out["produce -> query answer p99 (ms), within produce -> output p99"] = {
        "figure": fresh,
        "target": f"<= {stream:.0f}",
        "met": fresh <= stream,
    }
    return out


def query_markdown(report: dict[str, Any]) -> str:
    from stream_app.bench.report import table, verdict

    ctx, opts, boot = report["context"], report["options"], report["bootstrap"]
    settings = ", ".join(f"{k}={v}" for k, v in ctx["worker_settings"].items()) or "defaults"
    parts = [
        "# istream bench query",
        f"Worker settings: {settings}.",
        f"{opts['workers']} worker(s), {opts['partitions']} partitions, broker {ctx['broker']}, "
        f"{ctx['cpu_count']} cores, load average before {ctx['load_average_before'][0]:.2f}; events streamed at "
        f"{opts['rate']:.0f}/s (producer linger {opts['linger_ms']} ms); queries k={opts['k']}, "
        f"{opts['seconds']:.0f} s a step, 90 % known users, 10 % never "
        f"seen. History: {ctx['history']}.",
        "## Bootstrap (same run)",
        table(
            [
                ("events, users", f"{boot['events']:,}, {boot['users']:,}"),
                ("states written", boot["states_written"]),
                ("state building (s)", boot["build_seconds"]),
                ("events/s of state building", boot["events_per_s"]),
                ("states/s", boot["states_per_s"]),
                ("whole bootstrap (s: read, model, topics, build, write)", boot["whole_run_seconds"]),
            ]
        ),
        "## Query steps (open loop, latency from each request's due time)",
    ]
    names = ["offered/s", "answered/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "empty/short", "forwarded"]
    names += ["worker CPU (cores)", "load process CPU (cores)", "machine CPU busy", "met"]
    rows = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for s in report["steps"]:
        if "failed" in s:
            rows.append(f"| {s['offered_per_s']:.0f} | load process failed | | | | | | | | | | | no |")
            continue
        lat = {q: f"{s['latency_ms'].get(q, float('nan')):.2f}" for q in ("p50", "p95", "p99", "max")}
        rows.append(
            f"| {s['offered_per_s']:.0f} | {s['answered_per_s']:.0f} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
            f"{lat['max']} | {sum(s['errors'].values())} | {s['empty_answers']}/{s['short_answers']} | "
            f"{s['forwarded']} | {s['worker_cpu_cores']:.2f} | {s['load_process_cpu_cores']:.2f} | "
            f"{s['machine_cpu_busy']:.0%} | {'yes' if s['met'] else 'no'} |"
        )
    stream, fresh, targets = report["stream"], report["freshness"], report["targets"]
    parts += [
        "\n".join(rows),
        "## Event stream meanwhile and freshness",
        table(
            [
                ("events answered", stream["answered"]),
                ("sustained events/s", stream["sustained_events_per_s"]),
                *((f"produce->recommendation {k} (ms)", v) for k, v in stream["produce_to_recommendation_ms"].items()),
                ("freshness samples", fresh["samples"]),
                *((f"produce->query answer {k} (ms)", v) for k, v in fresh["produce_to_query_answer_ms"].items()),
            ]
        ),
        *_profile_parts(report),
        "## Targets",
        table(
            [(name, f"{t['figure']:,.2f} (target {t['target']}): {verdict(t)}") for name, t in targets.items()],
            ("target", "result"),
        ),
    ]
    return "\n\n".join(parts) + "\n"


def _profile_parts(report: dict[str, Any]) -> list[str]:
    from stream_app.bench.report import table

    parts = []
    for path, hot in report.get("profile", {}).items():
        parts += [
            f"## Worker profile during the query steps (py-spy, {path})",
            table([(name, f"{share:.1%}") for name, share in hot["own"]], ("function (own time)", "share")),
            table([(name, f"{share:.1%}") for name, share in hot["inclusive"]], ("function (inclusive)", "share")),
        ]
    return parts
