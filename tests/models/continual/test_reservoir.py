"""The replay sample: bounded, uniform over offered sequences, persistent, resumable, forgetful."""

from __future__ import annotations

import numpy as np
import pytest

from models.continual.reservoir import ReplayReservoir, ReservoirError


def window(start: int, users: int, per_user: int = 3) -> list[dict]:
    return [{"event_id": f"e{start}-{u}-{k}", "user_id": f"u{start}-{u}", "item_id": f"i{k}", "type": "click",
             "ts": start + u * per_user + k} for u in range(users) for k in range(per_user)]  # fmt: skip


def test_size_stays_bounded_and_sequences_are_cut(tmp_path) -> None:
    sample = ReplayReservoir.open(tmp_path / "r.json", capacity=10, max_events=2)
    for n in range(5):
        sample.offer(window(1000 * n, users=7))
    assert len(sample) == 10 and sample.offered == 35
    assert all(len(seq) == 2 for seq in sample.sequences)
    # the newest events of each user are kept, in time order
    assert all(seq[0]["ts"] < seq[1]["ts"] and seq[1]["event_id"].endswith("-2") for seq in sample.sequences)


def test_each_offered_sequence_is_kept_with_equal_chance(tmp_path) -> None:
    kept = np.zeros(100)
    for seed in range(300):
        sample = ReplayReservoir.open(tmp_path / "r.json", capacity=10, max_events=4, seed=seed)
        for n in range(10):  # ten windows of ten users
            sample.offer(window(1000 * n, users=10, per_user=1))
        for seq in sample.sequences:
            start, user = seq[0]["user_id"][1:].split("-")
            kept[int(start) // 100 + int(user)] += 1
    share = kept / 300
    # every sequence ~ capacity / offered = 0.1, early and late windows alike
    assert abs(share.mean() - 0.1) < 1e-9
    assert share.min() > 0.04 and share.max() < 0.17
    assert abs(share[:50].mean() - share[50:].mean()) < 0.02


def test_round_trip_resumes_the_same_choices(tmp_path) -> None:
    path = tmp_path / "replay.json"
    one = ReplayReservoir.open(path, capacity=5)
    one.offer(window(0, users=8))
    one.save()
    resumed = ReplayReservoir.open(path, capacity=5)
    resumed.offer(window(1000, users=8))
    straight = ReplayReservoir.open(tmp_path / "other.json", capacity=5)
    straight.offer(window(0, users=8))
    straight.offer(window(1000, users=8))
    assert resumed.sequences == straight.sequences and resumed.offered == 16


def test_overlapping_windows_offer_each_event_once(tmp_path) -> None:
    sample = ReplayReservoir.open(tmp_path / "r.json", capacity=100)
    events = window(0, users=4)
    assert sample.offer(events[:6]) == 2
    assert sample.offer(events) == 2  # only the two users not offered before
    assert sum(len(s) for s in sample.sequences) == len(events)


def test_forget_and_shrink(tmp_path) -> None:
    path = tmp_path / "r.json"
    sample = ReplayReservoir.open(path, capacity=10)
    sample.offer(window(0, users=6))
    assert sample.forget({"u0-1", "u0-4"}) == 2
    sample.save()
    smaller = ReplayReservoir.open(path, capacity=3)
    assert len(smaller) == 3 and {s[0]["user_id"] for s in smaller.sequences} <= {"u0-0", "u0-2", "u0-3", "u0-5"}


def test_sample_draws_whole_sequences_up_to_the_budget(tmp_path) -> None:
    sample = ReplayReservoir.open(tmp_path / "r.json", capacity=50)
    sample.offer(window(0, users=20))  # 3 events each
    picked = sample.sample(10, np.random.default_rng(0))
    assert len(picked) == 4 and len({s[0]["user_id"] for s in picked}) == 4
    assert sample.sample(0, np.random.default_rng(0)) == []


def test_unreadable_file_says_what_to_do(tmp_path) -> None:
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(ReservoirError, match="move it away"):
        ReplayReservoir.open(tmp_path / "r.json")
