"""A champion/challenger round on the planted topic shift, without Kafka: the fine-tuned challenger
wins after the shift, a challenger trained on shuffled labels loses, new items get text-tower rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.continual.challenge import RoundResult, accepts, run_round
from models.continual.finetune import FinetuneConfig, TextContext, extend_item_table, mix_replay
from models.continual.window import WindowSplit, split_window
from tests.models.continual.drift import Drift, planted_drift, train_champion

CFG = FinetuneConfig(threads=1)


@pytest.fixture(scope="module")
def drift() -> Drift:
    return planted_drift()


@pytest.fixture(scope="module")
def champion(drift: Drift, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_champion(drift.before, drift.catalog, tmp_path_factory.mktemp("champion") / "ckpt")


@pytest.fixture(scope="module")
def text(champion: Path, tmp_path_factory: pytest.TempPathFactory) -> TextContext:
    return TextContext.for_config(load_checkpoint(champion).config, tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def after_shift(
    drift: Drift, champion: Path, text: TextContext, tmp_path_factory: pytest.TempPathFactory
) -> RoundResult:
    split = split_window(drift.after, min_train_events=200, min_judged_users=20)
    assert split.skip_reason is None
    return run_round(champion, split, drift.catalog, [], CFG, 0.0, text, tmp_path_factory.mktemp("round"), "v-champion")


def shuffled_labels(split: WindowSplit, seed: int = 0) -> WindowSplit:
    """The same training events with item ids permuted: every label now names the wrong item."""
    ids = sorted({e["item_id"] for e in split.train})
    perm = dict(zip(ids, np.random.default_rng(seed).permutation(ids), strict=True))
    return dataclasses.replace(split, train=[{**e, "item_id": str(perm[e["item_id"]])} for e in split.train])


def test_challenger_follows_the_planted_topic_shift(after_shift: RoundResult) -> None:
    champion, challenger = after_shift.champion_metrics["ndcg@10"], after_shift.challenger_metrics["ndcg@10"]
    assert challenger > champion + 0.02, (champion, challenger)
    assert after_shift.publish and ">=" in after_shift.reason
    assert after_shift.timing["train_s"] > 0 and after_shift.stats["train_events"] > 1000


def test_challenger_trained_on_shuffled_labels_is_rejected(
    drift: Drift, champion: Path, text: TextContext, tmp_path: Path
) -> None:
    split = split_window(drift.stationary, min_train_events=200, min_judged_users=20)
    result = run_round(champion, shuffled_labels(split), drift.catalog, [], CFG, 0.0, text, tmp_path)
    assert result.champion_metrics["ndcg@10"] > 0.1  # the champion knows this (unshifted) stream
    assert result.challenger_metrics["ndcg@10"] < result.champion_metrics["ndcg@10"] - 0.05
    assert not result.publish and "<" in result.reason


def test_new_items_get_rows_from_the_text_tower(drift: Drift, champion: Path, text: TextContext) -> None:
    ckpt = load_checkpoint(champion)
    catalog = {**drift.catalog, "new-boots": "Waterproof hiking boots built for rocky alpine terrain."}
    events = [{"event_id": f"n{k}", "user_id": "u", "item_id": item, "type": "click", "ts": k}
              for k, item in enumerate(["item-1", "new-boots", "new-unknown", "new-boots"])]  # fmt: skip
    table = extend_item_table(ckpt, events, catalog, text)
    assert table.item_ids == [*ckpt.item_ids, "new-boots", "new-unknown"] and table.new_items == 2
    assert table.new_item_text.catalog == 1 and table.new_item_text.none == 1
    with torch.no_grad():
        old, grown = ckpt.model.item_vectors(), table.model.item_vectors()
        boots_text = torch.from_numpy(text.cache.encode(text.encoder, [catalog["new-boots"]]))
        boots_text = boots_text / boots_text.norm(dim=1, keepdim=True)
        expected = table.model.item_tower(boots_text)[0]
    assert torch.equal(grown[: len(ckpt.item_ids)], old)  # the champion's own items are untouched
    assert torch.allclose(grown[-2], expected, atol=1e-5)  # a new item with text: the text-only vector
    assert torch.count_nonzero(table.model.item_has_id[-2:]) == 0


def test_challenger_checkpoint_carries_parent_and_gate_metrics(after_shift: RoundResult, champion: Path) -> None:
    saved = load_checkpoint(after_shift.challenger_dir)
    assert saved.history["parent_version"] == "v-champion"
    assert saved.metrics["ndcg@10"] == after_shift.challenger_metrics["ndcg@10"]
    assert saved.metrics["champion"] == after_shift.champion_metrics and saved.metrics["gate"] == after_shift.reason
    assert saved.item_ids == load_checkpoint(champion).item_ids  # the shifted stream names no new item


def test_replay_sequences_train_as_their_own_users_without_duplicates() -> None:
    window = [{"event_id": "a", "user_id": "u1", "item_id": "x", "type": "click", "ts": 5}]
    replay = [[{"event_id": "a", "user_id": "u1", "item_id": "x", "type": "click", "ts": 5},
               {"event_id": "b", "user_id": "u1", "item_id": "y", "type": "click", "ts": 1}]]  # fmt: skip
    assert [(e["event_id"], e["user_id"]) for e in mix_replay(window, replay)] == [("a", "u1"), ("b", "replay-0:u1")]


@pytest.mark.parametrize(("margin", "verdict"), [(0.0, True), (0.01, True), (0.02, False)])
def test_gate_margin(margin: float, verdict: bool) -> None:
    assert accepts({"ndcg@10": 0.10}, {"ndcg@10": 0.115}, margin)[0] is verdict
