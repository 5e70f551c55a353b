"""Continue training a serving model on new sequences.

The challenger starts as an exact copy of the champion, with one change a worker makes too: items
that the window shows and the champion's item table lacks get rows, initialised by the text tower
(item text from the catalog; an item whose only text is its id has none, as in training, and
gets a zero id embedding that fine-tuning then learns). Both the champion the gate judges and the
challenger use that extended table, so they rank the same catalog.

Training reuses ``models.train``'s epoch loop (truncated BPTT, full softmax) for a fixed number of
epochs at a lower learning rate; the gate, not early stopping, decides whether the result is kept.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.allocator import retain_freed_memory
from models.checkpoint import Checkpoint
from models.comment_encoder import CommentEncoder, EmbeddingCache
from models.datasets.jsonl import events_to_columns
from models.ensemble import Model, assemble, members_of
from models.exceptions import TrainingError
from models.interest_model import InterestModel, ModelConfig
from models.sequences import build_sequences, future_run_items
from models.text_features import ItemTextSources, comment_table, item_text_embeddings
from models.train import TrainConfig, TrainingData, run_epoch


@dataclass
class FinetuneConfig:
    epochs: int = 5
    lr: float = 5e-3
    batch_users: int = 32
    window: int = 64
    seed: int = 0
    threads: int = 1  # tiny recurrent ops: one thread is fastest on a shared machine (models.train)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_users=self.batch_users, window=self.window, lr=self.lr,
                           seed=self.seed, threads=self.threads)  # fmt: skip


@dataclass
class TextContext:
    """The comment encoder of a model and a scratch embedding cache for one job run."""

    encoder: CommentEncoder
    cache: EmbeddingCache

    @classmethod
    def for_config(cls, config: ModelConfig, cache_dir: str | Path) -> TextContext:
        encoder = CommentEncoder.from_pretrained(config.encoder_path or None, max_length=config.encoder_max_length)
        return cls(encoder, EmbeddingCache(cache_dir))


@dataclass
class ItemTable:
    model: Model  # the champion with the extended table
    item_ids: list[str]
    new_items: int
    new_item_text: ItemTextSources  # where the new rows' text came from


def extend_item_table(ckpt: Checkpoint, events: list[dict], catalog: dict[str, str], text: TextContext) -> ItemTable:
    """A copy of ``ckpt.model`` whose item table also holds every item ``events`` name that it lacks."""
    known = set(ckpt.item_ids)
    new_ids = list(dict.fromkeys(e["item_id"] for e in events if e["item_id"] not in known))
    model = copy.deepcopy(ckpt.model)
    if not new_ids:
        return ItemTable(model, list(ckpt.item_ids), 0, ItemTextSources(0, 0, 0, 0))
    # text of the new rows: the catalog's, else the id (which, as in training, counts as no text)
    no_events = build_sequences(events_to_columns([]), {})
    new_text, sources = item_text_embeddings(
        new_ids, {i: catalog.get(i) or i for i in new_ids}, no_events, np.zeros(0, dtype=bool),
        np.zeros((1, ckpt.config.text_dim), dtype=np.float32), text.encoder, text.cache,
    )  # fmt: skip
    config = ModelConfig(**{**ckpt.config.to_dict(), "n_items": len(ckpt.item_ids) + len(new_ids)})
    grown = [grow_member(member, config.member, new_text) for member in members_of(model)]
    return ItemTable(assemble(config, grown).eval(), [*ckpt.item_ids, *new_ids], len(new_ids), sources)


def grow_member(member: InterestModel, config: ModelConfig, new_text: np.ndarray) -> InterestModel:
    """``member`` with zero id embeddings (untrained) and ``new_text`` for rows added at the end."""
    grown = InterestModel(config)
    state = member.state_dict()
    added = config.n_items - member.config.n_items
    state["item_id.weight"] = torch.cat([state["item_id.weight"], torch.zeros(added, config.dim)])
    state["item_has_id"] = torch.cat([state["item_has_id"], torch.zeros(added)])
    grown.load_state_dict(state)
    with torch.no_grad():
        grown.item_text_emb.copy_(torch.cat([member.item_text_emb, torch.from_numpy(new_text)]))
    return grown


def training_data(events: list[dict], table: ItemTable, text: TextContext, runs: int) -> TrainingData:
    """Every event trains (the held-out slice was cut off before), on the items of its next ``runs`` runs;
    item text stays the model's."""
    seqs = build_sequences(events_to_columns(events), {item: row for row, item in enumerate(table.item_ids)})
    usable = np.ones(len(seqs.item), dtype=bool)
    return TrainingData(
        item_ids=table.item_ids,
        seqs=seqs,
        usable=usable,
        targets=future_run_items(seqs, usable, runs),
        comments=torch.from_numpy(comment_table(seqs, text.encoder, text.cache, progress=False)),
        item_text_emb=table.model.item_text_emb.numpy(),
        text_sources=table.new_item_text,
    )


def mix_replay(window_events: list[dict], replay: list[list[dict]]) -> list[dict]:
    """Window events plus replayed sequences, each replayed sequence as its own pseudo-user (so it never
    splices into the same user's recent events) and without events the window already holds."""
    seen = {e["event_id"] for e in window_events}
    mixed = list(window_events)
    for n, sequence in enumerate(replay):
        mixed.extend({**e, "user_id": f"replay-{n}:{e['user_id']}"} for e in sequence if e["event_id"] not in seen)
    return mixed


@dataclass
class FinetuneResult:
    model: Model
    item_ids: list[str]
    history: dict = field(default_factory=dict)


def fine_tune(table: ItemTable, events: list[dict], cfg: FinetuneConfig, text: TextContext) -> FinetuneResult:
    """Train a copy of ``table.model`` (the extended champion) on ``events`` for ``cfg.epochs`` epochs."""
    started = time.perf_counter()
    retain_freed_memory()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(table.model)
    data = training_data(events, table, text, cfg.train_config().future_runs)
    if not (data.targets >= 0).any():
        raise TrainingError("no event of the fine-tuning data has a next item to learn")
    # each member on its own, as it was trained; items the data touches get a trainable id embedding
    # (zeros for new rows)
    touched = torch.from_numpy(np.unique(data.seqs.item))
    losses = []
    for k, member in enumerate(members_of(model)):
        with torch.no_grad():
            member.item_has_id[touched] = 1.0
        opt = torch.optim.AdamW(member.parameters(), lr=cfg.lr)
        rng = np.random.default_rng(cfg.seed + k)
        losses.append([run_epoch(member, opt, data, cfg.train_config(), rng, False) for _ in range(cfg.epochs)])
    history = {
        "finetune": asdict(cfg),
        "losses": np.mean(losses, axis=0).tolist(),  # per epoch, averaged over members
        "events": len(data.seqs.item),
        "sequences": len(data.seqs),
        "train_seconds": time.perf_counter() - started,
    }
    return FinetuneResult(model=model.eval(), item_ids=table.item_ids, history=history)
