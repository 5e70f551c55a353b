"""Replay a data set in time order through the continual-learning loop: static vs continually updated.

    python -m models.continual.replay --events E.jsonl --items I.jsonl --out DIR

1. Train a model on the first ``--initial`` share of the time span (``istream train``'s code).
2. Cut the rest into ``--windows`` successive windows of equal event count.
3. For each window: judge the static model and the continually updated one on it (every user whose
   last item falls in the window, stepped through their newest ``--history`` events before it, with
   ``istream evaluate``'s code);
   then run the fine-tune job's round on the window (fine-tune on its older part plus the replay
   sample, gate on its newest slice) and keep the challenger when the gate accepts it; offer the
   window to the replay sample. The first window only updates (nothing was fine-tuned before it).
4. Write ``replay.json``, ``replay.md`` (table) and ``replay.png`` (NDCG@10 per window) to ``--out``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

from models.continual.challenge import holdout_metrics, replay_budget, run_round
from models.continual.finetune import FinetuneConfig, TextContext
from models.continual.reservoir import ReplayReservoir
from models.continual.window import split_window
from models.datasets.jsonl import read_items, read_jsonl, write_jsonl
from models.train import TrainConfig, train_files


@dataclass
class ReplayConfig:
    initial: float = 0.6  # share of the time span the static model trains on
    windows: int = 6
    holdout: float = 0.2
    margin: float = 0.0
    replay_fraction: float = 0.3
    min_judged_users: int = 10
    initial_epochs: int = 30
    history: int = 200  # events of each judged user's history the models step through (newest)
    dim: int | None = None  # model width (dim = long_dim, hidden = 2 * dim); None: the model's default
    seed: int = 0
    threads: int = 1
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def time_windows(events: list[dict], initial: float, windows: int) -> tuple[list[dict], list[list[dict]]]:
    """Events of the first ``initial`` share of the time span, and the rest in equal-count windows."""
    ordered = sorted(events, key=lambda e: (e["ts"], e["user_id"]))
    first, last = ordered[0]["ts"], ordered[-1]["ts"]
    cut = first + initial * (last - first)
    start = next(i for i, e in enumerate(ordered) if e["ts"] >= cut)
    rest = ordered[start:]
    bounds = np.linspace(0, len(rest), windows + 1).astype(int)
    return ordered[:start], [rest[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def newest_per_user(events: list[dict], keep: int) -> list[dict]:
    """Each user's newest ``keep`` events (time order kept): bounds the stepping cost of very long
    histories, as the worker bounds the events it rebuilds a user's state from."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    kept = {id(e) for user_events in by_user.values() for e in user_events[-keep:]}
    return [e for e in events if id(e) in kept]


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


def replay(events_path: Path, items_path: Path, out: Path, cfg: ReplayConfig, cache: Path) -> list[dict]:
    """Run the replay; returns one row per judged window."""
    out.mkdir(parents=True, exist_ok=True)
    events = list(read_jsonl(events_path))
    catalog = read_items(items_path)
    initial, windows = time_windows(events, cfg.initial, cfg.windows)
    write_jsonl(out / "initial.jsonl", initial)
    started = time.perf_counter()
    static = out / "static"
    width = {"dim": cfg.dim, "hidden": 2 * cfg.dim, "long_dim": cfg.dim} if cfg.dim else None
    train_cfg = TrainConfig(epochs=cfg.initial_epochs, seed=cfg.seed, threads=cfg.threads)
    train_files(out / "initial.jsonl", items_path, static, cfg=train_cfg, cache_dir=cache, model_overrides=width,
                progress=False)  # fmt: skip
    initial_s = time.perf_counter() - started
    click.echo(f"static model: {len(initial)} events up to {_day(initial[-1]['ts'])}, trained in {initial_s:.0f}s")

    from models.checkpoint import load_checkpoint

    text = TextContext.for_config(load_checkpoint(static).config, cache)
    reservoir = ReplayReservoir(out / "replay-sample.json", seed=cfg.seed)
    reservoir.offer(initial)
    current, seen, rows = static, list(initial), []
    for k, window in enumerate(windows, start=1):
        seen.extend(window)
        row: dict = {"window": k, "from": _day(window[0]["ts"]), "to": _day(window[-1]["ts"]), "events": len(window)}
        if k > 1:
            judged = split_window(seen, holdout=len(window) / len(seen), min_train_events=0, min_judged_users=1)
            write_jsonl(out / "judged.jsonl", newest_per_user(judged.holdout, cfg.history + 1))
            row["users"] = judged.judged_users
            row["static"] = holdout_metrics(static, out / "judged.jsonl", items_path, text)
            row["continual"] = holdout_metrics(current, out / "judged.jsonl", items_path, text)
        split = split_window(window, cfg.holdout, min_train_events=100, min_judged_users=cfg.min_judged_users)
        if split.skip_reason is not None:
            row["update"] = f"skipped: {split.skip_reason}"
        else:
            rng = np.random.default_rng([cfg.seed, k])
            sample = reservoir.sample(replay_budget(len(split.train), cfg.replay_fraction), rng)
            t0 = time.perf_counter()
            result = run_round(current, split, catalog, sample, cfg.finetune, cfg.margin, text, out / f"round-{k}")
            row["update"] = ("published: " if result.publish else "rejected: ") + result.reason
            row["update_s"] = round(time.perf_counter() - t0, 1)
            if result.publish:
                current = out / f"model-{k}"
                shutil.rmtree(current, ignore_errors=True)
                shutil.move(result.challenger_dir, current)
        reservoir.offer(window)
        rows.append(row)
        click.echo(_line(row))
    return rows


