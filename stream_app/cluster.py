"""How the app's librdkafka clients reach the cluster: their config, their logs, a bounded wait.

Every confluent-kafka client of the app is built from ``client_config(settings)``: the settings'
connection plus a ``ClientLog`` of its own, which routes librdkafka's log lines to the
``stream_app.librdkafka`` logger (by default librdkafka writes them to stderr itself: 580 lines in
30 s of ``istream topics list`` against a closed port) and keeps the client's latest error, so a
failure can say why (connection refused, SSL handshake failed, ...). librdkafka retries a failed
connection by itself every few hundred milliseconds and the caller reports the failure that
matters, so those lines (facility FAIL) are DEBUG, as are its notices and info; its other
warnings and errors keep their level.

``cluster_metadata`` waits at most ``ISTREAM_KAFKA_TIMEOUT_S``: no answer is ``ClusterUnreachable``
(exit code 69); ``require_topics`` names missing topics and how to make them.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from stream_app import topics
from stream_app.exceptions import ClientError, ClusterUnreachable, ConfigError
from stream_app.settings import Settings

C = TypeVar("C")
LOGGER = logging.getLogger("stream_app.librdkafka")
RETRIED_BY_LIBRDKAFKA = frozenset({"FAIL"})


class ClientLog:
    """librdkafka's ``logger`` and ``error_cb`` for one client (both run inside its ``poll``/``flush``)."""

    def __init__(self) -> None:
        self.last_error: str | None = None

    def log(self, level: int, fmt: str, *args: Any) -> None:
        # confluent-kafka calls log(level, "%s [%s] %s", facility, client name, message), level already
        # mapped from syslog's to logging's
        facility = args[0] if args else ""
        if facility in RETRIED_BY_LIBRDKAFKA or level < logging.WARNING:
            level = logging.DEBUG
        LOGGER.log(level, fmt, *args)

    def error(self, error: KafkaError) -> None:
        self.last_error = error.str()
        LOGGER.debug("client error: %s", self.last_error)


def client_config(settings: Settings, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka config of one client: the settings' connection, log routing, then ``extra``."""
    client_log = ClientLog()
    return {**settings.kafka_config(), "logger": client_log, "error_cb": client_log.error, **(extra or {})}


def new_client(kind: Callable[[dict[str, Any]], C], config: dict[str, Any]) -> C:
    """``kind(config)`` (Producer, Consumer, AdminClient); a config librdkafka refuses is a ``ConfigError``."""
    try:
        return kind(config)
    except KafkaException as exc:
        raise ConfigError(f"the Kafka client refused its configuration: {exc.args[0].str()}") from None


def unreachable(
    settings: Settings, client: Any, config: dict[str, Any], cause: KafkaException | None = None
) -> ClusterUnreachable:
    """The ``ClusterUnreachable`` to raise for ``client`` (built from ``config``), with the client's last error."""
    with contextlib.suppress(Exception):
        client.poll(0)  # serves the queued error callbacks (and log lines)
    client_log = config.get("logger")
    reason = getattr(client_log, "last_error", None) or (cause.args[0].str() if cause is not None else "timed out")
    return ClusterUnreachable(
        f"no answer from Kafka at {settings.bootstrap_servers} within {settings.kafka_timeout_s:g} s ({reason}); "
        "check that it runs and that --bootstrap / KAFKA_BOOTSTRAP_SERVERS (and ISTREAM_SASL_*, ISTREAM_SSL_*) "
        "point at it"
    )


def cluster_metadata(settings: Settings, client: Any, config: dict[str, Any]) -> Any:
    """Metadata of every topic (never names one: a producer's metadata request for a missing topic may
    create it), waiting at most ``settings.kafka_timeout_s``."""
    try:
        return client.list_topics(timeout=settings.kafka_timeout_s)
    except KafkaException as exc:
        raise unreachable(settings, client, config, exc) from None


def missing_topic_hint(settings: Settings, name: str, existing: set[str]) -> str:
    """What to do about a topic that does not exist: valid kinds, and the nearest name if it is a typo."""
    known = [*topics.ALL, *sorted(existing)]
    close = difflib.get_close_matches(name, known, n=1)
    suggestion = f"; did you mean {close[0]}?" if close else ""
    return (
        f"a topic is a kind ({', '.join(topics.ALL)}: {settings.topic_prefix}.<kind>) or a full name; "
        f"`istream topics create` makes the kinds{suggestion}"
    )


def require_topics(settings: Settings, metadata: Any, names: list[str]) -> None:
    """``ClientError`` naming every topic of ``names`` the cluster does not have."""
    present = {name for name, meta in metadata.topics.items() if meta.error is None and meta.partitions}
    missing = [name for name in names if name not in present]
    if len(missing) == 1:
        raise ClientError(
            f"topic {missing[0]} does not exist on {settings.bootstrap_servers}; "
            + missing_topic_hint(settings, missing[0], present)
        )
    if missing:
        raise ClientError(
            f"topics {', '.join(missing)} do not exist on {settings.bootstrap_servers}; create them with "
            "`istream topics create` (same --prefix / ISTREAM_TOPIC_PREFIX)"
        )
