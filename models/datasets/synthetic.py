"""A synthetic event stream with planted structure, deterministic by seed, to check a model learns it.

Catalog: ``items`` items spread evenly over ``topics`` named topics (``synthetic_vocab.TOPICS``);
an item's text is built from its topic's own vocabulary, e.g. "Waterproof hiking boots built for
rocky alpine terrain. Packs down small for the trailhead." Within a topic, item popularity follows
a Zipf law, so a user's next item is predictable from the topic alone.

Users: each has 1-3 core topics with Dirichlet weights (none below half its even share) and
browses in sessions. A core session picks one core topic by those weights and keeps to it for
``session_focus`` of its interactions, the rest on uniformly random topics; ``topic_mix`` in the
truth is exactly the resulting expected topic share. A burst session (``burst_rate`` of sessions,
while bursts stay under ``burst_budget`` of the user's events) is a run of 3-12 interactions on one
non-core topic. For ``current_burst_fraction`` of users the stream ends in a burst of 5-12 events
on a non-core topic (their ``current_burst``); every other user's stream ends in a core session.
An interaction with an item is a view or click, sometimes followed by a like, purchase or comment.
Each user hides a like or dislike of every item they touch (``dislike_rate`` dislikes): disliked
items are never liked or purchased, and their comments are negative ("Broke after two days,
returning it.", rating 1-2) where liked items get positive ones ("Great ..., buying another.",
rating 4-5). Timestamps increase per user: seconds between events on one item, about a minute
between items, hours to days between sessions.

Formats (what ``generate`` returns and ``istream generate`` writes):

- events: dicts ``{event_id, user_id, item_id, type, ts[, text, rating]}`` sorted by (ts, user_id);
  event_id ``syn<seed>-<position>``, user_id ``user-<n>``, item_id ``item-<n>``, ts epoch ms from
  2024-01-01; type click|view|like|purchase|comment; comments carry ``text`` and ``rating``.
- items: dicts ``{item_id, text}``.
- truth (JSON)::

    {"seed": int,
     "topics": [topic name, ...],
     "items": {item_id: topic index},
     "users": {user_id: {"topic_mix": [weight per topic, sums to 1],
                         "long_term_topics": [core topic indices, heaviest first],
                         "current_burst": topic index of the burst the stream ends in, or null,
                         "disliked_items": [item_id, ... sorted]}}}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.datasets.exceptions import DatasetError
from models.datasets.synthetic_vocab import NEGATIVE_COMMENTS, POSITIVE_COMMENTS, TOPICS

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SECOND_MS = 1000
HOUR_MS = 3600 * SECOND_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class StreamShape:
    """Knobs of the planted structure; the defaults give a strong, clean signal."""

    topics: int = 12
    session_focus: float = 0.9  # chance an interaction in a core session is on the session's topic, else any topic
    burst_rate: float = 0.12  # chance an earlier session is a burst of a non-core topic ...
    burst_budget: float = 0.15  # ... while earlier bursts stay under this share of the user's events
    current_burst_fraction: float = 0.5  # share of users whose stream ends in a burst
    dislike_rate: float = 0.15
    popularity_exponent: float = 1.0  # Zipf exponent of item popularity within a topic


@dataclass
class _User:
    user_id: str
    mix: np.ndarray  # expected topic shares of core sessions
    core: list[int]  # heaviest first
    core_weights: np.ndarray  # session-topic probabilities over ``core``
    current_burst: int | None
    opinions: dict[int, bool]  # item index -> disliked


class _Catalog:
    def __init__(self, n_items: int, n_topics: int, shape: StreamShape, rng: np.random.Generator) -> None:
        self.topic_of = rng.permutation(np.arange(n_items) % n_topics)
        self.nouns: list[str] = []
        self.texts: list[str] = []
        for topic in self.topic_of:
            vocab = TOPICS[topic]
            noun = vocab.nouns[rng.integers(len(vocab.nouns))]
            adjective = vocab.adjectives[rng.integers(len(vocab.adjectives))]
            feature = vocab.features[rng.integers(len(vocab.features))]
            blurb = vocab.blurbs[rng.integers(len(vocab.blurbs))]
            self.nouns.append(noun)
            self.texts.append(f"{adjective.capitalize()} {noun} {feature}. {blurb}")
        # per topic: its items in popularity order and their Zipf sampling probabilities
        self.members: list[np.ndarray] = []
        self.popularity: list[np.ndarray] = []
        for topic in range(n_topics):
            members = rng.permutation(np.flatnonzero(self.topic_of == topic))
            weights = 1.0 / np.arange(1, len(members) + 1) ** shape.popularity_exponent
            self.members.append(members)
            self.popularity.append(weights / weights.sum())

    def pick(self, topic: int, rng: np.random.Generator) -> int:
        return int(self.members[topic][rng.choice(len(self.members[topic]), p=self.popularity[topic])])


def _make_user(user_id: str, n_topics: int, shape: StreamShape, rng: np.random.Generator) -> _User:
    n_core = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    core = rng.choice(n_topics, size=n_core, replace=False)
    # half the weight split evenly, half by Dirichlet: no core topic falls below half its even share
    weights = 0.5 / n_core + 0.5 * rng.dirichlet(np.full(n_core, 2.0))
    order = np.argsort(-weights, kind="stable")
    core, weights = [int(t) for t in core[order]], weights[order]
    mix = np.full(n_topics, (1.0 - shape.session_focus) / n_topics)
    mix[core] += shape.session_focus * weights
    burst = int(rng.choice(_non_core(n_topics, core))) if rng.random() < shape.current_burst_fraction else None
    return _User(user_id, mix, core, weights, burst, {})


def _non_core(n_topics: int, core: list[int]) -> np.ndarray:
    return np.setdiff1d(np.arange(n_topics), core)


def _interaction(
    user: _User, item: int, catalog: _Catalog, shape: StreamShape, rng: np.random.Generator
) -> list[tuple[int, str, str | None, float | None]]:
    """(item, type, text, rating) events of one interaction with ``item``."""
    if item not in user.opinions:
        user.opinions[item] = bool(rng.random() < shape.dislike_rate)
    disliked = user.opinions[item]
    first = "view" if rng.random() < 0.55 else "click"
    events: list[tuple[int, str, str | None, float | None]] = [(item, first, None, None)]
    if first == "view" and rng.random() < 0.35:
        events.append((item, "click", None, None))
    follow = rng.random()
    if disliked:
        if follow < 0.3:
            template = NEGATIVE_COMMENTS[rng.integers(len(NEGATIVE_COMMENTS))]
            events.append((item, "comment", template.format(noun=catalog.nouns[item]), float(rng.integers(1, 3))))
    elif follow < 0.18:
        events.append((item, "like", None, None))
    elif follow < 0.28:
        events.append((item, "purchase", None, None))
    elif follow < 0.38:
        template = POSITIVE_COMMENTS[rng.integers(len(POSITIVE_COMMENTS))]
        events.append((item, "comment", template.format(noun=catalog.nouns[item]), float(rng.integers(4, 6))))
    return events


def _session_topics(user: _User, length: int, burst: int | None, shape: StreamShape, rng: np.random.Generator):
    """Topic of each interaction of one session: all ``burst`` if given, else mostly one core topic."""
    if burst is not None:
        return [burst] * length
    focus = user.core[rng.choice(len(user.core), p=user.core_weights)]
    return [focus if rng.random() < shape.session_focus else int(rng.integers(len(user.mix))) for _ in range(length)]


def _user_stream(
    user: _User, n_events: int, catalog: _Catalog, shape: StreamShape, rng: np.random.Generator
) -> list[tuple[int, str, str | None, float | None, int]]:
    """(item, type, text, rating, ts) of one user's ``n_events`` events, in time order."""
    n_topics = len(user.mix)
    tail = min(int(rng.integers(5, 13)), n_events // 3) if user.current_burst is not None else 0
    if tail < 3:  # too few events for a burst to be visible
        user.current_burst, tail = None, 0
    body_target = n_events - tail
    burst_room = int(shape.burst_budget * body_target)
    events: list[tuple[int, str, str | None, float | None, int]] = []
    ts = START_MS + int(rng.integers(0, 7 * DAY_MS))
    while len(events) < n_events:
        in_tail = len(events) >= body_target
        if in_tail:
            burst, length = user.current_burst, tail
        else:
            length = int(rng.integers(3, 13))
            # An interaction is 1-3 events. Bursts keep 10 events clear of the body's end, so a user
            # without a current burst ends on core topics.
            fits = 3 * length <= min(burst_room, body_target - len(events) - 10)
            is_burst = fits and rng.random() < shape.burst_rate
            burst = int(rng.choice(_non_core(n_topics, user.core))) if is_burst else None
        limit = n_events if in_tail else body_target
        session_start = len(events)
        for topic in _session_topics(user, length, burst, shape, rng):
            item = catalog.pick(topic, rng)
            for event_no, (it, kind, text, rating) in enumerate(_interaction(user, item, catalog, shape, rng)):
                if len(events) >= limit:
                    break
                ts += (
                    int(rng.integers(2, 60)) * SECOND_MS
                    if event_no
                    else int(rng.lognormal(np.log(45), 0.8) * SECOND_MS)
                )
                events.append((it, kind, text, rating, ts))
            if len(events) >= limit:
                break
        if burst is not None and not in_tail:
            burst_room -= len(events) - session_start
        ts += min(int(rng.lognormal(np.log(6 * HOUR_MS), 1.2)), 14 * DAY_MS)
    return events


def generate(
    users: int = 200, items: int = 500, events: int = 20_000, seed: int = 0, shape: StreamShape | None = None
) -> tuple[list[dict], list[dict], dict]:
    """(events, items, truth) of a synthetic stream; see the module docstring for the formats."""
    shape = shape or StreamShape()
    if not 2 <= shape.topics <= len(TOPICS):
        raise DatasetError(f"topics must be between 2 and {len(TOPICS)}, got {shape.topics}")
    if users < 1 or items < shape.topics or events < users:
        raise DatasetError(
            f"need users >= 1, items >= topics ({shape.topics}) and events >= users; "
            f"got users={users}, items={items}, events={events}"
        )
    rng = np.random.default_rng(seed)
    catalog = _Catalog(items, shape.topics, shape, rng)
    item_ids = [f"item-{i}" for i in range(items)]
    people = [_make_user(f"user-{u}", shape.topics, shape, rng) for u in range(users)]
    # activity varies between users; everyone gets at least min(20, events // users) events
    floor = min(20, events // users)
    counts = floor + rng.multinomial(events - floor * users, rng.dirichlet(np.full(users, 2.0)))

    rows = []
    disliked: dict[str, list[str]] = {}
    for user, n_events in zip(people, counts, strict=True):
        stream = _user_stream(user, int(n_events), catalog, shape, rng)
        rows.extend((ts, user.user_id, item, kind, text, rating) for item, kind, text, rating, ts in stream)
        # only items the emitted events show (an interaction cut at the stream's end may not)
        disliked[user.user_id] = sorted(item_ids[i] for i in {row[0] for row in stream} if user.opinions[i])
    rows.sort(key=lambda r: (r[0], r[1]))

    event_dicts = []
    for position, (ts, user_id, item, kind, text, rating) in enumerate(rows):
        event = {
            "event_id": f"syn{seed}-{position}",
            "user_id": user_id,
            "item_id": item_ids[item],
            "type": kind,
            "ts": ts,
        }
        if text is not None:
            event["text"] = text
            event["rating"] = rating
        event_dicts.append(event)
    item_dicts = [{"item_id": item_id, "text": text} for item_id, text in zip(item_ids, catalog.texts, strict=True)]
    truth = {
        "seed": seed,
        "topics": [vocab.name for vocab in TOPICS[: shape.topics]],
        "items": {item_id: int(topic) for item_id, topic in zip(item_ids, catalog.topic_of, strict=True)},
        "users": {
            user.user_id: {
                "topic_mix": [round(float(w), 6) for w in user.mix],
                "long_term_topics": user.core,
                "current_burst": user.current_burst,
                "disliked_items": disliked[user.user_id],
            }
            for user in people
        },
    }
    return event_dicts, item_dicts, truth
