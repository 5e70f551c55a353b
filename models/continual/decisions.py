"""Decision records of the fine-tune job and the chart of metrics over successive runs.

Every run leaves one JSON record in ``<registry>/decisions/<run_id>.json`` (written atomically),
whatever it decided: ``published``, ``rejected`` or ``skipped`` (with the reason). ``run_id`` starts
with the UTC start time, so records sort by time. ``metrics.png`` beside them plots the champion's
and the challenger's NDCG@10 on each run's held-out slice, marking what was published.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from models.checkpoint import write_json

DECISIONS = "decisions"
CHART = "metrics.png"
CHART_RUNS = 60  # runs shown; the records keep them all
Outcome = Literal["published", "rejected", "skipped"]


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


@dataclass
class Decision:
    run_id: str
    started_at: str  # ISO 8601, UTC
    decision: Outcome
    reason: str
    champion: str | None  # serving version the run started from
    challenger: str | None = None  # version published (None unless published)
    margin: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # "champion"/"challenger" -> hr@10, ndcg@10
    window: dict[str, Any] = field(default_factory=dict)  # sizes: read, split, replay, new items
    timing: dict[str, float] = field(default_factory=dict)  # seconds per stage and in total
    announced: bool | None = None  # model-update message sent (published runs)
    trial: str | None = None  # published on trial (shadow or canary) beside the champion, not promoted

    def summary(self) -> str:
        """One line for logs and the console."""
        on_trial = f" on trial ({self.trial}; `istream guard` decides)" if self.trial else ""
        parts = [f"run {self.run_id}: {self.decision.upper()}{on_trial} ({self.reason})"]
        if self.metrics:
            parts.append(
                " vs ".join(
                    f"{who} NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hr@10']:.4f}" for who, m in self.metrics.items()
                )
            )
        parts.append(f"window {self.window.get('events', 0)} events / {self.window.get('users', 0)} users")
        if "train_s" in self.timing:
            parts.append(f"training {self.timing['train_s']:.1f}s")
        parts.append(f"total {self.timing.get('total_s', 0.0):.1f}s")
        return "; ".join(parts)


def decisions_dir(registry: str | os.PathLike) -> Path:
    return Path(registry) / DECISIONS


def write_decision(registry: str | os.PathLike, decision: Decision) -> Path:
    path = decisions_dir(registry) / f"{decision.run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, asdict(decision))
    return path


def read_decisions(registry: str | os.PathLike) -> list[Decision]:
    """Every record, oldest first; unreadable files are skipped (a record is advisory, never state)."""
    found = []
    for path in sorted(decisions_dir(registry).glob("*.json")):
        try:
            found.append(Decision(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return found


def plot_decisions(registry: str | os.PathLike) -> Path | None:
    """``metrics.png``: NDCG@10 of champion and challenger per judged run (the latest ``CHART_RUNS``);
    None when no run was judged."""
    judged = [d for d in read_decisions(registry) if d.metrics][-CHART_RUNS:]
    if not judged:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = range(1, len(judged) + 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(judged) + 3), 4))
    ax.plot(runs, [d.metrics["champion"]["ndcg@10"] for d in judged], "o-", label="champion (serving)")
    ax.plot(runs, [d.metrics["challenger"]["ndcg@10"] for d in judged], "s--", label="challenger")
    published = [(r, d.metrics["challenger"]["ndcg@10"]) for r, d in zip(runs, judged, strict=True)
                 if d.decision == "published"]  # fmt: skip
    if published:
        ax.scatter(*zip(*published, strict=True), s=160, facecolors="none", edgecolors="green", label="published")
    ax.set_xlabel("fine-tune run")
    ax.set_ylabel("NDCG@10 on the held-out newest slice")
    ax.set_xticks(list(runs))
    ax.set_xticklabels([d.run_id[4:13] for d in judged], rotation=45, ha="right", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = decisions_dir(registry) / CHART
    tmp = path.with_name(f".{CHART}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
