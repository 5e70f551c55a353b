"""The fine-tune job end to end on the real broker: a planted topic shift is learnt, published and
swapped in by a running worker without losing events; a bad challenger is rejected; a kill -9
between writing the bundle and moving CURRENT leaves the registry consistent; an empty window is a
no-op; an unreachable broker is a clear error; a guarded fine-tune goes live in shadow and the guard
promotes it, rejects a shuffled-weights challenger and rolls back a bad model promoted by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from export.integrity import verify_bundle
from export.registry import Registry
from models.continual.decisions import CHART, decisions_dir, read_decisions
from models.continual.window import split_window
from stream_app.broker import free_port
from stream_app.contracts import InterestVector, ModelUpdate
from stream_app.finetune.guard import GuardRecord
from stream_app.finetune.job import PUBLISHED, JobOptions, conclude, job_lock
from stream_app.finetune.kafka import RetryPolicy, read_catalog, read_window
from stream_app.settings import Settings
from tests.models.continual.drift import Drift, planted_drift, train_champion
from tests.models.continual.test_challenge import shuffled_labels
from tests.stream_app.worker.fixtures import (
    WorkerProcess,
    changelog_topic,
    final_states,
    outputs_for,
    produce,
    read_topic,
)

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


JUDGED, MARGIN = 250, 0.02  # the guard's settings in the guarded test


class GuardProcess:
    """`istream guard` looking every half second (output in ``log``), stopped on leaving."""

    def __init__(self, settings: Settings, registry: Path, log: Path) -> None:
        from stream_app.cli.common import istream_argv

        self.log = log
        self._argv = [*istream_argv(), "guard", "--registry", str(registry), "--every", "0.5",
                      "--judged-events", str(JUDGED), "--margin", str(MARGIN)]  # fmt: skip
        self._env = {k: v for k, v in os.environ.items() if not k.startswith(("ISTREAM_", "KAFKA_"))}
        self._env.update(KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers, ISTREAM_TOPIC_PREFIX=settings.topic_prefix)

    def __enter__(self) -> GuardProcess:
        self._out = self.log.open("w")
        self._proc = subprocess.Popen(self._argv, stdout=self._out, stderr=subprocess.STDOUT, env=self._env)
        return self

    def output(self) -> str:
        return self.log.read_text()

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.wait(30)
        self._out.close()


def shuffled_weights(registry: Registry, version: str, out: Path) -> Path:
    """A bundle of ``version`` whose every weight tensor has its values permuted: a model that ranks at random."""
    import torch

    from export.bundle import export_bundle
    from stream_app.finetune.job import champion_checkpoint

    ckpt = Path(shutil.copytree(champion_checkpoint(registry, version), out / "ckpt"))
    weights = torch.load(ckpt / "model.pt", weights_only=True)
    generator = torch.Generator().manual_seed(3)
    for name, tensor in weights.items():
        if tensor.is_floating_point():
            flat = tensor.flatten()
            weights[name] = flat[torch.randperm(flat.numel(), generator=generator)].reshape(tensor.shape)
    torch.save(weights, ckpt / "model.pt")
    export_bundle(ckpt, out / "bundle", name=MODEL_NAME, parent_version=version)
    return out / "bundle"


def test_a_guarded_fine_tune_is_promoted_on_live_figures_a_shuffled_one_rejected_a_bad_promotion_rolled_back(
    settings, topics, registry, drift, istream, tmp_path
):
    from stream_app.finetune.guard import PROMOTED, REJECTED, ROLLED_BACK, WATCHING, read_records

    reg = Registry(registry)
    v1 = reg.current()
    cut = len(drift.after) * 3 // 5
    window, live = drift.after[:cut], drift.after[cut:]  # the fine-tune learns the shift; the rest judges it live
    produce_stream(settings, topics, window, drift.catalog)
    sent = 0

    def until_decided(action: str, version: str) -> GuardRecord:
        """Send the live stream on in small slices until the guard decides ``action`` on ``version``; at most
        twice the judged events it needs (almost every live event judges both models), so that a slow machine,
        where the guard hears of the judged events later, does not spend the stream on one decision."""
        nonlocal sent
        deadline, start = time.monotonic() + 180, sent
        while time.monotonic() < deadline:
            found = [r for r in read_records(registry) if (r.action, r.version) == (action, version)]
            if found:
                return found[-1]
            if sent < min(len(live), start + 2 * JUDGED):
                produce(settings, topics["events"],
                        [(e["user_id"].encode(), msgspec.json.encode(e)) for e in live[sent : sent + 40]])  # fmt: skip
                sent += 40
            time.sleep(0.3)
        raise AssertionError(f"no {action} of {version}: {read_records(registry)}; {guard.output()[-3000:]}")

    env = {"ISTREAM_ONLINE_WINDOW_S": "0.5"}
    with WorkerProcess(settings, registry, tmp_path / "state", tmp_path / "worker.log", env=env) as worker:
        read_topic(settings, topics["vectors"], timeout=120, until=outputs_for(window))
        run = istream("finetune", "--once", "--registry", registry, "--trial", "shadow", "--json", timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        decision = json.loads(run.stdout.strip().splitlines()[-1])
        v2 = decision["challenger"]
        assert (decision["decision"], decision["trial"], reg.current(), reg.trial().version) == (
            "published", "shadow", v1, v2
        )  # fmt: skip
        worker.wait_for(f"trial: {v2} runs beside {v1} (shadow", timeout=60)
        again = istream("finetune", "--once", "--registry", registry, "--trial", "shadow", "--json", timeout=120)
        skipped = json.loads(again.stdout.strip().splitlines()[-1])  # the open trial is the guard's to decide first
        assert (skipped["decision"], reg.trial().version) == ("skipped", v2) and "still open" in skipped["reason"]
        with GuardProcess(settings, registry, tmp_path / "guard.log") as guard:
            promoted = until_decided(PROMOTED, v2)  # the fine-tune, judged live in shadow beside v1
            assert reg.current() == v2 and promoted.figures["n"] >= JUDGED and promoted.figures["lower"] > -MARGIN
            v3 = reg.publish(shuffled_weights(reg, v2, tmp_path / "shuffled"))
            assert istream("models", "trial", v3, "--registry", registry).returncode == 0
            rejected = until_decided(REJECTED, v3)
            assert reg.current() == v2 and reg.trial() is None and rejected.figures["lower"] < -MARGIN
            assert istream("models", "promote", v3, "--registry", registry).returncode == 0  # a bad model, by hand
            until_decided(WATCHING, v3)
            rolled_back = until_decided(ROLLED_BACK, v3)
            assert reg.current() == v2 and rolled_back.against == v2 and rolled_back.figures["lower"] < -MARGIN
            shown = istream("models", "live", "--registry", registry)
        assert shown.returncode == 0 and f"ROLLED_BACK {v3}" in shown.stdout, shown.stdout + shown.stderr
        sent_events = [*window, *live[:sent]]
        vector_msgs = read_topic(settings, topics["vectors"], timeout=120, until=outputs_for(sent_events))
        applied = Counter(e["user_id"] for e in sent_events)
        states = final_states(settings, changelog_topic(settings), applied)
    assert worker.returncode == 0, worker.output()[-3000:]
    # no event lost or applied twice across the trials, the promotions and the rollback
    assert {user: state.applied for user, (_, state) in states.items()} == applied
    vectors = [msgspec.json.decode(m.value(), type=InterestVector) for m in vector_msgs]
    assert sorted(v.event_id for v in vectors) == sorted(e["event_id"] for e in sent_events)
    version = {v.event_id: v.model_version for v in vectors}
    assert {version[e["event_id"]] for e in live[:sent]} >= {v1, v2, v3}
