"""The evaluation protocol on hand-made sequences, with expected values worked out by hand."""

import math

import numpy as np
import pytest

from models.datasets.jsonl import events_to_columns
from models.ranking import Prequential, baselines, by_bucket, hit_ndcg, split, target_ranks, vector_ranks
from models.sequences import build_sequences, future_run_items

ITEMS = ["A", "B", "C", "D", "E"]
STREAMS = {
    "u1": ["A", "A", "B", "C"],  # repeat collapses -> A B C: target C, history {A, B}
    "u2": ["A", "B", "A"],  # target A was consumed before -> a miss whatever the scores
    "u3": ["A", "B"],  # 2 items: not evaluated, all its events are history for the baselines
    "u4": ["C", "C", "C", "D"],  # collapses to C D: not evaluated
    "u5": ["B", "C", "D", "E"],  # target E, history {B, C, D}
}
INDEX = {item: row for row, item in enumerate(ITEMS)}


@pytest.fixture
def seqs():
    events = [
        {"event_id": f"{user}-{t}", "user_id": user, "item_id": item, "type": "view", "ts": 1000 * (t + 1)}
        for user, stream in STREAMS.items()
        for t, item in enumerate(stream)
    ]
    return build_sequences(events_to_columns(events[::-1]), INDEX)  # input order must not matter


def test_sequences_collapse_and_select_users(seqs) -> None:
    assert seqs.user_ids == list(STREAMS)
    assert [seqs.runs(u) for u in range(5)] == [3, 3, 2, 2, 4]
    assert [seqs.user_ids[u] for u in seqs.evaluated()] == ["u1", "u2", "u5"]
    assert [ITEMS[i] for i in seqs.run_items(0)] == ["A", "B", "C"]
    test = split(seqs, holdout=1)
    assert [ITEMS[t] for t in test.target] == ["C", "A", "E"]
    assert [sorted(ITEMS[i] for i in h) for h in test.histories(seqs)] == [["A", "B"], ["A", "B"], ["B", "C", "D"]]
    assert list(split(seqs, holdout=2).target) == [INDEX["B"], INDEX["B"], INDEX["D"]]


def test_training_never_sees_validation_or_test(seqs) -> None:
    usable = seqs.train_mask()
    kept = {seqs.user_ids[u]: [ITEMS[i] for i in seqs.item[seqs.offsets[u] : seqs.offsets[u + 1]][
        usable[seqs.offsets[u] : seqs.offsets[u + 1]]]] for u in range(len(seqs))}  # fmt: skip
    assert kept == {"u1": ["A", "A"], "u2": ["A"], "u3": ["A", "B"], "u4": ["C", "C", "C", "D"], "u5": ["B", "C"]}
    targets = future_run_items(seqs, usable, 1)[:, 0]
    start = seqs.offsets[4]  # u5: B -> C; C's next item D is validation, not a target
    assert list(targets[start : start + 4]) == [INDEX["C"], -1, -1, -1]
    start = seqs.offsets[3]  # u4: every C event predicts D
    assert list(targets[start : start + 4]) == [INDEX["D"]] * 3 + [-1]


def test_baselines_by_hand(seqs) -> None:
    # popularity over collapsed histories: A 3, B 4, C 2, D 2, E 0
    # u1: C vs {C 2, D 2, E 0} -> rank 0; u2: miss; u5: E (0) vs {A 3, E 0} -> rank 1
    expected = {"hr@10": 2 / 3, "ndcg@10": (1 + 0 + 1 / math.log2(3)) / 3}
    result = baselines(seqs, split(seqs, holdout=1), len(ITEMS))
    assert result["popularity"] == pytest.approx(expected)
    # transitions A->B x3, C->D x2, B->C: u1 (last B) -> C first; u5 (last D) has none -> popularity order
    assert result["last-item transition"] == pytest.approx(expected)
    assert baselines(seqs, split(seqs, holdout=1), len(ITEMS), k=1)["popularity"] == pytest.approx(
        {"hr@1": 1 / 3, "ndcg@1": 1 / 3}
    )


