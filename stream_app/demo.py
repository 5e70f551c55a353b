"""`make run`: the stream end to end on one machine, in one command that ends by itself.

A local Tansu broker runs for the length of the demo; every other step runs the real `istream`
command a user would type, printed before it runs. Steps are plain functions of one ``DemoRun``
and run in the order of ``STEPS``; later stages of the project add theirs to that list.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.broker import LOG_FILE, free_port, port_is_free, start_broker
from stream_app.cli.common import istream_argv
from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings

SHOWN_EVENTS = 3


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
    produced: int = 0
    tailed: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events_file = self.run_dir / "sample-events.jsonl"
        self.items_file = self.run_dir / "sample-items.jsonl"

    def istream(self, *args: object) -> str:
        """Run `istream ARGS` as a user would; its stdout, or DemoError with its stderr."""
        words = [str(a) for a in args]
        print(f"$ istream {shlex.join(words)}", flush=True)
        result = subprocess.run([*istream_argv(), *words], env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise DemoError(f"`istream {shlex.join(words)}` failed:\n{result.stderr.strip()}")
        return result.stdout


def create_topics(run: DemoRun) -> None:
    """Create the topics."""
    print(run.istream("topics", "create").rstrip().splitlines()[-1])


def generate_sample(run: DemoRun) -> None:
    """Generate a small synthetic sample (users with planted topic interests)."""
    out = run.istream(
        "generate",
        *("--users", run.args.users, "--items", run.args.items, "--events", run.args.events),
        *("--seed", run.args.seed, "--out-events", run.events_file, "--out-items", run.items_file),
    )
    print(out.rstrip())


def produce_sample(run: DemoRun) -> None:
    """Produce the sample: items first, then events keyed by user_id."""
    out = run.istream("produce", run.events_file, "--items", run.items_file)
    print(out.rstrip())
    run.produced = sum(1 for line in run.events_file.open() if line.strip())


def tail_events(run: DemoRun) -> None:
    """Read every event back from the topic."""
    out = run.istream("tail", "events", "--from-beginning", "--max", run.produced, "--timeout", 10)
    run.tailed = [json.loads(line) for line in out.splitlines()]
    if len(run.tailed) != run.produced:
        raise DemoError(f"produced {run.produced} events but read back {len(run.tailed)}")


def summarise(run: DemoRun) -> None:
    """Summarise what was read back."""
    by_type = Counter(event["type"] for event in run.tailed)
    users = len({event["user_id"] for event in run.tailed})
    items = len({event["item_id"] for event in run.tailed})
    print(f"read back {len(run.tailed)} of {run.produced} events: {users} users, {items} items")
    print("events per type: " + ", ".join(f"{kind} {n}" for kind, n in by_type.most_common()))
    print("a few of them:")
    comment = next((e for e in run.tailed if e["type"] == "comment"), None)
    shown = run.tailed[: SHOWN_EVENTS - 1] + ([comment] if comment else run.tailed[SHOWN_EVENTS - 1 : SHOWN_EVENTS])
    for event in shown:
        print("  " + json.dumps(event, ensure_ascii=False))


STEPS: list[Callable[[DemoRun], None]] = [create_topics, generate_sample, produce_sample, tail_events, summarise]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stream_app.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("var/run"), help="Where the demo writes its files.")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
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
            # The children talk to this broker whatever the caller's environment says.
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "ISTREAM_RUN_DIR": str(run_dir)}
            run = DemoRun(settings.model_copy(update={"bootstrap_servers": broker.bootstrap}), run_dir, args, env)
            for step in STEPS:
                print(f"\n== {step.__doc__}", flush=True)
                step(run)
    except InterestStreamError as exc:
        print(f"make run failed: {exc}", file=sys.stderr)
        return 1
    print(f"\n== done in {time.monotonic() - started:.1f} s; broker stopped (its topics lived in memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
