"""Topic names (derived from one prefix) and their creation settings."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = "events"
ITEMS = "items"
VECTORS = "vectors"
RECOMMENDATIONS = "recommendations"
MODEL_UPDATES = "model-updates"
DEADLETTER = "deadletter"

ALL = (EVENTS, ITEMS, VECTORS, RECOMMENDATIONS, MODEL_UPDATES, DEADLETTER)
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
            # Model updates are a broadcast log read from the start by every worker; one partition keeps order.
            partitions=1 if kind == MODEL_UPDATES else partitions,
            replication_factor=replication_factor,
            config={"cleanup.policy": "compact"} if kind in COMPACTED else {},
        )
        for kind in ALL
    ]