def test_model_ranking_excludes_history_and_counts_reconsumption_as_miss(seqs) -> None:
    sp = split(seqs, holdout=1)
    items = np.eye(5, dtype=np.float32)
    # u1 prefers its history items A, B (excluded) then D, then C: rank 1
    # u2 scores its target A highest, but A is in its history: miss
    # u5 ranks E first among non-history items: rank 0
    interests = np.array([[9, 8, 1, 2, 0], [9, 0, 0, 0, 0], [0, 9, 9, 9, 1]], dtype=np.float32)
    ranks = vector_ranks(interests, items, sp, sp.histories(seqs))
    assert list(ranks) == [1.0, math.inf, 0.0]
    assert hit_ndcg(ranks) == pytest.approx({"hr@10": 2 / 3, "ndcg@10": (1 / math.log2(3) + 0 + 1) / 3})
    assert hit_ndcg(ranks, k=1) == pytest.approx({"hr@1": 1 / 3, "ndcg@1": 1 / 3})


def test_ties_rank_the_target_first() -> None:
    scores = np.zeros((1, 4))
    assert target_ranks(scores, np.array([2]), [np.array([], dtype=np.int64)])[0] == 0


def test_future_targets_are_the_next_runs_items(seqs) -> None:
    usable = seqs.train_mask(holdout=1)  # u1, u2, u5 keep their last run out
    future = future_run_items(seqs, usable, 3)
    start = seqs.offsets[4]  # u5: B C D (E is the test run, not usable)
    assert future[start : start + 3].tolist() == [[INDEX["C"], INDEX["D"], -1], [INDEX["D"], -1, -1], [-1] * 3]
    start = seqs.offsets[0]  # u1: A A B (C held out); both A events predict B, then nothing usable
    assert future[start : start + 3, 0].tolist() == [INDEX["B"], INDEX["B"], -1]
    assert (future[seqs.offsets[1] - 1] == -1).all()  # a user's last event never predicts the next user's


def test_prequential_judges_every_later_run_from_what_came_before(seqs) -> None:
    # every run from ts 2000 on that is not its user's first: u1 B (ts 3000), C; u2 B, A; u3 B; u4 D; u5 C, D, E
    pq = Prequential.of(seqs, since=2000)
    assert [(seqs.user_ids[u], ITEMS[i]) for u, i in zip(pq.user, pq.target, strict=True)] == [
        ("u1", "B"), ("u1", "C"), ("u2", "B"), ("u2", "A"), ("u3", "B"), ("u4", "D"), ("u5", "C"), ("u5", "D"),
        ("u5", "E"),
    ]  # fmt: skip
    items = np.eye(5)
    # a ranker that always prefers A > B > C > D > E: rank = earlier unseen items before the target
    ranks = pq.ranks(seqs, 5, lambda lo, hi: np.tile([5.0, 4, 3, 2, 1], (hi - lo, 1)) @ items)
    assert ranks.tolist() == [0, 0, 0, math.inf, 0, 2, 1, 1, 1]  # u2's A was had before: a miss
    # baselines count what happened before ts 2000 only: the first event of each user
    base = pq.baseline_ranks(seqs, 5)
    # popularity A 3, B 1, C 1: u1 -> B ties with C (rank 0), u4 -> D (C had) is behind A and B
    assert base["popularity"][[0, 5]].tolist() == [0, 2]
    assert base["last-item transition"][[0, 5]].tolist() == [0, 2]  # no transition before ts 2000
    prior = pq.history_end - seqs.offsets[pq.user]
    buckets = by_bucket(prior, {"model": ranks, **base})
    assert [b["n"] for b in buckets] == [6, 3, 0, 0, 0]
    assert buckets[0]["model"] == pytest.approx(hit_ndcg(ranks[prior <= 2]))
