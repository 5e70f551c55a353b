"""Topic administration against any Kafka-protocol cluster (the local Tansu broker included).

Every request waits at most ``settings.kafka_timeout_s`` (``istream topics --timeout``); a cluster
that does not answer is ``ClusterUnreachable`` before anything is asked of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream_app.cluster import client_config, cluster_metadata, new_client
from stream_app.exceptions import ClientError
from stream_app.settings import Settings
from stream_app.topics import topic_specs

REACH_HINT = "is the cluster allowing this? (--bootstrap, KAFKA_BOOTSTRAP_SERVERS, ISTREAM_SASL_*)"


class AdminError(ClientError):
    """The cluster refused an administrative request."""


@dataclass
class CreateReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def reached_admin(settings: Settings) -> tuple[AdminClient, dict[str, int]]:
    """An admin client of a cluster that answered, and its topics (name -> partitions, internal ones left out)."""
    config = client_config(settings)
    admin = new_client(AdminClient, config)
    metadata = cluster_metadata(settings, admin, config)
    listed = {name: len(t.partitions) for name, t in sorted(metadata.topics.items()) if not name.startswith("__")}
    return admin, listed


def create_topics(settings: Settings) -> CreateReport:
    """Create every topic of the settings' prefix; a topic that already exists counts as done
    (its partitions and config are left as they are)."""
    specs = topic_specs(settings.topic_prefix, settings.partitions, settings.replication_factor)
    new = [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in specs]
    admin, _ = reached_admin(settings)  # must outlive the futures
    timeout = settings.kafka_timeout_s
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


def list_topics(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count, internal topics excluded."""
    return reached_admin(settings)[1]


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """The topic's configuration entries as the cluster reports them."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin, _ = reached_admin(settings)  # must outlive the future
    future = admin.describe_configs([resource], request_timeout=settings.kafka_timeout_s)[resource]
    try:
        entries = future.result()
    except KafkaException as exc:
        raise AdminError(f"describing topic {topic} failed: {exc.args[0].str()}") from None
    return {name: entry.value for name, entry in entries.items()}
