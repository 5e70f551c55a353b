import time

import pytest
from confluent_kafka import Producer

from stream_app.broker import free_port
from stream_app.client import ClientError, EventProducer, RecordConsumer, paced
from stream_app.contracts import ContractError, Event, InterestVector, Recommendation, ScoredItem, decode_event, encode
from stream_app.exceptions import ClusterUnreachable

pytestmark = pytest.mark.integration


def events(n: int) -> list[dict]:
    return [
        {"event_id": f"e{i}", "user_id": f"u{i % 5}", "item_id": f"i{i % 11}", "type": "click", "ts": 1000 + i}
        for i in range(n)
    ]


def test_producer_sends_valid_events_keyed_by_user(settings, topics, group_id):
    with EventProducer(settings) as producer:
        for event in events(50):
            producer.send(event)
    assert (producer.stats.sent, producer.stats.delivered, producer.stats.failed) == (50, 50, 0)

    with RecordConsumer(settings, "events", group_id=group_id, from_beginning=True) as consumer:
        messages = list(consumer.messages(max_records=50, timeout=10))
    assert len(messages) == 50
    for msg in messages:
        assert msg.key().decode() == decode_event(msg.value()).user_id
    assert sorted(decode_event(m.value()).event_id for m in messages) == sorted(e["event_id"] for e in events(50))


def test_producer_refuses_an_invalid_event_before_sending(settings, topics):
    with EventProducer(settings) as producer:
        with pytest.raises(ContractError, match="non-empty `text`"):
            producer.send({**events(1)[0], "type": "comment"})
        with pytest.raises(ContractError):
            producer.send(b"{broken")
    assert producer.stats.sent == 0
    with RecordConsumer(settings, "events", from_beginning=True) as consumer:
        assert list(consumer.records(timeout=1.5)) == []


def test_items_go_to_the_items_topic_keyed_by_item(settings, topics):
    with EventProducer(settings) as producer:
        producer.send_item({"item_id": "i1", "text": "Boots"})
    with RecordConsumer(settings, topics["items"], from_beginning=True) as consumer:
        (msg,) = consumer.messages(max_records=1, timeout=10)
    assert msg.key() == b"i1" and msg.value() == b'{"item_id":"i1","text":"Boots"}'


def test_typed_consumer_reads_recommendations_and_vectors(settings, topics):
    recommendation = Recommendation(
        user_id="u1", event_id="e9", ts=5, model_version="v1", items=[ScoredItem(item_id="i3", score=0.5)]
    )
    vector = InterestVector(user_id="u1", event_id="e9", ts=5, model_version="v1", vector=[0.25, -0.5])
    raw = Producer(settings.kafka_config())
    raw.produce(topics["recommendations"], key=b"u1", value=encode(recommendation))
    raw.produce(topics["vectors"], key=b"u1", value=encode(vector))
    assert raw.flush(10) == 0

    with RecordConsumer(settings, "recommendations", from_beginning=True) as consumer:
        assert list(consumer.records(max_records=1, timeout=10)) == [recommendation]
    with RecordConsumer(settings, "vectors", from_beginning=True) as consumer:
        assert list(consumer.records(max_records=1, timeout=10)) == [vector]


def test_consumer_without_from_beginning_reads_only_new_records(settings, topics):
    *old, new = events(9)
    with EventProducer(settings) as producer:  # one batch per partition (linger): Tansu's end offset counts it as 1
        for event in old:
            producer.send(event)
    with RecordConsumer(settings, "events", record_type=Event) as consumer:
        assert list(consumer.records(timeout=1.0)) == []
        with EventProducer(settings) as producer:
            producer.send(new)
        assert [e.event_id for e in consumer.records(max_records=1, timeout=10)] == [new["event_id"]]


def test_typed_consumer_names_a_record_that_does_not_decode(settings, topics):
    raw = Producer(settings.kafka_config())
    raw.produce(topics["recommendations"], key=b"u1", value=b'{"user_id": "u1"}')
    assert raw.flush(10) == 0
    pattern = rf"{topics['recommendations']}\[\d+\]@0 does not decode"
    with (
        RecordConsumer(settings, "recommendations", from_beginning=True) as consumer,
        pytest.raises(ContractError, match=pattern),
    ):
        list(consumer.records(max_records=1, timeout=10))


def test_consumer_of_a_missing_topic_says_how_to_create_it(settings):
    with pytest.raises(ClientError, match="istream topics create"):
        RecordConsumer(settings, "events")


def test_close_reports_undelivered_records_once_no_delivery_came_for_the_timeout(settings, tmp_path):
    from stream_app.admin import create_topics
    from stream_app.broker import start_broker

    with open(tmp_path / "broker.log", "wb") as log, start_broker("127.0.0.1", free_port(), log=log) as broker:
        own = settings.model_copy(update={"bootstrap_servers": broker.bootstrap, "kafka_timeout_s": 1})
        create_topics(own)
        producer = EventProducer(own)
    producer.send(events(1)[0])  # the broker is gone now
    started = time.monotonic()
    with pytest.raises(ClientError, match=r"0 record\(s\) failed and 1 undelivered \(no delivery report for 1 s"):
        producer.close()
    assert time.monotonic() - started < 5
    assert (producer.stats.sent, producer.stats.delivered) == (1, 0)


@pytest.mark.parametrize("client", ["producer", "consumer", "group consumer"])
def test_an_unreachable_cluster_is_a_client_error_within_the_timeout(settings, client):
    unreachable = settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "kafka_timeout_s": 1})
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable, match=r"no answer from Kafka at .* within 1 s \(.*Connection refused"):
        if client == "producer":
            EventProducer(unreachable)
        else:
            RecordConsumer(unreachable, "events", group_id="g" if client == "group consumer" else None)
    assert time.monotonic() - started < 5
    assert issubclass(ClusterUnreachable, ClientError)


def test_paced_keeps_to_the_rate():
    started = time.monotonic()
    assert list(paced(range(6), rate=50)) == list(range(6))
    assert time.monotonic() - started >= 5 / 50
