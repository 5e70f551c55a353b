"""What a benchmark runs against: a broker (the embedded Tansu one, or any given Kafka), a fresh
topic prefix, worker processes with their metrics endpoints, and a sampler of their CPU and memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from stream_app import topics
from stream_app.admin import create_topics
from stream_app.broker import free_port, start_broker
from stream_app.cli.worker_process import READY_LINE, WorkerProcess
from stream_app.settings import Settings


@contextlib.contextmanager
def broker(run_dir: Path, bootstrap: str | None, host: str = "127.0.0.1") -> Iterator[str]:
    """``bootstrap`` when given, else an embedded Tansu broker for the length of the block."""
    if bootstrap is not None:
        yield bootstrap
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "broker.log", "wb") as log, start_broker(host, free_port(host), log=log) as local:
        yield local.bootstrap


def fresh_topics(base: Settings, bootstrap: str, run_dir: Path, partitions: int) -> Settings:
    """Settings on a new topic prefix of ``bootstrap``, its topics created; state and logs in ``run_dir/<prefix>``."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "partitions": partitions,
            "run_dir": run_dir / prefix,
        }
    )
    settings.run_dir.mkdir(parents=True)
    create_topics(settings)
    return settings


def topic(settings: Settings, kind: str) -> str:
    return topics.topic_name(settings.topic_prefix, kind)


def scrape(port: int) -> dict[str, float]:
    """Every sample of a worker's /metrics as ``name{label=value,...}`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def metric_delta(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if k.startswith(prefix)}


@dataclass
class Workers:
    """``count`` worker processes of one consumer group, each with its own state dir and metrics port."""

    settings: Settings
    registry: Path
    count: int
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None
    log_name: str = "worker"  # logs are <run dir>/<log_name>-<i>.log; state dirs <run dir>/worker-<i>
    processes: list[WorkerProcess] = field(default_factory=list)

    def start(self, ready_timeout: float = 180.0) -> Workers:
        for i in range(self.count):
            run_dir = self.settings.run_dir
            self.processes.append(
                WorkerProcess(
                    self.settings,
                    self.registry,
                    run_dir / f"worker-{i}",
                    run_dir / f"{self.log_name}-{i}.log",
                    web_port=free_port(),
                    env=self.env,
                    argv=self.argv,
                )
            )
        for p in self.processes:
            p.wait_for(READY_LINE, ready_timeout)
        return self

    def scrape(self) -> list[dict[str, float]]:
        return [scrape(p.web_port) for p in self.processes]

    def stop(self) -> list[int]:
        return [p.stop(60) for p in self.processes]

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, every core and process."""
    times = psutil.cpu_times()
    # guest time is counted in user time too; iowait and guest are Linux-only fields
    waiting = sum(getattr(times, name, 0.0) for name in ("idle", "iowait", "guest", "guest_nice"))
    return sum(times) - waiting


class ProcessSampler:
    """CPU seconds (all, and in the kernel) and peak RSS of some processes (and their children),
    RSS sampled every ``every`` s; and the CPU seconds of their main threads and of the busiest of their
    other threads, summed over the processes (a worker's event loop and its batch thread: which of the
    two is saturated, and how far one process gets past one core)."""

    def __init__(self, pids: list[int], every: float = 0.1) -> None:
        self._procs = [psutil.Process(pid) for pid in pids]
        self._every = every
        self._stop = threading.Event()
        self.peak_rss = 0
        self._cpu0, self._system0 = self._cpu()
        self._threads0 = self._thread_cpu()
        self._machine0 = _busy_seconds()
        self._t0 = time.monotonic()
        self.cpu_seconds = 0.0
        self.system_seconds = 0.0
        self.wall_seconds = 0.0
        self.main_thread_seconds = 0.0
        self.busiest_other_thread_seconds = 0.0
        self.machine_busy_seconds = 0.0  # every process of the machine: the broker and the load too
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> tuple[float, float]:
        """(user + system, system) CPU seconds so far."""
        user = system = 0.0
        for p in self._procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                user += t.user + t.children_user
                system += t.system + t.children_system
        return user + system, system

    def _thread_cpu(self) -> dict[tuple[int, int], float]:
        """CPU seconds so far of each (pid, thread id)."""
        seconds = {}
        for p in self._procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                for t in p.threads():
                    seconds[(p.pid, t.id)] = t.user_time + t.system_time
        return seconds

    def _sample_rss(self) -> None:
        rss = 0
        for p in self._procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample_rss()

    def __enter__(self) -> ProcessSampler:
        self._sample_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        cpu, system = self._cpu()
        self.cpu_seconds, self.system_seconds = cpu - self._cpu0, system - self._system0
        self.wall_seconds = time.monotonic() - self._t0
        busiest: dict[int, float] = {}
        for (pid, tid), seconds in self._thread_cpu().items():
            used = seconds - self._threads0.get((pid, tid), 0.0)
            if tid == pid:
                self.main_thread_seconds += used
            else:
                busiest[pid] = max(busiest.get(pid, 0.0), used)
        self.busiest_other_thread_seconds = sum(busiest.values())
        self.machine_busy_seconds = _busy_seconds() - self._machine0
