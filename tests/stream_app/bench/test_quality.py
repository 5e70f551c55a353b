"""`istream bench quality`: the default model over seeds beside the tools' instruments, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.datasets import generate, write_jsonl
from stream_app.bench.quality import _inputs, _sasrec_lines, kept_run, parse_baselines, parse_sasrec
from stream_app.cli.common import istream_argv

TOOLS = Path(__file__).resolve().parents[3].parent / "shared" / "tools"

BASELINES_OUTPUT = """jsonl: users=1429 items=900
  pop     HR@10=0.0777 NDCG@10=0.0438
  markov  HR@10=0.1106 NDCG@10=0.0652
  blend   HR@10=0.1113 NDCG@10=0.0653
"""
SASREC_OUTPUT = (
    "jsonl ep   1 loss 6.7990 val HR@10 0.0665 NDCG@10 0.0329 best 0.0329@1 t=12s\n"
    "RESULT jsonl users=1429 items=900 SASRec-CE test HR@10=0.0679 NDCG@10=0.0355 (val NDCG@10=0.0329, "
    "best epoch 1/1, train 12s)\n"
)


def test_the_instruments_printed_figures_are_read() -> None:
    assert parse_baselines(BASELINES_OUTPUT) == {
        "popularity": {"hr@10": 0.0777, "ndcg@10": 0.0438},
        "last-item transition": {"hr@10": 0.1106, "ndcg@10": 0.0652},
        "popularity + transition blend": {"hr@10": 0.1113, "ndcg@10": 0.0653},
    }
    assert parse_sasrec(SASREC_OUTPUT) == {
        "hr@10": 0.0679, "ndcg@10": 0.0355, "val_ndcg@10": 0.0329, "best_epoch": 1, "epochs": 1, "train_seconds": 12.0,
    }  # fmt: skip


def test_a_sasrec_run_its_budget_stopped_is_called_undertrained() -> None:
    early = {"best_epoch": 20, "epochs": 30, "train_seconds": 400.0}
    capped = {"best_epoch": 9, "epochs": 9, "train_seconds": 541.0}
    (line,) = _sasrec_lines([early, capped], 540.0)
    assert "best epoch 20 of 30 in 400 s, best epoch 9 of 9 in 541 s" in line
    assert "1 of 2 stopped by the budget" in line
    assert _sasrec_lines([early], 540.0)[0].endswith("all ended by early stopping")
    assert _sasrec_lines([], 540.0) == []


def test_a_kept_run_that_cannot_be_read_is_run_again(tmp_path: Path) -> None:
    kept = tmp_path / "run.json"
    kept.write_text('{"inputs": ["a"], "res')  # cut short
    assert kept_run(kept, ["a"], True, lambda: {"ndcg@10": 0.1}, echo=sys.stdout) == {"ndcg@10": 0.1}
    assert kept_run(kept, ["a"], True, lambda: pytest.fail("ran again"), echo=sys.stdout) == {"ndcg@10": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_run_is_kept_for_its_files_content_not_their_dates(tmp_path: Path) -> None:
    tool = tmp_path / "tool.py"
    tool.write_text("print(1)\n")
    kept = tmp_path / "kept.json"
    kept_run(kept, _inputs(tool, "--seed", "0"), True, lambda: {"ndcg@10": 0.1}, echo=sys.stdout)
    os.utime(tool, (1, 1))  # the same tool put in place anew
    assert kept_run(kept, _inputs(tool, "--seed", "0"), True, lambda: pytest.fail("ran again"), echo=sys.stdout)
    tool.write_text("print(2)\n")  # a changed tool runs again
    assert kept_run(kept, _inputs(tool, "--seed", "0"), True, lambda: {"ndcg@10": 0.2}, echo=sys.stdout) == {
        "ndcg@10": 0.2
    }


def test_two_seeds_beside_the_tools_and_a_resumed_bench_reuses_them(tmp_path: Path) -> None:
    events, items, _ = generate(users=60, items=80, events=1500, seed=2)
    write_jsonl(tmp_path / "e.jsonl", events)
    write_jsonl(tmp_path / "i.jsonl", items)
    tools = ["--tools", str(TOOLS), "--sasrec-budget", "2"] if TOOLS.is_dir() else []
    train = ["--train-arg=--epochs", "--train-arg=1", "--train-arg=--members", "--train-arg=1"]

    def bench(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*istream_argv(), "bench", "quality", "--data", f"tiny={tmp_path / 'e.jsonl'},{tmp_path / 'i.jsonl'}",
             *tools, *train, "--out", str(tmp_path / "out"), *extra],
            capture_output=True, text=True, timeout=600, env={**os.environ, "ISTREAM_RUN_DIR": str(tmp_path / "run")},
        )  # fmt: skip

    done = bench("--seeds", "3,4")
    assert done.returncode == 0, done.stderr
    first = (tmp_path / "out" / "quality.json").read_text()
    resumed = bench("--seeds", "3,4,5", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    # seeds 3 and 4 (model, and SASRec with the tools) and the tools' baselines are reused; seed 5 runs
    assert resumed.stdout.count("reused ") == (5 if tools else 2)
    resumed_runs = json.loads((tmp_path / "out" / "quality.json").read_text())["data"][0]["runs"]
    assert resumed_runs[:2] == json.loads(first)["data"][0]["runs"] and len(resumed_runs) == 3
    assert "train --events" in resumed.stdout and "--seed 5" in resumed.stdout
    assert "--seed 3" not in resumed.stdout
    report = json.loads(first)
    (summary,) = report["data"]
    runs = summary["runs"]
    assert [r["users"] for r in runs] == [60, 60] and summary["seeds"] == 2
    ndcg = [r["ndcg@10"] for r in runs]
    assert summary["model"]["ndcg@10"]["mean"] == pytest.approx(sum(ndcg) / 2)
    assert summary["model"]["ndcg@10"]["min"] == min(ndcg)
    best = max(m["ndcg@10"] for m in summary["baselines"].values())
    assert summary["ratio_to_best_simple"] == pytest.approx(summary["model"]["ndcg@10"]["mean"] / best)
    text = (tmp_path / "out" / "quality.md").read_text()
    assert "## tiny" in text and "| interest model (stepwise) |" in text and text in resumed.stdout
    assert sum(b["n"] for b in summary["buckets"]) == 60
    if TOOLS.is_dir():
        assert len(summary["sasrec_runs"]) == 2 and "| SASRec (offline, full CE) |" in text
        assert "popularity + transition blend" in summary["baselines"]
