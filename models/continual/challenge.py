"""One champion/challenger round on a split window: extend, judge the champion, fine-tune, judge the
challenger, and decide.

Both models are judged on the held-out newest slice with the protocol of ``istream evaluate``
(``models.train.validation_metrics`` on the test split: the served ``step`` run one event at a
time, full ranking over the same extended item table, history items excluded, HR@10 / NDCG@10).
The challenger is published only if its NDCG@10 is at least the champion's plus ``margin``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.checkpoint import load_checkpoint, save_checkpoint, save_metrics
from models.continual.finetune import (
    FinetuneConfig,
    FinetuneResult,
    ItemTable,
    TextContext,
    extend_item_table,
    fine_tune,
    mix_replay,
    training_data,
)
from models.continual.window import WindowSplit
from models.interest_model import InterestModel
from models.train import validation_metrics

TEST_SPLIT = 1  # the last item of each judged user is the target, as in `istream evaluate`


def holdout_metrics(model: InterestModel, table: ItemTable, events: list[dict], text: TextContext) -> dict[str, float]:
    return validation_metrics(model, training_data(events, table, text), holdout=TEST_SPLIT)


def accepts(champion: dict[str, float], challenger: dict[str, float], margin: float) -> tuple[bool, str]:
    """The gate: (publish?, why)."""
    verdict = challenger["ndcg@10"] >= champion["ndcg@10"] + margin
    ours, theirs = challenger["ndcg@10"], champion["ndcg@10"]
    return (
        verdict,
        f"challenger NDCG@10 {ours:.4f} {'>=' if verdict else '<'} champion {theirs:.4f} + margin {margin:g}",
    )


@dataclass
class RoundResult:
    champion_metrics: dict[str, float]
    challenger_metrics: dict[str, float]
    challenger: FinetuneResult
    publish: bool
    reason: str
    stats: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def save_challenger(self, out_dir: str | os.PathLike, parent_version: str | None) -> Path:
        """The challenger as a checkpoint directory (``export_bundle`` input); its metrics are the gate's."""
        history = {**self.challenger.history, "parent_version": parent_version}
        out = save_checkpoint(out_dir, self.challenger.model, self.challenger.item_ids, history=history)
        save_metrics(out, {**self.challenger_metrics, "champion": self.champion_metrics, "gate": self.reason})
        return out


def run_round(
    champion_dir: str | os.PathLike,
    split: WindowSplit,
    catalog: dict[str, str],
    replay: list[list[dict]],
    cfg: FinetuneConfig,
    margin: float,
    text: TextContext,
) -> RoundResult:
    """Fine-tune the champion checkpoint at ``champion_dir`` on ``split.train`` plus ``replay`` and judge both."""
    started = time.perf_counter()
    champion = load_checkpoint(champion_dir)
    train_events = mix_replay(split.train, replay)
    table = extend_item_table(champion, [*split.train, *split.holdout], catalog, text)
    prepared = time.perf_counter()
    champion_metrics = holdout_metrics(table.model, table, split.holdout, text)
    judged = time.perf_counter()
    result = fine_tune(table, train_events, cfg, text)
    trained = time.perf_counter()
    challenger_metrics = holdout_metrics(result.model, table, split.holdout, text)
    publish, reason = accepts(champion_metrics, challenger_metrics, margin)
    done = time.perf_counter()
    return RoundResult(
        champion_metrics=champion_metrics,
        challenger_metrics=challenger_metrics,
        challenger=result,
        publish=publish,
        reason=reason,
        stats={
            "new_items": table.new_items,
            "items": len(table.item_ids),
            "replay_sequences": len(replay),
            "replay_events": len(train_events) - len(split.train),
            "train_events": len(train_events),
        },
        timing={
            "prepare_s": prepared - started,
            "train_s": trained - judged,
            "eval_s": (judged - prepared) + (done - trained),
        },
    )


def replay_budget(train_events: int, fraction: float) -> int:
    """Replay events so that they make up ``fraction`` of the training mix."""
    return int(np.ceil(train_events * fraction / (1.0 - fraction))) if fraction > 0 else 0
