import pytest

from stream_app import admin
from stream_app.topics import ALL, SINGLE_PARTITION, topic_name

pytestmark = pytest.mark.integration


def test_topics_create_is_idempotent_and_honours_flags(istream, settings):
    first = istream("topics", "create", "--partitions", "3", "--prefix", settings.topic_prefix)
    assert first.returncode == 0, first.stderr
    assert f"{len(ALL)} created, 0 already existed on {settings.bootstrap_servers}" in first.stdout
    second = istream("topics", "create")
    assert second.returncode == 0, second.stderr
    assert f"0 created, {len(ALL)} already existed" in second.stdout

    listed = admin.list_topics(settings)
    for kind in ALL:
        assert listed[topic_name(settings.topic_prefix, kind)] == (1 if kind in SINGLE_PARTITION else 3)
    assert admin.topic_config(settings, topic_name(settings.topic_prefix, "items"))["cleanup.policy"] == "compact"
    table = istream("topics", "list").stdout
    assert f"{topic_name(settings.topic_prefix, 'events')}\t3" in table.splitlines()


def test_topics_create_against_no_broker_fails_clearly(istream):
    from stream_app.broker import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    result = istream("topics", "create", "--bootstrap", bootstrap, "--timeout", "1")
    assert result.returncode == 69
    assert result.stderr.startswith(f"Error: no answer from Kafka at {bootstrap} within 1 s (")
