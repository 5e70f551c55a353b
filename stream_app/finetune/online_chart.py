"""`istream report online`: live HR@K per model version over time, from the workers' online-metrics records.

Each line is one model version and exposure (served: the lists users were shown; shadow: ranked beside
them); each point sums every worker's windows that ended in one time bucket, so the figure is exact for
the bucket. The guard's decisions, when a registry is given, are marked where they were taken.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from stream_app.contracts import OnlineMetrics


def hit_rate_series(
    records: Sequence[OnlineMetrics], bucket_s: float
) -> dict[tuple[str, str], list[tuple[datetime, float, int]]]:
    """(version, exposure) -> [(bucket start, HR@K, judged)] over the buckets with judged lists."""
    bucket_ms = max(int(bucket_s * 1000), 1)
    sums: dict[tuple[str, str], dict[int, list[int]]] = {}
    for r in records:
        slot = r.window_end // bucket_ms
        for c in r.judged:
            row = sums.setdefault((c.model_version, c.exposure), {}).setdefault(slot, [0, 0])
            row[0] += c.judged
            row[1] += c.hits
    return {
        key: [
            (datetime.fromtimestamp(slot * bucket_ms / 1000, UTC), hits / judged, judged)
            for slot, (judged, hits) in sorted(slots.items())
            if judged
        ]
        for key, slots in sorted(sums.items())
    }


def plot_online(records: Sequence[OnlineMetrics], out: Path, bucket_s: float, decisions: Sequence = ()) -> Path:
    """Write the chart to ``out`` (PNG); ``decisions``: the guard's records (``GuardRecord``) to mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = hit_rate_series(records, bucket_s)
    k = records[0].k if records else 10
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for (version, exposure), points in series.items():
        times, rates, _ = zip(*points, strict=True)
        ax.plot(times, rates, "o-" if exposure == "served" else "s--", ms=3, label=f"{version} ({exposure})")
    for d in decisions:
        at = datetime.fromisoformat(d.at)
        ax.axvline(at, color="grey", lw=0.8, ls=":")
        ax.annotate(f"{d.action} {d.version}", (at, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7)  # fmt: skip
    ax.set_ylabel(f"live HR@{k} (next event's item in the list)")
    ax.set_xlabel(f"time (UTC), buckets of {bucket_s:g} s")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no judged lists yet", transform=ax.transAxes, ha="center")
    fig.autofmt_xdate()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out
