"""`istream bench e2e|recovery|swap` end to end on the test broker with the tiny bundle: the figures
are whatever this machine gives (never asserted); what is checked is that every event was
answered and counted, and that each report says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from export.registry import Registry
from stream_app.bench.profile import hot_functions
from stream_app.settings import Settings

pytestmark = pytest.mark.integration


def _bench(istream, settings, tmp_path: Path, *args: object, timeout: float = 240):
    run = istream(
        "bench",
        *args,
        "--bootstrap",
        settings.bootstrap_servers,
        "--data",
        tmp_path / "no-data",
        "--partitions",
        2,
        "--out",
        tmp_path / "report",
        timeout=timeout,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run


def test_e2e_answers_every_event_and_compares_with_the_naive_and_relay_references(
    istream, settings, registry, tmp_path
):
    run = _bench(
        istream,
        settings,
        tmp_path,
        "e2e",
        "--events",
        600,
        # paced, so that the outputs arrive over several reads: unpaced, the relay answered all 600
        # in one read, and a rate over no time is undefined (nan)
        "--rate",
        1000,
        "--comment-fraction",
        0.1,
        "--compare-naive",
        "--compare-relay",
        "--shadow",
        "--items",
        3000,
        "--registry",
        registry,
    )
    report = json.loads((tmp_path / "report" / "e2e.json").read_text())
    pipeline, naive, relay = report["pipeline"], report["naive"], report["relay"]
    assert pipeline["answered"] == naive["answered"] == relay["answered"] == 600 == report["context"]["events"]
    assert relay["worker_exit_codes"] == [0] and relay["extra_outputs"] == 0
    assert report["share_of_relay"] == pytest.approx(
        pipeline["sustained_events_per_s"] / relay["sustained_events_per_s"]
    )
    assert pipeline["dead_letters"] == 0 and pipeline["worker_exit_codes"] == [0]
    for figures in (pipeline, relay):  # the worker's threads are part of it, the machine holds it (ticks: 10 ms)
        threads = figures["worker_main_thread_cores"] + figures["worker_busiest_other_thread_cores"]
        assert figures["worker_main_thread_cores"] > 0 and threads <= figures["worker_cpu_cores"] + 0.05
        assert figures["worker_cpu_cores"] - 0.05 <= figures["machine_busy_cores"] <= report["context"]["cpu_count"]
    assert 1 <= pipeline["events_per_batch"] <= Settings().worker_batch_size  # from the worker's batch histogram
    assert naive["worker_exit_codes"] == [0]
    assert 40 < report["context"]["comments"] < 80 and report["encoder"]["comments_per_s"] > 0
    assert report["encoder"]["cpu_ms_per_comment"] > 0
    assert set(pipeline["stage_shares"]) >= {"decode", "encode", "step", "rank", "emit", "store"}
    assert sum(pipeline["stage_shares"].values()) == pytest.approx(1.0)
    assert pipeline["stage_seconds"]["encode"] > 0  # the comments went through the encoder
    lat = pipeline["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert report["speedup_vs_naive"] == pytest.approx(
        pipeline["sustained_events_per_s"] / naive["sustained_events_per_s"]
    )
    assert report["cpu_per_event_vs_naive"] == pytest.approx(
        naive["worker_cpu_us_per_event"] / pipeline["worker_cpu_us_per_event"]
    )
    assert {"throughput / encoder ceiling", "speed-up vs naive"} <= set(report["targets"])
    assert (tmp_path / "report" / "e2e.png").stat().st_size > 10_000
    # the same events with a challenger in shadow (the registry given is left as it was)
    shadow = report["shadow"]
    assert shadow["answered"] == 600 and shadow["worker_exit_codes"] == [0] and shadow["dead_letters"] == 0
    assert shadow["stage_seconds"]["challenger"] > 0 and pipeline["stage_seconds"].get("challenger", 0.0) == 0
    assert report["shadow_cpu_per_event_ratio"] == pytest.approx(
        shadow["worker_cpu_us_per_event"] / pipeline["worker_cpu_us_per_event"]
    )
    assert Registry(registry).trial() is None and len(Registry(registry).versions()) == 1
    assert {"worker CPU per event, shadow / none", "online evaluation share of worker stage time"} <= set(
        report["targets"]
    )
    assert "## With a challenger in shadow, same events" in run.stdout
    # the same events on the bundle with its table grown to 3,000 items (below ISTREAM_ANN_MIN_ITEMS: exact)
    items = report["items"]
    assert items["answered"] == 600 and items["worker_exit_codes"] == [0] and items["dead_letters"] == 0
    # stored as a bundle of that size is exported: float32 below 100,000 items
    assert report["catalog"] == report["catalog"] | {"items": 3000, "approximate": False, "item_table_dtype": "float32"}
    source = Registry(registry)
    dim = source.manifest(source.current()).dim
    assert report["catalog"]["item_table_mb"] == pytest.approx(3000 * dim * 4 / 2**20, rel=0.01)
    assert report["catalog"]["worker"] == {"graph": "none (exact search)"}
    assert report["items_throughput_share"] == pytest.approx(
        items["sustained_events_per_s"] / pipeline["sustained_events_per_s"]
    )
    assert "## A synthetic catalog of 3,000 items, same events" in run.stdout
    assert "## Naive reference, same events" in run.stdout and "less worker CPU per event" in run.stdout
    assert "## Relay reference" in run.stdout and "of the relay's events/s" in run.stdout


def test_recovery_restores_every_users_state_from_the_changelog(istream, settings, registry, tmp_path):
    _bench(istream, settings, tmp_path, "recovery", "--users", 400, "--registry", registry)
    report = json.loads((tmp_path / "report" / "recovery.json").read_text())
    assert report["states_written"] == 400
    # every re-sent event was dropped as a duplicate: each user's high-water mark came back
    assert report["resent_events_dropped_as_duplicates"] == 400 and report["resent_events_emitted"] == 0
    assert report["probe_answered"] and report["worker_exit_codes"] == [0, 0]
    assert 0 < report["restore_s"] < report["start_to_ready_s"] < report["start_to_first_recommendation_s"]


def test_swap_under_load_switches_every_later_event_to_the_new_version(istream, settings, registry, tmp_path):
    _bench(istream, settings, tmp_path, "swap", "--rate", 60, "--seconds", 12, "--registry", registry)
    report = json.loads((tmp_path / "report" / "swap.json").read_text())
    before, after = report["versions"]["before"], report["versions"]["after"]
    assert report["answered"] == report["events"] == 720
    assert set(report["served_by"]) == {before, after} and all(report["served_by"].values())
    assert report["latency_ms"]["before"]["events"] > 0 and report["latency_ms"]["after"]["events"] > 0
    assert Registry(registry).current() == before  # the bench leaves the registry serving what it served


def test_hot_functions_reads_py_spy_collapsed_stacks(tmp_path):
    folded = tmp_path / "w.folded"
    folded.write_text(
        "<module> (istream:6);handle (stream_app/worker/engine.py:3);top_k (stream_app/worker/item_index.py:9) 6\n"
        "<module> (istream:6);handle (stream_app/worker/engine.py:3) 2\n"
        "<module> (istream:6);select (selectors.py:1) 2\n"
    )
    hot = hot_functions(folded)
    assert hot["own"][0] == ("stream_app/worker/item_index.py:top_k", 0.6)
    assert dict(hot["own"])["selectors.py:select"] == 0.2
    assert dict(hot["inclusive"]) == {
        "stream_app/worker/engine.py:handle": 0.8,
        "stream_app/worker/item_index.py:top_k": 0.6,
    }


def test_query_answers_every_query_while_events_stream_and_reports_each_step(istream, settings, registry, tmp_path):
    _bench(istream, settings, tmp_path, "query", "--registry", registry, "--rate", 50, "--query-rates", "40,80",
           "--seconds", 2, "--linger-ms", 5, timeout=300)  # fmt: skip
    report = json.loads((tmp_path / "report" / "query.json").read_text())
    assert report["bootstrap"]["states_written"] == report["bootstrap"]["users"] > 0
    assert [s["offered_per_s"] for s in report["steps"]] == [40, 80][: len(report["steps"])]
    for step in report["steps"]:
        assert step["answered"] == step["offered"] > 0 and step["errors"] == {}, step
        assert step["empty_answers"] == step["short_answers"] == 0 and step["cold_start_answers"] > 0
        assert step["load_process_cpu_cores"] > 0 and 0 < step["machine_cpu_busy"] <= 1
    assert report["stream"]["answered"] > 0 and not report["stream"]["notes"]
    assert report["freshness"]["samples"] == 20
    assert set(report["targets"]) >= {
        "bootstrap events/s of state building",
        "queries/s answered with p99 <= 20 ms (k=10) while events stream",
    }
    assert report["options"]["linger_ms"] == 5
    markdown = (tmp_path / "report" / "query.md").read_text()
    assert "## Query steps" in markdown and "(producer linger 5 ms)" in markdown


def test_index_ranks_real_queries_exactly_and_approximately_at_each_size(istream, registry, runtime, tmp_path):
    from tests.stream_app.worker.fixtures import make_events

    events = tmp_path / "events.jsonl"
    history = make_events(runtime.item_ids, n_users=6, per_user=10, seed=3)
    events.write_text("".join(msgspec.json.encode(e).decode() + "\n" for e in history))
    run = istream(
        "bench", "index", "--registry", registry, "--events", events, "--sizes", "real,3000", "--ef-search", "16,64",
        "--users", 6, "--queries", 50, "--out", tmp_path / "report", timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report" / "index.json").read_text())
    assert report["queries"] == 50 and [s["items"] for s in report["sizes"]] == [len(runtime.item_ids), 3000]
    for size in report["sizes"]:
        assert size["exact_us_per_query"] > 0 and 0.5 < size["fp16_table_recall_at_10"] <= 1
        assert [(x["library"], x["ef_search"]) for x in size["approximate"]] == [
            ("faiss", 16),
            ("faiss", 64),
            ("faiss", 128),
        ]
        assert all(
            0 <= x["recall_at_10"] <= x["tied_recall_at_10"] <= 1 and x["memory_mb"] > 0 for x in size["approximate"]
        )
        assert all(x["rewalked_queries"] >= 0 and x["exact_queries"] >= 0 for x in size["approximate"])
    # 20 items: a fetch of 10 plus exclusions times M=32 covers them all, so every query is ranked exactly
    assert all(x["exact_queries"] == 50 for x in report["sizes"][0]["approximate"])
    # the bundle's 20 items: every walk reaches them all; the worker's default ef_search (128) always measured
    assert all(x["recall_at_10"] == 1 for x in report["sizes"][0]["approximate"])
    assert "recall@10 >= 0.98, real catalog (20 items)" in report["targets"]
    assert (tmp_path / "report" / "index.png").stat().st_size > 10_000 and "| 3,000 (synthetic) | exact |" in run.stdout