def _line(row: dict) -> str:
    judged = ""
    if "static" in row:
        judged = (f" users {row['users']}: static NDCG@10 {row['static']['ndcg@10']:.4f}, "
                  f"continual {row['continual']['ndcg@10']:.4f};")  # fmt: skip
    return f"window {row['window']} {row['from']}..{row['to']} ({row['events']} events):{judged} {row['update']}"


def write_report(rows: list[dict], out: Path, cfg: ReplayConfig, title: str) -> None:
    judged = [r for r in rows if "static" in r]
    wins = sum(r["continual"]["ndcg@10"] > r["static"]["ndcg@10"] for r in judged)
    (out / "replay.json").write_text(json.dumps({"config": asdict(cfg), "windows": rows}, indent=2) + "\n")
    lines = [
        f"# Continual learning replay: {title}",
        "",
        f"Static model trained on the first {cfg.initial:.0%} of the time span; the continual one fine-tuned "
        f"on each window in turn (gate margin {cfg.margin:g}, replay fraction {cfg.replay_fraction:g}). "
        "NDCG@10 / HR@10 on each window with `istream evaluate`'s code: each user whose last item falls "
        f"in the window, stepped through their newest {cfg.history} events before it.",
        "",
        "| window | dates | events | users | static NDCG@10 | continual NDCG@10 | static HR@10 | continual HR@10 |"
        " update after the window |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "static" in r:
            s, c = r["static"], r["continual"]
            cells = f"{r['users']} | {s['ndcg@10']:.4f} | {c['ndcg@10']:.4f} | {s['hr@10']:.4f} | {c['hr@10']:.4f}"
        else:
            cells = "- | - | - | - | -"
        lines.append(f"| {r['window']} | {r['from']}..{r['to']} | {r['events']} | {cells} | {r['update']} |")
    users = sum(r["users"] for r in judged)
    pooled = {m: sum(r[m]["ndcg@10"] * r["users"] for r in judged) / max(users, 1) for m in ("static", "continual")}
    lines += [
        "",
        f"The continually updated model wins on {wins} of {len(judged)} judged windows; over all "
        f"{users} judged users NDCG@10 is {pooled['continual']:.4f} (continual) vs {pooled['static']:.4f} (static).",
    ]
    (out / "replay.md").write_text("\n".join(lines) + "\n")
    if judged:
        _plot(judged, out / "replay.png", title)


def _plot(judged: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["window"] for r in judged]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, [r["static"]["ndcg@10"] for r in judged], "o-", label="static (trained once)")
    ax.plot(x, [r["continual"]["ndcg@10"] for r in judged], "s-", label="continually fine-tuned")
    ax.set_xticks(x, [f"{r['window']}\n{r['from'][:7]}" for r in judged], fontsize=8)
    ax.set_xlabel("window (start month)")
    ax.set_ylabel("NDCG@10 on the window")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--events", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--items", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--title", default="replay", show_default=True)
@click.option("--windows", type=click.IntRange(min=2), default=6, show_default=True)
@click.option("--initial", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.6, show_default=True)
@click.option("--initial-epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True, help="Fine-tuning epochs.")
@click.option("--lr", type=float, default=5e-3, show_default=True, help="Fine-tuning learning rate.")
@click.option("--margin", type=float, default=0.0, show_default=True)
@click.option("--replay-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.3, show_default=True)
@click.option("--dim", type=click.IntRange(min=4), help="Model width (default: the model's default config).")
@click.option(
    "--history",
    type=click.IntRange(min=2),
    default=200,
    show_default=True,
    help="Newest events of a judged user's history the models step through.",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/cache/embeddings"),
    show_default=True,
    help="Embedding cache (shared with istream train/evaluate).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of training, fine-tuning and replay sampling."
)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
def main(events: Path, items: Path, out: Path, title: str, windows: int, initial: float, initial_epochs: int,
         epochs: int, lr: float, margin: float, replay_fraction: float, dim: int | None, history: int, cache: Path,
         seed: int, threads: int) -> None:  # fmt: skip
    """Replay EVENTS in time order: static model vs the continually fine-tuned one, per window."""
    import torch

    torch.set_num_threads(threads)
    cfg = ReplayConfig(initial=initial, windows=windows, margin=margin, replay_fraction=replay_fraction,
                       initial_epochs=initial_epochs, dim=dim, history=history, seed=seed, threads=threads,
                       finetune=FinetuneConfig(epochs=epochs, lr=lr, seed=seed, threads=threads))  # fmt: skip
    started = time.perf_counter()
    rows = replay(events, items, out, cfg, cache)
    write_report(rows, out, cfg, title)
    click.echo(f"done in {time.perf_counter() - started:.0f}s; report {out / 'replay.md'}")


if __name__ == "__main__":
    main()
