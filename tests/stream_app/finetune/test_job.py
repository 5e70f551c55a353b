"""The fine-tune job end to end on the real broker: a planted topic shift is learnt, published and
swapped in by a running worker without losing events; a bad challenger is rejected; a kill -9
between writing the bundle and moving CURRENT leaves the registry consistent; an empty window is a
no-op; an unreachable broker is a clear error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from export.integrity import verify_bundle
from export.registry import Registry
from models.continual.decisions import CHART, decisions_dir, read_decisions
from models.continual.window import split_window
from stream_app.broker import free_port
from stream_app.contracts import InterestVector, ModelUpdate
from stream_app.finetune.job import PUBLISHED, JobOptions, conclude, job_lock
from stream_app.finetune.kafka import RetryPolicy, read_catalog, read_window
from stream_app.settings import Settings
from tests.models.continual.drift import Drift, planted_drift, train_champion
from tests.models.continual.test_challenge import shuffled_labels
from tests.stream_app.worker.fixtures import WorkerProcess, outputs_for, produce, read_topic

pytestmark = pytest.mark.integration

MODEL_NAME = "shop-interest"  # not the default name: the published bundle and the update key inherit it


@pytest.fixture(scope="module")
def drift() -> Drift:
    return planted_drift()


@pytest.fixture(scope="module")
def champion_registry(drift: Drift, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry whose CURRENT is a tiny model trained before the shift (MiniLM comment encoder), of
    two members like the default model: the job fine-tunes, exports and publishes an ensemble."""
    from export.bundle import export_bundle

    root = tmp_path_factory.mktemp("champion")
    ckpt = train_champion(drift.before, drift.catalog, root / "ckpt", members=2)
    export_bundle(ckpt, root / "bundle", name=MODEL_NAME)
    registry = Registry(root / "registry")
    registry.promote(registry.publish(root / "bundle"))
    return root / "registry"


@pytest.fixture
def registry(champion_registry: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(champion_registry, tmp_path / "registry"))


def produce_stream(settings: Settings, topics: dict[str, str], events: list[dict], catalog: dict[str, str]) -> None:
    produce(settings, topics["items"], [(i.encode(), msgspec.json.encode({"item_id": i, "text": t}))
                                        for i, t in catalog.items()])  # fmt: skip
    produce(settings, topics["events"], [(e["user_id"].encode(), msgspec.json.encode(e)) for e in events])


def assert_consistent(registry: Path, serving: str) -> list[str]:
    """CURRENT names ``serving``, which verifies (sha256 + smoke inference); every listed version is complete."""
    reg = Registry(registry)
    assert reg.current() == serving
    reg.verify(serving)
    for version in reg.versions():
        verify_bundle(reg.bundle_path(version))
    return reg.versions()


def later_events(drift: Drift, users: int = 20, per_user: int = 5) -> list[dict]:
    """Events after the whole shifted stream, for users that have state in the worker."""
    start = max(e["ts"] for e in drift.after) + 60_000
    active = sorted({e["user_id"] for e in drift.after})[:users]
    items = sorted(drift.catalog)
    return [
        {"event_id": f"late-{u}-{k}", "user_id": user, "item_id": items[(7 * u + k) % len(items)], "type": "view",
         "ts": start + 1000 * k}
        for u, user in enumerate(active)
        for k in range(per_user)
    ]  # fmt: skip


