"""The checkpoint directory (docs/model-interface.md): everything needed to rebuild the model.

```
config.json         ModelConfig (incl. comment-encoder path and max length)
model.pt            state_dict (member k of several under `members.k.`)
items.json          item ids in row order
item_text_emb.npy   float32 [n_items, T] text embeddings the item tower uses
metrics.json        evaluation figures (written by `istream evaluate`)
history.json        training curve and run facts (written by `istream train`)
```
plus the report files that evaluation writes next to them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.ensemble import Model, make_model, members_of
from models.exceptions import CheckpointError
from models.interest_model import ModelConfig

CONFIG = "config.json"
WEIGHTS = "model.pt"
ITEMS = "items.json"
ITEM_TEXT = "item_text_emb.npy"
METRICS = "metrics.json"
HISTORY = "history.json"


@dataclass
class Checkpoint:
    model: Model
    item_ids: list[str]
    metrics: dict[str, Any]
    history: dict[str, Any]

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def item_index(self) -> dict[str, int]:
        return {item: row for row, item in enumerate(self.item_ids)}


def write_json(path: Path, value: Any) -> None:
    """Write atomically so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def save_checkpoint(
    out_dir: str | os.PathLike, model: Model, item_ids: list[str], history: dict[str, Any] | None = None
) -> Path:
    out = Path(out_dir)
    if len(item_ids) != model.config.n_items:
        raise CheckpointError(f"{len(item_ids)} item ids for a model with {model.config.n_items} item rows")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, model.config.to_dict())
    torch.save(model.state_dict(), out / WEIGHTS)
    write_json(out / ITEMS, list(item_ids))
    np.save(out / ITEM_TEXT, model.item_text_emb.detach().cpu().numpy().astype(np.float32))
    if history is not None:
        write_json(out / HISTORY, history)
    return out


def save_metrics(out_dir: str | os.PathLike, metrics: dict[str, Any]) -> None:
    write_json(Path(out_dir) / METRICS, metrics)


def read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        if default is not None:
            return default
        raise CheckpointError(f"{path} is missing; is {path.parent} a checkpoint written by `istream train`?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg}); re-run `istream train`") from None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the model (eval mode, CPU) from a checkpoint directory alone."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist; train one with `istream train`")
    raw = read_json(root / CONFIG)
    known = {f.name for f in fields(ModelConfig)}
    # checkpoints written before ensembles hold one model
    config = ModelConfig(**{"members": 1, **{k: v for k, v in raw.items() if k in known}})
    item_ids = read_json(root / ITEMS)
    if len(item_ids) != config.n_items:
        raise CheckpointError(f"{root / ITEMS} lists {len(item_ids)} items but the config has {config.n_items}")
    if not (root / ITEM_TEXT).is_file() or not (root / WEIGHTS).is_file():
        raise CheckpointError(f"{root} lacks {ITEM_TEXT} or {WEIGHTS}; re-run `istream train`")
    text_emb = np.load(root / ITEM_TEXT)
    if text_emb.shape != (config.n_items, config.text_dim):
        raise CheckpointError(
            f"{root / ITEM_TEXT} has shape {text_emb.shape}, expected {(config.n_items, config.text_dim)}"
        )
    model = make_model(config)
    try:
        model.load_state_dict(torch.load(root / WEIGHTS, map_location="cpu", weights_only=True))
    except RuntimeError as exc:
        raise CheckpointError(f"{root / WEIGHTS} does not fit {root / CONFIG}: {exc}") from None
    for member in members_of(model):
        member.item_text_emb.copy_(torch.from_numpy(text_emb))
    return Checkpoint(
        model=model.eval(),
        item_ids=item_ids,
        metrics=read_json(root / METRICS, default={}),
        history=read_json(root / HISTORY, default={}),
    )
