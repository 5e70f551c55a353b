import json
import re
from collections import Counter, defaultdict
from itertools import pairwise

import numpy as np
import pytest

from models.datasets import DatasetError, StreamShape, generate, write_jsonl
from models.datasets.synthetic_vocab import NEGATIVE_COMMENTS, POSITIVE_COMMENTS
from tests.models.datasets.checks import assert_valid_stream

USERS, ITEMS, EVENTS = 120, 300, 12_000


@pytest.fixture(scope="module")
def stream():
    return generate(USERS, ITEMS, EVENTS, seed=7)


def _file_bytes(directory, seed):
    """Bytes of the events file, the items file and the truth JSON of one generation."""
    directory.mkdir()
    events, items, truth = generate(USERS, ITEMS, EVENTS, seed=seed)
    write_jsonl(directory / "events.jsonl", events)
    write_jsonl(directory / "items.jsonl", items)
    return [(directory / name).read_bytes() for name in ("events.jsonl", "items.jsonl")] + [json.dumps(truth).encode()]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first = _file_bytes(tmp_path / "a", 3)
    again = _file_bytes(tmp_path / "b", 3)
    other = _file_bytes(tmp_path / "c", 4)
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_counts_contract_and_order(stream):
    events, items, truth = stream
    assert len(events) == EVENTS and len(items) == ITEMS and len(truth["users"]) == USERS
    assert_valid_stream(events, items)
    assert {e["type"] for e in events} == {"view", "click", "like", "purchase", "comment"}
    by_user = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event["ts"])
    assert set(by_user) == set(truth["users"])
    assert all(np.all(np.diff(ts) > 0) for ts in by_user.values())  # strictly increasing per user
    types = Counter(e["type"] for e in events)
    assert types["view"] + types["click"] > 0.6 * EVENTS and types["purchase"] < types["like"]


def test_truth_is_consistent(stream):
    _, items, truth = stream
    n_topics = len(truth["topics"])
    assert truth["seed"] == 7 and n_topics == StreamShape().topics
    assert set(truth["items"]) == {i["item_id"] for i in items}
    assert set(truth["items"].values()) == set(range(n_topics))  # every topic has items
    for user in truth["users"].values():
        mix = np.array(user["topic_mix"])
        assert len(mix) == n_topics and mix.sum() == pytest.approx(1.0, abs=1e-5)
        core = user["long_term_topics"]
        assert 1 <= len(core) <= 3 and list(np.argsort(-mix, kind="stable")[: len(core)]) == core
        assert user["current_burst"] is None or user["current_burst"] not in core
    with_burst = sum(u["current_burst"] is not None for u in truth["users"].values())
    assert 0.3 * USERS < with_burst < 0.7 * USERS


def _topics_by_user(events, truth):
    topics = defaultdict(list)
    for event in events:
        topics[event["user_id"]].append(truth["items"][event["item_id"]])
    return topics


def test_events_follow_long_term_topics_and_bursts(stream):
    events, _, truth = stream
    n_topics = len(truth["topics"])
    shares, chance = [], []
    for user_id, topics in _topics_by_user(events, truth).items():
        user = truth["users"][user_id]
        core = set(user["long_term_topics"])
        body = topics[:-12] if user["current_burst"] is not None else topics
        shares.append(np.mean([t in core for t in body]))
        chance.append(len(core) / n_topics)
        if user["current_burst"] is not None:
            assert topics[-5:] == [user["current_burst"]] * 5  # the stream ends in the current burst
        else:
            assert np.mean([t in core for t in topics[-5:]]) >= 0.4
    assert np.mean(shares) > 0.85 and min(shares) > 0.5 and np.mean(chance) < 0.25


def test_next_topic_and_item_are_predictable(stream):
    events, _, truth = stream
    pairs = [(a, b) for topics in _topics_by_user(events, truth).values() for a, b in pairwise(topics)]
    assert np.mean([a == b for a, b in pairs]) > 0.75  # sessions keep to one topic
    # popularity skew inside a topic: its most popular item takes a large share of the topic's events
    per_topic = defaultdict(Counter)
    for event in events:
        per_topic[truth["items"][event["item_id"]]][event["item_id"]] += 1
    top_shares = [max(c.values()) / sum(c.values()) for c in per_topic.values()]
    assert np.mean(top_shares) > 5 / (ITEMS / len(per_topic))


def test_comment_sentiment_and_ratings_follow_hidden_dislikes(stream):
    events, _, truth = stream
    disliked = {u: set(v["disliked_items"]) for u, v in truth["users"].items()}
    patterns = {
        sign: [re.compile(re.escape(t).replace(r"\{noun\}", ".+") + "$") for t in templates]
        for sign, templates in (("pos", POSITIVE_COMMENTS), ("neg", NEGATIVE_COMMENTS))
    }
    counts = Counter()
    for event in events:
        hates = event["item_id"] in disliked[event["user_id"]]
        if event["type"] in ("like", "purchase"):
            assert not hates
        if event["type"] == "comment":
            sign = "neg" if hates else "pos"
            assert any(p.match(event["text"]) for p in patterns[sign]), event
            assert (event["rating"] <= 2) if hates else (event["rating"] >= 4)
            counts[sign] += 1
    assert counts["neg"] > 50 and counts["pos"] > 200
    seen = defaultdict(set)
    for event in events:
        seen[event["user_id"]].add(event["item_id"])
    assert all(disliked[u] <= seen[u] for u in disliked)  # only items the user's events show
    share = sum(map(len, disliked.values())) / sum(map(len, seen.values()))
    assert share == pytest.approx(StreamShape().dislike_rate, abs=0.05)


def test_item_texts_separate_topics(stream):
    _, items, truth = stream
    # nearest-centroid bag of words: topics must be recoverable from item text alone
    words = [set(re.findall(r"[a-z]+", i["text"].lower())) for i in items]
    labels = [truth["items"][i["item_id"]] for i in items]
    vocab = {w: n for n, w in enumerate(sorted(set().union(*words)))}
    x = np.zeros((len(items), len(vocab)))
    for row, ws in enumerate(words):
        x[row, [vocab[w] for w in ws]] = 1.0
    centroids = np.stack([x[np.array(labels) == t].mean(0) for t in range(len(truth["topics"]))])
    predicted = np.argmax(x @ centroids.T / np.linalg.norm(centroids, axis=1), axis=1)
    assert np.mean(predicted == np.array(labels)) > 0.95


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 10, "items": 5, "events": 100}, "items >= topics"),
        ({"users": 10, "items": 50, "events": 5}, "events >= users"),
        ({"users": 10, "items": 50, "events": 100, "shape": StreamShape(topics=17)}, "topics must be between"),
    ],
)
def test_impossible_sizes_are_refused(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        generate(seed=0, **kwargs)


def test_tiny_stream_still_valid():
    events, items, _ = generate(users=3, items=12, events=7, seed=1)
    assert len(events) == 7 and len(items) == 12
    assert_valid_stream(events, items)
