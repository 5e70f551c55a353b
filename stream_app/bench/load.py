"""Drive a running pipeline: produce a workload at a target rate and time every output.

``drive`` produces the workload's events (keyed by user, in order) from one thread, paced to
``rate`` events/s (``None``: as fast as the client takes them), while another thread reads the
recommendations topic. Latency of an event = arrival of its recommendation record at the
reader minus the moment the event was handed to the producer (both on this host's clock).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import msgspec
import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from stream_app import topics
from stream_app.bench.cluster import topic
from stream_app.bench.workload import Workload
from stream_app.client import PRODUCER_DEFAULTS
from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings


class LoadError(InterestStreamError):
    """The pipeline did not answer every event in time."""


class _Output(msgspec.Struct):
    event_id: str
    model_version: str = ""


@dataclass
class Timings:
    sent_at: np.ndarray  # [n] epoch s, when each event was handed to the producer
    arrived_at: np.ndarray  # [n] epoch s of its first recommendation (nan: none)
    versions: list[str]  # [n] model version of that recommendation ("": none)
    extra_outputs: int = 0  # recommendations for events already answered (replays)
    notes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return int(np.isfinite(self.arrived_at).sum())

    def latencies_ms(self) -> np.ndarray:
        ok = np.isfinite(self.arrived_at)
        return (self.arrived_at[ok] - self.sent_at[ok]) * 1000.0

    def sustained_rate(self, low: float = 0.1, high: float = 0.9) -> float:
        """Outputs per second between the ``low`` and ``high`` quantiles of arrivals (no ramp-up/down).

        A run too short for that window (a few answers, or the window's answers all in one fetch) has
        only the whole run's rate."""
        arrivals = np.sort(self.arrived_at[np.isfinite(self.arrived_at)])
        i, j = int(low * (len(arrivals) - 1)), int(high * (len(arrivals) - 1))
        if len(arrivals) < 10 or arrivals[j] <= arrivals[i]:
            return self.overall_rate()
        return (j - i) / (arrivals[j] - arrivals[i])

    def overall_rate(self) -> float:
        """Events per second from the first send to the last answer."""
        last = np.nanmax(self.arrived_at) if self.answered else float("nan")
        return self.answered / (last - self.sent_at.min())


def producer(settings: Settings, linger_ms: int = 2) -> Producer:
    """The client's producer settings (key placement, lz4, ordered retries), with a shorter linger by default:
    a bench that times each event's way from its ``produce`` call counts the linger."""
    return Producer(
        {
            **settings.kafka_config(),
            **PRODUCER_DEFAULTS,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": 2_000_000,
        }
    )


def _produce(
    p: Producer, name: str, keys: list[bytes], values: list[bytes], sent_at: np.ndarray, rate, stop: threading.Event
) -> None:
    t0 = time.time()
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        if stop.is_set():
            break
        if rate is not None:
            ahead = t0 + i / rate - time.time()
            if ahead > 0.0005:
                time.sleep(ahead)
        while True:
            try:
                sent_at[i] = time.time()
                p.produce(name, value, key)
                break
            except BufferError:
                p.poll(0.005)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(60)


def drive(
    settings: Settings,
    workload: Workload,
    rate: float | None,
    idle_timeout: float = 60.0,
    stop: threading.Event | None = None,
    events: Producer | None = None,
) -> Timings:
    """Produce ``workload`` at ``rate`` and wait for a recommendation of every event (or for
    ``idle_timeout`` seconds without any new one). Setting ``stop`` ends producing early: then only the
    events sent so far are waited for. ``events``: the producer to send with (default: a new one; a
    new idempotent producer holds its first ~0.5 s of records until the broker gives it an id, so a
    timed run passes the one its warm-up used)."""
    stop = stop or threading.Event()
    n = len(workload)
    index = {event_id: i for i, event_id in enumerate(workload.event_ids)}
    timings = Timings(np.full(n, np.nan), np.full(n, np.nan), [""] * n)
    recs = topic(settings, topics.RECOMMENDATIONS)
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"bench-reader-{settings.topic_prefix}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    meta = consumer.list_topics(recs, timeout=10).topics[recs]
    consumer.assign([TopicPartition(recs, p, -1) for p in meta.partitions])  # from the end: earlier runs' outputs
    consumer.poll(0.5)
    # Tansu resolves "the end" to the start of a partition's last batch: skip what was written before
    started_ms = int(time.time() * 1000) - 1
    decode = msgspec.json.Decoder(_Output).decode
    thread = threading.Thread(
        target=_produce,
        args=(
            events or producer(settings),
            topic(settings, topics.EVENTS),
            workload.keys,
            workload.values,
            timings.sent_at,
            rate,
            stop,
        ),
        daemon=True,
    )
    thread.start()
    answered, last_progress = 0, time.monotonic()
    arrived = timings.arrived_at
    try:
        while time.monotonic() - last_progress < idle_timeout:
            if answered >= (n if thread.is_alive() else int(np.isfinite(timings.sent_at).sum())):
                break
            # consume(n, timeout) holds what arrived until n records or the timeout, which timed every
            # output up to 50 ms late; poll wakes on the first record and consume(n, 0) takes the rest queued
            first = consumer.poll(0.05)
            batch = [first, *consumer.consume(2000, 0)] if first is not None else []
            now = time.time()
            for msg in batch:
                if msg.error() is not None or msg.value() is None or msg.timestamp()[1] < started_ms:
                    continue
                out = decode(msg.value())
                i = index.get(out.event_id)
                if i is None:
                    continue
                if np.isnan(arrived[i]):
                    arrived[i] = now
                    timings.versions[i] = out.model_version
                    answered += 1
                else:
                    timings.extra_outputs += 1
            if batch:
                last_progress = time.monotonic()
    finally:
        thread.join()
        consumer.close()
    sent = int(np.isfinite(timings.sent_at).sum())
    if answered < sent:
        timings.notes.append(f"{sent - answered} of {sent} events got no recommendation within {idle_timeout:.0f} s")
    return timings
