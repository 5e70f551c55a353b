"""The worker's Faust app, built from settings.

``create_app(settings)`` makes the app, its table and its agent; ``istream worker`` calls it with
the command's settings. ``faust -A stream_app.worker.app worker`` finds ``app`` here, built on first
access from the environment (``ISTREAM_*``/``KAFKA_BOOTSTRAP_SERVERS``). Before Faust starts (and
creates anything on the cluster), ``create_app`` checks that the cluster answers and has every
topic, and loads and verifies the serving model: a worker that cannot run says why at once.

The app class is ``WorkerApp``: a ``faust.App`` whose consumer waits at most
``worker_fetch_max_wait_ms`` per fetch. Faust's aiokafka driver hardcodes ``fetch_max_wait_ms=1500``.
Apache Kafka answers a fetch as soon as records arrive, so there the wait only bounds idle
polling; Tansu holds every fetch for the whole wait, which put about 0.5 s (p50) between a
produced event and its outputs at a steady 500 events/s (``istream bench swap``).
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from stream_app import topics
from stream_app.cluster import client_config, cluster_metadata, new_client, require_topics
from stream_app.exceptions import ConfigError
from stream_app.settings import Settings


def use_event_loop(settings: Settings) -> None:
    """Install the event loop policy of ``worker_event_loop``; before the app makes any loop (Faust makes
    one for the app and one for its consumer thread)."""
    if settings.worker_event_loop == "uvloop":
        try:
            import mode.loop

            mode.loop.use("uvloop")
        except ImportError as exc:
            raise ConfigError(f"ISTREAM_WORKER_EVENT_LOOP=uvloop, but uvloop does not import: {exc}") from None


def events_partitions(settings: Settings) -> int:
    """Partitions of the events topic (the user-state table must have exactly as many), once the
    cluster answered and has every topic the worker reads or writes."""
    from confluent_kafka.admin import AdminClient

    config = client_config(settings)
    metadata = cluster_metadata(settings, new_client(AdminClient, config), config)
    require_topics(settings, metadata, [topics.topic_name(settings.topic_prefix, kind) for kind in topics.ALL])
    return len(metadata.topics[topics.topic_name(settings.topic_prefix, topics.EVENTS)].partitions)


def _credentials(settings: Settings) -> Any:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_ca_location)
        if settings.ssl_certificate_location:
            context.load_cert_chain(settings.ssl_certificate_location, settings.ssl_key_location)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism or "PLAIN",
        ssl_context=context,
    )


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by the fetcher the consumer creates when it starts
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class _KeepQueuesOnResume(FlowControlEvent):
    """Flow control whose ``resume`` keeps the records already queued for the agents.

    mode's ``resume`` also empties every queue. Faust's recovery resumes flow control after the
    stream partitions are resumed and sought, while records fetched before that seek are still
    being handed over: the records emptied with the queues were never delivered again, and Faust
    commits past such a jump. A worker restarted onto a backlog skipped runs of events that way
    (the kill -9 test in tests/stream_app/worker: up to 100 events in 2 of 6 runs). Kept, they are
    processed (or dropped as duplicates when the re-fetch brings them again). A revocation still
    empties the queues (Faust calls ``clear`` itself), and records of an older consumer generation
    are skipped by the stream."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


class WorkerApp(faust.App):
    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _KeepQueuesOnResume(loop=self.loop)

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


def worker_app(settings: Settings, app_id: str) -> WorkerApp:
    """The worker's Faust app and consumer settings, without tables or agents (``create_app`` adds them)."""
    session_s = settings.session_timeout_ms / 1000
    # One folder per app id: RocksDB remembers changelog offsets, and another app's would not match.
    data_dir = (settings.worker_data_dir or settings.run_dir / "worker") / app_id
    data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    return WorkerApp(
        app_id,
        fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
        broker=[f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(data_dir),
        topic_partitions=events_partitions(settings),
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=session_s,
        broker_heartbeat_interval=session_s / 4,
        broker_commit_interval=settings.worker_commit_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_recovery_delay=0.0,
        table_standby_replicas=0,
        web_enabled=settings.worker_web_port > 0,
        web_port=settings.worker_web_port or 6066,
        **({"web_host": settings.worker_web_host} if settings.worker_web_host else {}),
        autodiscover=False,
    )


def events_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    return app.topic(
        topics.topic_name(settings.topic_prefix, topics.EVENTS), key_serializer="raw", value_serializer="raw"
    )


def app_id(settings: Settings) -> str:
    """The worker's Faust app id: its consumer group and the prefix of its tables' changelog topics."""
    return settings.worker_app_id or f"{settings.topic_prefix}-worker"


def create_app(settings: Settings) -> faust.App:
    from stream_app.worker.agents import define_agents
    from stream_app.worker.tables import partition_to_trending, user_to_state
    from stream_app.worker.web import define_web

    app = worker_app(settings, app_id(settings))
    partitions = app.conf.topic_partitions
    states, trending = user_to_state(app, partitions), partition_to_trending(app, partitions)
    engine = define_agents(app, settings, events_topic(app, settings), states, trending)
    engine.load_model()
    if settings.worker_web_port:
        define_web(app, engine, settings)
    return app


def __getattr__(name: str) -> faust.App:
    if name == "app":
        settings = Settings()
        use_event_loop(settings)
        app = create_app(settings)
        globals()["app"] = app
        return app
    raise AttributeError(name)
