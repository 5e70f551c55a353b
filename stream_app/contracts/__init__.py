"""Versioned record contracts of every topic, and fast validated decoding of raw bytes."""

from stream_app.contracts.codec import (
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    ContractError,
    decode_event,
    decode_item,
    decode_model_update,
    encode,
    encode_interest_vectors,
    record_decoder,
)
from stream_app.contracts.records import (
    EVENT_TYPES,
    DeadLetter,
    Event,
    InterestVector,
    Item,
    ModelUpdate,
    QueryError,
    Recommendation,
    ScoredItem,
    UserInterest,
    UserRecommendations,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_DEPTH",
    "MAX_RECORD_BYTES",
    "ContractError",
    "DeadLetter",
    "Event",
    "InterestVector",
    "Item",
    "ModelUpdate",
    "QueryError",
    "Recommendation",
    "ScoredItem",
    "UserInterest",
    "UserRecommendations",
    "decode_event",
    "decode_item",
    "decode_model_update",
    "encode",
    "encode_interest_vectors",
    "record_decoder",
]
