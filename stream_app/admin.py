"""Topic administration against any Kafka-protocol cluster (the local Tansu broker included)."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings
from stream_app.topics import topic_specs

TIMEOUT_S = 30.0
REACH_HINT = "is the cluster reachable and allowing this? (--bootstrap, KAFKA_BOOTSTRAP_SERVERS, ISTREAM_SASL_*)"


class AdminError(InterestStreamError):
    """The cluster refused or did not answer an administrative request."""


@dataclass
class CreateReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config())


def create_topics(settings: Settings, timeout: float = TIMEOUT_S) -> CreateReport:
    """Create every topic of the settings' prefix; a topic that already exists counts as done
    (its partitions and config are left as they are)."""
    specs = topic_specs(settings.topic_prefix, settings.partitions, settings.replication_factor)
    new = [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in specs]
    admin = admin_client(settings)  # must outlive the futures
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    report = CreateReport()
    for name, future in futures.items():
        try:
            future.result()
            report.created.append(name)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise AdminError(
                    f"creating topic {name} on {settings.bootstrap_servers} failed: {error.str()}; {REACH_HINT}"
                ) from None
            report.existing.append(name)
    return report


def list_topics(settings: Settings, timeout: float = TIMEOUT_S) -> dict[str, int]:
    """Topic name -> partition count, internal topics excluded."""
    try:
        metadata = admin_client(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise AdminError(f"no answer from {settings.bootstrap_servers}: {exc.args[0].str()}; {REACH_HINT}") from None
    return {name: len(t.partitions) for name, t in sorted(metadata.topics.items()) if not name.startswith("__")}


def topic_config(settings: Settings, topic: str, timeout: float = TIMEOUT_S) -> dict[str, str]:
    """The topic's configuration entries as the cluster reports them."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = admin_client(settings)  # must outlive the future
    future = admin.describe_configs([resource], request_timeout=timeout)[resource]
    try:
        entries = future.result()
    except KafkaException as exc:
        raise AdminError(f"describing topic {topic} failed: {exc.args[0].str()}") from None
    return {name: entry.value for name, entry in entries.items()}
