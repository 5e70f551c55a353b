"""`make run`: the whole spine on one machine, in one command that ends by itself.

A local Tansu broker runs for the length of the demo; every other step runs the real `istream`
command a user would type, printed before it runs. The synthetic stream is split in time: a model
is trained on each user's history, exported, published and promoted; every user's state is
bootstrapped from that history; then a real worker serves it, is asked over its query API what it
recommends before any live event (the bootstrapped state beside the cold-start list a worker
without the history answers), and the held-back newest events are replayed live, its
recommendations judged against the generator's planted truth. Steps are plain functions of one
``DemoRun`` and run in the order of ``STEPS``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.broker import LOG_FILE, free_port, port_is_free, start_broker
from stream_app.cli.common import run_istream
from stream_app.cli.worker_process import READY_LINE, WorkerProcess
from stream_app.demo.live import (
    describe_users,
    read_jsonl,
    score,
    split_held_back,
    warm_start_lines,
    write_jsonl,
)
from stream_app.demo.readme import SUMMARY_FILE
from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings

SHOWN_USERS = 4
COMMAND_TIMEOUT_S = 120.0
TRAIN_TIMEOUT_S = 600.0
WORKER_READY_S = 120.0
WORKER_STOP_S = 30.0
RECOMMENDATIONS_IDLE_S = 60  # `istream tail --timeout`: seconds without a new recommendation
# The worker's settings for the demo: Tansu makes a group join wait about half the session
# timeout; one ONNX thread per operator leaves a core for everything else; the query API answers
# on the loopback address (other workers would forward there).
WORKER_ENV = {
    "ISTREAM_SESSION_TIMEOUT_MS": "3000",
    "ISTREAM_ORT_INTRA_OP_THREADS": "1",
    "ISTREAM_WORKER_WEB_HOST": "127.0.0.1",
}
NEWCOMER = "demo-newcomer"  # a user the stream never saw: the query API answers the cold-start list


class DemoError(InterestStreamError):
    """A demo step failed."""


@dataclass
class DemoRun:
    settings: Settings
    run_dir: Path
    args: argparse.Namespace
    env: dict[str, str]
    events_file: Path = field(init=False)
    items_file: Path = field(init=False)
    truth_file: Path = field(init=False)
    history_file: Path = field(init=False)
    live_file: Path = field(init=False)
    checkpoint: Path = field(init=False)
    bundle: Path = field(init=False)
    registry: Path = field(init=False)
    worker_state: Path = field(init=False)
    held: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    recommendations: list[dict] = field(default_factory=list)
    worker: WorkerProcess | None = None

    def __post_init__(self) -> None:
        self.events_file = self.run_dir / "sample-events.jsonl"
        self.items_file = self.run_dir / "sample-items.jsonl"
        self.truth_file = self.run_dir / "sample-truth.json"
        self.history_file = self.run_dir / "history-events.jsonl"
        self.live_file = self.run_dir / "live-events.jsonl"
        self.checkpoint = self.run_dir / "model"
        self.bundle = self.run_dir / "bundle"
        self.registry = self.run_dir / "registry"
        self.worker_state = self.run_dir / "worker-state"

    def clean(self) -> None:
        """Remove what an earlier run left: export wants an empty bundle dir, and a worker's old
        RocksDB state would not match this run's fresh in-memory broker."""
        for path in (self.checkpoint, self.bundle, self.registry, self.worker_state):
            shutil.rmtree(path, ignore_errors=True)

    def istream(self, *args: object, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """Run `istream ARGS` as a user would; its stdout, or CommandError with its stderr."""
        return run_istream(*args, env=self.env, timeout=timeout)

    def live_worker(self) -> WorkerProcess:
        if self.worker is None:
            raise DemoError("no worker is running (start_worker did not run)")
        return self.worker

    def stop_worker(self) -> int | None:
        if self.worker is None:
            return None
        worker, self.worker = self.worker, None
        return worker.stop(WORKER_STOP_S)


def create_topics(run: DemoRun) -> None:
    """Create the topics."""
    print(run.istream("topics", "create").rstrip().splitlines()[-1])


def generate_sample(run: DemoRun) -> None:
    """Generate a synthetic stream (users with planted topic interests) and its truth."""
    out = run.istream(
        "generate",
        *("--users", run.args.users, "--items", run.args.items, "--events", run.args.events),
        *("--seed", run.args.seed, "--out-events", run.events_file, "--out-items", run.items_file),
        *("--out-truth", run.truth_file),
    )
    print(out.rstrip())


def hold_back(run: DemoRun) -> None:
    """Split in time: each user's newest events are held back for the live replay."""
    run.history, run.held = split_held_back(read_jsonl(run.events_file), run.args.held_back)
    history = run.history
    write_jsonl(run.history_file, history)
    write_jsonl(run.live_file, run.held)
    users = len({e["user_id"] for e in run.held})
    print(f"history: {len(history)} events -> {run.history_file}")
    print(f"held back: {len(run.held)} events (last {run.args.held_back} of {users} users) -> {run.live_file}")
    by_type = Counter(event["type"] for event in run.held)
    print("held-back events per type: " + ", ".join(f"{kind} {n}" for kind, n in by_type.most_common()))


def train_model(run: DemoRun) -> None:
    """Train a quick model on the history."""
    out = run.istream(
        "train",
        *("--events", run.history_file, "--items", run.items_file, "--out", run.checkpoint),
        *("--epochs", run.args.epochs, "--seed", run.args.seed, "--quiet"),
        timeout=TRAIN_TIMEOUT_S,
    )
    print(out.rstrip())


def export_model(run: DemoRun) -> None:
    """Export it as an ONNX bundle (checked against torch)."""
    print(run.istream("export", "--model", run.checkpoint, "--out", run.bundle, timeout=TRAIN_TIMEOUT_S).rstrip())


def publish_model(run: DemoRun) -> None:
    """Publish the bundle to a registry and promote it to CURRENT."""
    version = json.loads((run.bundle / "manifest.json").read_text())["version"]
    print(run.istream("models", "publish", run.bundle, "--registry", run.registry).rstrip())
    print(run.istream("models", "promote", version, "--registry", run.registry).rstrip())


def bootstrap_history(run: DemoRun) -> None:
    """Bootstrap every user's state from the history (no outputs), where the worker will restore it."""
    out = run.istream("bootstrap", "--events", run.history_file, "--registry", run.registry, timeout=TRAIN_TIMEOUT_S)
    print(out.rstrip())


def start_worker(run: DemoRun) -> None:
    """Start the worker in the background; it serves the CURRENT model and the bootstrapped states."""
    log = run.run_dir / "worker.log"
    port = free_port()
    shown = " ".join(f"{k}={v}" for k, v in WORKER_ENV.items())
    print(
        f"$ {shown} istream worker --registry {run.registry} --data-dir {run.worker_state} --web-port {port} &"
        f"    # log: {log}",
        flush=True,
    )
    env = {**WORKER_ENV, "XDG_CACHE_HOME": run.env["XDG_CACHE_HOME"]}
    run.worker = WorkerProcess(run.settings, run.registry, run.worker_state, log, env=env, web_port=port)
    run.worker.wait_for(READY_LINE, WORKER_READY_S)
    print(next(line for line in run.worker.output().splitlines() if "serving model:" in line).strip())


def ask_before_live(run: DemoRun) -> None:
    """Ask the worker's query API for each user's top 10 before any live event: warm from the bootstrap."""
    from stream_app.client import RecommendationClient

    url = f"http://127.0.0.1:{run.live_worker().web_port}"
    print(f"$ curl {url}/users/<user_id>/recommendations?k=10    # RecommendationClient(url).get(user_id, k=10)")
    first: dict[str, dict] = {}
    for event in run.held:
        first.setdefault(event["user_id"], event)
    with RecommendationClient(url, retry_s=WORKER_READY_S) as client:
        answers = {user: client.get(user, k=10) for user in first}
        cold = client.get(NEWCOMER, k=10)
    shown = next(iter(answers.values()))
    print(f"{shown.user_id}: event_id={shown.event_id} model={shown.model_version} cold_start={shown.cold_start} "
          f"state_age_s={shown.state_age_s:.1f} top 3: {[i.item_id for i in shown.items[:3]]}")  # fmt: skip
    print(f"{NEWCOMER} (never seen): cold_start={cold.cold_start}, {len(cold.items)} items from the trending list")
    for line in warm_start_lines(first, answers, cold, run.history):
        print(line)


def produce_live(run: DemoRun) -> None:
    """Produce the catalog, then the held-back events (the live stream)."""
    run.live_worker().check_running()
    print(run.istream("produce", run.live_file, "--items", run.items_file).rstrip())


def read_recommendations(run: DemoRun) -> None:
    """Read the worker's recommendations as they arrive, one per held-back event."""
    worker = run.live_worker()
    expected = len(run.held)
    out = run.istream(
        *("tail", "recommendations", "--from-beginning", "--max", expected, "--timeout", RECOMMENDATIONS_IDLE_S),
        timeout=COMMAND_TIMEOUT_S + RECOMMENDATIONS_IDLE_S,
    )
    run.recommendations = [json.loads(line) for line in out.splitlines()]
    missing = {e["event_id"] for e in run.held} - {r["event_id"] for r in run.recommendations}
    if missing:
        worker.check_running()  # a worker that died says so rather than "no recommendations"
        raise DemoError(
            f"got {len(run.recommendations)} recommendations for {expected} held-back events "
            f"({len(missing)} events without one after {RECOMMENDATIONS_IDLE_S:.0f} s of silence); {worker.log_tail()}"
        )
    versions = Counter(r["model_version"] for r in run.recommendations)
    print(f"read {len(run.recommendations)} recommendations, model version(s): {', '.join(versions)}")


def compare_with_truth(run: DemoRun) -> None:
    """Compare the live recommendations with the planted interests."""
    truth = json.loads(run.truth_file.read_text())
    for line in describe_users(run.held, run.recommendations, truth, SHOWN_USERS):
        print(line)
    figures = score(run.held, run.recommendations, truth, run.history).lines()
    for line in figures:
        print(line)
    # README's example is written from this file (python -m stream_app.demo.readme), never by hand
    (run.run_dir / SUMMARY_FILE).write_text("\n".join(figures) + "\n")


def stop_worker(run: DemoRun) -> None:
    """Stop the worker (SIGTERM) and check it exited cleanly."""
    worker = run.live_worker()
    code = run.stop_worker()
    if code != 0:
        raise DemoError(f"the worker exited with code {code} after SIGTERM; {worker.log_tail()}")
    print("worker stopped, exit code 0")


STEPS: list[Callable[[DemoRun], None]] = [
    create_topics,
    generate_sample,
    hold_back,
    train_model,
    export_model,
    publish_model,
    bootstrap_history,
    start_worker,
    ask_before_live,
    produce_live,
    read_recommendations,
    compare_with_truth,
    stop_worker,
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stream_app.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("var/run"), help="Where the demo writes its files.")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--held-back", type=int, default=6, help="Newest events per user replayed live.")
    parser.add_argument("--epochs", type=int, default=15, help="Most training epochs (early stopping).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(run_dir=args.dir)
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    host, port = settings.broker_host, settings.broker_port
    if not port_is_free(host, port):
        port = free_port(host)
        print(f"port {settings.broker_port} is taken; the demo broker uses port {port} instead")
    try:
        with open(run_dir / LOG_FILE, "wb") as log, start_broker(host, port, log=log) as broker:
            print(f"== Tansu broker (memory storage) on {broker.bootstrap}, log {run_dir / LOG_FILE}")
            # The children talk to this broker and keep their files in the run dir, whatever the
            # caller's environment says.
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "ISTREAM_RUN_DIR": str(run_dir),
                "PYTHONUNBUFFERED": "1",
                # ONNX Runtime writes a telemetry database under $XDG_CACHE_HOME (~/.cache) on import
                "XDG_CACHE_HOME": str((run_dir / "cache").resolve()),  # absolute, as XDG requires
            }
            run = DemoRun(settings.model_copy(update={"bootstrap_servers": broker.bootstrap}), run_dir, args, env)
            run.clean()
            try:
                for step in STEPS:
                    print(f"\n== {step.__doc__.splitlines()[0]}", flush=True)
                    step(run)
            finally:
                run.stop_worker()  # after a failed step: never leave the worker behind
    except InterestStreamError as exc:
        print(f"make run failed: {exc}", file=sys.stderr)
        return 1
    print(f"\n== done in {time.monotonic() - started:.1f} s; broker stopped (its topics lived in memory)")
    return 0
