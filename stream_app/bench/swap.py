"""`istream bench swap`: latency before, during and after a hot-swap under steady load.

A second version of the serving model is exported from the CURRENT bundle's own checkpoint (same
weights, new version: every user's state must be rebuilt from its window, the full cost of a
swap), published, and promoted a third of the way through a steady stream. Each event's
recommendation carries the model version that answered it, which places the swap: "during"
holds the events sent from the promote until 5 s after the first answer of the new version.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.bench.bundle import BenchSetupError, setup_istream
from stream_app.bench.cluster import Workers, broker, fresh_topics
from stream_app.bench.e2e import latency_summary, tuning_env
from stream_app.bench.load import drive
from stream_app.bench.workload import build_workload
from stream_app.settings import Settings

SETTLE_S = 5.0


def second_version(registry: Path, work_dir: Path) -> tuple[str, str]:
    """(CURRENT, a new version of the same model published beside it)."""
    from export.registry import Registry

    reg = Registry(registry)
    current = reg.current()
    out = work_dir / f"swap-bundle-{uuid.uuid4().hex[:6]}"
    checkpoint = reg.bundle_path(current) / "checkpoint"
    if not checkpoint.is_dir():
        raise BenchSetupError(f"bundle {current} carries no torch checkpoint to export a second version from")
    try:
        setup_istream("export", "--model", checkpoint, "--out", out, "--int8", "--parent", current)
        version = reg.publish(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return current, version


def run_swap(
    base: Settings,
    rate: float,
    seconds: float,
    partitions: int,
    registry: Path,
    bootstrap: str | None,
    work_dir: Path,
    data_dir: Path,
) -> dict[str, Any]:
    from export.registry import Registry

    old, new = second_version(registry, work_dir)
    workload = build_workload(int(rate * seconds), 0.0, 0, f"swap-{uuid.uuid4().hex[:6]}", data_dir)
    promoted_at: list[float] = []

    def promote() -> None:
        promoted_at.append(time.time())
        Registry(registry).promote(new)

    try:
        with broker(work_dir, bootstrap) as bs:
            settings = fresh_topics(base, bs, work_dir / "swap", partitions)
            with Workers(settings, registry, 1, env=tuning_env()) as workers:
                timer = threading.Timer(seconds / 3, promote)
                timer.start()
                timings = drive(settings, workload, rate, idle_timeout=60)
                timer.join()
            exit_codes = [p.returncode for p in workers.processes]
    finally:
        Registry(registry).promote(old)  # leave the registry serving what it served
    sent, lat = timings.sent_at, (timings.arrived_at - timings.sent_at) * 1000.0
    versions = np.array(timings.versions)
    on_new = timings.arrived_at[versions == new]
    swapped_at = float(on_new.min()) if len(on_new) else float("nan")
    t_promote = promoted_at[0]
    phases = {
        "before": sent < t_promote,
        "during": (sent >= t_promote) & (sent < swapped_at + SETTLE_S),
        "after": sent >= swapped_at + SETTLE_S,
    }
    by_phase = {
        name: latency_summary(lat[mask & np.isfinite(lat)]) | {"events": int(mask.sum())}
        for name, mask in phases.items()
    }
    before_p99 = by_phase["before"].get("p99", float("nan"))
    return {
        "rate": rate,
        "seconds": seconds,
        "versions": {"before": old, "after": new},
        "promote_to_first_new_answer_s": swapped_at - t_promote,
        "answered": timings.answered,
        "events": len(workload),
        "served_by": {v or "none": int((versions == v).sum()) for v in sorted(set(timings.versions))},
        "latency_ms": by_phase,
        "p99_during_over_before": by_phase["during"].get("p99", float("nan")) / before_p99,
        "worker_exit_codes": exit_codes,
        "notes": timings.notes,
    }
