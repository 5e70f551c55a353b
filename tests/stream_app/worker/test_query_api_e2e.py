"""The query API and the bootstrap on the real broker with real worker processes, over real HTTP.

One world per module (the workers are reused by every test, in file order): a catalog with tags and
categories, a history bootstrapped with `istream bootstrap` (twice), then two workers, A and B, one
partition each. The last test restarts B (mid-stream, then with a TTL), so it runs last.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pytest

from stream_app.admin import create_topics
from stream_app.bench.cluster import scrape
from stream_app.broker import free_port
from stream_app.cli.worker_process import READY_LINE
from stream_app.client import ClientError, QueryError, RecommendationClient
from stream_app.contracts import Event, Recommendation
from stream_app.settings import Settings
from stream_app.worker.routing import partition_of
from tests.conftest import SESSION_TIMEOUT_MS, TEST_PARTITIONS
from tests.stream_app.worker.fixtures import (
    WorkerProcess,
    changelog_topic,
    final_states,
    outputs_for,
    produce,
    produce_events,
    read_topic,
    stepwise_reference,
    stream_events,
    wait_until,
)

pytestmark = pytest.mark.integration

N_ITEMS = 20
USERS = 24
PER_USER = 8  # the last one held out: what `istream evaluate` ranks each user's history for
ENV = {"ISTREAM_WORKER_WEB_HOST": "127.0.0.1", "ISTREAM_COLD_START_EVENTS": "2"}


@dataclass
class World:
    settings: Settings
    registry: Path
    tmp: Path
    istream_env: dict[str, str]
    history: list[Event]
    held_out: list[Event]
    history_file: Path
    events_file: Path
    items_file: Path
    runs: list  # the bootstrap CLI runs (CompletedProcess)
    workers: dict[str, WorkerProcess]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.workers[name].web_port}"

    def owner(self, user_id: str) -> str:
        """The worker whose partition holds ``user_id``."""
        partition = partition_of(user_id.encode(), TEST_PARTITIONS)
        return next(name for name in self.workers if partition in self.health(name)["partitions"])

    def wait_split(self) -> None:
        """Until each worker is ready with one partition of its own."""

        def split() -> list:
            return sorted(tuple(h.get("partitions", ())) for h in map(self.health, self.workers) if h.get("ready"))

        wait_until(lambda: split() == [(0,), (1,)], describe=lambda: {n: self.health(n) for n in self.workers})

    def health(self, name: str) -> dict:
        try:
            return RecommendationClient(self.url(name)).health()
        except ClientError:  # its web server not up yet
            return {}


def _events(seed: int) -> tuple[list[Event], list[Event]]:
    """(history, held out): users' clicks/views/ratings on the tiny bundle's items, never the same item
    twice in a row (each event its own run, as evaluate counts them), in the past."""
    rng = np.random.default_rng(seed)
    history, held = [], []
    for u in range(USERS):
        ts, last = 1_700_000_000_000 + u, -1
        for n in range(PER_USER):
            item = int(rng.choice([i for i in range(N_ITEMS) if i != last]))
            kind = str(rng.choice(["click", "view", "rating"]))
            ts += int(rng.choice([1_000, 60_000, 3_600_000]))
            event = Event(event_id=f"h{u}-{n}", user_id=f"user-{u}", item_id=f"item-{item}", type=kind, ts=ts,
                          rating=float(rng.integers(1, 6)) if kind == "rating" else None)  # fmt: skip
            (held if n == PER_USER - 1 else history).append(event)
            last = item
    return history, held


def _jsonl(path: Path, records: list) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    return path


def _start(world_settings: Settings, registry: Path, tmp: Path, name: str, env: dict | None = None) -> WorkerProcess:
    return WorkerProcess(
        world_settings, registry, tmp / name, tmp / f"{name}.log", env={**ENV, **(env or {})}, web_port=free_port()
    )


@pytest.fixture(scope="module")
def world(broker_bootstrap, tmp_path_factory, tiny_bundle):
    from export.registry import Registry

    tmp = tmp_path_factory.mktemp("query-api")
    settings = Settings(
        bootstrap_servers=broker_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex}",
        partitions=TEST_PARTITIONS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        run_dir=tmp / "run",
    )
    create_topics(settings)
    registry = tmp / "registry"
    reg = Registry(registry)
    reg.promote(reg.publish(tiny_bundle))
    items = [
        {"item_id": f"item-{i}", "text": f"item {i}", "tags": ["odd" if i % 2 else "even"],
         "category": "low" if i < N_ITEMS // 2 else "high"}
        for i in range(N_ITEMS)
    ]  # fmt: skip
    produce(
        settings, f"{settings.topic_prefix}.items", [(i["item_id"].encode(), json.dumps(i).encode()) for i in items]
    )
    history, held = _events(seed=11)
    world = World(
        settings, registry, tmp, {}, history, held,
        history_file=_jsonl(tmp / "history.jsonl", history),
        events_file=_jsonl(tmp / "events.jsonl", sorted(history + held, key=lambda e: (e.user_id, e.ts))),
        items_file=_jsonl(tmp / "items.jsonl", items),
        runs=[], workers={},
    )  # fmt: skip
    yield world
    for worker in world.workers.values():
        worker.stop()


@pytest.fixture(scope="module")
def booted(world, istream_module):
    """The history bootstrapped twice, then workers A and B serving it."""
    for _ in range(2):
        world.runs.append(istream_module("bootstrap", "--events", world.history_file, "--registry", world.registry))
    world.workers = {name: _start(world.settings, world.registry, world.tmp, name) for name in ("a", "b")}
    for worker in world.workers.values():
        worker.wait_for(READY_LINE)
    world.wait_split()
    return world


@pytest.fixture(scope="module")
def istream_module(world):
    """``istream`` (the console command) with the world's broker and prefix, nothing else of the shell's."""
    import subprocess

    from stream_app.cli.common import istream_argv
    from stream_app.cli.worker_process import worker_env

    def run(*args):
        return subprocess.run(
            [*istream_argv(), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            env=worker_env(world.settings),
        )

    return run


def test_bootstrap_writes_each_users_state_quietly_and_a_rerun_changes_nothing(booted, istream_module, runtime):
    first, second = booted.runs
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert f"states: {USERS} written" in first.stdout and "0 kept" in first.stdout
    assert "states: 0 written" in second.stdout and f"{USERS} kept" in second.stdout
    assert "events/s" in first.stdout and "states/s" in first.stdout and "states" in first.stderr  # the progress bar
    changelog = read_topic(booted.settings, changelog_topic(booted.settings), expect=USERS, timeout=30, idle=0.5)
    assert len(changelog) == USERS  # one record a user: the second run wrote none
    states = final_states(booted.settings, changelog_topic(booted.settings))
    reference = stepwise_reference(runtime, booted.history)
    for user, (partition, state) in states.items():
        assert partition == partition_of(user.encode(), TEST_PARTITIONS)
        mine = [e for e in booted.history if e.user_id == user]
        assert (state.applied, state.history_ts, state.last_offset) == (len(mine), mine[-1].ts, -1)
        np.testing.assert_allclose(state.state, reference.states[user], atol=1e-5)
    for kind in ("vectors", "recommendations", "deadletter"):  # nothing emitted
        assert read_topic(booted.settings, f"{booted.settings.topic_prefix}.{kind}", timeout=2, idle=0.5) == []
    # while workers run, a bootstrap would write states they never read: refused, one line, nothing written
    refused = istream_module("bootstrap", "--events", booted.history_file, "--registry", booted.registry)
    assert refused.returncode == 1 and "workers of" in refused.stderr and "Traceback" not in refused.stderr
    bad = booted.tmp / "bad.jsonl"
    bad.write_text(booted.history_file.read_text() + '{"event_id": "x"}\n')
    rejected = istream_module("bootstrap", "--events", bad, "--registry", booted.registry)
    assert rejected.returncode == 1 and f"bad.jsonl:{len(booted.history) + 1}:" in rejected.stderr


def test_after_bootstrap_the_workers_answers_match_istream_evaluate(booted, tiny_checkpoint):
    """`istream evaluate` ranks each user's held-out event against its history; the workers, serving the
    states bootstrapped from the same histories, must rank it the same (over HTTP, half forwarded)."""
    from models.checkpoint import load_checkpoint
    from models.comment_encoder import CommentEncoder, EmbeddingCache
    from models.evaluate import evaluate_files, item_matrix, judge, load_eval_data
    from models.ranking import hit_ndcg, split

    cache = booted.tmp / "embeddings"
    numbers = evaluate_files(tiny_checkpoint, booted.events_file, booted.items_file, cache_dir=cache, threads=1)
    ckpt = load_checkpoint(tiny_checkpoint)  # the same evaluation, per user
    encoder = CommentEncoder.from_pretrained(ckpt.config.encoder_path, max_length=ckpt.config.encoder_max_length)
    data = load_eval_data(ckpt, booted.events_file, booted.items_file, encoder, EmbeddingCache(cache))
    sp = split(data.seqs, holdout=1)
    ranks = judge(ckpt, data, item_matrix(ckpt, data, encoder, EmbeddingCache(cache)), sp).test["model"]
    held = {e.user_id: e for e in booted.held_out}
    last = {e.user_id: e.event_id for e in booted.history}
    http_ranks = []
    with RecommendationClient(booted.url("a")) as client:
        for u in sp.users.tolist():
            user = data.seqs.user_ids[u]
            answer = client.get(user, k=1000)
            assert not answer.cold_start and answer.event_id == last[user]
            ids = [i.item_id for i in answer.items]
            http_ranks.append(float(ids.index(held[user].item_id)) if held[user].item_id in ids else np.inf)
    assert len(http_ranks) == numbers["result"]["users"] == USERS
    np.testing.assert_array_equal(http_ranks, ranks)
    assert hit_ndcg(np.array(http_ranks)) == {
        "hr@10": numbers["result"]["hr@10"],
        "ndcg@10": numbers["result"]["ndcg@10"],
    }


def _get(url: str, path: str, method: str = "GET") -> tuple[int, dict, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, method=method), timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_the_query_api_answers_filters_and_refuses_over_http_from_either_worker(booted, runtime):
    user = booted.history[0].user_id
    seen = {e.item_id for e in booted.history if e.user_id == user}
    with RecommendationClient(booted.url("a")) as a, RecommendationClient(booted.url("b")) as b:
        everything = a.get(user, k=1000)
        assert [i.item_id for i in everything.items] == [i.item_id for i in b.get(user, k=1000).items]  # forwarded
        assert len(everything.items) == N_ITEMS - len(seen) and not {i.item_id for i in everything.items} & seen
        assert all(i.because is not None for i in everything.items)
        assert a.get(user).items == everything.items[:10]  # the default k: ISTREAM_TOP_K
        skip = [i.item_id for i in everything.items[:2]]
        assert a.get(user, k=3, exclude=skip).items == everything.items[2:5]
        assert {i.item_id for i in a.get(user, k=1000, include_seen=True).items} == {
            f"item-{i}" for i in range(N_ITEMS)
        }
        odd_high = a.get(user, k=1000, tags=["odd"], category="high")
        assert [i.item_id for i in odd_high.items] == [
            i.item_id
            for i in everything.items
            if int(i.item_id.split("-")[1]) % 2 and int(i.item_id.split("-")[1]) >= 10
        ]
        assert a.get(user, k=5, tags=["no-such-tag"]).items == []  # nothing carries it: min(k, 0)
        # interest: the vectors of the user's last step, as the stream computes them
        vector = a.interest(user)
        reference = stepwise_reference(runtime, [e for e in booted.history if e.user_id == user])
        np.testing.assert_allclose(vector.vector, reference.interest[vector.event_id], atol=1e-5)
        assert vector.model_version == runtime.version and vector.state_age_s >= 0
        # a user the stream never saw: the cold-start list, marked, as long as asked for
        for k in (1, 10, 1000):
            cold = b.get("never-seen", k=k)
            assert cold.cold_start and cold.event_id is None and len(cold.items) == min(k, N_ITEMS)
        with pytest.raises(QueryError) as missing:
            a.interest("never-seen")
        assert missing.value.status == 404
    for path, status in [
        (f"/users/{user}/recommendations?k=0", 400),
        (f"/users/{user}/recommendations?k=x", 400),
        (f"/users/{user}/recommendations?include_seen=maybe", 400),
        (f"/users/{user}/recommendations?colour=red", 400),
        (f"/users/{user}/interest?k=3", 400),
        ("/users/" + "u" * 300 + "/recommendations", 400),
        ("/users/x/favourites", 404),
        ("/nothing", 404),
    ]:
        for name in booted.workers:
            code, headers, body = _get(booted.url(name), path)
            assert (code, body["status"]) == (status, status) and body["error"], (name, path, body)
            assert headers["Content-Type"].startswith("application/json")
    code, _, body = _get(booted.url("a"), f"/users/{user}/recommendations", method="POST")
    assert code == 405 and body["status"] == 405
    for name in booted.workers:
        code, _, health = _get(booted.url(name), "/health")
        assert code == 200 and health["ready"] and health["model_version"] == runtime.version
        assert _get(booted.url(name), "/health/live")[0] == 200
    served = {_get(booted.url(name), f"/users/{user}/recommendations")[1]["X-Istream-Served-By"] for name in "ab"}
    assert served == {booted.url(booted.owner(user))}


def test_the_stream_moves_the_answers_and_its_copies_of_the_history_are_dropped(booted):
    before = sum(scrape(w.web_port).get("istream_duplicates_dropped_total", 0.0) for w in booted.workers.values())
    users = sorted({e.user_id for e in booted.history})[:6]
    fresh = [
        Event(event_id=f"live-{u}", user_id=u, item_id=f"item-{n}", type="click", ts=int(time.time() * 1000) + n)
        for n, u in enumerate(users)
    ]
    produce_events(booted.settings, f"{booted.settings.topic_prefix}.events", booted.history + fresh)
    recs = read_topic(booted.settings, f"{booted.settings.topic_prefix}.recommendations", timeout=60, idle=1.0,
                      until=outputs_for(fresh))  # fmt: skip
    records = [msgspec.json.decode(m.value(), type=Recommendation) for m in recs]
    assert sorted(r.event_id for r in records) == sorted(e.event_id for e in fresh)  # the history: no outputs
    after = sum(scrape(w.web_port).get("istream_duplicates_dropped_total", 0.0) for w in booted.workers.values())
    assert after - before == len(booted.history)
    with RecommendationClient(booted.url("a")) as client:
        for record in records:
            answer = client.get(record.user_id)
            assert answer.event_id == record.event_id  # and the same ranking, up to float32 sums in other shapes
            assert [(i.item_id, i.because) for i in answer.items] == [(i.item_id, i.because) for i in record.items]
            np.testing.assert_allclose([i.score for i in answer.items], [i.score for i in record.items], atol=1e-5)


def _restart(world: World, name: str, env: dict | None = None) -> None:
    assert world.workers[name].stop() == 0, world.workers[name].log_tail()
    world.workers[name] = _start(world.settings, world.registry, world.tmp, name, env)
    world.workers[name].wait_for(READY_LINE)
    world.wait_split()


def test_a_restart_mid_stream_leaves_no_answer_empty_or_short_trending_survives_and_a_ttl_expires_users(booted):
    settings, topic = booted.settings, f"{booted.settings.topic_prefix}.events"
    rng = np.random.default_rng(5)
    now = int(time.time() * 1000)
    events = [
        Event(event_id=f"s{n}", user_id=f"stream-{n % 16}", item_id=f"item-{int(rng.integers(N_ITEMS))}", type="click",
              ts=now + n)
        for n in range(96)
    ]  # fmt: skip
    sizes, refused, stop = [], [], threading.Event()

    def ask() -> None:  # new users (the cold-start list) and the stream's users, from worker A, all along
        with RecommendationClient(booted.url("a"), timeout=5) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                for user in (f"nobody-{n}", f"stream-{n % 16}"):
                    try:
                        sizes.append(len(client.get(user).items))
                    except ClientError as exc:  # a rebalance: 503 (or the owner restarting), never an answer
                        refused.append(getattr(exc, "status", "connection"))
                time.sleep(0.005)

    poller = threading.Thread(target=ask, daemon=True)
    poller.start()
    streaming = stream_events(settings, topic, events, chunk=4, pause=0.15)
    time.sleep(1.0)
    _restart(booted, "b")
    streaming.join()
    recs = read_topic(settings, f"{settings.topic_prefix}.recommendations", timeout=60, idle=0.5,
                      until=outputs_for(events))  # fmt: skip
    stop.set()
    poller.join(10)
    mine = {e.event_id for e in events}
    records = [r for r in (msgspec.json.decode(m.value(), type=Recommendation) for m in recs) if r.event_id in mine]
    print(f"\n{len(sizes)} answers over HTTP across the restart; refused: {sorted(map(str, refused))}")
    assert {len(r.items) for r in records} == {10} and {r.event_id for r in records} == mine
    assert sizes and set(sizes) == {10}  # none empty, none short: catalog 20, at most 6 seen

    # trending: the cold-start list a worker restarted (with no event since) answers is the one it answered before
    nobody = next(f"nobody-b{n}" for n in range(100) if booted.owner(f"nobody-b{n}") == "b")
    with RecommendationClient(booted.url("b")) as client:
        before = client.get(nobody, k=N_ITEMS)
    expired_users = {e.user_id for e in booted.history + events if booted.owner(e.user_id) == "b"}
    _restart(booted, "b", {"ISTREAM_STATE_TTL_S": "3"})
    with RecommendationClient(booted.url("b")) as client:
        assert client.get(nobody, k=N_ITEMS) == before and before.cold_start

        # the TTL: every state of B's partition was last active more than 3 s ago (B's clock): tombstones
        def expired() -> float:
            return scrape(booted.workers["b"].web_port).get("istream_states_expired_total", 0.0)

        wait_until(lambda: expired() == len(expired_users), timeout=30, describe=lambda: f"{expired()} expired")
        gone = sorted(expired_users)[0]
        answer = client.get(gone)
        assert answer.cold_start and answer.event_id is None and len(answer.items) == 10
    states = final_states(settings, changelog_topic(settings))
    assert {u for u, (_, s) in states.items() if s is None} == expired_users
