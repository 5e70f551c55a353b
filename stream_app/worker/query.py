"""The query API's answers: a user's recommendations and interest, from its stored state, ranked now.

Plain functions, no HTTP (``web`` serves them): ``parse_recommendations`` turns request parameters
into a ``RecommendationsQuery`` or a ``QueryFailed`` (status 400, a message that says what to send);
``recommendations`` ranks the serving index for the user's state through the stream's own ranking
(``ranking.recommend``: excluded ids, seen items unless ``include_seen``, attribute filters, ``because``);
a user without a model state (never seen, forgotten, or fewer events than the cold-start threshold)
gets the cold-start list (``ranking.cold``). ``interest`` answers the vectors. Nothing here writes:
a state stepped by another model version, or read from a codec that kept no vectors, is answered
from its window replayed on the serving model (``pipeline.current_vectors``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from stream_app.contracts import ScoredItem, UserInterest, UserRecommendations
from stream_app.contracts.float_json import DECIMALS
from stream_app.exceptions import InterestStreamError
from stream_app.worker.item_index import Catalog, attribute_labels
from stream_app.worker.pipeline import PipelineConfig, Serving, current_vectors, item_rows
from stream_app.worker.ranking import cold, recommend
from stream_app.worker.state_codec import NO_TS, UserState
from stream_app.worker.trending import Trending

MAX_K = 1000
MAX_EXCLUDED = 1000
MAX_USER_ID = 256  # the contracts' Id
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no", ""})


class QueryFailed(InterestStreamError):
    """A query the worker cannot answer with a 200: ``status`` and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RecommendationsQuery:
    k: int
    exclude: tuple[str, ...] = ()
    include_seen: bool = False
    labels: tuple[str, ...] = ()  # attribute_labels of the tag/category filter


def check_user_id(user_id: str) -> str:
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise QueryFailed(400, f"a user id has 1 to {MAX_USER_ID} characters, this one {len(user_id)}")
    return user_id


def parse_recommendations(params: Iterable[tuple[str, str]], default_k: int) -> RecommendationsQuery:
    """``?k=&exclude=&include_seen=&tag=&category=`` (``exclude`` and ``tag`` may repeat; ``exclude`` also
    takes comma-separated ids; several tags: items with all of them)."""
    k, exclude, include_seen, tags, category = default_k, [], False, [], None
    for name, value in params:
        if name == "k":
            try:
                k = int(value)
            except ValueError:
                raise QueryFailed(400, f"k must be a whole number from 1 to {MAX_K}, not {value!r}") from None
            if not 1 <= k <= MAX_K:
                raise QueryFailed(400, f"k must be from 1 to {MAX_K}, not {k}")
        elif name == "exclude":
            exclude += [item for item in value.split(",") if item]
        elif name == "include_seen":
            if value.lower() not in _TRUE | _FALSE:
                raise QueryFailed(400, f"include_seen must be true or false, not {value!r}")
            include_seen = value.lower() in _TRUE
        elif name == "tag":
            if not value:
                raise QueryFailed(400, "tag must not be empty")
            tags.append(value)
        elif name == "category":
            if not value or category is not None:
                raise QueryFailed(400, "give one non-empty category")
            category = value
        else:
            raise QueryFailed(400, f"unknown parameter {name!r}; known: k, exclude, include_seen, tag, category")
    if len(exclude) > MAX_EXCLUDED:
        raise QueryFailed(400, f"at most {MAX_EXCLUDED} excluded ids, got {len(exclude)}")
    return RecommendationsQuery(k, tuple(exclude), include_seen, attribute_labels(tags, category))


def no_parameters(params: Iterable[tuple[str, str]]) -> None:
    names = sorted({name for name, _ in params})
    if names:
        raise QueryFailed(400, f"this endpoint takes no parameters, got {', '.join(names)}")


def _age_s(state: UserState, now_ms: int) -> float | None:
    return None if state.active_at == NO_TS else max(0.0, (now_ms - state.active_at) / 1000.0)


def _has_state(state: UserState | None) -> bool:
    return state is not None and not state.is_marker


def recommendations(
    user_id: str,
    state: UserState | None,
    query: RecommendationsQuery,
    serving: Serving,
    trending: Trending,
    catalog: Catalog,
    config: PipelineConfig,
    now_ms: int,
) -> UserRecommendations:
    """The user's top ``query.k`` now (``state`` None: a user the worker has never seen)."""
    (answer,) = recommendations_batch([(user_id, state, query)], serving, trending, catalog, config, now_ms)
    return answer


def recommendations_batch(
    requests: list[tuple[str, UserState | None, RecommendationsQuery]],
    serving: Serving,
    trending: Trending,
    catalog: Catalog,
    config: PipelineConfig,
    now_ms: int,
) -> list[UserRecommendations]:
    """``recommendations`` of several requests at once: warm users asking for the same k and filter are
    ranked in one product over the index (a GEMV per query cost 4x what a 32-query product did)."""
    index = serving.index
    items: list[list[ScoredItem]] = [[] for _ in requests]
    cold_start = [True] * len(requests)
    warm: dict[tuple[int, tuple[str, ...]], list[tuple[int, np.ndarray, list[int]]]] = {}
    for n, (_, state, query) in enumerate(requests):
        exclude = index.rows(query.exclude)
        known = _has_state(state)
        if known and not query.include_seen:
            exclude += item_rows(state, index).seen
        vectors = current_vectors(state, serving, config) if known else None
        if vectors is not None and state.applied >= config.cold_start_events:
            warm.setdefault((query.k, query.labels), []).append((n, vectors[0], exclude))
            cold_start[n] = False
        else:
            allowed = index.matching(catalog, query.labels) if query.labels else None
            items[n] = cold(trending, index, query.k, exclude, allowed)
    for (k, labels), group in warm.items():
        states = [requests[n][1] for n, _, _ in group]
        rows = [item_rows(state, index) for state in states]
        allowed = index.matching(catalog, labels) if labels else None
        interests = np.stack([vector for _, vector, _ in group])
        ranked = recommend(
            index, interests, [e for _, _, e in group], [s.window for s in states], [r.window for r in rows], k, allowed
        )
        for (n, _, _), answer in zip(group, ranked, strict=True):
            items[n] = answer
    answers = []
    for (user_id, state, _), ranked, is_cold in zip(requests, items, cold_start, strict=True):
        known = _has_state(state)
        answers.append(
            UserRecommendations(
                user_id=user_id,
                event_id=state.window[-1].event_id if known and state.window else None,
                ts=state.last_ts if known and state.last_ts != NO_TS else None,
                model_version=serving.version,
                state_age_s=_age_s(state, now_ms) if known else None,
                cold_start=is_cold,
                items=ranked,
            )
        )
    return answers


def interest(
    user_id: str, state: UserState | None, serving: Serving, config: PipelineConfig, now_ms: int
) -> UserInterest:
    """The user's vectors under the serving model; ``QueryFailed`` (404) when it has none."""
    vectors = current_vectors(state, serving, config) if _has_state(state) else None
    if vectors is None:
        raise QueryFailed(
            404,
            f"user {user_id!r} has no interest state on this stream (no event applied yet, or forgotten); "
            f"its recommendations are the cold-start list: GET /users/{{user_id}}/recommendations",
        )
    vector, long_term, short_term = np.asarray(vectors, dtype=np.float64).round(DECIMALS).tolist()
    return UserInterest(
        user_id=user_id,
        event_id=state.window[-1].event_id,
        ts=state.last_ts,
        model_version=serving.version,
        state_age_s=_age_s(state, now_ms),
        vector=vector,
        long_term=long_term,
        short_term=short_term,
    )
