"""`istream bench recovery`: how long a worker that lost its local RocksDB takes to restore N users'
states from the changelog, from process start to serving.

A worker applies one event for each of N users and stops; its state directory is deleted; a new
worker process starts on the same consumer group and restores every state from the changelog
topic. Timed: process start -> ``Worker ready`` (Faust's log line once recovery is done), and
start -> the first recommendation for a new event. Then the same N events are sent again: each
is dropped as a duplicate only if its user's state came back, so the duplicates counter proves
the restore was complete.
"""

from __future__ import annotations

import math
import re
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from stream_app.bench.cluster import Workers, broker, fresh_topics, scrape
from stream_app.bench.e2e import tuning_env
from stream_app.bench.load import drive
from stream_app.bench.workload import workload_of
from stream_app.cli.worker_process import READY_LINE
from stream_app.settings import Settings

DUPLICATES = "istream_duplicates_dropped_total"
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def user_events(n: int, tag: str, ts: int) -> list[dict]:
    return [
        {
            "event_id": f"{tag}-{i}",
            "user_id": f"{tag}-user-{i}",
            "item_id": f"item-{i % 997}",
            "type": "click",
            "ts": ts,
        }
        for i in range(n)
    ]


def _settled(read: Callable[[], float], goal: float, quiet_s: float = 3.0) -> float:
    """A counter's value once it reaches ``goal`` or stops moving for ``quiet_s``: duplicates emit
    nothing, so the resend's end says nothing about how many the worker has consumed yet."""
    value, changed = read(), time.monotonic()
    while value < goal and time.monotonic() - changed < quiet_s:
        time.sleep(0.2)
        if (latest := read()) != value:
            value, changed = latest, time.monotonic()
    return value


def _logged_at(log: str, text: str) -> float | None:
    """Epoch seconds of the first log line containing ``text`` (Faust's timestamp, local time)."""
    for line in log.splitlines():
        if text in line and (m := LOG_TIME.match(line)):
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def run_recovery(
    base: Settings, users: int, partitions: int, registry: Path, bootstrap: str | None, work_dir: Path
) -> dict[str, Any]:
    tag = f"rec-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    states = user_events(users, tag, now)
    env = tuning_env()
    with broker(work_dir, bootstrap) as bs:
        settings = fresh_topics(base, bs, work_dir / "recovery", partitions)
        with Workers(settings, registry, 1, env=env) as first:
            filled = drive(settings, workload_of(states, "one click per user"), rate=None, idle_timeout=120)
        shutil.rmtree(settings.run_dir / "worker-0")
        started = time.time()
        with Workers(settings, registry, 1, env=env, log_name="restarted") as second:
            ready = time.time()
            log = second.processes[0].output()
            probe = drive(settings, workload_of(user_events(1, f"{tag}-new", now + 1), "probe"), None, 60)
            answered = time.time()
            resent = drive(settings, workload_of(states, "the same events again"), rate=None, idle_timeout=10)
            duplicates = _settled(lambda: scrape(second.processes[0].web_port).get(DUPLICATES, 0.0), users)
    restore_start, restore_done = _logged_at(log, "Restoring state from changelog"), _logged_at(log, "Restore complete")
    restore_s = restore_done - restore_start if restore_start and restore_done else float("nan")
    return {
        "users": users,
        "partitions": partitions,
        "states_written": filled.answered,
        "start_to_ready_s": ready - started,
        "start_to_first_recommendation_s": answered - started,
        "restore_s": restore_s,
        "restored_states_per_s": users / restore_s if math.isfinite(restore_s) and restore_s > 0 else float("nan"),
        "probe_answered": probe.answered == 1,
        "resent_events_dropped_as_duplicates": duplicates,
        "resent_events_emitted": resent.answered,
        "worker_exit_codes": [p.returncode for p in (*first.processes, *second.processes)],
        "ready_line": READY_LINE,
    }
