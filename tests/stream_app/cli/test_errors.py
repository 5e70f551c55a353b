"""Each way a newcomer's first hour went wrong, run as the real `istream` subprocess: one `Error:` line on
stderr (nothing on stdout, no traceback), the exit code README's "Exit codes" documents, and a bounded time.

The cases run side by side (a few at a time) to keep the suite fast; a cluster that does not answer is
given ``ISTREAM_KAFKA_TIMEOUT_S=2``. The time limits are that timeout plus the command's start-up (the
worker loads Faust, ONNX Runtime and the model) with room for a loaded 2-core machine; before these
fixes such cases took 10-30 s, and a tail of a wrong topic name waited forever.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream_app.admin import list_topics
from stream_app.broker import free_port
from stream_app.exceptions import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE

pytestmark = pytest.mark.integration

KAFKA_TIMEOUT_S = 2
PARALLEL = 4
START_S = 15.0  # the slowest start-up here (the worker's imports and model check) on a busy machine


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    message: str  # a regex the one stderr line must match after "Error: "
    env: dict[str, str] = field(default_factory=dict)
    waits_for_the_cluster: bool = False

    @property
    def limit_s(self) -> float:
        return START_S + (KAFKA_TIMEOUT_S if self.waits_for_the_cluster else 0)


@pytest.fixture
def tampered_registry(tmp_path: Path, tiny_bundle: Path) -> Path:
    from export.registry import Registry

    root = tmp_path / "tampered"
    registry = Registry(root)
    version = registry.publish(tiny_bundle)
    registry.promote(version)
    with (registry.bundle_path(version) / "items.json").open("a") as f:
        f.write(" ")
    return root


def cases(nowhere: str, registry: Path, no_topics_prefix: str, tmp_path: Path) -> list[Case]:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id":"e1","user_id":"u1","item_id":"i1","type":"click","ts":1}\n')
    unreachable = rf"no answer from Kafka at {re.escape(nowhere)} within {KAFKA_TIMEOUT_S} s \(.*Connection refused"
    worker = ["worker", "--registry", str(registry), "--web-port", "0", "--data-dir", str(tmp_path / "state")]
    return [
        Case("topics list, no cluster", ["topics", "list", "--bootstrap", nowhere], EXIT_UNAVAILABLE, unreachable,
             waits_for_the_cluster=True),
        Case("topics create, no cluster", ["topics", "create", "--bootstrap", nowhere], EXIT_UNAVAILABLE, unreachable,
             waits_for_the_cluster=True),
        Case("produce, no cluster", ["produce", str(events), "--bootstrap", nowhere], EXIT_UNAVAILABLE, unreachable,
             waits_for_the_cluster=True),
        Case("tail, no cluster", ["tail", "recommendations", "--bootstrap", nowhere], EXIT_UNAVAILABLE, unreachable,
             waits_for_the_cluster=True),
        Case("worker, no cluster", [*worker, "--bootstrap", nowhere], EXIT_UNAVAILABLE, unreachable,
             waits_for_the_cluster=True),
        Case("worker, tampered CURRENT bundle", worker, EXIT_FAILED,
             r"the registry's CURRENT model is refused: items\.json .* the manifest says .*istream models rollback"),
        Case("worker, topics not created", worker, EXIT_FAILED,
             rf"topics {no_topics_prefix}\.events, .* do not exist on .*; create them with `istream topics create`",
             env={"ISTREAM_TOPIC_PREFIX": no_topics_prefix}),
        Case("tail, misspelt kind", ["tail", "recomendations"], EXIT_FAILED,
             r"topic recomendations does not exist on .*events, items, vectors, recommendations, model-updates, "
             r"deadletter.*did you mean recommendations\?"),
        Case("models list, no such registry", ["models", "list", "--registry", "/nonexistent"], EXIT_FAILED,
             r"no registry at /nonexistent \(no such directory\); pass --registry"),
        Case("guard, no such registry", ["guard", "--once", "--registry", "/nonexistent"], EXIT_FAILED,
             r"no registry at /nonexistent \(no such directory\); pass --registry"),
        Case("topics create --partitions 0", ["topics", "create", "--partitions", "0"], EXIT_USAGE,
             r"Invalid value for '--partitions': 0 is not in the range x>=1\. \(see `istream topics create --help`\)"),
        Case("an invalid setting", ["topics", "create"], EXIT_USAGE,
             r"invalid setting ISTREAM_PARTITIONS='0': Input should be greater than or equal to 1",
             env={"ISTREAM_PARTITIONS": "0"}),
    ]  # fmt: skip


def test_each_error_case_is_one_error_line_with_its_exit_code_in_bounded_time(
    istream, topics, settings, tampered_registry, tmp_path
):
    nowhere = f"127.0.0.1:{free_port()}"
    no_topics_prefix = f"{settings.topic_prefix}-none"
    all_cases = cases(nowhere, tampered_registry, no_topics_prefix, tmp_path)

    def run(case: Case) -> tuple[Case, object, float]:
        started = time.monotonic()
        env = {"ISTREAM_KAFKA_TIMEOUT_S": str(KAFKA_TIMEOUT_S), **case.env}
        result = istream(*case.args, env=env, timeout=case.limit_s + 30)
        return case, result, time.monotonic() - started

    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(run, all_cases))

    failures = []
    for case, result, seconds in outcomes:
        lines = result.stderr.splitlines()
        problems = [
            f"exit {result.returncode}, expected {case.code}" if result.returncode != case.code else "",
            f"{len(lines)} stderr lines, expected 1" if len(lines) != 1 else "",
            "" if lines and re.fullmatch(f"Error: .*{case.message}.*", lines[0]) else "the message does not match",
            f"stdout not empty: {result.stdout[:200]!r}" if result.stdout else "",
            f"took {seconds:.1f} s, limit {case.limit_s:.0f} s" if seconds > case.limit_s else "",
        ]
        if any(problems):
            failures.append(f"{case.name}: {'; '.join(p for p in problems if p)}\n  stderr: {result.stderr[-1500:]}")
    assert not failures, "\n".join(failures)

    # the failed workers created nothing on the cluster (Faust makes its assignor topic on start)
    assert not [name for name in list_topics(settings) if name.startswith(no_topics_prefix)]
