"""Record types of every topic (README.md, Topics), as msgspec structs.

msgspec decodes and validates raw JSON bytes in one pass in C, which is what the worker's
hot path needs; the JSON Schema files in ``schemas/`` are generated from these classes
(``python -m stream_app.contracts.schemas --write``) and a test fails when they drift.
A breaking change bumps the record's ``SCHEMA_VERSION`` and writes a new schema file.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

# The interactions a model steps on, in the index order of the step graph's `event_type` input.
InteractionType = Literal["click", "view", "like", "purchase", "rating", "comment"]
EVENT_TYPES: tuple[str, ...] = InteractionType.__args__
# `forget` deletes the user's state and outputs (right to erasure); its item_id is ignored.
EventType = Literal[InteractionType, "forget"]

# Bounds that keep one record from hurting a worker: ids fit in a RocksDB key, text fits the
# encoder's budget many times over, ts is epoch milliseconds before the year 5138.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256, description="Opaque identifier.")]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=99_999_999_999_999, description="Epoch milliseconds.")]
Text = Annotated[str, msgspec.Meta(max_length=32_768)]
Rating = Annotated[float, msgspec.Meta(ge=0.0, le=5.0)]
Vector = Annotated[list[float], msgspec.Meta(description="Vector components, rounded to 6 decimals.")]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=128, description="An item attribute to filter on.")]


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One user interaction; the only input of the stream (topic ``<prefix>.events``, key user_id)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: Id
    user_id: Id
    item_id: Id
    type: EventType
    ts: EpochMs
    text: Text | None = None
    rating: Rating | None = None

    def __post_init__(self) -> None:
        if self.type == "comment" and not self.text:
            raise ValueError("a comment event needs a non-empty `text`")


class Item(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A catalog entry (topic ``<prefix>.items``, key item_id, compacted; a tombstone deletes)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    item_id: Id
    text: Text = ""
    ts: EpochMs | None = None
    # optional attributes (added in the same version: older readers ignore them); the query API
    # filters on them (``?tag=``, ``?category=``)
    tags: Annotated[list[Tag], msgspec.Meta(max_length=64)] = []
    category: Tag | None = None


class InterestVector(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A user's refreshed interest after one event (topic ``<prefix>.vectors``, key user_id)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    user_id: Id
    event_id: Id
    ts: EpochMs
    model_version: str
    vector: Vector
    long_term: Vector | None = None
    short_term: Vector | None = None


class ScoredItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    item_id: Id
    score: float
    because: str | None = None


class Recommendation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Top-K items for a user after one event (topic ``<prefix>.recommendations``, key user_id)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    user_id: Id
    event_id: Id
    ts: EpochMs
    model_version: str
    items: list[ScoredItem]


AgeSeconds = Annotated[float, msgspec.Meta(description="Seconds since the worker applied the state's newest event.")]


class UserRecommendations(msgspec.Struct, frozen=True, kw_only=True):
    """The query API's answer to ``GET /users/{user_id}/recommendations``: the user's top-K ranked now,
    from the stored state and the worker's current item index. ``cold_start``: trending items, the user
    has no model state yet (``event_id`` null for a user the worker has never seen)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    user_id: Id
    event_id: Id | None  # the newest event the state applied
    ts: EpochMs | None  # its ts
    model_version: str
    state_age_s: AgeSeconds | None
    cold_start: bool
    items: list[ScoredItem]


class UserInterest(msgspec.Struct, frozen=True, kw_only=True):
    """The query API's answer to ``GET /users/{user_id}/interest``: the fused, long- and short-term
    interest vectors after the user's newest event, under the serving model."""

    SCHEMA_VERSION: ClassVar[int] = 1

    user_id: Id
    event_id: Id
    ts: EpochMs
    model_version: str
    state_age_s: AgeSeconds | None
    vector: Vector
    long_term: Vector
    short_term: Vector


class QueryError(msgspec.Struct, frozen=True, kw_only=True):
    """Any query API answer that is not a 200: what was wrong and what to do."""

    SCHEMA_VERSION: ClassVar[int] = 1

    status: int
    error: str


class ModelUpdate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A new model version in the registry (topic ``<prefix>.model-updates``, key model name)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    version: str
    uri: str
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    created_at: str
    metrics: dict[str, float] = {}


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An input record the stream could not use, with the reason (topic ``<prefix>.deadletter``)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    error: str
    reason: str
    topic: str
    partition: int
    offset: int
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"


Count = Annotated[int, msgspec.Meta(ge=0)]
Sum = Annotated[float, msgspec.Meta(ge=0.0)]
Exposure = Literal["served", "shadow"]
# History length before the judged event, as `istream evaluate` buckets it; `returning`: the event came after
# ISTREAM_ONLINE_SESSION_GAP_S without events; `cold_start`: the judged list was the trending one.
Cohort = Literal["cold_start", "returning", "1-2", "3-5", "6-10", "11-50", ">50"]
UnjudgedReason = Literal["first_event", "no_list", "unknown_item"]


class JudgedCounts(msgspec.Struct, frozen=True, kw_only=True):
    """The lists of one model version, exposure and cohort that users' next events judged. A list is
    ``served`` when its recommendations record was emitted, ``shadow`` when it was only ranked."""

    model_version: str
    exposure: Exposure
    cohort: Cohort
    judged: Count
    hits: Count  # the event's item was in the list (hit@k)
    reciprocal_rank: Sum  # sum of 1 / rank over the hits
    ndcg: Sum  # sum of 1 / log2(rank + 1) over the hits (one relevant item: DCG = NDCG)
    new_items: Count  # judged events whose item was not among the user's recently seen items
    new_item_hits: Count


class UnjudgedCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Applied events that judged no list of ``model_version``'s columns, and why: the user's first event,
    no list kept (a state from before online evaluation, a bootstrap, a new challenger), or an item the
    model's index does not know (it could never have been recommended)."""

    model_version: str
    reason: UnjudgedReason
    events: Count


class PairedCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Events that judged both the champion's and the challenger's list (cold-start lists left out):
    the paired comparison the guard decides by."""

    champion: str
    challenger: str
    judged: Count
    both_hit: Count
    champion_only: Count
    challenger_only: Count
    ndcg_diff: float  # sum of challenger NDCG - champion NDCG
    ndcg_diff_sq: Sum


class OnlineMetrics(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One worker's online evaluation over one window of its clock (topic ``<prefix>.online-metrics``, key
    the worker): exact counts, so windows of every worker sum to the stream's figures. A window ends after
    ISTREAM_ONLINE_WINDOW_S or when the worker's models change, so each holds one lineup."""

    SCHEMA_VERSION: ClassVar[int] = 1

    worker: str
    window_start: EpochMs
    window_end: EpochMs
    k: Annotated[int, msgspec.Meta(ge=1)]
    champion: str
    challenger: str | None = None
    trial_mode: Literal["shadow", "canary"] | None = None
    canary_share: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    judged: list[JudgedCounts] = []
    unjudged: list[UnjudgedCounts] = []
    paired: list[PairedCounts] = []


RECORDS: dict[str, type[msgspec.Struct]] = {
    "event": Event,
    "item": Item,
    "interest_vector": InterestVector,
    "recommendation": Recommendation,
    "model_update": ModelUpdate,
    "dead_letter": DeadLetter,
    "online_metrics": OnlineMetrics,
    "user_recommendations": UserRecommendations,
    "user_interest": UserInterest,
    "query_error": QueryError,
}
