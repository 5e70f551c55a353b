"""Benchmark reports: printed tables, and JSON + markdown + PNG files in the output directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def verdict(target: dict[str, Any]) -> str:
    if target["met"] is None:
        return target["note"]
    verdict = "met" if target["met"] else "NOT met"
    return f"{verdict}; {target['note']}" if "note" in target else verdict


def table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("figure", "value")) -> str:
    """A markdown table of (name, value) rows."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in rows]
    return "\n".join(lines)


def pipeline_rows(figures: dict[str, Any]) -> list[tuple[str, Any]]:
    lat = figures.get("latency_ms", {})
    rows = [
        ("sustained events/s (10-90% of outputs)", figures["sustained_events_per_s"]),
        ("events/s, first send to last output", figures["overall_events_per_s"]),
        ("events answered", figures["answered"]),
        ("extra outputs (replays)", figures["extra_outputs"]),
    ]
    rows += [(f"produce->recommendation {k} (ms)", lat[k]) for k in ("p50", "p95", "p99", "max") if k in lat]
    rows += [
        ("worker CPU (cores)", figures["worker_cpu_cores"]),
        ("worker CPU per event (us)", figures["worker_cpu_us_per_event"]),
        ("worker CPU in the kernel (share)", figures["worker_system_cpu_share"]),
        ("worker main thread (event loop) CPU (cores)", figures["worker_main_thread_cores"]),
        ("worker's busiest other thread CPU (cores)", figures["worker_busiest_other_thread_cores"]),
        ("machine CPU busy, every process (cores)", figures["machine_busy_cores"]),
        ("worker peak RSS (MB)", figures["worker_peak_rss_mb"]),
    ]
    if "dead_letters" in figures:
        rows.append(("dead letters", figures["dead_letters"]))
    if "events_per_batch" in figures:
        rows.append(("events per micro-batch (mean)", figures["events_per_batch"]))
    reads = figures.get("state_reads")
    if reads and sum(reads.values()):
        rows.append(("user states read from the state cache (share)", reads.get("cache", 0.0) / sum(reads.values())))
    return rows


def _graph(worker: dict[str, Any]) -> str:
    if "graph_seconds" not in worker:
        return worker["graph"]
    return f"{worker['graph']} in {worker['graph_seconds']:.1f} s ({worker['graph_items']:,} items)"


def e2e_markdown(report: dict[str, Any]) -> str:
    ctx, opts = report["context"], report["options"]
    rate = "max" if opts["rate"] is None else f"{opts['rate']:.0f}/s"
    parts = [
        "# istream bench e2e",
        f"{ctx['events']:,} events ({ctx['comments']:,} comments) from {ctx['users']:,} users, offered at {rate}; "
        f"{opts['workers']} worker(s), {opts['partitions']} partitions, broker {ctx['broker']}, "
        f"{ctx['cpu_count']} cores, load average before {ctx['load_average_before'][0]:.2f}.",
        f"Interactions: {ctx['workload']}. Comment texts: {ctx['comment_texts']}.",
        "## Pipeline",
        table(pipeline_rows(report["pipeline"])),
    ]
    shares = report["pipeline"].get("stage_shares")
    if shares:
        secs = report["pipeline"]["stage_seconds"]
        parts += [
            "## Worker time per stage (from its metrics)",
            table([(s, f"{share:.1%} ({secs[s]:.2f} s)") for s, share in shares.items()], ("stage", "share")),
        ]
    for path, hot in report["pipeline"].get("profile", {}).items():
        parts += [
            f"## Worker profile (py-spy, {path})",
            table([(name, f"{share:.1%}") for name, share in hot["own"]], ("function (own time)", "share")),
            table([(name, f"{share:.1%}") for name, share in hot["inclusive"]], ("function (inclusive)", "share")),
        ]
    if "encoder" in report:
        enc = report["encoder"]
        parts += [
            "## Raw comment encoder, same run",
            table(
                [
                    ("comments/s", enc["comments_per_s"]),
                    ("texts, chunk per run", f"{enc['texts']}, {enc['chunk']}"),
                    ("graph, provider", f"{enc['graph']}, {enc['provider']}"),
                    ("CPU per comment (ms, all its threads)", enc["cpu_ms_per_comment"]),
                    ("events/s it allows at this comment share", enc.get("ceiling_events_per_s", float("nan"))),
                ]
            ),
        ]
    if "shadow" in report:
        shadow = report["shadow"]
        parts += ["## With a challenger in shadow, same events", table(pipeline_rows(shadow))]
        shares = shadow.get("stage_shares", {})
        parts.append(
            f"Worker CPU per event with the shadow: **{report['shadow_cpu_per_event_ratio']:.2f}x** that without "
            f"(the challenger's stage: {shares.get('challenger', 0.0):.1%} of its stage time)"
        )
    if "items" in report:
        catalog = report["catalog"]
        parts += [
            f"## A synthetic catalog of {catalog['items']:,} items, same events",
            table(pipeline_rows(report["items"])),
        ]
        parts.append(
            f"Throughput: **{report['items_throughput_share']:.0%}** of that on the bundle's own catalog. Prepared "
            f"before the workers started: bundle loaded in {catalog['bundle_load_s']:.1f} s (item table "
            f"{catalog['item_table_mb']:,.0f} MB, {catalog['item_table_dtype']}), index built in "
            f"{catalog['index_build_s']:.1f} s ({'approximate search' if catalog['approximate'] else 'exact search'}); "
            f"the timed worker's search graph: {_graph(catalog['worker'])}."
        )
    if "naive" in report:
        parts += ["## Naive reference, same events", table(pipeline_rows(report["naive"]))]
        parts.append(
            f"Speed-up: **{report['speedup_vs_naive']:.1f}x** in events/s; "
            f"{report['cpu_per_event_vs_naive']:.1f}x less worker CPU per event "
            f"(naive worker busy {report['naive']['worker_cpu_cores']:.2f} cores)"
        )
    if "relay" in report:
        relay = table(pipeline_rows(report["relay"]))
        parts += ["## Relay reference (Faust and the broker, no work), same events", relay]
        parts.append(
            f"The pipeline reached **{report['share_of_relay']:.0%}** of the relay's events/s. The relay is the most "
            "one worker process gets through Faust's consumer and the broker here; the pipeline's own work is the gap."
        )
    if report.get("targets"):
        parts += [
            "## Targets",
            table(
                [
                    (name, f"{_fmt(t['figure'])} (target {t['target']}): {verdict(t)}")
                    for name, t in report["targets"].items()
                ],
                ("target", "result"),
            ),
        ]
    return "\n\n".join(parts) + "\n"


def e2e_plot(report: dict[str, Any], latencies_ms: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    if latencies_ms:
        left.hist(latencies_ms, bins=80, color="tab:blue")
        lat = report["pipeline"]["latency_ms"]
        for name, style in (("p50", "--"), ("p99", ":")):
            left.axvline(lat[name], color="black", linestyle=style, label=f"{name} {lat[name]:.1f} ms")
        left.legend()
    left.set(title="produce -> recommendation latency", xlabel="ms", ylabel="events")
    for name, label in (("pipeline", "interest-stream"), ("naive", "naive reference"), ("relay", "relay reference")):
        if name in report and report[name]["timeline"]:
            t, r = zip(*report[name]["timeline"], strict=True)
            right.plot(t, r, label=label)
    right.set(title="recommendations per second", xlabel="seconds since the first event", ylabel="events/s")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: Path, name: str, report: dict[str, Any], markdown: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    md_path.write_text(markdown, encoding="utf-8")
    return [json_path, md_path]
