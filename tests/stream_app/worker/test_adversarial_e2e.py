"""The adversarial corpus (adversarial.py) against one real worker process on the real broker: every
record ends applied once or in dead-letter with a reason (notices: refused and counted), the worker
never exits, and good events sent after each bad record are served."""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import msgspec
import pytest
from confluent_kafka import Producer

from stream_app.bench.cluster import scrape
from stream_app.broker import free_port
from stream_app.cli.worker_process import READY_LINE
from stream_app.client import PRODUCER_DEFAULTS
from stream_app.contracts import DeadLetter, InterestVector
from stream_app.worker.routing import partition_of
from tests.conftest import TEST_PARTITIONS
from tests.stream_app.worker import adversarial
from tests.stream_app.worker.fixtures import (
    WorkerProcess,
    changelog_topic,
    final_states,
    outputs_for,
    read_topic,
)

pytestmark = pytest.mark.integration


def _home(key: bytes) -> int:
    return partition_of(key, TEST_PARTITIONS)


def _with_probes(records: list[adversarial.Record], now: int) -> list[adversarial.Record]:
    """A good event of a fresh user (on either partition) after each record: the worker went on."""
    out = []
    for n, record in enumerate(records):
        out.append(record)
        user = f"probe-{n}"
        value = msgspec.json.encode({"event_id": f"probe-{n}", "user_id": user, "item_id": "item-1", "type": "view",
                                     "ts": now - 1000})  # fmt: skip
        out.append(adversarial.Record("a good event after it", "events", user.encode(), value, "applied",
                                      event_id=f"probe-{n}"))  # fmt: skip
    return out


def _produce(settings, topics: dict[str, str], records: list[adversarial.Record]) -> list[tuple[int, int]]:
    """Each record in order, on its partition; returns (partition, offset) of each."""
    producer = Producer({**settings.kafka_config(), **PRODUCER_DEFAULTS, "linger.ms": 5,
                         "message.max.bytes": 8_000_000})  # fmt: skip
    where: list[tuple[int, int] | None] = [None] * len(records)

    def delivered(i: int):
        def report(err, msg) -> None:
            assert err is None, f"{records[i].case}: {err}"
            where[i] = (msg.partition(), msg.offset())

        return report

    for i, r in enumerate(records):
        partition = r.partition if r.partition >= 0 else (_home(r.key) if r.key is not None else 0)
        producer.produce(topics[r.topic], value=r.value, key=r.key, partition=partition, on_delivery=delivered(i))
        producer.poll(0)
    assert producer.flush(60) == 0
    return where


def _sha256(path) -> str:
    return hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()


def test_no_record_stops_fools_or_silently_skips_the_worker(
    settings, topics, registry, runtime, other_bundle, tmp_path
):
    from export.registry import Registry

    reg = Registry(registry)
    v1, v2 = reg.current(), reg.publish(other_bundle)  # v2 published, never promoted
    info = adversarial.Registry(v1, _sha256(registry / v1), str(registry / v1), v2, _sha256(registry / v2),
                                str(registry / v2))  # fmt: skip
    now = int(time.time() * 1000)
    records = _with_probes(
        adversarial.items_cases() + adversarial.updates_cases(info) + adversarial.events_cases(now, _home, []), now
    )
    applied = [r for r in records if r.expect in ("applied", "forwarded") and r.event_id]
    expected_letters = Counter(r.expect for r in records if r.expect.startswith("dl:"))
    refusals = Counter(r.expect.removeprefix("refused:") for r in records if r.expect.startswith("refused:"))
    port = free_port()
    with WorkerProcess(settings, registry, tmp_path / "state", tmp_path / "worker.log", web_port=port) as worker:
        worker.wait_for(READY_LINE)  # the model-updates feed reads from the end
        items_before = scrape(port)["istream_catalog_items"]
        started = time.monotonic()
        where = _produce(settings, topics, records)
        vectors = read_topic(settings, topics["vectors"], timeout=180, idle=1.0,
                             until=outputs_for([{"event_id": r.event_id} for r in applied]))  # fmt: skip
        letters = read_topic(settings, topics["deadletter"], expect=sum(expected_letters.values()), timeout=60)
        elapsed = time.monotonic() - started
        metrics = scrape(port)
        states = final_states(settings, changelog_topic(settings))
        worker.check_running()  # it never exited
    assert worker.returncode == 0, worker.log_tail()
    log = worker.output()
    assert "Traceback" not in log and "model swap" not in log

    dead = {
        (d.topic, d.partition, d.offset): d for d in (msgspec.json.decode(m.value(), type=DeadLetter) for m in letters)
    }
    assert len(dead) == len(letters), "a record was dead-lettered twice"
    vector_counts = Counter(msgspec.json.decode(m.value(), type=InterestVector).event_id for m in vectors if m.value())
    tombstoned = {m.key().decode() for m in vectors if m.value() is None}
    assert {msgspec.json.decode(m.value(), type=InterestVector).model_version for m in vectors if m.value()} == {v1}

    outcomes: dict[tuple[str, str, str], Counter] = {}
    for r, (partition, offset) in zip(records, where, strict=True):
        letter = dead.pop((topics[r.topic], partition, offset), None)
        if letter is not None:
            actual = f"dl:{letter.reason}"
        elif r.expect in ("applied", "duplicate", "forwarded") and r.event_id:
            actual = {0: "lost", 1: r.expect}.get(vector_counts[r.event_id], "applied twice")
        elif r.expect in ("forget", "forwarded"):  # a tombstone, at home or forwarded there
            actual = r.expect if r.key.decode() in tombstoned else "not forgotten"
        else:
            actual = r.expect if r.topic != "events" else "no trace"  # items and notices: counted below
        outcomes.setdefault((r.topic, r.case, r.expect), Counter())[actual] += 1
    assert not dead, f"dead letters of no corpus record: {list(dead.values())[:3]}"

    print(f"\ncorpus: {len(records)} records ({len(records) // 2} adversarial + a good event after each), "
          f"{sum(len(r.value or b'') for r in records) / 1e6:.1f} MB; served in {elapsed:.1f} s")  # fmt: skip
    print("| topic | case | expected | outcome |\n|---|---|---|---|")
    for (topic, case, expect), got in outcomes.items():
        print(f"| {topic} | {case} | {expect} | {', '.join(f'{n} {k}' for k, n in got.items())} |")
    wrong = {key: got for key, got in outcomes.items() if set(got) != {key[2]}}
    assert not wrong, wrong

    # what the worker counted agrees with the corpus
    for reason, n in refusals.items():
        assert metrics.get(f"istream_model_refusals_total{{reason={reason}}}") == n, reason
    duplicates = sum(1 for r in records if r.expect == "duplicate")
    assert metrics["istream_duplicates_dropped_total"] == duplicates
    assert metrics["istream_misrouted_total{action=forward}"] == 2
    assert metrics["istream_catalog_items"] == items_before + 1  # adv-item in; adv-item-2 in, then out
    # a forgotten user who came back holds only its new life; an erased one only a marker
    back, erased, moved = (states[u][1] for u in ("adv-gone", "adv-forget-event", "adv-moved"))
    assert back.applied == 1 and back.forgotten_at >= now - 600_000 + 1000 and not back.is_marker
    assert erased.is_marker and moved.is_marker
    burst = states["adv-burst"][1]
    assert burst.applied == 300
