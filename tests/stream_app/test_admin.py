import pytest

from stream_app import admin, topics
from stream_app.topics import topic_name

pytestmark = pytest.mark.integration


def test_create_topics_twice_is_idempotent(settings):
    first = admin.create_topics(settings)
    second = admin.create_topics(settings)

    names = [topic_name(settings.topic_prefix, kind) for kind in topics.ALL]
    assert sorted(first.created) == sorted(names) and first.existing == []
    assert second.created == [] and sorted(second.existing) == sorted(names)
    listed = admin.list_topics(settings)
    assert {n: listed[n] for n in names} == {
        n: 1 if n.endswith((".model-updates", ".online-metrics")) else settings.partitions for n in names
    }


@pytest.mark.parametrize("kind", sorted(topics.COMPACTED))
def test_compacted_topics_have_compact_policy(settings, topics, kind):
    assert admin.topic_config(settings, topics[kind])["cleanup.policy"] == "compact"


def test_plain_topics_are_not_compacted(settings, topics):
    assert admin.topic_config(settings, topics["events"]).get("cleanup.policy", "delete") == "delete"
