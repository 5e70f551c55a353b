"""Topic names (derived from one prefix) and their creation settings."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = "events"
ITEMS = "items"
VECTORS = "vectors"
RECOMMENDATIONS = "recommendations"
MODEL_UPDATES = "model-updates"
DEADLETTER = "deadletter"
ONLINE_METRICS = "online-metrics"

ALL = (EVENTS, ITEMS, VECTORS, RECOMMENDATIONS, MODEL_UPDATES, DEADLETTER, ONLINE_METRICS)
# Small logs read whole and in order (model updates by every worker, online metrics by the guard): one partition.
SINGLE_PARTITION = frozenset({MODEL_UPDATES, ONLINE_METRICS})
COMPACTED = frozenset({ITEMS, MODEL_UPDATES})


def topic_name(prefix: str, kind: str) -> str:
    """The one place topic names are made: ``<prefix>.<kind>``."""
    return f"{prefix}.{kind}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def topic_specs(prefix: str, partitions: int, replication_factor: int) -> list[TopicSpec]:
    """Every topic (README.md, Topics) with its creation settings."""
    return [
        TopicSpec(
            name=topic_name(prefix, kind),
            partitions=1 if kind in SINGLE_PARTITION else partitions,
            replication_factor=replication_factor,
            config={"cleanup.policy": "compact"} if kind in COMPACTED else {},
        )
        for kind in ALL
    ]
