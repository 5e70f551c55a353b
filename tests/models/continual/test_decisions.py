"""Decision records: one atomic JSON per run, read back in time order, charted."""

from __future__ import annotations

from datetime import UTC, datetime

from models.continual.decisions import (
    CHART,
    Decision,
    decisions_dir,
    new_run_id,
    plot_decisions,
    read_decisions,
    write_decision,
)


def decision(n: int, outcome: str, champion: float | None = None, challenger: float | None = None) -> Decision:
    metrics = {}
    if champion is not None:
        metrics = {"champion": {"hr@10": 0.2, "ndcg@10": champion}, "challenger": {"hr@10": 0.3, "ndcg@10": challenger}}
    return Decision(
        run_id=new_run_id(datetime(2026, 1, 1, 0, n, tzinfo=UTC)), started_at="2026-01-01T00:00:00+00:00",
        decision=outcome, reason="why", champion="v1", challenger="v2" if outcome == "published" else None,
        metrics=metrics, window={"events": 100 * n, "users": n}, timing={"train_s": 1.5, "total_s": 3.0},
    )  # fmt: skip


def test_records_round_trip_in_time_order_and_chart_only_judged_runs(tmp_path) -> None:
    runs = [decision(3, "published", 0.1, 0.2), decision(1, "skipped"), decision(2, "rejected", 0.2, 0.1)]
    for d in runs:
        write_decision(tmp_path, d)
    (decisions_dir(tmp_path) / "junk.json").write_text("{")  # an unreadable record is skipped
    assert read_decisions(tmp_path) == [runs[1], runs[2], runs[0]]
    assert not list(decisions_dir(tmp_path).glob(".*"))  # no temp files left
    chart = plot_decisions(tmp_path)
    assert chart == decisions_dir(tmp_path) / CHART and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_chart_without_a_judged_run(tmp_path) -> None:
    write_decision(tmp_path, decision(1, "skipped"))
    assert plot_decisions(tmp_path) is None and not (decisions_dir(tmp_path) / CHART).exists()


def test_summary_names_decision_metrics_window_and_time() -> None:
    line = decision(2, "rejected", 0.25, 0.125).summary()
    assert "REJECTED (why)" in line and "champion NDCG@10 0.2500" in line and "challenger NDCG@10 0.1250" in line
    assert "window 200 events / 2 users" in line and "training 1.5s" in line
