"""Broadcast feeds: topics every worker reads in full (items, model updates), outside Faust's group.

A consumer group would split the partitions between workers, but every worker needs every item and
every model update. So each feed is a librdkafka consumer that assigns itself all partitions (no
group membership, no commits) and reads in a daemon thread into a queue the worker drains between
batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from stream_app.worker.decode import RawRecord

log = logging.getLogger(__name__)


class TopicFeed:
    def __init__(self, kafka_config: dict, topic: str, from_beginning: bool) -> None:
        self.topic = topic
        self._queue: queue.Queue[RawRecord] = queue.Queue()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                **kafka_config,
                # never joins: assign() below; librdkafka still wants a group id
                "group.id": f"istream-feed-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self._thread = threading.Thread(target=self._run, name=f"feed-{topic}", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        meta = self._consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {self.topic} does not exist; create the topics first (istream topics create)")
        self._consumer.assign([TopicPartition(self.topic, p, self._start) for p in meta.partitions])
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._consumer.consume(500, timeout=0.2)
            except KafkaException as exc:
                log.warning("feed %s: %s", self.topic, exc)
                continue
            for msg in messages:
                if msg.error() is None:
                    self._queue.put(RawRecord(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))
                else:
                    log.warning("feed %s: %s", self.topic, msg.error())
        self._consumer.close()

    def drain(self) -> list[RawRecord]:
        """Everything read since the last drain, in order."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