def test_planted_drift_is_published_and_a_running_worker_swaps_without_losing_events(
    settings, topics, registry, drift, istream, tmp_path
):
    champion = Registry(registry).current()
    produce_stream(settings, topics, drift.after, drift.catalog)
    with WorkerProcess(settings, registry, tmp_path / "state", tmp_path / "worker.log") as worker:
        run = istream("finetune", "--once", "--registry", registry, "--threads", "1", "--json", timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert " INFO root: " not in run.stderr, run.stderr[-3000:]  # ONNX Runtime's quantizer logs on the root logger
        decision = json.loads(run.stdout.strip().splitlines()[-1])
        assert decision["decision"] == "published", decision
        metrics = decision["metrics"]
        assert metrics["challenger"]["ndcg@10"] > metrics["champion"]["ndcg@10"] + 0.02
        assert decision["window"]["events"] == len(drift.after) and decision["announced"] is True
        new = decision["challenger"]
        manifest = Registry(registry).manifest(new)
        assert new != champion and manifest.parent_version == champion and manifest.name == MODEL_NAME
        assert manifest.graphs.keys() == Registry(registry).manifest(champion).graphs.keys()
        assert assert_consistent(registry, new) == sorted([champion, new])

        # the worker swaps between batches: trickle events until it logs the swap, then send the rest
        late = later_events(drift)
        sent, swapped = 0, f"model swap: version={new}"
        while swapped not in worker.output() and sent < len(late) // 2:
            produce(
                settings,
                topics["events"],
                [(e["user_id"].encode(), msgspec.json.encode(e)) for e in late[sent : sent + 2]],
            )
            sent += 2
            time.sleep(1.0)
        assert swapped in worker.output(), worker.output()[-3000:]
        produce(settings, topics["events"], [(e["user_id"].encode(), msgspec.json.encode(e)) for e in late[sent:]])
        everything = [*drift.after, *late]
        vector_msgs = read_topic(settings, topics["vectors"], timeout=180, until=outputs_for(everything))
        vectors = [msgspec.json.decode(m.value(), type=InterestVector) for m in vector_msgs]
    assert worker.returncode == 0, worker.output()[-3000:]
    # no event lost or applied twice across the swap; the old model served until the swap, the new one after
    assert sorted(v.event_id for v in vectors) == sorted(e["event_id"] for e in everything)
    version = {v.event_id: v.model_version for v in vectors}
    assert {version[e["event_id"]] for e in late[sent:]} == {new}
    assert {version[e["event_id"]] for e in drift.after} <= {champion, new}
    for user in {e["user_id"] for e in everything}:  # per user, never back to the old model once swapped
        served = [version[e["event_id"]] for e in everything if e["user_id"] == user]
        assert served == sorted(served, key=lambda v: v == new)

    updates = read_topic(settings, topics["model-updates"], expect=1, timeout=30, idle=0.5)
    assert [m.key().decode() for m in updates] == [MODEL_NAME]
    update = msgspec.json.decode(updates[0].value(), type=ModelUpdate)
    assert update.version == new and Path(update.uri.removeprefix("file://")) == (registry / new).resolve()
    assert [d.decision for d in read_decisions(registry)] == ["published"]
    assert (decisions_dir(registry) / CHART).is_file()


def test_a_challenger_trained_on_shuffled_labels_is_rejected_and_current_stays(settings, topics, registry, drift):
    champion = Registry(registry).current()
    produce_stream(settings, topics, drift.stationary, drift.catalog)
    options = JobOptions(registry=registry, threads=1)
    policy = RetryPolicy.from_settings(settings)
    with job_lock(options):
        window = read_window(settings, int(options.window_s * 1000), policy)
        split = split_window(window.events, options.holdout, options.min_train_events, options.min_judged_users)
        decision = conclude(settings, options, window, shuffled_labels(split), read_catalog(settings, policy),
                            started=time.perf_counter())  # fmt: skip
    assert decision.decision == "rejected" and decision.challenger is None
    assert decision.metrics["challenger"]["ndcg@10"] < decision.metrics["champion"]["ndcg@10"]
    assert assert_consistent(registry, champion) == [champion]
    assert read_decisions(registry) == [decision]
    assert read_topic(settings, topics["model-updates"], expect=0, timeout=3, idle=1) == []


CRASH_AT = """
import os, signal, sys
from pathlib import Path
from stream_app.finetune.job import JobOptions, run_once
from stream_app.settings import Settings

def crash(stage):
    if stage == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

run_once(Settings(), JobOptions(registry=Path(sys.argv[1]), margin=-1.0, epochs=1, threads=1), on_stage=crash)
"""


def test_kill_9_between_writing_the_bundle_and_moving_current_leaves_the_registry_consistent(
    settings, topics, registry, drift
):
    champion = Registry(registry).current()
    produce_stream(settings, topics, drift.stationary, drift.catalog)
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "ISTREAM_TOPIC_PREFIX": settings.topic_prefix}
    killed = subprocess.run([sys.executable, "-c", CRASH_AT, str(registry), PUBLISHED], env=env, timeout=300,
                            capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]

    # the new version is in the registry, complete and verified, but CURRENT never moved to it
    versions = assert_consistent(registry, champion)
    assert len(versions) == 2 and Registry(registry).history() == [champion]
    assert not list(registry.glob(".incoming-*")) and read_decisions(registry) == []

    with job_lock(JobOptions(registry=registry)):  # the lock died with the process: the next run may start
        pass


def test_an_empty_window_is_a_recorded_no_op_on_every_scheduled_run(topics, registry, istream):
    champion = Registry(registry).current()
    # a window longer than all history (it would start before 1970) reads the topic from its beginning
    run = istream("finetune", "--every", "1s", "--runs", "2", "--window", "36500d", "--registry", registry, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("SKIPPED (the window holds no events)") == 2
    assert "SKIPPED" not in run.stderr  # the summary is printed once, not logged again
    decisions = read_decisions(registry)
    assert [d.decision for d in decisions] == ["skipped", "skipped"]
    assert all(d.window["events"] == 0 and d.metrics == {} for d in decisions)
    assert assert_consistent(registry, champion) == [champion]


def test_a_registry_without_current_is_a_clear_error(topics, istream, tmp_path):
    run = istream("finetune", "--once", "--registry", tmp_path / "empty", timeout=120)
    assert run.returncode == 1
    assert "has no CURRENT version to start from" in run.stderr and "Traceback" not in run.stderr


def test_an_unreachable_broker_fails_clearly_after_retries(registry, istream):
    port = free_port()
    env = {
        "ISTREAM_FINETUNE_ATTEMPTS": "3",
        "ISTREAM_FINETUNE_BACKOFF_S": "0.1",
        "ISTREAM_FINETUNE_KAFKA_TIMEOUT_S": "1",
    }
    run = istream("finetune", "--once", "--registry", registry, "--bootstrap", f"127.0.0.1:{port}", env=env)
    assert run.returncode == 69  # EXIT_UNAVAILABLE
    assert f"no answer from Kafka at 127.0.0.1:{port} after 3 attempts" in run.stderr
    assert run.stderr.count("Retrying") == 2 and "Traceback" not in run.stderr
    assert read_decisions(registry) == []
