"""`istream bench quality`: recommendation quality as the project judges it.

For each data set (an events + items JSONL pair) and each seed, the default model is trained and
evaluated exactly as a user would (`istream train --seed S`, `istream evaluate --json`), and the
measuring instruments of a tools folder (../shared/tools: popularity and last-item transition
baselines, an offline SASRec trained with full cross-entropy) run on the same events file. The
report gives every figure as mean and spread over the seeds, and checks the targets: NDCG@10 above
SASRec's and at least ``ratio`` times the best simple baseline's, HR@10 above both, and in every
history-length bucket with enough users NDCG@10 at least the last-item transition's.

The tools are run as programs and their printed figures parsed; nothing of them is imported.
Each finished run is kept beside its outputs (``run.json``) with what it was run on; ``resume``
reuses a kept run whose inputs are unchanged, so an interrupted bench goes on where it stopped.
The inputs are the files and arguments, not the code: after a model change, run without it.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from export.integrity import sha256_file
from stream_app.cli.common import CommandError, run_istream

BUCKET_MIN_USERS = 50
TARGET_RATIO = 1.25
_BASELINE_LINE = re.compile(r"^\s*(\w+)\s+HR@10=([\d.]+)\s+NDCG@10=([\d.]+)", re.M)
_SASREC_LINE = re.compile(
    r"^RESULT .*SASRec-CE test HR@10=([\d.]+) NDCG@10=([\d.]+) \(val NDCG@10=([\d.]+), best epoch (\d+)/(\d+), "
    r"train (\d+)s\)",
    re.M,
)
BASELINE_NAMES = {"pop": "popularity", "markov": "last-item transition", "blend": "popularity + transition blend"}


@dataclass(frozen=True)
class DataSet:
    name: str
    events: Path
    items: Path


def parse_baselines(stdout: str) -> dict[str, dict[str, float]]:
    """The rows ``baselines.py`` prints (``pop  HR@10=0.0410 NDCG@10=0.0192``)."""
    rows = {
        BASELINE_NAMES.get(name, name): {"hr@10": float(hr), "ndcg@10": float(ndcg)}
        for name, hr, ndcg in _BASELINE_LINE.findall(stdout)
    }
    if not rows:
        raise CommandError(f"baselines.py printed no figures:\n{stdout[-1000:]}")
    return rows


def parse_sasrec(stdout: str) -> dict[str, float]:
    """The RESULT line ``sasrec_ref.py`` prints for its test split."""
    match = _SASREC_LINE.search(stdout)
    if match is None:
        raise CommandError(f"sasrec_ref.py printed no RESULT line:\n{stdout[-1000:]}")
    hr, ndcg, val, best, epochs, seconds = match.groups()
    return {
        "hr@10": float(hr),
        "ndcg@10": float(ndcg),
        "val_ndcg@10": float(val),
        "best_epoch": int(best),
        "epochs": int(epochs),
        "train_seconds": float(seconds),
    }


def run_tool(tools: Path, script: str, *args: object, timeout: float, echo: TextIO) -> str:
    words = [str(tools / script), *(str(a) for a in args)]
    print(f"$ python {' '.join(words)}", file=echo, flush=True)
    try:
        done = subprocess.run([sys.executable, *words], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandError(f"{script} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise CommandError(f"{script} failed:\n{done.stderr.strip()[-3000:]}")
    return done.stdout


def run_model(data: DataSet, seed: int, out: Path, train_args: list[str], echo: TextIO) -> dict[str, Any]:
    """Train and evaluate the default model with ``seed``; the figures `istream evaluate --json` gives,
    the validation NDCG@10 of training and the wall time of `istream train`."""
    files = ["--events", data.events, "--items", data.items]
    started = time.monotonic()
    run_istream("train", *files, "--out", out, "--seed", seed, "--quiet", *train_args, echo=echo)
    train_wall = time.monotonic() - started
    result = json.loads(run_istream("evaluate", "--model", out, *files, "--json", echo=echo))
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return {**result, "val_ndcg@10": history["best_val_ndcg@10"], "train_wall_s": train_wall}


def _inputs(*args: object) -> list:
    """What a run depends on: its arguments, and each input file's content (sha256; not its date: a copy of
    the same tools or data, e.g. a shared folder put in place anew, must not void the runs kept for it)."""
    return [[str(a), sha256_file(a)] if isinstance(a, Path) else str(a) for a in args]


def kept_run(path: Path, inputs: list, resume: bool, run: Callable[[], Any], echo: TextIO) -> Any:
    """``run()``'s result, kept in ``path``; with ``resume`` a result kept for the same inputs is reused."""
    if resume and path.is_file():
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            kept = {}  # unreadable: the run is done again
        if isinstance(kept, dict) and kept.get("inputs") == inputs and "result" in kept:
            print(f"reused {path} (same inputs)", file=echo, flush=True)
            return kept["result"]
    result = run()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")  # renamed into place: an interrupted write leaves no half file
    partial.write_text(json.dumps({"inputs": inputs, "result": result}, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return result


def _mean_spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarise(name: str, runs: list[dict], sasrec: list[dict], baselines: dict[str, dict]) -> dict[str, Any]:
    """Means and spreads over seeds, and the targets' verdicts, for one data set."""
    model = {key: _mean_spread([r[key] for r in runs]) for key in ("hr@10", "ndcg@10", "val_ndcg@10", "train_wall_s")}
    simple = baselines  # popularity, last-item transition (and the tools' blend of both)
    best_simple = max(simple.values(), key=lambda m: m["ndcg@10"])
    sentiment = [r["sentiment"] for r in runs if r.get("sentiment")]
    summary: dict[str, Any] = {
        "data": name,
        "sentiment": {
            key: statistics.fmean(s[key] for s in sentiment) for key in ("negative_cosine", "positive_cosine")
        }
        if sentiment
        else None,
        "seeds": len(runs),
        "model": model,
        "baselines": baselines,
        "best_simple_ndcg@10": best_simple["ndcg@10"],
        "ratio_to_best_simple": model["ndcg@10"]["mean"] / best_simple["ndcg@10"],
        "buckets": _bucket_check([r["buckets"] for r in runs]),
    }
    hr_bar = max(m["hr@10"] for m in simple.values())
    targets = {
        f"NDCG@10 >= {TARGET_RATIO}x best simple baseline": summary["ratio_to_best_simple"] >= TARGET_RATIO,
        "HR@10 above the simple baselines": model["hr@10"]["mean"] > hr_bar,
        f"every bucket with >= {BUCKET_MIN_USERS} users: NDCG@10 >= last-item transition": all(
            b["met"] for b in summary["buckets"] if b["met"] is not None
        ),
    }
    if sasrec:
        summary["sasrec"] = {key: _mean_spread([s[key] for s in sasrec]) for key in ("hr@10", "ndcg@10")}
        targets["NDCG@10 above SASRec"] = model["ndcg@10"]["mean"] > summary["sasrec"]["ndcg@10"]["mean"]
        targets["HR@10 above SASRec"] = model["hr@10"]["mean"] > summary["sasrec"]["hr@10"]["mean"]
    summary["targets"] = targets
    return summary


def _bucket_check(per_seed: list[list[dict]]) -> list[dict]:
    """Per bucket: users, the model's mean NDCG@10 over seeds and the transition baseline's."""
    rows = []
    for parts in zip(*per_seed, strict=True):
        n = parts[0]["n"]
        model = statistics.fmean(p["model"]["ndcg@10"] for p in parts)
        transition = parts[0]["last-item transition"]["ndcg@10"]
        met = model >= transition if n >= BUCKET_MIN_USERS else None
        rows.append({"bucket": parts[0]["bucket"], "n": n, "model": model, "transition": transition, "met": met})
    return rows


def _pm(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _sasrec_lines(runs: list[dict], budget: float) -> list[str]:
    """How each SASRec run ended: a run its time budget stopped before early stopping is undertrained."""
    if not runs:
        return []
    stopped = sum(r["train_seconds"] >= budget for r in runs)
    each = ", ".join(f"best epoch {r['best_epoch']} of {r['epochs']} in {r['train_seconds']:.0f} s" for r in runs)
    verdict = (
        f"**{stopped} of {len(runs)} stopped by the budget** before early stopping (undertrained: a busier "
        "machine or a larger `--sasrec-budget` changes them)"
        if stopped
        else "all ended by early stopping"
    )
    return [f"- SASRec runs (budget {budget:.0f} s): {each}; {verdict}"]


def markdown(summaries: list[dict], context: dict[str, Any]) -> str:
    lines = [
        "# Recommendation quality",
        "",
        "Written by `istream bench quality` "
        f"({context['seeds']} seeds: {', '.join(map(str, context['seed_list']))}; "
        f"model: `istream train` defaults{' ' + ' '.join(context['train_args']) if context['train_args'] else ''}).",
        "Protocol: per user events by time, consecutive repeats collapsed, users with >= 3 items, last item = test",
        "target, full ranking over all items minus the user's history; the model stepped one event at a time as",
        "served. Model and SASRec figures are mean ± standard deviation over the seeds; the baselines are",
        "deterministic. SASRec and the baselines are the instruments of the tools folder, run on the same events.",
    ]
    for s in summaries:
        model = s["model"]
        lines += ["", f"## {s['data']}", "", "| ranker | HR@10 | NDCG@10 |", "|---|---|---|"]
        lines.append(f"| interest model (stepwise) | {_pm(model['hr@10'])} | {_pm(model['ndcg@10'])} |")
        if "sasrec" in s:
            lines.append(f"| SASRec (offline, full CE) | {_pm(s['sasrec']['hr@10'])} | {_pm(s['sasrec']['ndcg@10'])} |")
        lines += [f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} |" for name, m in s["baselines"].items()]
        lines += [
            "",
            f"- NDCG@10 / best simple baseline: **{s['ratio_to_best_simple']:.2f}x**; model NDCG@10 per seed "
            f"{model['ndcg@10']['min']:.4f} .. {model['ndcg@10']['max']:.4f}; validation NDCG@10 "
            f"{_pm(model['val_ndcg@10'])}",
            f"- `istream train` wall time {model['train_wall_s']['mean']:.0f} s mean, "
            f"{model['train_wall_s']['max']:.0f} s max",
            *_sasrec_lines(s.get("sasrec_runs") or [], context["sasrec_budget_s"]),
            *(
                [
                    "- sentiment: mean cosine between the interest after a user's last event and that item, "
                    f"negative last rating {s['sentiment']['negative_cosine']:.4f}, positive "
                    f"{s['sentiment']['positive_cosine']:.4f}"
                ]
                if s["sentiment"]
                else []
            ),
            "",
            "| events before the target | users | model NDCG@10 (mean) | last-item transition | >= ? |",
            "|---|---|---|---|---|",
            *[
                f"| {b['bucket']} | {b['n']} | {b['model']:.4f} | {b['transition']:.4f} | "
                f"{'-' if b['met'] is None else ('yes' if b['met'] else 'NO')} |"
                for b in s["buckets"]
            ],
            "",
            *[f"- {'met' if met else 'NOT met'}: {target}" for target, met in s["targets"].items()],
        ]
    return "\n".join(lines) + "\n"


def _measure(
    data: DataSet,
    seeds: list[int],
    here: Path,
    tools: Path | None,
    sasrec_budget: float,
    train_args: list[str],
    resume: bool,
    echo: TextIO,
) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """One data set's model runs, SASRec runs and baselines (the tools' and the evaluation's own)."""
    runs = [
        kept_run(
            here / f"seed-{seed}" / "run.json",
            _inputs("model", data.events, data.items, seed, *train_args),
            resume,
            lambda seed=seed: run_model(data, seed, here / f"seed-{seed}", train_args, echo),
            echo,
        )
        for seed in seeds
    ]
    baselines, sasrec = runs[0]["baselines"], []
    if tools is None:
        return runs, sasrec, baselines
    args = ("jsonl", data.events)
    baselines = baselines | kept_run(
        here / "baselines.json",
        _inputs(tools / "baselines.py", *args),
        resume,
        lambda: parse_baselines(run_tool(tools, "baselines.py", *args, timeout=600, echo=echo)),
        echo,
    )
    timeout = sasrec_budget * 3 + 600  # its budget bounds training; the refit-free test pass is short
    for seed in seeds:
        sasrec_args = (*args, "--budget", sasrec_budget, "--seed", seed)
        sasrec.append(
            kept_run(
                here / f"sasrec-seed-{seed}.json",
                _inputs(tools / "sasrec_ref.py", *sasrec_args),
                resume,
                lambda a=sasrec_args: parse_sasrec(run_tool(tools, "sasrec_ref.py", *a, timeout=timeout, echo=echo)),
                echo,
            )
        )
    return runs, sasrec, baselines


def run_quality(
    sets: list[DataSet],
    seeds: list[int],
    out: Path,
    *,
    tools: Path | None,
    sasrec_budget: float,
    train_args: list[str],
    resume: bool = False,
    echo: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Every data set x seed; writes quality.json and quality.md under ``out`` and returns the report."""
    summaries = []
    for data in sets:
        runs, sasrec, baselines = _measure(data, seeds, out / data.name, tools, sasrec_budget, train_args, resume, echo)
        summary = summarise(data.name, runs, sasrec, baselines)
        summary["runs"], summary["sasrec_runs"] = runs, sasrec
        summaries.append(summary)
    context = {
        "seeds": len(seeds),
        "seed_list": seeds,
        "train_args": train_args,
        "tools": str(tools),
        "sasrec_budget_s": sasrec_budget,
    }
    report = {"context": context, "data": summaries}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "quality.md").write_text(markdown(summaries, context), encoding="utf-8")
    return report
