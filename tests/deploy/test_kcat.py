"""The kcat lines of README.md and deploy/README.md, run as written against the embedded broker: each
record lands keyed by the user, on the user's murmur2 partition (where the project's producers put
the user's events), a tombstone with a null value.

Where kcat is installed the exact lines run (Debian's kcat on the newer librdkafka that
confluent-kafka ships, as README.md shows: its own librdkafka 2.0.2 cannot talk to Tansu). Where it
is not, the same records (key, value, partitioner) are produced with confluent-kafka from each
line's own flags, so the partitioner and tombstone syntax are still what is checked."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.client import PRODUCER_DEFAULTS
from stream_app.worker.routing import partition_of
from tests.deploy.manifests import GUIDE, ROOT
from tests.stream_app.worker.fixtures import read_topic

pytestmark = pytest.mark.integration
PARTITIONS = 8
KCAT = shutil.which("kcat")


def kcat_produce_lines() -> list[str]:
    """Every shell line of the two guides that produces with kcat (a line ending in ``|`` joins the next)."""
    lines = []
    for doc in (ROOT / "README.md", GUIDE):
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL):
            for line in re.sub(r"\|\n\s*", "| ", block).splitlines():
                if re.search(r"\bkcat\b.* -P\b", line):
                    lines.append(line.split("  #")[0].strip())
    return lines


def _rdkafka_dir(tmp_path: Path) -> Path:
    """A folder with confluent-kafka's librdkafka as librdkafka.so.1 (README.md, Reading the topics with kcat)."""
    (lib,) = (Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka-*.so.1")
    folder = tmp_path / "rdkafka"
    if not folder.exists():
        folder.mkdir()
        (folder / "librdkafka.so.1").symlink_to(lib)
    return folder


def _produce_as_kcat_would(line: str, bootstrap: str, topic: str) -> None:
    """The records of ``echo '<input>' | kcat ... -P ...`` sent with confluent-kafka and that line's flags."""
    payload, command = line.split("|", 1)
    (text,) = shlex.split(payload.strip())[1:]
    args = shlex.split(command)
    flags = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i] in ("-K", "-X", "-t")}
    flags |= {a[:2]: a[2:] for a in args if a.startswith("-K") and len(a) > 2}
    config = dict(kv.split("=", 1) for kv in [flags["-X"]]) if "-X" in flags else {}
    key, _, value = text.partition(flags["-K"])
    producer = Producer({"bootstrap.servers": bootstrap, **config})
    producer.produce(topic, key=key.encode(), value=None if ("-Z" in args and not value) else value.encode())
    assert producer.flush(10) == 0


@pytest.fixture
def kcat_topic(settings) -> str:
    topic = f"{settings.topic_prefix}.kcat-events"
    admin = AdminClient(settings.kafka_config())
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(30)
    return topic


def _run_kcat(line: str, settings, topic: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "LD_LIBRARY_PATH": str(_rdkafka_dir(tmp_path))}  # fmt: skip
    return subprocess.run(["bash", "-c", line.replace("interest.events", topic)], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_the_guides_kcat_lines_put_each_record_on_its_users_murmur2_partition(settings, kcat_topic, tmp_path):
    lines = kcat_produce_lines()
    assert len(lines) == 2, lines  # an event (README.md) and a tombstone (deploy/README.md, Forgetting a user)
    for line in lines:
        assert "-X partitioner=murmur2_random" in line and "-K:" in line, line
        if KCAT:
            done = _run_kcat(line, settings, kcat_topic, tmp_path)
            assert done.returncode == 0, done.stderr
        else:
            _produce_as_kcat_would(line, settings.bootstrap_servers, kcat_topic)
    records = read_topic(settings, kcat_topic, expect=2, timeout=30, idle=1.0)
    assert [(m.key(), m.partition()) for m in records] == [(b"u42", partition_of(b"u42", PARTITIONS))] * 2
    event, tombstone = sorted(records, key=lambda m: m.value() is None)
    assert event.value().startswith(b'{"event_id":"e1","user_id":"u42"') and tombstone.value() is None
    # the same as the project's own producer picks
    producer = Producer({**settings.kafka_config(), **PRODUCER_DEFAULTS})
    producer.produce(kcat_topic, key=b"u42", value=b"{}")
    assert producer.flush(10) == 0
    assert {m.partition() for m in read_topic(settings, kcat_topic, expect=3, timeout=30, idle=0.5)} == {7}


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed; the line above checks its records without it")
def test_the_old_recipe_sent_nothing_and_kcats_default_partitioner_picks_another_partition(
    settings, kcat_topic, tmp_path
):
    old = 'kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -P -t interest.events -k u42 -Z <<< ""'
    default = 'echo "u42:" | kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -P -t interest.events -K: -Z'
    for line in (old, default):
        done = _run_kcat(line, settings, kcat_topic, tmp_path)
        assert done.returncode == 0, done.stderr
    (record,) = read_topic(settings, kcat_topic, expect=1, timeout=30, idle=1.0)
    assert record.value() is None and record.partition() != partition_of(b"u42", PARTITIONS)
