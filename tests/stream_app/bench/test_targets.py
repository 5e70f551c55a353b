from stream_app.bench.e2e import targets


def clicks_report(naive_cores: float) -> dict:
    figures = {"sustained_events_per_s": 4_000.0, "worker_cpu_us_per_event": 250.0, "latency_ms": {}}
    return {
        "options": {"comment_fraction": 0.0, "rate": None},
        "pipeline": figures,
        "naive": {**figures, "sustained_events_per_s": 250.0, "worker_cpu_us_per_event": 1_500.0,
                  "worker_cpu_cores": naive_cores},
    }  # fmt: skip


def test_the_speed_up_is_judged_against_a_busy_naive_worker():
    speedup = targets(clicks_report(naive_cores=0.86))["speed-up vs naive"]
    assert speedup["figure"] == 16.0
    assert speedup["met"] is True


def test_a_stalled_naive_worker_leaves_the_speed_up_unjudged_and_says_why():
    report = clicks_report(naive_cores=0.43)
    speedup = targets(report)["speed-up vs naive"]
    assert speedup["figure"] == 16.0
    assert speedup["met"] is None
    assert "busy only 0.43 cores" in speedup["note"] and "6.0x" in speedup["note"]


def test_the_relay_reference_gives_the_share_of_its_ceiling_and_is_named_beside_the_throughput_target():
    report = clicks_report(naive_cores=0.86)
    report["relay"] = {"sustained_events_per_s": 10_000.0}
    clicks = targets(report)["clicks-only throughput (events/s)"]
    assert report["share_of_relay"] == 0.4
    assert clicks["met"] is False and "10,000 events/s" in clicks["note"]
    share = targets(report)["events/s / the relay's"]
    assert share["figure"] == 0.4 and share["met"] is True


def test_the_latency_tail_is_judged_alone_and_against_the_relay_at_the_same_rate():
    report = clicks_report(naive_cores=0.86)
    report["options"]["rate"] = 1000.0
    report["pipeline"]["latency_ms"] = {"p99": 150.0}
    report["relay"] = {"sustained_events_per_s": 1_000.0, "latency_ms": {"p99": 80.0}}
    judged = targets(report)
    assert judged["p99 at 1000 events/s offered (ms)"]["met"] is False  # over 100 ms
    assert judged["p99 / the relay's p99"]["figure"] == 1.875 and judged["p99 / the relay's p99"]["met"] is True
