"""One champion/challenger round on a split window: fine-tune the champion, then judge both on the
held-out newest slice with ``istream evaluate``'s own code (``models.evaluate``: the served ``step``
run one event at a time, full ranking over the checkpoint's items plus text-tower vectors for items
it lacks, history items excluded, HR@10 / NDCG@10 of each judged user's last item), and decide.
The challenger is published only if its NDCG@10 is at least the champion's plus ``margin``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.checkpoint import load_checkpoint, save_checkpoint, save_metrics
from models.continual.finetune import FinetuneConfig, TextContext, extend_item_table, fine_tune, mix_replay
from models.continual.window import WindowSplit
from models.datasets.jsonl import write_jsonl
from models.evaluate import item_matrix, load_eval_data, model_metrics
from models.ranking import split as protocol_split

TEST_SPLIT = 1  # the last item of each judged user is the target, as in `istream evaluate`


def holdout_metrics(checkpoint_dir: Path, events: Path, items: Path, text: TextContext) -> dict[str, float]:
    """HR@10 / NDCG@10 of a checkpoint on an events file, computed as ``istream evaluate`` computes them."""
    ckpt = load_checkpoint(checkpoint_dir)
    data = load_eval_data(ckpt, events, items, text.encoder, text.cache)
    item_vecs = item_matrix(ckpt, data, text.encoder, text.cache)
    return model_metrics(ckpt, data, item_vecs, protocol_split(data.seqs, holdout=TEST_SPLIT))


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
    challenger_dir: Path  # checkpoint directory (``export_bundle`` input), metrics = the gate's
    publish: bool
    reason: str
    stats: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)


def run_round(
    champion_dir: str | os.PathLike,
    split: WindowSplit,
    catalog: dict[str, str],
    replay: list[list[dict]],
    cfg: FinetuneConfig,
    margin: float,
    text: TextContext,
    workdir: str | os.PathLike,
    parent_version: str | None = None,
) -> RoundResult:
    """Fine-tune the champion checkpoint at ``champion_dir`` on ``split.train`` plus ``replay``, judge
    both on ``split.holdout``; the challenger checkpoint is written to ``workdir/challenger``."""
    started = time.perf_counter()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    holdout, items = work / "holdout.jsonl", work / "items.jsonl"
    write_jsonl(holdout, split.holdout)
    write_jsonl(items, [{"item_id": item, "text": item_text} for item, item_text in catalog.items()])
    champion = load_checkpoint(champion_dir)
    train_events = mix_replay(split.train, replay)
    table = extend_item_table(champion, [*split.train, *split.holdout], catalog, text)
    prepared = time.perf_counter()
    champion_metrics = holdout_metrics(Path(champion_dir), holdout, items, text)
    judged = time.perf_counter()
    result = fine_tune(table, train_events, cfg, text)
    trained = time.perf_counter()
    history = {**result.history, "parent_version": parent_version}
    challenger_dir = save_checkpoint(work / "challenger", result.model, result.item_ids, history=history)
    challenger_metrics = holdout_metrics(challenger_dir, holdout, items, text)
    publish, reason = accepts(champion_metrics, challenger_metrics, margin)
    save_metrics(challenger_dir, {**challenger_metrics, "champion": champion_metrics, "gate": reason})
    done = time.perf_counter()
    return RoundResult(
        champion_metrics=champion_metrics,
        challenger_metrics=challenger_metrics,
        challenger_dir=challenger_dir,
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
