"""Versioned record contracts of every topic, and fast validated decoding of raw bytes."""

from stream_app.contracts.codec import ContractError, decode_event, decode_item, encode, encode_interest_vectors
from stream_app.contracts.records import (
    EVENT_TYPES,
    DeadLetter,
    Event,
    InterestVector,
    Item,
    ModelUpdate,
    Recommendation,
    ScoredItem,
)

__all__ = [
    "EVENT_TYPES",
    "ContractError",
    "DeadLetter",
    "Event",
    "InterestVector",
    "Item",
    "ModelUpdate",
    "Recommendation",
    "ScoredItem",
    "decode_event",
    "decode_item",
    "encode",
    "encode_interest_vectors",
]
